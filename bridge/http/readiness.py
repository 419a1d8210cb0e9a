"""``/readyz``: whether the bridge can serve, as a load balancer asks it.

200 while the XMPP server is reachable (a live session, or a TCP connection to
``xmpp.host:port``) and every required check passes (the store's); 503 otherwise, and from
the moment the shutdown drain starts (``bridge.shutdown``). Answers are reused for
``READY_CACHE`` seconds, and concurrent probes share one evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet import defer, protocol
from twisted.internet.endpoints import HostnameEndpoint
from twisted.logger import Logger

from bridge.xmpp.pool import SessionPool

if TYPE_CHECKING:
    from bridge.http.site import BridgeSite

log = Logger()

# Seconds a readiness answer is reused; load balancers probe every few seconds, and each
# probe without a live session costs the XMPP server a TCP connection.
READY_CACHE = 2.0
# A room id no room has: looking it up proves the store answers.
STORE_PROBE_ROOM = "readiness-probe"


# An async function (or one returning a Deferred) that says whether a dependency answers:
# True ("ok") or False ("failed"), or one of those words or STANDBY.
Check = Callable[[], Any]

OK = "ok"
FAILED = "failed"
# A dependency this process does not run by design (a standby bridge's MUC Light
# component, bridge.muclight.leader): reported, and never a reason to be unready.
STANDBY = "standby"


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
        self.site: BridgeSite | None = None
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

    async def _run(self, name: str, check: Check) -> str:
        try:
            result = check()
            attempt: defer.Deferred[Any] = (
                result if isinstance(result, defer.Deferred) else defer.Deferred.fromCoroutine(result)
            )
            attempt.addTimeout(self._timeout, self._reactor)
            answer = await attempt
        except Exception:
            log.info("Readiness check {name} failed", name=name)
            return FAILED
        if isinstance(answer, str) and answer in (OK, FAILED, STANDBY):
            return answer
        return OK if answer else FAILED

    async def _evaluate(self) -> tuple[bool, dict[str, str]]:
        names = list(self._checks)
        results = await defer.gatherResults(
            [defer.Deferred.fromCoroutine(self._run(name, self._checks[name][0])) for name in names]
        )
        ready = all(state != FAILED or not self._checks[name][1] for name, state in zip(names, results, strict=True))
        return ready, dict(zip(names, results, strict=True))

    async def status(self) -> tuple[int, dict[str, Any]]:
        """The ``/readyz`` answer: a status code and its JSON body."""
        if self.site is not None and self.site.draining:
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
