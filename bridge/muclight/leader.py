"""Which of several bridge processes runs the MUC Light component (DESIGN.md, "Several
processes"): the holder of a PostgreSQL session-level advisory lock.

XEP-0114 servers cope badly with two connections for one component name: Prosody refuses
the second handshake, ejabberd spreads stanzas over both. So with a PostgreSQL store every
process runs a ``Leader``: it tries ``pg_try_advisory_lock`` on a key derived from the
component JID, every ``RETRY_INTERVAL`` seconds (with jitter, so standbys do not try in
step), and only the holder starts the component connection. Standbys never connect to the
XMPP server.

The holder checks its lease every ``LEASE_INTERVAL`` seconds (``SELECT 1`` on the lock's
own connection). An error, or no answer within ``LEASE_TIMEOUT`` seconds, means the lock
may be gone (PostgreSQL restarted, the session was terminated, the network is cut): the
component is stopped at once (fencing: a process that cannot prove it holds the lock must
not serve the rooms) and the connection is dropped; the process stands by again. The
session sets server-side TCP keepalives (``KEEPALIVE_*``) so PostgreSQL ends the session
of a process that vanished behind a network cut, and frees its lock, within
``KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_COUNT`` seconds; a SIGKILLed process's
socket is closed by its kernel and frees the lock at once. A standby then takes over
within that bound plus ``RETRY_INTERVAL`` (with jitter), inside DESIGN.md's 10 s.

A fenced holder's component stays down until the lease is taken again. Between the lock's
loss on the server and the old holder's next lease check (at most ``LEASE_INTERVAL +
LEASE_TIMEOUT``) both processes may run the component: Prosody refuses the newcomer's
handshake until the old connection is gone (its backoff retries within seconds), ejabberd
routes to both for that while. The rooms' order and membership do not depend on the lock
(``bridge.store.sql`` serialises each room in the database); the lock keeps the XMPP
server seeing one component.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
from collections.abc import Callable
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet import defer, threads
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

log = Logger()

ACTIVE = "active"
STANDBY = "standby"
FAILED = "failed"  # the lock's database cannot be reached

RETRY_INTERVAL = 2.0
JITTER = 0.25  # each retry waits RETRY_INTERVAL * (1 +- JITTER)
LEASE_INTERVAL = 2.0
LEASE_TIMEOUT = 3.0
# Seconds: idle before the first probe, between probes, probes lost before the end.
KEEPALIVE_IDLE = 2
KEEPALIVE_INTERVAL = 1
KEEPALIVE_COUNT = 2
CONNECT_TIMEOUT = 3


def lock_key(component_jid: str) -> int:
    """The advisory lock key of a component: a signed 64-bit number from its JID, so bridges
    serving different components on one database do not exclude each other."""
    digest = hashlib.sha256(f"xmpp-rest-bridge muclight {component_jid}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class LockBackend(Protocol):
    """The lock as the ``Leader`` uses it; every call may fail (the database is gone)."""

    def acquire(self) -> defer.Deferred[bool]:
        """Try to take the lock: True if this process holds it now, False if another does."""

    def check(self) -> defer.Deferred[None]:
        """Succeed while the session that holds the lock is alive."""

    def release(self) -> defer.Deferred[None]:
        """Give the lock up (on shutdown) by ending the session."""

    def reset(self) -> None:
        """Drop the session after a failure; the next ``acquire`` opens a new one."""


class Switch(Protocol):
    """What the leader starts and stops: the component connection."""

    def start(self) -> None: ...

    def stop(self, abort: bool = False) -> defer.Deferred[None] | None: ...


class Leader(Service):
    """Runs ``component`` only while ``backend``'s lock is held; ``state`` is
    ``ACTIVE``, ``STANDBY`` or ``FAILED``."""

    name = "muclight-leader"  # type: ignore[assignment]

    def __init__(
        self,
        clock: IReactorTime,
        backend: LockBackend,
        component: Switch,
        node: str = "",
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._clock = clock
        self._backend = backend
        self._component = component
        self.node = node or "(unnamed)"
        self._rng = rng
        self.state = STANDBY
        self._call: IDelayedCall | None = None

    # -- the loop

    def startService(self) -> None:
        super().startService()
        self._schedule(0)

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        return defer.Deferred.fromCoroutine(self._shutdown())

    async def _shutdown(self) -> None:
        was_active = self.state == ACTIVE
        self.state = STANDBY
        if was_active:
            stopped = self._component.stop()
            if stopped is not None:
                await stopped
        try:
            await self._backend.release()
        except Exception as e:
            log.info("Leader lock release failed: {why}", why=str(e))
        if was_active:
            log.info("Node {node} gave up the MUC Light component lock (shutdown)", node=self.node)

    def _schedule(self, delay: float) -> None:
        if self.running:
            self._call = self._clock.callLater(delay, self._tick)

    def _retry_delay(self) -> float:
        return RETRY_INTERVAL * (1 - JITTER + 2 * JITTER * self._rng())

    def _tick(self) -> None:
        self._call = None

        def failed(failure: Any) -> None:
            # A bug, not the database: logged, and the loop goes on (a stuck leader would
            # leave the cluster without a component).
            log.failure("Leader step failed", failure)
            if self._call is None:
                self._schedule(self._retry_delay())

        defer.Deferred.fromCoroutine(self._step()).addErrback(failed)

    async def _step(self) -> None:
        if self.state == ACTIVE:
            await self._renew()
        else:
            await self._try_acquire()

    async def _try_acquire(self) -> None:
        try:
            held = await self._timed(self._backend.acquire())
        except Exception as e:
            if self.state != FAILED:
                log.error("Node {node}: the component lock's database failed: {why}", node=self.node, why=_why(e))
            if not self.running:
                return
            self.state = FAILED
            self._backend.reset()
            self._schedule(self._retry_delay())
            return
        if not self.running:
            if held:
                await self._backend.release()
            return
        if held:
            self._take_over()
            self._schedule(LEASE_INTERVAL)
        else:
            if self.state == FAILED:
                log.info("Node {node}: the component lock's database answers again; standing by", node=self.node)
            self.state = STANDBY
            self._schedule(self._retry_delay())

    async def _renew(self) -> None:
        try:
            await self._timed(self._backend.check(), LEASE_TIMEOUT)
        except Exception as e:
            if not self.running:
                return
            self._lose(_why(e))
            self._schedule(self._retry_delay())
            return
        self._schedule(LEASE_INTERVAL)

    def _timed(self, attempt: defer.Deferred[Any], timeout: float = LEASE_TIMEOUT) -> defer.Deferred[Any]:
        return attempt.addTimeout(timeout, self._clock)

    def _take_over(self) -> None:
        log.info("Node {node} holds the MUC Light component lock; starting the component", node=self.node)
        self._component.start()  # if this fails the next retry tries again (the lock is re-entrant)
        self.state = ACTIVE

    def _lose(self, why: str) -> None:
        """Fencing: stop the component now, drop the lock's session, stand by."""
        self.state = STANDBY
        self._component.stop(abort=True)
        self._backend.reset()
        log.warn(
            "Node {node} lost the MUC Light component lock ({why}); component stopped, standing by",
            node=self.node,
            why=why,
        )


def _why(error: Exception) -> str:
    if isinstance(error, defer.TimeoutError):
        return "no answer in time"
    return str(error).strip() or type(error).__name__


def component_state(alive: bool, leader: Leader | None) -> str:
    """``ok``, ``standby`` or ``failed``, as ``/readyz`` reports the component: ``ok`` while
    this process runs it and it is connected, ``standby`` while another process holds the
    lock (or this one waits for it), ``failed`` when it should be connected and is not, or
    the lock's database cannot be reached."""
    if leader is not None and leader.state == STANDBY:
        return "standby"
    if leader is not None and leader.state == FAILED:
        return "failed"
    return "ok" if alive else "failed"


class PostgresLock:
    """``LockBackend`` on a dedicated psycopg2 session (not the store pool's, whose
    connections come and go), used from one thread of its own so that a call hung on a
    cut network never holds up the store's queries.

    A call that times out on the reactor side may still be blocked on that thread; libpq
    keepalives (``keepalives_*``) make it fail within a few seconds, and the calls after it
    queue behind it meanwhile, so the leader stands by until then.
    """

    def __init__(self, reactor: Any, url: str, key: int, node: str = "") -> None:
        self._reactor = reactor
        self._url = url
        self._key = key
        self._node = node
        self._connection: Any = None
        self._threads: ThreadPool | None = None
        self._trigger: Any = None

    def _run(self, work: Callable[[], Any]) -> defer.Deferred[Any]:
        if self._threads is None:
            self._threads = ThreadPool(minthreads=1, maxthreads=1, name="bridge-leader-lock")
            self._threads.start()
            self._trigger = self._reactor.addSystemEventTrigger("during", "shutdown", self._threads.stop)
        return threads.deferToThreadPool(self._reactor, self._threads, work)

    def _connect(self) -> Any:
        import psycopg2

        connection = psycopg2.connect(
            self._url,
            application_name=f"bridge-leader {self._node}".strip(),
            connect_timeout=CONNECT_TIMEOUT,
            keepalives=1,
            keepalives_idle=KEEPALIVE_IDLE,
            keepalives_interval=KEEPALIVE_INTERVAL,
            keepalives_count=KEEPALIVE_COUNT,
        )
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f"SET tcp_keepalives_idle = {KEEPALIVE_IDLE}")
            cursor.execute(f"SET tcp_keepalives_interval = {KEEPALIVE_INTERVAL}")
            cursor.execute(f"SET tcp_keepalives_count = {KEEPALIVE_COUNT}")
            cursor.execute(f"SET statement_timeout = {int(LEASE_TIMEOUT * 1000)}")
        return connection

    def _query(self, statement: str, args: tuple[Any, ...] = ()) -> Any:
        if self._connection is None:
            self._connection = self._connect()
        try:
            with self._connection.cursor() as cursor:
                cursor.execute(statement, args)
                return cursor.fetchone()[0]
        except Exception:
            self._close()
            raise

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()  # a broken session: closing it cannot fail in a way that matters

    def acquire(self) -> defer.Deferred[bool]:
        return self._run(lambda: bool(self._query("SELECT pg_try_advisory_lock(%s)", (self._key,))))

    def check(self) -> defer.Deferred[None]:
        return self._run(lambda: self._query("SELECT 1") and None)

    def release(self) -> defer.Deferred[None]:
        """End the session (freeing the lock), then the thread, which is idle by then."""
        closed = self._run(self._close)

        def stop_thread(result: object) -> object:
            threads_, self._threads = self._threads, None
            if threads_ is not None:
                self._reactor.removeSystemEventTrigger(self._trigger)
                threads_.stop()
            return result

        return closed.addBoth(stop_thread)

    def reset(self) -> None:
        # On the lock's thread: it is the only one that touches the connection.
        self._run(self._close).addErrback(lambda _: None)
