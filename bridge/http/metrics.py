"""Request metrics: the middleware that measures every answer into ``bridge.metrics``.

It sits around everything else the site does (CORS, limits, checks), so refused requests
are counted too. Labels: the method (one of the API's or ``other``), the OpenAPI path the
request matched (never the raw path), the status (``499`` when the client left before any
answer). Event streams are counted but left out of the latency histogram; a refused
request is counted under the limit that refused it.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request

from bridge.http.request import CLIENT_GONE, BridgeRequest, bridge_request
from bridge.metrics import BridgeMetrics

METHODS = {"GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD"}


def record_answer(metrics: BridgeMetrics, request: BridgeRequest, seconds: float, completed: bool) -> None:
    """Count one answered request (``completed``: its answer ended before the connection did)."""
    method = request.method.decode("ascii", "replace")
    if method not in METHODS:
        method = "other"
    route = metrics.routes.name(request.path.decode("utf-8", "replace"))
    status = str(request.code) if completed or request.startedWriting else str(CLIENT_GONE)
    metrics.requests.labels(method, route, status).inc()
    if not request.is_event_stream:
        metrics.latency.labels(method, route).observe(seconds)
    if request.refusal is not None:
        metrics.throttled.labels(request.refusal).inc()
    elif request.code == 429:
        metrics.throttled.labels("login").inc()
    if request.code == 401 and (request.getHeader(b"authorization") or b"token" in (request.args or {})):
        metrics.login_failures.inc()


class InstrumentedResource(Resource):
    """Measures every request the site answers, around everything else (CORS, limits)."""

    isLeaf = True

    def __init__(self, wrapped: Resource, metrics: BridgeMetrics) -> None:
        super().__init__()
        self._wrapped = wrapped
        self._metrics = metrics

    def render(self, request: Request) -> Any:
        edge = bridge_request(request)
        started = edge.started or time.monotonic()
        self._metrics.in_flight.inc()

        def done(result: object) -> None:
            self._metrics.in_flight.dec()
            completed = not hasattr(result, "check")  # a Failure: the connection was lost first
            record_answer(self._metrics, edge, time.monotonic() - started, completed)

        request.notifyFinish().addBoth(done)
        return self._wrapped.render(request)
