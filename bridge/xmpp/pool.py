"""The pool of user sessions: at most one live client stream per bare JID.

Concurrent requests of one user share one session and one in-flight login. The password
itself is never kept: the pool remembers a keyed hash of it (a random key per process) so
that a request with a different password cannot ride on an existing session; it logs in
again, and the server decides. Sessions nobody used for ``idle_timeout`` seconds, and that
no live event stream holds, are closed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.protocols.jabber.jid import JID

from bridge.xmpp.errors import ServerUnavailable
from bridge.xmpp.session import ConnectSettings, Session, open_session

log = Logger()

Opener = Callable[[Any, ConnectSettings, JID, str], Awaitable[Session]]


class SessionPool(Service):
    """Opens, shares, re-verifies and idles out user sessions."""

    def __init__(
        self,
        reactor: Any,
        settings: ConnectSettings,
        idle_timeout: float,
        opener: Opener = open_session,
    ) -> None:
        self._reactor = reactor
        self._settings = settings
        self._idle_timeout = idle_timeout
        self._open = opener
        self._key = secrets.token_bytes(32)
        self._sessions: dict[str, tuple[Session, bytes]] = {}
        # In-flight logins by (bare JID, password digest), with the requests waiting on each.
        self._logins: dict[tuple[str, bytes], tuple[defer.Deferred[Session], list[defer.Deferred[Session]]]] = {}
        self._reaper = task.LoopingCall(self._close_idle)
        self._reaper.clock = reactor
        # Called with each new session before any request uses it (live events, rooms).
        self.session_opened: list[Callable[[Session], None]] = []

    def __len__(self) -> int:
        return len(self._sessions)

    def _digest(self, bare: str, password: str) -> bytes:
        return hmac.new(self._key, f"{bare}\0{password}".encode(), hashlib.sha256).digest()

    def has_session(self, bare: str) -> bool:
        """Whether ``bare`` has a live session, whatever its password (for caps, never for access)."""
        current = self._sessions.get(bare)
        return current is not None and current[0].alive

    def live_session(self, bare: str) -> Session | None:
        """``bare``'s live session whatever its password: only for a valid stream token,
        whose holder proved the password to a bridge process within its lifetime
        (``bridge.api.tokens``)."""
        current = self._sessions.get(bare)
        return current[0] if current is not None and current[0].alive else None

    def existing(self, jid: JID, password: str) -> Session | None:
        """The user's live session if it was opened with this very password."""
        bare = jid.userhost()
        current = self._sessions.get(bare)
        if current is None or not current[0].alive:
            return None
        if not hmac.compare_digest(current[1], self._digest(bare, password)):
            return None
        current[0].last_used = self._reactor.seconds()
        return current[0]

    async def session(self, jid: JID, password: str) -> Session:
        """The user's live session, logging in when there is none or the password differs."""
        if not self.running:
            raise ServerUnavailable("the bridge is shutting down")
        current = self.existing(jid, password)
        if current is not None:
            return current
        bare = jid.userhost()
        digest = self._digest(bare, password)
        key = (bare, digest)
        if key not in self._logins:
            login = defer.Deferred.fromCoroutine(self._login(JID(bare), password, digest))
            self._logins[key] = (login, [])
            login.addBoth(self._login_done, key)
        # Each request waits on its own Deferred: one client going away cancels only its own.
        waiter: defer.Deferred[Session] = defer.Deferred()
        self._logins[key][1].append(waiter)
        return await waiter

    def _login_done(self, result: Session | Failure, key: tuple[str, bytes]) -> None:
        _, waiters = self._logins.pop(key)
        for waiter in waiters:
            if waiter.called:
                continue
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)

    async def _login(self, jid: JID, password: str, digest: bytes) -> Session:
        session = await self._open(self._reactor, self._settings, jid, password)
        bare = jid.userhost()
        session.last_used = self._reactor.seconds()
        previous = self._sessions.get(bare)
        self._sessions[bare] = (session, digest)
        session.ended.addCallback(lambda _: self._forget(bare, session))
        if previous is not None:
            previous[0].close()
        for hook in self.session_opened:
            hook(session)
        log.info("Session opened for {jid}", jid=bare)
        return session

    def _forget(self, bare: str, session: Session) -> None:
        if self._sessions.get(bare, (None,))[0] is session:
            del self._sessions[bare]
            log.info("Session closed for {jid}", jid=bare)

    def hold(self, session: Session) -> Callable[[], None]:
        """Keep ``session`` open past the idle timeout until the returned function is called."""
        session.holds += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                session.holds -= 1
                session.last_used = self._reactor.seconds()

        return release

    def _close_idle(self) -> None:
        now = self._reactor.seconds()
        for session, _ in list(self._sessions.values()):
            if session.holds == 0 and now - session.last_used >= self._idle_timeout:
                session.close()

    def startService(self) -> None:
        super().startService()
        self._reaper.start(min(self._idle_timeout / 4, 15.0), now=False)

    async def _stop(self) -> None:
        if self._reaper.running:
            self._reaper.stop()
        for login, _ in list(self._logins.values()):
            login.cancel()
        ended = []
        for session, _ in list(self._sessions.values()):
            ended.append(session.ended)
            session.close()
        if ended:
            waiting = defer.DeferredList(ended)
            waiting.addTimeout(5, self._reactor)
            try:
                await waiting
            except defer.TimeoutError:
                log.warn("Some XMPP sessions did not close within 5 s")

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        return defer.Deferred.fromCoroutine(self._stop())
