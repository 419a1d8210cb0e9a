"""Graceful shutdown and readiness: what a load balancer and systemd see.

On SIGTERM twistd stops the service tree. ``StagedService`` stops its children one after
the other, the last added first, so the order in which ``bridge.tap.build`` adds them is
the shutdown order read backwards:

1. ``DrainingHttpService`` stops accepting connections, closes idle kept-alive ones, lets
   the requests in flight finish (each answered with ``Connection: close``) for up to
   ``http.shutdown_timeout`` seconds, and leaves event streams open;
2. the live-events hub ends every event stream with a final ``close`` event;
3. the session pool closes every XMPP session with a stream footer;
4. the MUC Light component and the store, when they are there, close last.

``Readiness`` answers ``/readyz``: 200 while the XMPP server is reachable (a live session,
or a TCP connection to ``xmpp.host:port``) and every registered check passes (the store's),
503 otherwise and from the moment the drain starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet import defer, protocol, task
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IReactorTime, IStreamServerEndpoint
from twisted.logger import Logger

from bridge.limits import is_event_stream
from bridge.xmpp.pool import SessionPool

log = Logger()

# Seconds between looks at the connections while draining.
DRAIN_POLL = 0.05
# Seconds a readiness answer is reused; load balancers probe every few seconds, and each
# probe without a live session costs the XMPP server a TCP connection.
READY_CACHE = 2.0
# A room id no room has: looking it up proves the store answers.
STORE_PROBE_ROOM = "readiness-probe"
# A part that takes this many seconds to stop is named in the log.
SLOW_STOP = 1.0


class StagedService(MultiService):
    """A MultiService that stops its children one at a time, last added first."""

    def stopService(self) -> defer.Deferred[None]:
        Service.stopService(self)
        return defer.Deferred.fromCoroutine(self._stop_children())

    async def _stop_children(self) -> None:
        for child in reversed(list(self)):
            started = time.monotonic()
            try:
                await defer.maybeDeferred(child.stopService)
            except Exception:
                log.failure("Stopping {service} failed", service=type(child).__name__)
            took = time.monotonic() - started
            if took >= SLOW_STOP:
                log.info("Stopping {service} took {seconds:.1f} s", service=type(child).__name__, seconds=took)


class DrainingHttpService(StreamServerEndpointService):
    """The HTTP listener; on stop, drains the site's connections before the rest stops."""

    def __init__(self, endpoint: IStreamServerEndpoint, site: Any, clock: IReactorTime, deadline: float) -> None:
        super().__init__(endpoint, site)
        self._site = site
        self._clock = clock
        self._deadline = deadline

    def stopService(self) -> defer.Deferred[None]:
        stopped = super().stopService()
        stopped.addCallback(lambda _: defer.Deferred.fromCoroutine(self._drain()))
        return stopped

    def _busy(self) -> list[Any]:
        """Channels with a request in flight other than an event stream; closes idle ones."""
        busy = []
        for channel in list(getattr(self._site, "channels", ())):
            requests = list(channel.requests)
            if not requests and getattr(channel, "idle", True):
                if channel.transport is not None:
                    channel.transport.loseConnection()
                continue
            if requests and all(is_event_stream(request) and request.startedWriting for request in requests):
                continue  # closed by the events hub with a final event
            channel.persistent = False
            for request in requests:
                if not request.startedWriting:
                    request.setHeader(b"Connection", b"close")
            busy.append(channel)
        return busy

    async def _drain(self) -> None:
        self._site.draining = True
        deadline = self._clock.seconds() + self._deadline
        busy = self._busy()
        if busy:
            log.info(
                "Shutting down: waiting up to {timeout} s for {count} requests", timeout=self._deadline, count=len(busy)
            )
        while busy and self._clock.seconds() < deadline:
            await task.deferLater(self._clock, DRAIN_POLL)
            busy = self._busy()
        if busy:
            log.warn(
                "Shutting down: {count} requests did not finish within {timeout} s; they are cut off",
                count=len(busy),
                timeout=self._deadline,
            )
            for channel in busy:
                if channel.transport is not None:
                    channel.transport.abortConnection()


# An async function (or one returning a Deferred) that says whether a dependency answers.
Check = Callable[[], Any]


def store_check(store: Any) -> Check:
    """A readiness check that the store answers a query (any answer; an error fails it)."""

    async def reachable() -> bool:
        await store.get_room(STORE_PROBE_ROOM)
        return True

    return reachable


class _Probe(protocol.Protocol):
    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.loseConnection()


class Readiness:
    """Whether the bridge can serve: the XMPP server is reachable and its checks pass."""

    def __init__(self, reactor: Any, host: str, port: int, pool: SessionPool, timeout: float) -> None:
        self._reactor = reactor
        self._host = host
        self._port = port
        self._pool = pool
        self._timeout = timeout
        # The HTTP site, whose ``draining`` flag turns readiness off; set once it is built.
        self.site: Any = None
        # name -> (check, whether readiness needs it to pass)
        self._checks: dict[str, tuple[Check, bool]] = {"xmpp": (self._xmpp_reachable, True)}
        self._cached: tuple[float, bool, dict[str, str]] | None = None
        self._running: defer.Deferred[tuple[bool, dict[str, str]]] | None = None

    def add_check(self, name: str, check: Check, required: bool = True) -> None:
        """Add a dependency (e.g. ``"store"``); one that is not ``required`` is only reported."""
        self._checks[name] = (check, required)

    async def _xmpp_reachable(self) -> bool:
        if len(self._pool):
            return True  # a live session: its stream ends (and leaves the pool) when the server goes
        endpoint = HostnameEndpoint(self._reactor, self._host, self._port, timeout=self._timeout)
        try:
            await endpoint.connect(protocol.Factory.forProtocol(_Probe))
        except Exception:
            return False
        return True

    async def _run(self, name: str, check: Check) -> bool:
        try:
            result = check()
            attempt: defer.Deferred[Any] = (
                result if isinstance(result, defer.Deferred) else defer.Deferred.fromCoroutine(result)
            )
            attempt.addTimeout(self._timeout, self._reactor)
            return bool(await attempt)
        except Exception:
            log.info("Readiness check {name} failed", name=name)
            return False

    async def _evaluate(self) -> tuple[bool, dict[str, str]]:
        names = list(self._checks)
        results = await defer.gatherResults(
            [defer.Deferred.fromCoroutine(self._run(name, self._checks[name][0])) for name in names]
        )
        ready = all(ok or not self._checks[name][1] for name, ok in zip(names, results, strict=True))
        return ready, {name: "ok" if ok else "failed" for name, ok in zip(names, results, strict=True)}

    async def status(self) -> tuple[int, dict[str, Any]]:
        """The ``/readyz`` answer: a status code and its JSON body."""
        if getattr(self.site, "draining", False):
            return 503, {"status": "shutting down", "checks": {}}
        now = self._reactor.seconds()
        if self._cached is not None and now - self._cached[0] < READY_CACHE:
            ready, checks = self._cached[1], self._cached[2]
        else:
            running = self._running
            if running is None:
                # Concurrent probes share one evaluation.
                running = self._running = defer.Deferred.fromCoroutine(self._evaluate())
                running.addCallback(self._done)
            ready, checks = await _follow(running)
        return (200 if ready else 503), {"status": "ready" if ready else "not ready", "checks": checks}

    def _done(self, result: tuple[bool, dict[str, str]]) -> tuple[bool, dict[str, str]]:
        self._running = None
        self._cached = (self._reactor.seconds(), *result)
        return result


def _follow(source: defer.Deferred[Any]) -> defer.Deferred[Any]:
    """A Deferred with ``source``'s result, leaving ``source``'s result to its other callbacks."""
    follower: defer.Deferred[Any] = defer.Deferred()

    def relay(result: Any) -> Any:
        follower.callback(result)
        return result

    source.addCallback(relay)
    return follower
