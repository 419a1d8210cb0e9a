"""The HTTP site: the layers every path shares, around the API's resource, and the access log.

From the outside in: metrics (``bridge.http.metrics``), CORS (``bridge.http.cors``), rate
limits and caps (``bridge.http.limits``), checks before routing (``bridge.http.checks``),
then the API's Klein resource (``bridge.api.root``); under them all, the connection's
deadlines and size limits (``bridge.http.channel``) and the request class that carries
what the layers learn (``bridge.http.request``). The access log names method, path
without query, status, duration and user; never credentials, tokens or bodies.
"""

from __future__ import annotations

import time

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Site

from bridge.http.channel import GuardedChannel, LimitedRequest
from bridge.http.checks import RequestChecksResource
from bridge.http.cors import CorsResource
from bridge.http.limits import LimitsResource, RequestLimits
from bridge.http.metrics import InstrumentedResource
from bridge.http.request import BridgeRequest
from bridge.metrics import BridgeMetrics

log = Logger()

# The fields of an access line, for the JSON log (``bridge.logs``: ``json_fields``).
ACCESS_FIELDS = ("method", "path", "status", "duration", "user")


class BridgeSite(Site):
    """The Site with the bridge's request class, idle timeout and access log."""

    requestFactory = LimitedRequest
    protocol = GuardedChannel  # type: ignore[assignment]  # an HTTP/1.1 channel; no HTTP/2
    noisy = False
    # Seconds to receive a request's headers, then its body (see GuardedChannel).
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
        self.access_log = True  # [http] access_log

    def log(self, request: http.Request) -> None:
        """One access line: ``{method} {path} {status} {duration:.1f}ms user={user}``.

        The line is written out here and is the event's whole format: Twisted's text
        observer formats five fields in 15 us, half of what the access log cost a request
        (12 % of the CPU of ``POST /api/messages``). The fields travel beside it for the
        JSON log.
        """
        if not self.access_log:
            return
        assert isinstance(request, BridgeRequest)  # requestFactory's
        started = request.started
        duration = (time.monotonic() - started) * 1000 if started is not None else 0.0
        method = request.method.decode("ascii", "replace")
        path = request.path.decode("utf-8", "replace")
        status = request.access_status if request.access_status is not None else request.code
        user = request.user_jid if request.user_jid is not None else "-"
        line = f"{method} {path} {status} {duration:.1f}ms user={user}"
        if "{" in line or "}" in line:
            line = line.replace("{", "{{").replace("}", "}}")
        log.emit(
            LogLevel.info,
            line,
            method=method,
            path=path,
            status=status,
            duration=duration,
            user=user,
            json_fields=ACCESS_FIELDS,
        )


def build_site(
    api: Resource,
    cors_origins: list[str],
    max_body: int,
    idle_timeout: float,
    clock: IReactorTime,
    limits: RequestLimits | None = None,
    metrics: BridgeMetrics | None = None,
) -> BridgeSite:
    """The site: metrics around CORS around the limits around the input checks around ``api``.

    Metrics and limits are optional. The input checks sit inside the limits, so refused
    requests still count against the client's rate.
    """
    resource: Resource = RequestChecksResource(api)
    if limits is not None:
        resource = LimitsResource(resource, limits)
    resource = CorsResource(resource, cors_origins)
    if metrics is not None:
        resource = InstrumentedResource(resource, metrics)
    site = BridgeSite(resource, max_body, idle_timeout, clock)
    site.metrics = metrics
    return site
