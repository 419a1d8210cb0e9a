"""The session pool: shared logins, re-verification on a new password, idle close."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest
from twisted.words.protocols.jabber.jid import JID

from bridge.xmpp.errors import AuthenticationFailed, ServerUnavailable
from bridge.xmpp.pool import SessionPool

ALICE = JID("alice@localhost")


class FakeSession:
    """Stands in for a logged-in Session: what the pool looks at, nothing more."""

    def __init__(self, password: str) -> None:
        self.password = password
        self.alive = True
        self.ended: defer.Deferred[None] = defer.Deferred()
        self.last_used = 0.0
        self.holds = 0
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.alive = False
        self.ended.callback(None)


class Opener:
    """Records logins and lets the test decide when and how each finishes."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, defer.Deferred[FakeSession]]] = []

    async def __call__(self, reactor: Any, settings: Any, jid: JID, password: str) -> FakeSession:
        d: defer.Deferred[FakeSession] = defer.Deferred()
        self.pending.append((password, d))
        return await d

    def succeed(self, index: int = -1) -> FakeSession:
        password, d = self.pending[index]
        session = FakeSession(password)
        d.callback(session)
        return session


class PoolTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.opener = Opener()
        self.pool = SessionPool(self.clock, None, idle_timeout=100, opener=self.opener)  # type: ignore[arg-type]
        self.pool.startService()
        self.addCleanup(self.pool.stopService)

    def get(self, password: str = "pw", jid: JID = ALICE) -> defer.Deferred[Any]:
        return defer.Deferred.fromCoroutine(self.pool.session(jid, password))

    def test_concurrent_requests_share_one_login(self) -> None:
        """Two requests of one user while logging in cause one login and get one session."""
        first, second = self.get(), self.get()
        self.assertEqual(len(self.opener.pending), 1)
        session = self.opener.succeed()
        self.assertIs(self.successResultOf(first), session)
        self.assertIs(self.successResultOf(second), session)
        self.assertIs(self.successResultOf(self.get()), session)
        self.assertEqual(len(self.opener.pending), 1)

    def test_different_password_is_verified_again(self) -> None:
        """A request with another password does not ride on the session; a failed login keeps it."""
        self.get()
        session = self.opener.succeed()
        attempt = self.get("wrong")
        self.assertEqual(len(self.opener.pending), 2)
        self.opener.pending[-1][1].errback(AuthenticationFailed("not-authorized"))
        self.failureResultOf(attempt, AuthenticationFailed)
        self.assertFalse(session.closed)
        self.assertIs(self.successResultOf(self.get()), session)

    def test_new_password_replaces_session(self) -> None:
        """A successful login with a new password (changed on the server) replaces the old session."""
        self.get()
        old = self.opener.succeed()
        changed = self.get("new")
        new = self.opener.succeed()
        self.assertIs(self.successResultOf(changed), new)
        self.assertTrue(old.closed)
        self.assertIs(self.pool.existing(ALICE, "new"), new)
        self.assertIsNone(self.pool.existing(ALICE, "pw"))

    def test_failed_login_reaches_every_waiter(self) -> None:
        """All requests waiting on a login get its failure."""
        first, second = self.get(), self.get()
        self.opener.pending[0][1].errback(ServerUnavailable("down"))
        self.failureResultOf(first, ServerUnavailable)
        self.failureResultOf(second, ServerUnavailable)

    def test_cancelled_waiter_leaves_others(self) -> None:
        """A client that goes away cancels only its own wait, not the shared login."""
        first, second = self.get(), self.get()
        first.cancel()
        session = self.opener.succeed()
        self.failureResultOf(first, defer.CancelledError)
        self.assertIs(self.successResultOf(second), session)

    def test_idle_session_is_closed(self) -> None:
        """A session unused for idle_timeout is closed; a held one stays."""
        self.get()
        session = self.opener.succeed()
        self.get(jid=JID("bob@localhost"))
        held = self.opener.succeed()
        release = self.pool.hold(held)  # type: ignore[arg-type]
        self.clock.advance(50)
        self.assertFalse(session.closed)
        self.clock.advance(60)
        self.assertTrue(session.closed)
        self.assertFalse(held.closed)
        self.assertEqual(len(self.pool), 1)
        release()
        release()  # releasing twice is harmless
        self.assertEqual(held.holds, 0)
        self.clock.advance(110)
        self.assertTrue(held.closed)

    def test_ended_session_is_forgotten(self) -> None:
        """When the server ends a stream, the next request logs in again."""
        self.get()
        session = self.opener.succeed()
        session.close()
        again = self.get()
        self.assertEqual(len(self.opener.pending), 2)
        replacement = self.opener.succeed()
        self.assertIs(self.successResultOf(again), replacement)

    def test_stopped_pool_refuses(self) -> None:
        """After shutdown, requests get ServerUnavailable instead of new sessions."""
        self.get()
        session = self.opener.succeed()
        self.pool.stopService()
        self.assertTrue(session.closed)
        self.failureResultOf(self.get(), ServerUnavailable)
