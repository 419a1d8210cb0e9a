"""``/metrics`` in the Prometheus exposition format, on its own endpoint (``metrics.endpoint``).

It is kept off the API's port so that an admin can expose the API and keep the metrics on
a private interface. The registry is here, not in ``bridge.http``: the session pool, the
event streams and the MUC Light component register gauges in it too, and it has its own
site. ``bridge.http.metrics`` measures the API's requests into it. What is measured:

* ``bridge_http_requests_total{method,route,status}`` and
  ``bridge_http_request_duration_seconds{method,route}``: every answered request, by the
  OpenAPI path it matched (``/api/messages/{with}``, never the raw path, so labels stay
  few); event streams are counted but left out of the latency histogram;
* ``bridge_http_requests_in_flight``, ``bridge_http_timeouts_total{phase}`` (headers or
  body that did not arrive in time), ``bridge_login_failures_total``,
  ``bridge_throttled_requests_total{limit}`` (``address``, ``user``, ``login``,
  ``sessions``, ``streams``);
* gauges read when scraped, registered by the part that knows them
  (``watch_sessions``, ``watch_streams``, ``watch_component``, ``watch_component_state``):
  ``bridge_xmpp_sessions``, ``bridge_sse_streams``, ``bridge_component_connected``, and
  ``bridge_component_state{node,state}`` (1 for the state this process's component is in:
  ``active``, ``standby`` for a process that does not hold the cluster's component lock,
  ``failed``; 0 for the others);
* offline push (``bridge.push``): ``bridge_push_deliveries_total{outcome}`` (``delivered``,
  ``retried``, ``gone``, ``dropped``, ``refused``), and the gauges ``bridge_push_queue_depth``
  and ``bridge_push_oldest_pending_seconds`` (as of the worker's last look at the queue);
* ``bridge_build_info{version}`` and the process's own (``process_open_fds``,
  ``process_resident_memory_bytes``, ...), so an admin sees how close the daemon runs to
  its ``LimitNOFILE``.

Label values never carry user input other than the method, and the method is one of the
API's or ``other``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

# Seconds; from a cached read to an XMPP round trip that times out (xmpp.timeout = 5 s).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RouteNames:
    """Names a request path by the OpenAPI path template it matches, or ``other``."""

    def __init__(self, templates: Iterable[str]) -> None:
        self._exact: set[str] = set()
        self._patterns: list[tuple[re.Pattern[str], str]] = []
        for template in templates:
            if "{" not in template:
                self._exact.add(template)
                continue
            parts = re.split(r"(\{[^}]+\})", template)
            regex = "".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts)
            self._patterns.append((re.compile(f"^{regex}$"), template))
        # Fewer parameters first: "/api/rooms/{id}/config" before "/api/rooms/{id}/users/{user}".
        self._patterns.sort(key=lambda item: item[1].count("{"))

    def name(self, path: str) -> str:
        if path in self._exact:
            return path
        trimmed = path.rstrip("/") or "/"
        if trimmed in self._exact:
            return trimmed
        for pattern, template in self._patterns:
            if pattern.match(path) or pattern.match(trimmed):
                return template
        return "other"


class _Watched:
    """Gauges whose values are read from the bridge's parts when Prometheus scrapes."""

    def __init__(self) -> None:
        self._gauges: dict[str, tuple[str, Callable[[], float]]] = {}
        # name -> (documentation, constant labels, the states, read the current one)
        self._states: dict[str, tuple[str, dict[str, str], tuple[str, ...], Callable[[], str]]] = {}

    def add(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        self._gauges[name] = (documentation, read)

    def add_state(
        self, name: str, documentation: str, labels: dict[str, str], states: tuple[str, ...], read: Callable[[], str]
    ) -> None:
        """A gauge per state (label ``state``): 1 for the one ``read`` names, 0 for the rest."""
        self._states[name] = (documentation, labels, states, read)

    def collect(self) -> Iterable[Metric]:
        for name, (documentation, read) in sorted(self._gauges.items()):
            try:
                value = float(read())
            except Exception:
                continue  # a part that cannot say leaves its gauge out rather than failing the scrape
            yield GaugeMetricFamily(name, documentation, value=value)
        for name, (documentation, labels, states, read_state) in sorted(self._states.items()):
            try:
                current = read_state()
            except Exception:
                continue
            family = GaugeMetricFamily(name, documentation, labels=[*labels, "state"])
            for state in states:
                family.add_metric([*labels.values(), state], 1.0 if state == current else 0.0)
            yield family

    def describe(self) -> Iterable[Metric]:
        return []


class BridgeMetrics:
    """The bridge's instruments, in a registry of its own (tests run several bridges)."""

    def __init__(self, version: str, route_templates: Iterable[str]) -> None:
        prometheus_client.disable_created_metrics()
        self.registry = CollectorRegistry()
        self.routes = RouteNames(route_templates)
        registry = self.registry
        self.requests = Counter(
            "bridge_http_requests",
            "HTTP requests answered, by method, route (OpenAPI path) and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "bridge_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer (event streams excluded).",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge("bridge_http_requests_in_flight", "Requests being answered.", registry=registry)
        self.timeouts = Counter(
            "bridge_http_timeouts",
            "Connections closed because a request's headers or body did not arrive in time.",
            ["phase"],
            registry=registry,
        )
        self.login_failures = Counter(
            "bridge_login_failures",
            "Requests with credentials (or a stream token) answered 401.",
            registry=registry,
        )
        self.throttled = Counter(
            "bridge_throttled_requests",
            "Requests refused by a limit: address, user (rates), login (failed logins), sessions, streams (caps).",
            ["limit"],
            registry=registry,
        )
        build = Gauge("bridge_build_info", "The running version.", ["version"], registry=registry)
        build.labels(version).set(1)
        ProcessCollector(registry=registry)
        self._watched = _Watched()
        registry.register(self._watched)

    # Registration, for the parts that own a number.

    def watch_sessions(self, read: Callable[[], float]) -> None:
        """Live XMPP user sessions (the pool's size)."""
        self._watched.add("bridge_xmpp_sessions", "Live XMPP user sessions.", read)

    def watch_streams(self, read: Callable[[], float]) -> None:
        """Open event streams (``GET /api/sse``)."""
        self._watched.add("bridge_sse_streams", "Open event streams.", read)

    def watch_component(self, read: Callable[[], float]) -> None:
        """1 while the MUC Light component is connected to the XMPP server, else 0."""
        self._watched.add(
            "bridge_component_connected", "1 while the MUC Light component is connected to the server.", read
        )

    def watch_component_state(self, node: str, read: Callable[[], str]) -> None:
        """Whether this process runs the MUC Light component: ``read`` returns ``active``,
        ``standby`` or ``failed`` (``bridge.muclight.leader``)."""
        self._watched.add_state(
            "bridge_component_state",
            "1 for the MUC Light component's state in this process: active, standby (another bridge holds "
            "the component lock) or failed.",
            {"node": node},
            ("active", "standby", "failed"),
            read,
        )

    # Events.

    def timed_out(self, phase: str) -> None:
        self.timeouts.labels("headers" if phase == "header" else phase).inc()

    def push_delivery(self, outcome: str) -> None:
        """One settled (or retried) push delivery, by outcome (``bridge.push.worker``)."""
        self._push_deliveries().labels(outcome).inc()

    def watch_push_queue(self, depth: Callable[[], float], oldest_age: Callable[[], float]) -> None:
        """The push queue's depth and the age in seconds of its oldest notification (0: empty)."""
        self._push_deliveries()
        self._watched.add("bridge_push_queue_depth", "Notifications waiting in the push queue.", depth)
        self._watched.add(
            "bridge_push_oldest_pending_seconds", "Age of the oldest notification in the push queue.", oldest_age
        )

    def _push_deliveries(self) -> Counter:
        # Created on first use, so that a bridge without push exports none of its series.
        if not hasattr(self, "_push_counter"):
            self._push_counter = Counter(
                "bridge_push_deliveries",
                "Push notifications settled, by outcome: delivered, retried, gone (410), dropped (24 h), refused.",
                ["outcome"],
                registry=self.registry,
            )
        return self._push_counter

    def render(self, accept: bytes | None) -> tuple[bytes, bytes]:
        """The exposition (body, content type) for a scrape with this ``Accept`` header."""
        encoder, content_type = choose_encoder((accept or b"").decode("latin-1"))
        return encoder(self.registry), content_type.encode()


class MetricsSite(Site):
    """The metrics endpoint's site; scrapes are not worth an access line each."""

    noisy = False

    def log(self, request: Any) -> None:
        pass


class MetricsResource(Resource):
    """The metrics endpoint's only resource: ``GET /metrics``."""

    isLeaf = True

    def __init__(self, metrics: BridgeMetrics) -> None:
        super().__init__()
        self._metrics = metrics

    def render(self, request: Request) -> bytes:
        if request.path != b"/metrics":
            request.setResponseCode(404)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"Not found: metrics are at /metrics\n"
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            request.setHeader(b"Allow", b"GET, HEAD")
            return b""
        body, content_type = self._metrics.render(request.getHeader(b"accept"))
        request.setHeader(b"Content-Type", content_type)
        request.setHeader(b"Cache-Control", b"no-store")
        return body
