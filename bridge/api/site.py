"""The HTTP site: the ``/api`` tree, health checks, CORS, and limits on requests.

Each resource group is its own Klein app (``messages``, ...), mounted here with
``branch=True``. Around the Klein resource sit two concerns every path shares: CORS (with
pre-flight answered without credentials) and the request body limit (413 before the body
is read into memory). The access log names method, path without query, status, duration
and user; never credentials, tokens or bodies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from klein import Klein
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from bridge.api.errors import write_json
from bridge.api.messages import MessagesApi
from bridge.api.rendering import json_errors

log = Logger()

API_METHODS = b"GET, POST, PUT, DELETE, OPTIONS"
ALLOWED_HEADERS = b"Authorization, Content-Type, Last-Event-ID"


@dataclass
class ApiGroups:
    """The mounted resource groups; each issue's capability adds one."""

    messages: MessagesApi


class BridgeApi:
    """The root Klein app: mounts every group under ``/api`` and answers health checks."""

    app = json_errors(Klein())

    def __init__(self, groups: ApiGroups) -> None:
        self._groups = groups

    @app.route("/api/messages", branch=True)
    def messages(self, request: Request) -> Resource:
        return self._groups.messages.app.resource()

    @app.route("/healthz", methods=["GET"])
    def healthz(self, request: Request) -> bytes:
        return write_json(request, 200, "ok")


class CorsResource(Resource):
    """Adds CORS headers to every answer and answers pre-flight requests itself."""

    isLeaf = True

    def __init__(self, wrapped: Resource, origins: list[str]) -> None:
        super().__init__()
        self._wrapped = wrapped
        self._any = "*" in origins
        self._origins = {origin.encode() for origin in origins}

    def _allow(self, request: Request) -> None:
        origin = request.getHeader(b"origin")
        request.setHeader(b"Vary", b"Origin")
        if origin and (self._any or origin in self._origins):
            request.setHeader(b"Access-Control-Allow-Origin", origin)
            request.setHeader(b"Access-Control-Allow-Credentials", b"true")
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


class LimitedRequest(Request):
    """A request that refuses bodies over the site's limit before buffering them."""

    def process(self) -> None:
        self.bridge_started = time.monotonic()
        super().process()

    def gotLength(self, length: int | None) -> None:
        limit = self._max_body()
        if length is not None and length > limit:
            self._refuse()
            return
        self._received = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        self._received = getattr(self, "_received", 0) + len(data)
        if self._received > self._max_body():
            self._refuse()
            return
        super().handleContentChunk(data)

    def _max_body(self) -> int:
        return int(getattr(self.channel, "site").max_body)  # noqa: B009  (set by Site.buildProtocol)

    def _refuse(self) -> None:
        transport = self.channel.transport
        if transport is None or getattr(self, "_refused", False):
            return
        self._refused = True
        body = b'"Request body too large"'
        transport.write(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        transport.loseConnection()


class BridgeSite(Site):
    """The Site with the bridge's request class, idle timeout and access log."""

    requestFactory = LimitedRequest
    noisy = False

    def __init__(self, resource: Resource, max_body: int, idle_timeout: float, clock: IReactorTime) -> None:
        super().__init__(resource, timeout=idle_timeout, reactor=clock)
        self.max_body = max_body
        self._clock = clock

    def log(self, request: http.Request) -> None:
        started = getattr(request, "bridge_started", None)
        duration = (time.monotonic() - started) * 1000 if started is not None else 0.0
        log.info(
            "{method} {path} {status} {duration:.1f}ms user={user}",
            method=request.method.decode("ascii", "replace"),
            path=request.path.decode("utf-8", "replace"),
            status=request.code,
            duration=duration,
            user=getattr(request, "bridge_user", "-"),
        )


def build_site(
    groups: ApiGroups, cors_origins: list[str], max_body: int, idle_timeout: float, clock: IReactorTime
) -> BridgeSite:
    resource = CorsResource(BridgeApi(groups).app.resource(), cors_origins)
    return BridgeSite(resource, max_body, idle_timeout, clock)
