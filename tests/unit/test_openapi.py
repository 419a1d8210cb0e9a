"""The OpenAPI document: valid, complete (every served route and nothing else), and served."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from openapi_spec_validator import validate
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

import bridge
from bridge.api.docs import ASSETS, load_spec
from bridge.config import parse_config
from bridge.tap import build
from tests.unit.memory_site import site_treq

SPEC_FILE = Path(bridge.__file__).parent / "openapi.json"
# Methods Werkzeug adds by itself (HEAD for GET) or that CorsResource answers before routing.
IMPLICIT = {"HEAD", "OPTIONS"}
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def normalise(path: str) -> str:
    """A path with every parameter as ``{}``: Werkzeug's ``<path:x>`` and OpenAPI's ``{x}`` alike."""
    path = re.sub(r"<[^>]+>|\{[^}]+\}", "{}", path)
    path = re.sub(r"/+", "/", path)
    return path.rstrip("/") or "/"


def root_api(resource: Any) -> Any:
    """The BridgeApi instance under the site's wrappers (metrics, CORS, limits)."""
    while hasattr(resource, "_wrapped"):
        resource = resource._wrapped
    return resource._root._app._instance


def served_routes(api: Any) -> set[tuple[str, str]]:
    """(method, normalised path) of every route of the root app and of each mounted group."""
    rules = list(type(api).app.url_map.iter_rules())
    branches = {rule.endpoint[: -len("_branch")] for rule in rules if rule.endpoint.endswith("_branch")}
    routes = set()
    for rule in rules:
        if rule.endpoint.endswith("_branch"):
            continue
        if rule.endpoint in branches:
            group = getattr(api, rule.endpoint)(None)  # the group's KleinResource
            for sub in group._app.url_map.iter_rules():
                for method in set(sub.methods or ()) - IMPLICIT:
                    routes.add((method, normalise(rule.rule + sub.rule)))
        else:
            for method in set(rule.methods or ()) - IMPLICIT:
                routes.add((method, normalise(rule.rule)))
    return routes


def documented_routes(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), normalise(path))
        for path, item in spec["paths"].items()
        for method in item
        if method in HTTP_METHODS and method.upper() not in IMPLICIT
    }


class DocumentTests(unittest.TestCase):
    def setUp(self) -> None:
        self.spec = json.loads(SPEC_FILE.read_text())
        _, self.parts = build(parse_config("", {}), MemoryReactorClock())

    def test_document_is_valid_openapi_3_1(self) -> None:
        """bridge/openapi.json validates as an OpenAPI 3.1 document."""
        self.assertEqual(self.spec["openapi"], "3.1.0")
        validate(self.spec)

    def test_every_served_route_is_documented_and_vice_versa(self) -> None:
        """The Klein apps' routes (root and every mounted group) and the document's operations match exactly."""
        served = served_routes(root_api(self.parts.site.resource))
        documented = documented_routes(self.spec)
        self.assertGreater(len(served), 10)
        self.assertEqual(sorted(served - documented), [], "served but not in bridge/openapi.json")
        self.assertEqual(sorted(documented - served), [], "in bridge/openapi.json but not served")

    def test_operation_ids_are_unique_and_every_path_answers_preflight(self) -> None:
        """Each operation has its own operationId, and each path documents its CORS pre-flight."""
        ids = [op["operationId"] for item in self.spec["paths"].values() for m, op in item.items() if m in HTTP_METHODS]
        self.assertEqual(len(ids), len(set(ids)))
        for path, item in self.spec["paths"].items():
            self.assertIn("options", item, path)
            self.assertEqual(item["options"]["security"], [], path)

    def test_authenticated_operations_document_401_and_429(self) -> None:
        """Every operation that needs credentials documents 401 and 429 with Retry-After."""
        for path, item in self.spec["paths"].items():
            for method, op in item.items():
                if method not in HTTP_METHODS or op.get("security") == []:
                    continue
                self.assertIn("401", op["responses"], f"{method} {path}")
                self.assertIn("429", op["responses"], f"{method} {path}")

    def test_operations_with_a_body_document_415(self) -> None:
        """Every operation that takes a request body documents 415 "Content-Type must be application/json"."""
        responses = self.spec["components"]["responses"]
        with_body = 0
        for path, item in self.spec["paths"].items():
            for method, op in item.items():
                if method not in HTTP_METHODS or "requestBody" not in op:
                    continue
                with_body += 1
                self.assertEqual(list(op["requestBody"]["content"]), ["application/json"], f"{method} {path}")
                response = op["responses"].get("415", {})
                if "$ref" in response:
                    response = responses[response["$ref"].rsplit("/", 1)[1]]
                examples = response.get("content", {}).get("application/json", {}).get("examples", {})
                values = [example["value"] for example in examples.values()]
                self.assertEqual(values, ["Content-Type must be application/json"], f"{method} {path}")
        self.assertGreater(with_body, 5)

    def test_errors_are_json_strings(self) -> None:
        """Every documented error response (4xx, 5xx) with a body is a JSON string, as DESIGN.md fixes."""
        responses = self.spec["components"]["responses"]
        for path, item in self.spec["paths"].items():
            for method, op in item.items():
                if method not in HTTP_METHODS:
                    continue
                for status, response in op["responses"].items():
                    if "$ref" in response:
                        response = responses[response["$ref"].rsplit("/", 1)[1]]
                    if not status.startswith(("4", "5")) or "content" not in response or path == "/readyz":
                        continue
                    schema = response["content"]["application/json"]["schema"]
                    self.assertEqual(schema, {"$ref": "#/components/schemas/Error"}, f"{method} {path} {status}")

    def test_loaded_document_carries_the_running_version(self) -> None:
        """The served document's info.version is the package's version."""
        self.assertEqual(load_spec()["info"]["version"], bridge.__version__)


class ServedTests(unittest.TestCase):
    def setUp(self) -> None:
        _, parts = build(parse_config('[http]\ncors_origins = ["https://app.example"]\n', {}), MemoryReactorClock())
        self.http = site_treq(parts.site)

    async def get(self, path: str, **kwargs: Any) -> tuple[Any, bytes]:
        response = await self.http.get("http://bridge.example" + path, **kwargs)
        return response, await response.content()

    async def test_document_served_without_credentials(self) -> None:
        """GET /api-docs answers the document as JSON, without credentials."""
        response, body = await self.get("/api-docs")
        self.assertEqual(response.code, 200)
        self.assertTrue(response.headers.getRawHeaders("content-type")[0].startswith("application/json"))
        self.assertEqual(json.loads(body), load_spec())

    async def test_page_and_its_script_are_served_from_the_bridge(self) -> None:
        """GET /api-docs/ is an HTML page whose script is served by the bridge itself (no CDN)."""
        response, body = await self.get("/api-docs/")
        self.assertEqual(response.code, 200)
        self.assertTrue(response.headers.getRawHeaders("content-type")[0].startswith("text/html"))
        self.assertIn("script-src 'self'", response.headers.getRawHeaders("content-security-policy")[0])
        page = body.decode()
        self.assertNotRegex(page, r"(src|href)=\"(https?:)?//")
        scripts = re.findall(r'<script src="([^"]+)"', page)
        self.assertEqual(scripts, ["redoc.standalone.js"])
        self.assertIn('spec-url="../api-docs"', page)
        for name in ASSETS:
            response, body = await self.get("/api-docs/" + name)
            self.assertEqual(response.code, 200, name)
            self.assertGreater(len(body), 500, name)
        response, _ = await self.get("/api-docs/redoc.standalone.js")
        self.assertTrue(response.headers.getRawHeaders("content-type")[0].startswith("application/javascript"))

    async def test_unknown_asset_is_404(self) -> None:
        """A file the page does not have, or a path that tries to leave the folder, is 404."""
        for path in ("/api-docs/nope.js", "/api-docs/..%2fopenapi.json", "/api-docs/README.md", "/api-docs/x/y"):
            response, body = await self.get(path)
            self.assertEqual(response.code, 404, path)
            self.assertEqual(json.loads(body), "Not found")

    async def test_preflight_allows_every_documented_method_of_every_path(self) -> None:
        """OPTIONS on each documented path, from an allowed origin, allows all the path's methods."""
        spec = load_spec()
        for path, item in spec["paths"].items():
            concrete = re.sub(r"\{[^}]+\}", "x", path)
            response = await self.http.request(
                "OPTIONS",
                "http://bridge.example" + concrete,
                headers={"Origin": ["https://app.example"], "Access-Control-Request-Method": ["PUT"]},
            )
            await response.content()
            self.assertEqual(response.code, 204, path)
            allowed = {m.strip() for m in response.headers.getRawHeaders("access-control-allow-methods")[0].split(",")}
            wanted = {m.upper() for m in item if m in HTTP_METHODS}
            self.assertLessEqual(wanted, allowed, path)
            self.assertEqual(response.headers.getRawHeaders("access-control-allow-origin"), ["https://app.example"])
            allowed_headers = response.headers.getRawHeaders("access-control-allow-headers")[0].lower()
            for header in ("authorization", "content-type", "last-event-id"):
                self.assertIn(header, allowed_headers)

    async def test_origin_outside_the_allow_list_gets_no_cors_headers(self) -> None:
        """An Origin not in http.cors_origins gets no Access-Control-Allow-Origin, on pre-flight or request."""
        for method in ("OPTIONS", "GET"):
            response = await self.http.request(
                method, "http://bridge.example/healthz", headers={"Origin": ["https://evil.example"]}
            )
            await response.content()
            self.assertIsNone(response.headers.getRawHeaders("access-control-allow-origin"), method)
