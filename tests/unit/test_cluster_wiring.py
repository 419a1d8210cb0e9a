"""How ``[cluster]`` is wired (bridge.tap): the leader with PostgreSQL, none with SQLite, and
what /readyz and /metrics say of a standby component."""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from bridge.config import parse_config
from bridge.http.readiness import Readiness
from bridge.muclight.leader import ACTIVE, FAILED, STANDBY
from bridge.tap import build

PG = '[storage]\nurl = "postgresql://bridge@127.0.0.1:1/nowhere"\n[cluster]\nnode = "b1"\n'


class _Pool:
    def __len__(self) -> int:
        return 1  # a live session: the XMPP server is reachable


class WiringTests(unittest.TestCase):
    def test_sqlite_runs_the_component_without_a_leader(self) -> None:
        """With SQLite (one process) the component is a service of its own and there is no leader."""
        root, parts = build(parse_config("", {}), MemoryReactorClock())
        self.assertIsNone(parts.leader)
        assert parts.component is not None
        self.assertIs(parts.component.parent, root)

    def test_postgres_puts_the_component_under_a_leader(self) -> None:
        """With PostgreSQL the leader, not the service tree, starts the component, and names the node."""
        root, parts = build(parse_config(PG, {}), MemoryReactorClock())
        assert parts.leader is not None and parts.component is not None
        self.assertIsNone(parts.component.parent)
        self.assertIs(parts.leader.parent, root)
        self.assertEqual(parts.leader.node, "b1")

    async def test_metric_names_the_state_and_node(self) -> None:
        """bridge_component_state{node,state} is 1 for the leader's state: standby, then active, then failed."""
        _, parts = build(parse_config(PG, {}), MemoryReactorClock())
        assert parts.leader is not None and parts.metrics is not None
        expected = {STANDBY: "standby", FAILED: "failed"}
        for state in (STANDBY, FAILED):
            parts.leader.state = state
            body, _ = parts.metrics.render(None)
            text = body.decode()
            self.assertIn(f'bridge_component_state{{node="b1",state="{expected[state]}"}} 1.0', text)
            self.assertIn('bridge_component_state{node="b1",state="active"} 0.0', text)
        parts.leader.state = ACTIVE  # holds the lock, but the component is not connected
        self.assertIn('bridge_component_state{node="b1",state="failed"} 1.0', parts.metrics.render(None)[0].decode())


class ReadinessStandbyTests(unittest.TestCase):
    async def test_standby_is_reported_and_does_not_fail_readiness(self) -> None:
        """A check that answers "standby" is shown as such and keeps /readyz at 200, even when required."""
        readiness = Readiness(MemoryReactorClock(), "127.0.0.1", 1, _Pool(), 1.0)  # type: ignore[arg-type]
        readiness.add_check("component", lambda: defer.succeed("standby"), required=False)
        readiness.add_check("other", lambda: defer.succeed("standby"))
        self.assertEqual(
            await readiness.status(),
            (200, {"status": "ready", "checks": {"xmpp": "ok", "component": "standby", "other": "standby"}}),
        )

    async def test_wiring_reports_standby_for_a_leader_without_the_lock(self) -> None:
        """The bridge's /readyz check says "standby" while its leader does not hold the component lock."""
        _, parts = build(parse_config(PG, {}), MemoryReactorClock())
        assert parts.readiness is not None
        parts.readiness._pool = _Pool()  # type: ignore[assignment]
        parts.readiness.add_check("store", lambda: defer.succeed(True))
        code, body = await parts.readiness.status()
        self.assertEqual((code, body["checks"]["component"]), (200, "standby"))
