"""CORS (WHATWG Fetch): allowed origins, and pre-flight answered without credentials."""

from __future__ import annotations

from twisted.web.resource import Resource
from twisted.web.server import Request

API_METHODS = b"GET, POST, PUT, DELETE, OPTIONS"
ALLOWED_HEADERS = b"Authorization, Content-Type, Last-Event-ID"
# The Origin of pages without one of their own (sandboxed frames, file: and data: URLs).
OPAQUE_ORIGIN = b"null"


class CorsResource(Resource):
    """Adds CORS headers to every answer and answers pre-flight requests itself.

    The API is called with an explicit ``Authorization`` header, never with cookies or a
    login the browser cached, so ``Access-Control-Allow-Credentials`` is never sent: a page
    that asks for ``credentials: 'include'`` is refused by the browser, and a page may only
    use credentials it was given. An allowed ``Origin`` is echoed (with ``Vary: Origin``);
    with ``"*"`` that is any origin except ``null`` (sandboxed frames, ``file:`` and
    ``data:`` pages, redirects), which is allowed only when listed by name.
    """

    isLeaf = True

    def __init__(self, wrapped: Resource, origins: list[str]) -> None:
        super().__init__()
        self._wrapped = wrapped
        self._any = "*" in origins
        self._origins = {origin.encode() for origin in origins if origin != "*"}

    def allows(self, origin: bytes | None) -> bool:
        """Whether a page on ``origin`` may read the answers."""
        if not origin:
            return False
        if origin in self._origins:
            return True
        return self._any and origin != OPAQUE_ORIGIN

    def _allow(self, request: Request) -> None:
        origin = request.getHeader(b"origin")
        request.setHeader(b"Vary", b"Origin")
        if origin is not None and self.allows(origin):
            request.setHeader(b"Access-Control-Allow-Origin", origin)
            request.setHeader(b"Access-Control-Expose-Headers", b"Retry-After, WWW-Authenticate")

    def render(self, request: Request) -> bytes | int:
        self._allow(request)
        if request.method == b"OPTIONS":
            request.setResponseCode(204)
            request.setHeader(b"Access-Control-Allow-Methods", API_METHODS)
            request.setHeader(b"Access-Control-Allow-Headers", ALLOWED_HEADERS)
            request.setHeader(b"Access-Control-Max-Age", b"86400")
            request.setHeader(b"Allow", API_METHODS)
            return b""
        return self._wrapped.render(request)
