"""The component leader's state machine (bridge.muclight.leader) on a fake clock, with a fake
lock backend and a fake component."""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from bridge.muclight.component import ComponentConnection
from bridge.muclight.leader import (
    ACTIVE,
    FAILED,
    JITTER,
    LEASE_INTERVAL,
    LEASE_TIMEOUT,
    RETRY_INTERVAL,
    STANDBY,
    Leader,
    lock_key,
)


class FakeLock:
    """A lock another process may hold (``taken``); calls answer at once unless ``hang``."""

    def __init__(self) -> None:
        self.taken = False
        self.held = False
        self.broken = False
        self.hang = False
        self.attempts: list[float] = []
        self.resets = 0
        self.clock: Clock | None = None

    def _answer(self, value: object) -> defer.Deferred:
        if self.hang:
            return defer.Deferred()
        if self.broken:
            return defer.fail(ConnectionError("server closed the connection"))
        return defer.succeed(value)

    def acquire(self) -> defer.Deferred:
        assert self.clock is not None
        self.attempts.append(self.clock.seconds())
        if not self.broken and not self.hang and not self.taken:
            self.held = True
        return self._answer(self.held)

    def check(self) -> defer.Deferred:
        return self._answer(None)

    def release(self) -> defer.Deferred:
        self.held = False
        return defer.succeed(None)

    def reset(self) -> None:
        self.resets += 1
        self.held = False


class FakeComponent:
    def __init__(self) -> None:
        self.running = False
        self.log: list[str] = []

    def start(self) -> None:
        self.running = True
        self.log.append("start")

    def stop(self, abort: bool = False) -> None:
        self.running = False
        self.log.append("abort" if abort else "stop")


class LeaderTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.lock = FakeLock()
        self.lock.clock = self.clock
        self.component = FakeComponent()
        self.randoms = [0.5]
        self.leader = Leader(self.clock, self.lock, self.component, "node-a", rng=lambda: self.randoms[0])

    def test_free_lock_is_taken_at_start(self) -> None:
        """A process that finds the lock free holds it and starts the component at once."""
        self.leader.startService()
        self.clock.advance(0)
        self.assertEqual((self.leader.state, self.component.log), (ACTIVE, ["start"]))

    def test_standby_retries_with_jitter_and_never_connects(self) -> None:
        """While another process holds the lock, the standby retries every RETRY_INTERVAL +-
        JITTER and never starts the component."""
        self.lock.taken = True
        values = iter([0.5, 0.0, 1.0, 0.5])
        self.leader._rng = lambda: next(values)
        self.leader.startService()
        self.clock.advance(0)
        gaps = []
        for _ in range(3):
            (call,) = self.clock.getDelayedCalls()
            gaps.append(call.getTime() - self.clock.seconds())
            self.clock.advance(gaps[-1])
        self.assertEqual(gaps, [RETRY_INTERVAL, RETRY_INTERVAL * (1 - JITTER), RETRY_INTERVAL * (1 + JITTER)])
        self.assertEqual(len(self.lock.attempts), 4)
        self.assertEqual((self.leader.state, self.component.log), (STANDBY, []))

    def test_standby_takes_over_once_the_lock_is_free(self) -> None:
        """A standby starts the component on the first retry after the holder is gone."""
        self.lock.taken = True
        self.leader.startService()
        self.clock.advance(0)
        self.lock.taken = False
        self.clock.advance(RETRY_INTERVAL * (1 + JITTER))
        self.assertEqual((self.leader.state, self.component.log), (ACTIVE, ["start"]))

    def test_lost_lease_stops_the_component_and_reacquires(self) -> None:
        """A failed lease check stops the component at once (abort), drops the session, stands by, and
        takes the lock again once the database answers."""
        self.leader.startService()
        self.clock.advance(0)
        self.lock.broken = True
        self.clock.advance(LEASE_INTERVAL)
        self.assertEqual((self.leader.state, self.component.log, self.lock.resets), (STANDBY, ["start", "abort"], 1))
        self.clock.advance(RETRY_INTERVAL * (1 + JITTER))
        self.assertEqual(self.leader.state, FAILED)
        self.lock.broken = False
        self.clock.advance(RETRY_INTERVAL * (1 + JITTER))
        self.assertEqual((self.leader.state, self.component.log), (ACTIVE, ["start", "abort", "start"]))

    def test_unanswered_lease_check_fences_within_the_timeout(self) -> None:
        """A lease check without an answer in LEASE_TIMEOUT counts as a lost lock."""
        self.leader.startService()
        self.clock.advance(0)
        self.lock.hang = True
        self.clock.advance(LEASE_INTERVAL)
        self.assertEqual(self.leader.state, ACTIVE)
        self.clock.advance(LEASE_TIMEOUT)
        self.assertEqual((self.leader.state, self.component.log), (STANDBY, ["start", "abort"]))

    def test_a_failing_step_is_logged_and_retried(self) -> None:
        """A component that fails to start is logged with its traceback, and the leader tries again later."""
        starts = self.component.start
        failures = [RuntimeError("bug")]

        def start() -> None:
            if failures:
                raise failures.pop()
            starts()

        self.component.start = start  # type: ignore[method-assign]
        self.leader.startService()
        self.clock.advance(0)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.leader.state, STANDBY)
        self.clock.advance(RETRY_INTERVAL * (1 + JITTER))
        self.assertEqual((self.leader.state, self.component.log), (ACTIVE, ["start"]))

    def test_stop_releases_the_lock(self) -> None:
        """Stopping the service stops the component gracefully and gives the lock up, and nothing runs later."""
        self.leader.startService()
        self.clock.advance(0)
        self.leader.stopService()
        self.assertEqual((self.component.log, self.lock.held), (["start", "stop"], False))
        self.clock.advance(60)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_lock_key_is_per_component(self) -> None:
        """The lock key is a signed 64-bit number that differs between component JIDs."""
        key = lock_key("muclight.localhost")
        self.assertTrue(-(2**63) <= key < 2**63)
        self.assertEqual(key, lock_key("muclight.localhost"))
        self.assertNotEqual(key, lock_key("muclight.example.com"))


class RestartableComponentTests(unittest.TestCase):
    def test_component_can_be_started_and_stopped_repeatedly(self) -> None:
        """ComponentConnection.start after stop connects again at once; start twice connects once."""
        reactor = MemoryReactorClock()
        connection = ComponentConnection(reactor, "127.0.0.1", 5347, "muclight.localhost", "s")
        connection.start()
        connection.start()
        self.assertEqual(len(reactor.tcpClients), 1)
        connection.stop(abort=True)
        self.assertFalse(connection.factory.continueTrying)
        connection.start()
        self.assertEqual(len(reactor.tcpClients), 2)
        self.assertTrue(connection.factory.continueTrying)
