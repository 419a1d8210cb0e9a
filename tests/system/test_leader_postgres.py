"""The component leader lock (bridge.muclight.leader) against a real PostgreSQL: two
processes' leaders on one database, as two leaders in this test's reactor."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor, task, threads
from twisted.trial import unittest

from bridge.muclight.leader import ACTIVE, STANDBY, Leader, PostgresLock, lock_key
from tests.servers.fixture import until
from tests.servers.postgres import fresh_test_database, restart_postgres

# DESIGN.md: a standby takes over within 10 s of the active process dying.
TAKEOVER_BOUND = 10.0


class Component:
    """Records starts and stops, as the leader drives them."""

    def __init__(self) -> None:
        self.running = False
        self.stops: list[bool] = []

    def start(self) -> None:
        self.running = True

    def stop(self, abort: bool = False) -> None:
        self.running = False
        self.stops.append(abort)


def admin_query(url: str, statement: str) -> list[tuple[Any, ...]]:
    import psycopg2

    connection = psycopg2.connect(url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
            return cursor.fetchall()
    finally:
        connection.close()


class PostgresLeaderTests(unittest.TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.url = fresh_test_database("bridge_leader_")

    def leader(self, node: str, service: str = "muclight.localhost") -> tuple[Leader, Component]:
        component = Component()
        leader = Leader(reactor, PostgresLock(reactor, self.url, lock_key(service), node), component, node)
        leader.startService()
        self.addCleanup(lambda: leader.stopService() if leader.running else None)
        return leader, component

    async def settle(self, seconds: float) -> None:
        await task.deferLater(reactor, seconds, lambda: None)

    async def test_exactly_one_of_two_holds(self) -> None:
        """Two leaders on one database: one is active and runs the component, the other stands by, and it
        stays so over several lease checks; a leader of another component is not excluded."""
        (first, one), (second, two) = self.leader("a"), self.leader("b")
        await until(reactor, lambda: ACTIVE in (first.state, second.state), 5)
        await self.settle(5)
        states = sorted([first.state, second.state])
        self.assertEqual(states, [ACTIVE, STANDBY])
        self.assertEqual(sorted([one.running, two.running]), [False, True])
        other, _ = self.leader("c", service="muclight.example.com")
        await until(reactor, lambda: other.state == ACTIVE, 5)

    async def test_terminated_session_hands_over_within_the_bound(self) -> None:
        """Terminating the holder's session (as a PostgreSQL restart or a network cut would end it) fences the
        holder's component and the standby takes over within 10 s."""
        (first, one), (second, two) = self.leader("a"), self.leader("b")
        await until(reactor, lambda: ACTIVE in (first.state, second.state), 5)
        holder, holder_component, standby, standby_component = (
            (first, one, second, two) if first.state == ACTIVE else (second, two, first, one)
        )
        admin_query(
            self.url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE application_name = 'bridge-leader {holder.node}'",
        )
        cut = reactor.seconds()
        await until(reactor, lambda: not holder_component.running, TAKEOVER_BOUND)
        fenced = reactor.seconds() - cut
        await until(reactor, lambda: standby.state == ACTIVE, TAKEOVER_BOUND - fenced)
        took = reactor.seconds() - cut
        self.assertEqual(holder_component.stops, [True])  # aborted, not closed politely
        self.assertTrue(standby_component.running)
        await self.settle(3)
        self.assertEqual(holder.state, STANDBY)  # and it does not take the lock back
        print(f"\n  terminated session: holder fenced after {fenced:.2f} s, standby active after {took:.2f} s")

    async def test_postgres_restart_leaves_one_holder(self) -> None:
        """After PostgreSQL restarts every session (and lock) is gone: the holder is fenced, and within 10 s
        of the server being back exactly one leader holds the lock and runs the component."""
        (first, one), (second, two) = self.leader("a"), self.leader("b")
        await until(reactor, lambda: ACTIVE in (first.state, second.state), 5)
        holder_component = one if first.state == ACTIVE else two
        if not await threads.deferToThread(restart_postgres):
            raise unittest.SkipTest("the PostgreSQL server is not this run's own (BRIDGE_TEST_POSTGRES_URL)")
        back = reactor.seconds()
        await until(reactor, lambda: holder_component.stops, TAKEOVER_BOUND)
        await until(reactor, lambda: ACTIVE in (first.state, second.state), TAKEOVER_BOUND - (reactor.seconds() - back))
        took = reactor.seconds() - back
        await self.settle(3)
        self.assertEqual(sorted([first.state, second.state]), [ACTIVE, STANDBY])
        self.assertEqual(sorted([one.running, two.running]), [False, True])
        print(f"\n  PostgreSQL restarted: a holder again {took:.2f} s after it was back")

    async def test_stopped_holder_releases_at_once(self) -> None:
        """A holder that shuts down gives the lock up, and the standby takes over on its next retry."""
        (first, _), (second, _) = self.leader("a"), self.leader("b")
        await until(reactor, lambda: ACTIVE in (first.state, second.state), 5)
        holder, standby = (first, second) if first.state == ACTIVE else (second, first)
        await defer.maybeDeferred(holder.stopService)
        took = await until(reactor, lambda: standby.state == ACTIVE, TAKEOVER_BOUND)
        self.assertLess(took, 3.0)
        print(f"\n  holder stopped: standby active after {took:.2f} s")

    async def test_lock_session_sets_keepalives(self) -> None:
        """The lock's session asks PostgreSQL for TCP keepalives of a few seconds, so a vanished holder's lock
        is freed quickly."""
        leader, _ = self.leader("a")
        await until(reactor, lambda: leader.state == ACTIVE, 5)
        rows = admin_query(
            self.url,
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = 'bridge-leader a'",
        )
        self.assertEqual(rows, [(1,)])
        lock = leader._backend
        assert isinstance(lock, PostgresLock)

        def settings() -> list[str]:
            assert lock._connection is not None
            with lock._connection.cursor() as cursor:
                values = []
                for name in ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count"):
                    cursor.execute(f"SHOW {name}")
                    values.append(cursor.fetchone()[0])
                return values

        values = await lock._run(settings)
        self.assertEqual(values, ["2", "1", "2"])
