"""The HTTP site: the ``/api`` tree, health checks, CORS, and limits on requests.

Each resource group is its own Klein app (``messages``, ...), mounted here with
``branch=True``. Around the Klein resource sit the concerns every path shares: CORS (with
pre-flight answered without credentials, and never with credentials allowed), the request
body limit (413 before the body is read into memory), input checks before routing (415
for a body that is not JSON, 400 for a path that is not UTF-8), and when ``build_site`` is
given them, rate limits and caps (``bridge.limits``) and metrics (``bridge.metrics``). The access log names method, path
without query, status, duration and user; never credentials, tokens or bodies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes as unquote

from klein import Klein
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from bridge.api.contacts import ContactsApi
from bridge.api.docs import DocsApi
from bridge.api.errors import ApiError, write_json
from bridge.api.input import require_json_body
from bridge.api.messages import MessagesApi
from bridge.api.rendering import json_errors
from bridge.api.rooms import RoomsApi
from bridge.api.sse import SseApi
from bridge.limits import GuardedChannel, LimitsResource, RequestLimits
from bridge.metrics import BridgeMetrics, InstrumentedResource
from bridge.shutdown import Readiness

log = Logger()

API_METHODS = b"GET, POST, PUT, DELETE, OPTIONS"
# The status an access line shows for a client that left before any answer (nginx's 499).
CLIENT_GONE = 499
ALLOWED_HEADERS = b"Authorization, Content-Type, Last-Event-ID"
# The Origin of pages without one of their own (sandboxed frames, file: and data: URLs).
OPAQUE_ORIGIN = b"null"


@dataclass
class ApiGroups:
    """The mounted resource groups; each issue's capability adds one."""

    messages: MessagesApi
    sse: SseApi
    contacts: ContactsApi
    rooms: RoomsApi


class BridgeApi:
    """The root Klein app: mounts every group under ``/api`` and answers health checks."""

    app = json_errors(Klein())

    def __init__(self, groups: ApiGroups, readiness: Readiness | None = None) -> None:
        self._groups = groups
        self._readiness = readiness
        self._docs = DocsApi()

    @app.route("/api/messages", branch=True)
    def messages(self, request: Request) -> Resource:
        return self._groups.messages.app.resource()

    @app.route("/api/contacts", branch=True)
    def contacts(self, request: Request) -> Resource:
        return self._groups.contacts.app.resource()

    @app.route("/api/rooms", branch=True)
    def rooms(self, request: Request) -> Resource:
        return self._groups.rooms.app.resource()

    @app.route("/api/sse", branch=True)
    def sse(self, request: Request) -> Resource:
        return self._groups.sse.app.resource()

    @app.route("/healthz", methods=["GET"])
    def healthz(self, request: Request) -> bytes:
        return write_json(request, 200, "ok")

    @app.route("/readyz", methods=["GET"])
    async def readyz(self, request: Request) -> bytes:
        if self._readiness is None:
            return write_json(request, 200, {"status": "ready", "checks": {}})
        status, body = await self._readiness.status()
        return write_json(request, status, body)

    @app.route("/api-docs", methods=["GET"])
    def api_document(self, request: Request) -> bytes:
        return self._docs.document(request)

    @app.route("/api-docs/", methods=["GET"])
    def api_page(self, request: Request) -> bytes:
        return self._docs.page(request)

    @app.route("/api-docs/<string:name>", methods=["GET"])
    def api_page_asset(self, request: Request, name: str) -> bytes:
        return self._docs.asset(request, name)


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


def path_error(request: Request) -> str | None:
    """The 400 message for a path or Host that is not UTF-8, else None.

    Klein answers those itself with a text/html 400 and logs a traceback for each, so they
    are refused here, with the message the route would give its parameter: the path's
    segments as Twisted splits and percent-decodes them, the first bad one named.
    """
    try:
        request.getRequestHostname().decode("utf-8")
    except UnicodeDecodeError:
        return "Invalid Host header"
    segments = [unquote(segment) for segment in request.path.split(b"/")[1:]]
    for index, segment in enumerate(segments):
        try:
            segment.decode("utf-8")
        except UnicodeDecodeError:
            return _segment_error(segments, index)
    return None


def _segment_error(segments: list[bytes], bad: int) -> str:
    group = segments[:2]
    if group == [b"api", b"messages"] and bad >= 2:
        return "Invalid interlocutor JID"
    if group == [b"api", b"contacts"] and bad >= 2:
        return "Invalid JID: " + b"/".join(segments[2:]).decode("utf-8", "replace")
    if group == [b"api", b"rooms"] and bad == 2:
        return "Invalid room ID"
    if group == [b"api", b"rooms"] and bad == 4 and segments[3] == b"users":
        return "Invalid user JID"
    return "Invalid request path"


class RequestChecksResource(Resource):
    """Refuses, before routing, what Klein would misread: paths that are not UTF-8, bodies that are not JSON."""

    isLeaf = True

    def __init__(self, wrapped: Resource) -> None:
        super().__init__()
        self._wrapped = wrapped

    def render(self, request: Request) -> bytes | int:
        message = path_error(request)
        if message is not None:
            return write_json(request, 400, message)
        try:
            require_json_body(request)
        except ApiError as error:
            return write_json(request, error.status, error.message)
        return self._wrapped.render(request)


class LimitedRequest(Request):
    """A request that refuses bodies over the site's limit before buffering them."""

    def process(self) -> None:
        self.bridge_started = time.monotonic()
        super().process()

    def connectionLost(self, reason: Failure) -> None:
        # A request whose client went away before its answer ended (an event stream the
        # client closed, a request it gave up on) still gets its access line.
        if not self.finished and getattr(self, "bridge_started", None) is not None:
            if not self.startedWriting:
                self.bridge_status = CLIENT_GONE
            if self.site is not None:
                self.site.log(self)
        super().connectionLost(reason)

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
    protocol = GuardedChannel  # type: ignore[assignment]  # an HTTP/1.1 channel; no HTTP/2
    noisy = False
    # Seconds to receive a request's headers, then its body (see bridge.limits.GuardedChannel).
    header_timeout: float | None = 10.0
    body_timeout: float | None = 30.0

    def __init__(self, resource: Resource, max_body: int, idle_timeout: float, clock: IReactorTime) -> None:
        # The API reads JSON bodies only. By default Twisted parses every POST's Content-Type
        # (building an email message: 14% of the CPU of POST /api/messages) to merge form
        # fields into ``args``; without it ``args`` is the query string alone, as meant.
        try:
            super().__init__(resource, timeout=idle_timeout, reactor=clock, parsePOSTFormSubmission=False)
        except TypeError:  # a Twisted from before that argument
            super().__init__(resource, timeout=idle_timeout, reactor=clock)
        self.max_body = max_body
        self._clock = clock
        # Open connections, for the shutdown drain; True once it has begun (bridge.shutdown).
        self.channels: set[GuardedChannel] = set()
        self.draining = False
        self.metrics: BridgeMetrics | None = None

    def log(self, request: http.Request) -> None:
        started = getattr(request, "bridge_started", None)
        duration = (time.monotonic() - started) * 1000 if started is not None else 0.0
        log.info(
            "{method} {path} {status} {duration:.1f}ms user={user}",
            method=request.method.decode("ascii", "replace"),
            path=request.path.decode("utf-8", "replace"),
            status=getattr(request, "bridge_status", request.code),
            duration=duration,
            user=getattr(request, "bridge_user", "-"),
        )


def build_site(
    groups: ApiGroups,
    cors_origins: list[str],
    max_body: int,
    idle_timeout: float,
    clock: IReactorTime,
    limits: RequestLimits | None = None,
    metrics: BridgeMetrics | None = None,
    readiness: Readiness | None = None,
) -> BridgeSite:
    """The site: metrics around CORS around the limits around the input checks around the API.

    Metrics and limits are optional. The input checks sit inside the limits, so refused
    requests still count against the client's rate.
    """
    resource: Resource = RequestChecksResource(BridgeApi(groups, readiness).app.resource())
    if limits is not None:
        resource = LimitsResource(resource, limits)
    resource = CorsResource(resource, cors_origins)
    if metrics is not None:
        resource = InstrumentedResource(resource, metrics)
    site = BridgeSite(resource, max_body, idle_timeout, clock)
    site.metrics = metrics
    return site
