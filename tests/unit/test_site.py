"""The HTTP edge of the real site (CORS, Content-Type, paths), driven in memory with StubTreq.

These requests are answered before any XMPP session is needed (pre-flight, 415, 400 for
the path, 401), so the site built by ``bridge.tap.build`` on a memory reactor is enough.
"""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from bridge.config import parse_config
from bridge.tap import build
from tests.integration.bridge_log import BridgeLog
from tests.unit.memory_site import site_treq

BASE = "http://bridge.example"
AUTH = "Basic " + "YWxpY2VAbG9jYWxob3N0OnNlY3JldA=="  # alice@localhost:secret
# Every operation that takes a JSON body, with a body it accepts.
BODY_OPERATIONS = [
    ("POST", "/api/messages", {"to": "bob@localhost", "body": "hi"}),
    ("POST", "/api/contacts", {"jid": "bob@localhost"}),
    ("DELETE", "/api/contacts", {"to_delete": ["bob@localhost"]}),
    ("PUT", "/api/contacts/bob@localhost", {"action": "invite"}),
    ("POST", "/api/rooms", {"name": "n", "subject": "s"}),
    ("PUT", "/api/rooms/r1", {"name": "n", "subject": "s"}),
    ("PUT", "/api/rooms/r1/config", {"name": "n", "subject": "s"}),
    ("POST", "/api/rooms/r1/users", {"user": "bob@localhost"}),
    ("POST", "/api/rooms/r1/messages", {"body": "hi"}),
]


def site_client(config: str = "") -> StubTreq:
    _, parts = build(parse_config(config, {}), MemoryReactorClock())
    return site_treq(parts.site)


class SiteTestCase(unittest.TestCase):
    config = ""

    def setUp(self) -> None:
        self.http = site_client(self.config)

    async def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, data: bytes | None = None
    ) -> tuple[Any, bytes]:
        response = await self.http.request(
            method, BASE + path, headers={k: [v] for k, v in (headers or {}).items()}, data=data
        )
        return response, await response.content()


class CorsTests(SiteTestCase):
    async def test_no_answer_allows_credentials(self) -> None:
        """Pre-flights and answers (POST /api/sse/token included) never carry Access-Control-Allow-Credentials."""
        origin = {"Origin": "https://app.example"}
        for method, path, extra in (
            ("OPTIONS", "/api/sse/token", {"Access-Control-Request-Method": "POST"}),
            ("OPTIONS", "/api/messages", {"Access-Control-Request-Method": "POST"}),
            ("POST", "/api/sse/token", {"Authorization": AUTH}),
            ("GET", "/api/messages", {}),
            ("GET", "/healthz", {}),
        ):
            response, _ = await self.request(method, path, {**origin, **extra})
            self.assertEqual(
                response.headers.getRawHeaders("access-control-allow-origin"), ["https://app.example"], path
            )
            self.assertIsNone(response.headers.getRawHeaders("access-control-allow-credentials"), (method, path))

    async def test_star_echoes_origins_but_not_null(self) -> None:
        """With cors_origins ["*"] any origin is echoed with Vary: Origin, except the opaque origin "null"."""
        for method in ("OPTIONS", "GET"):
            response, _ = await self.request(method, "/api/messages", {"Origin": "null"})
            self.assertIsNone(response.headers.getRawHeaders("access-control-allow-origin"), method)
            response, _ = await self.request(method, "/api/messages", {"Origin": "http://127.0.0.1:9999"})
            self.assertEqual(response.headers.getRawHeaders("access-control-allow-origin"), ["http://127.0.0.1:9999"])
            self.assertEqual(response.headers.getRawHeaders("vary"), ["Origin"])

    async def test_preflight_allows_the_authorization_header(self) -> None:
        """A pre-flight for a request with Authorization and a JSON body allows both headers and the method."""
        response, _ = await self.request(
            "OPTIONS",
            "/api/sse/token",
            {
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        self.assertEqual(response.code, 204)
        allowed = response.headers.getRawHeaders("access-control-allow-headers")[0].lower()
        self.assertIn("authorization", allowed)
        self.assertIn("content-type", allowed)
        self.assertIn("POST", response.headers.getRawHeaders("access-control-allow-methods")[0])


class ListedNullOriginTests(SiteTestCase):
    config = '[http]\ncors_origins = ["null", "https://app.example"]\n'

    async def test_null_is_allowed_only_when_listed(self) -> None:
        """A cors_origins list that names "null" allows it, still without credentials; others stay refused."""
        response, _ = await self.request("OPTIONS", "/api/messages", {"Origin": "null"})
        self.assertEqual(response.headers.getRawHeaders("access-control-allow-origin"), ["null"])
        self.assertIsNone(response.headers.getRawHeaders("access-control-allow-credentials"))
        response, _ = await self.request("OPTIONS", "/api/messages", {"Origin": "https://evil.example"})
        self.assertIsNone(response.headers.getRawHeaders("access-control-allow-origin"))


class ContentTypeTests(SiteTestCase):
    async def test_body_without_json_content_type_is_415(self) -> None:
        """Every operation with a body answers 415 to a cross-site form's content types, before any login."""
        for method, path, body in BODY_OPERATIONS:
            data = json.dumps(body).encode()
            # multipart/form-data is in tests/integration/test_hostile.py, over a real socket.
            for content_type in (
                None,
                "text/plain",
                "application/x-www-form-urlencoded",
                "text/json",
                "application/jsonx",
            ):
                headers = {"Authorization": AUTH, "Origin": "https://evil.example"}
                if content_type is not None:
                    headers["Content-Type"] = content_type
                response, raw = await self.request(method, path, headers, data)
                self.assertEqual(
                    (response.code, json.loads(raw)), (415, "Content-Type must be application/json"), (method, path)
                )
                self.assertTrue(response.headers.getRawHeaders("content-type")[0].startswith("application/json"))

    async def test_json_content_type_with_parameters_and_any_case_passes(self) -> None:
        """application/json in any case and with parameters reaches the API (here: 401 without a valid login)."""
        for content_type in ("application/json", "Application/JSON; charset=utf-8", "application/json;charset=UTF-8"):
            response, _ = await self.request(
                "POST", "/api/messages", {"Content-Type": content_type}, b'{"to": "bob@localhost", "body": "x"}'
            )
            self.assertEqual(response.code, 401, content_type)

    async def test_empty_body_needs_no_content_type(self) -> None:
        """Requests without a body (POST /api/sse/token, DELETE) are not asked for a Content-Type."""
        for method, path in (
            ("POST", "/api/sse/token"),
            ("DELETE", "/api/contacts/bob@localhost"),
            ("GET", "/api/rooms"),
        ):
            response, _ = await self.request(method, path, {"Content-Type": "text/plain"}, b"")
            self.assertEqual(response.code, 401, path)
            response, _ = await self.request(method, path)
            self.assertEqual(response.code, 401, path)


class PathTests(SiteTestCase):
    async def test_non_utf8_paths_are_json_400_without_a_traceback(self) -> None:
        """A path that is not UTF-8 gets the route's JSON 400, and nothing is logged as a failure."""
        log = BridgeLog(self.addCleanup)
        cases = [
            ("GET", "/api/messages/%FF", "Invalid interlocutor JID"),
            ("GET", "/api/messages/a%FF%FE@localhost", "Invalid interlocutor JID"),
            ("GET", "/api/contacts/%FF", "Invalid JID: \ufffd"),
            ("PUT", "/api/contacts/x%FF@localhost", "Invalid JID: x\ufffd@localhost"),
            ("DELETE", "/api/contacts/%FF", "Invalid JID: \ufffd"),
            ("GET", "/api/rooms/%FF", "Invalid room ID"),
            ("GET", "/api/rooms/%FF/messages", "Invalid room ID"),
            ("DELETE", "/api/rooms/r1/users/%FF", "Invalid user JID"),
            ("GET", "/api/sse/%FF", "Invalid request path"),
            ("GET", "/%FF", "Invalid request path"),
            ("GET", "/api-docs/%C0%AF", "Invalid request path"),
        ]
        for method, path, message in cases:
            response, raw = await self.request(method, path, {"Authorization": AUTH})
            self.assertEqual(response.code, 400, path)
            self.assertTrue(response.headers.getRawHeaders("content-type")[0].startswith("application/json"), path)
            self.assertEqual(json.loads(raw), message, path)
        self.assertEqual(log.tracebacks(), [])

    async def test_valid_utf8_paths_still_route(self) -> None:
        """Percent-encoded UTF-8 in a path is routed as before (here: 401 without a login, 404 unknown)."""
        response, _ = await self.request("GET", "/api/messages/%C3%A9@localhost")
        self.assertEqual(response.code, 401)
        response, raw = await self.request("GET", "/api/%C3%A9")
        self.assertEqual((response.code, json.loads(raw)), (404, "Not found"))

    async def test_repeated_slashes_are_404_not_a_redirect_loop(self) -> None:
        """A path with an empty segment in a mounted group is a JSON 404, not a 308 to the same URL."""
        for method, path in (("PUT", "/api/rooms/a@b//config"), ("POST", "/api/rooms//users"), ("GET", "/api//rooms")):
            response = await self.http.request(method, BASE + path, allow_redirects=False)
            raw = await response.content()
            self.assertEqual((response.code, json.loads(raw)), (404, "Not found"), (method, path))
