"""The API's own description: the OpenAPI 3.1 document and a page that renders it.

``bridge/openapi.json`` is written by hand from DESIGN.md and kept in the package; a test
checks that it lists exactly the routes the Klein apps serve. ``/api-docs`` serves it as
JSON, ``/api-docs/`` as a Redoc page whose script is vendored in ``bridge/api/static``
(see the README there), so reading the docs sends no request to a third party. None of
these need credentials.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from twisted.web.server import Request

import bridge
from bridge.api.errors import write_json

# The page's files, by the name they are served under, with their content type.
ASSETS = {
    "redoc.standalone.js": b"application/javascript; charset=utf-8",
    "redoc.standalone.js.LICENSE.txt": b"text/plain; charset=utf-8",
    "REDOC-LICENSE.txt": b"text/plain; charset=utf-8",
}

# Redoc styles its components inline and runs its search index in a worker made from a blob.
CONTENT_SECURITY_POLICY = (
    b"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    b"connect-src 'self'; worker-src blob:; font-src 'self' data:; base-uri 'none'; form-action 'none'; "
    b"frame-ancestors 'none'"
)

PAGE = b"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>xmpp-rest-bridge API</title>
<style>body { margin: 0; padding: 0; }</style>
</head>
<body>
<redoc spec-url="../api-docs"></redoc>
<script src="redoc.standalone.js"></script>
</body>
</html>
"""


@functools.cache
def load_spec() -> dict[str, Any]:
    """The OpenAPI document, with ``info.version`` set to the running version."""
    text = resources.files("bridge").joinpath("openapi.json").read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text)
    document["info"]["version"] = bridge.__version__
    return document


@functools.cache
def _spec_bytes() -> bytes:
    return json.dumps(load_spec(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@functools.cache
def _asset(name: str) -> bytes:
    return resources.files("bridge.api").joinpath("static", name).read_bytes()


class DocsApi:
    """Answers ``/api-docs``, ``/api-docs/`` and the page's files; mounted by the root app."""

    def document(self, request: Request) -> bytes:
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-cache")
        return _spec_bytes()

    def page(self, request: Request) -> bytes:
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Content-Security-Policy", CONTENT_SECURITY_POLICY)
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        request.setHeader(b"Cache-Control", b"no-cache")
        return PAGE

    def asset(self, request: Request, name: str) -> bytes:
        content_type = ASSETS.get(name)
        if content_type is None:
            return write_json(request, 404, "Not found")
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", content_type)
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        request.setHeader(b"Cache-Control", b"public, max-age=86400")
        return _asset(name)
