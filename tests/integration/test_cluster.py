"""Two bridge processes sharing one PostgreSQL (DESIGN.md, "Several processes") in front of a
real Prosody: only one runs the MUC Light component, the other stands by and takes over.

Both bridges run in this test's reactor, each with the whole wiring of ``bridge.tap.build``
(its own component, leader, store pool and HTTP port). Prosody here has no XEP-0356
privileges, so the component learns who is online only from directed presence: a bridge
that takes over can deliver to an occupant who sent it before the takeover only through
the presence stored by the first (``bridge.muclight.presence``).
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from twisted.internet import reactor, task, threads
from twisted.trial import unittest
from twisted.words.xish import domish

from bridge.muclight.leader import ACTIVE, STANDBY
from tests.integration.base import BridgeTestCase
from tests.integration.test_rooms import next_groupchat, round_trip
from tests.integration.test_rooms_xmpp import server_without_privileges
from tests.servers.fixture import RunningBridge, daemon_config, new_user, start_bridge, until, xmpp_client
from tests.servers.postgres import fresh_test_database
from tests.servers.prosody import ProsodyServer
from tests.servers.xmpp_client import PlainClient

# DESIGN.md: the standby takes over within 10 s of the active process dying.
TAKEOVER_BOUND = 10.0


class ClusterComponentTests(BridgeTestCase):
    timeout = 90

    async def _start(self) -> None:
        database = fresh_test_database("bridge_cluster_")
        self.own: ProsodyServer = server_without_privileges()
        self.bridges: dict[str, RunningBridge] = {}
        for node in ("a", "b"):
            self.bridges[node] = await start_bridge(
                reactor,
                self.mktemp(),
                self.addCleanup,
                xmpp={"port": self.own.c2s_port, "ca_file": str(self.own.ca_file)},
                muclight={"port": self.own.component_port, "secret": self.own.component_secret},
                storage={"url": database},
                cluster={"node": node},
            )
        self.bridge = self.bridges["a"]

    def new_user(self, prefix: str = "user") -> tuple[str, str]:
        return new_user(prefix, self.own)

    async def client(self, user: tuple[str, str], resource: str = "phone") -> PlainClient:
        return await xmpp_client(reactor, user[0], user[1], self.addCleanup, resource, self.own)

    def connected(self, bridge: RunningBridge) -> bool:
        return bridge.parts.component is not None and bridge.parts.component.alive

    async def active_and_standby(self) -> tuple[RunningBridge, RunningBridge]:
        """Once one bridge's component is connected: (that one, the other)."""
        await until(reactor, lambda: any(self.connected(b) for b in self.bridges.values()), TAKEOVER_BOUND)
        a, b = self.bridges["a"], self.bridges["b"]
        return (a, b) if self.connected(a) else (b, a)

    async def readyz(self, bridge: RunningBridge) -> tuple[int, Any]:
        self.bridge = bridge
        reply = await self.call("GET", "/readyz", None)
        return reply.code, reply.json

    async def room_with_online_member(self, via: RunningBridge) -> tuple[str, tuple[str, str], PlainClient]:
        """A room of alice's with bob, whose client announced itself to the component (directed presence)."""
        self.bridge = via
        alice, bob = self.new_user("alice"), self.new_user("bob")
        reply = await self.call("POST", "/api/rooms", alice, {"name": "cluster", "subject": "s"})
        self.assertEqual(reply.code, 201, reply)
        room_id = reply.json["id"]
        reply = await self.call("POST", f"/api/rooms/{room_id}/users", alice, {"user": bob[0]})
        self.assertEqual(reply.code, 204, reply)
        listener = await self.client(bob)
        listener.available()
        presence = domish.Element((None, "presence"))
        presence["to"] = self.own.component
        listener.send(presence)
        await round_trip(listener)
        sent = await self.call("POST", f"/api/rooms/{room_id}/messages", alice, {"body": "before"})
        self.assertEqual(sent.code, 200, sent)
        self.assertEqual(str((await next_groupchat(listener)).body), "before")
        self.alice = alice
        return room_id, bob, listener

    async def delivered_after_takeover(self, via: RunningBridge, room_id: str, listener: PlainClient) -> None:
        self.bridge = via
        sent = await self.call("POST", f"/api/rooms/{room_id}/messages", self.alice, {"body": "after"})
        self.assertEqual(sent.code, 200, sent)
        received = await next_groupchat(listener)
        self.assertEqual((received["id"], str(received.body)), (sent.json["id"], "after"))

    async def test_one_component_and_a_standby_then_takeover_on_stop(self) -> None:
        """Only one bridge connects the component and the other reports standby; when the active one stops the
        other connects within 10 s and a member online before the takeover still gets room messages."""
        active, standby = await self.active_and_standby()
        await task.deferLater(reactor, 3, lambda: None)  # several retries of the standby
        assert standby.parts.component is not None and standby.parts.leader is not None
        self.assertFalse(standby.parts.component.alive)
        self.assertIsNone(standby.parts.component._connector)  # never even connected to Prosody
        self.assertEqual(standby.parts.leader.state, STANDBY)
        self.assertEqual(await self.readyz(standby), (200, {"status": "ready", "checks": self.checks("standby")}))
        self.assertEqual(await self.readyz(active), (200, {"status": "ready", "checks": self.checks("ok")}))
        room_id, _, listener = await self.room_with_online_member(active)
        stopped = reactor.seconds()
        await active.stop()
        took = await until(reactor, lambda: self.connected(standby), TAKEOVER_BOUND)
        print(f"\n  active bridge stopped: the standby's component connected after {reactor.seconds() - stopped:.2f} s")
        self.assertLess(took, TAKEOVER_BOUND)
        self.assertEqual(standby.parts.leader.state, ACTIVE)
        await self.delivered_after_takeover(standby, room_id, listener)

    async def test_lost_lock_fences_the_active_component_and_the_standby_takes_over(self) -> None:
        """When the active bridge's lock session ends (PostgreSQL restarted, network cut) its component is
        dropped, the standby's connects within 10 s (Prosody takes it once the first is gone), and room
        messages reach the member online before."""
        active, standby = await self.active_and_standby()
        room_id, _, listener = await self.room_with_online_member(standby)
        assert active.parts.leader is not None and standby.parts.leader is not None
        import psycopg2

        admin = psycopg2.connect(active.config.storage.url)
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                (f"bridge-leader {active.parts.leader.node}",),
            )
        admin.close()
        cut = reactor.seconds()
        await until(reactor, lambda: not self.connected(active), TAKEOVER_BOUND)
        fenced = reactor.seconds() - cut
        await until(reactor, lambda: self.connected(standby), TAKEOVER_BOUND - fenced)
        took = reactor.seconds() - cut
        print(
            f"\n  lock session terminated: old component dropped after {fenced:.2f} s,"
            f" new one connected after {took:.2f} s"
        )
        await task.deferLater(reactor, 3, lambda: None)
        self.assertEqual((active.parts.leader.state, standby.parts.leader.state), (STANDBY, ACTIVE))
        self.assertFalse(self.connected(active))
        await self.delivered_after_takeover(active, room_id, listener)

    def checks(self, component: str) -> dict[str, str]:
        return {"xmpp": "ok", "store": "ok", "component": component}


class SigkillTakeoverTests(unittest.TestCase):
    """Two ``twistd bridge`` processes on one PostgreSQL; the active one is SIGKILLed."""

    timeout = 120

    def setUp(self) -> None:
        self.database = fresh_test_database("bridge_sigkill_")

    def start(self, node: str) -> tuple[Any, int]:
        from tests.servers.fixture import xmpp_server
        from tests.servers.server import free_port
        from tests.system.test_twistd import twistd

        server, port = xmpp_server(), free_port()
        config = Path(self.mktemp() + f"-{node}.toml").resolve()
        config.write_text(daemon_config(server, port, str(self.database), sections=f'[cluster]\nnode = "{node}"\n'))
        process = twistd("bridge", "--config", str(config), env={"BRIDGE_MUCLIGHT_SECRET": server.component_secret})
        self.addCleanup(lambda: process.poll() is None and (process.kill(), process.wait()))
        return process, port

    def scenario(self) -> None:
        from tests.integration.test_rooms_sigkill import request
        from tests.servers.fixture import new_user
        from tests.servers.server import wait_for_port

        bridges = {node: self.start(node) for node in ("a", "b")}
        for _, port in bridges.values():
            wait_for_port(port)
        deadline = time.monotonic() + 30
        states: dict[str, str] = {}
        while sorted(states.values()) != ["ok", "standby"]:
            if time.monotonic() > deadline:
                raise AssertionError(f"no active and standby pair: {states}")
            time.sleep(0.3)
            states = {node: component_check(port) for node, (_, port) in bridges.items()}
        active = next(node for node, state in states.items() if state == "ok")
        standby_port = bridges["b" if active == "a" else "a"][1]
        os.kill(bridges[active][0].pid, signal.SIGKILL)
        killed = time.monotonic()
        bridges[active][0].wait()
        while component_check(standby_port) != "ok":
            if time.monotonic() - killed > TAKEOVER_BOUND:
                raise AssertionError("the standby did not take over within 10 s")
            time.sleep(0.1)
        took = time.monotonic() - killed
        print(f"\n  SIGKILL of the active twistd: the standby's component is up after {took:.2f} s (/readyz)")
        alice = new_user("alice")
        status, created = request(standby_port, "POST", "/api/rooms", alice, {"name": "n", "subject": "s"})
        self.assertEqual(status, 201, created)
        status, sent = request(standby_port, "POST", f"/api/rooms/{created['id']}/messages", alice, {"body": "x"})
        self.assertEqual(status, 200, sent)

    def test_sigkill_of_the_active_process_hands_over_within_10_s(self) -> None:
        """SIGKILL of the process that runs the component: the standby's /readyz shows its component ok within
        10 s and rooms work through it."""
        return threads.deferToThread(self.scenario)  # type: ignore[return-value]


def component_check(port: int) -> str:
    """What ``/readyz`` on ``port`` says of the component ("" when it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return str(json.loads(response.read())["checks"].get("component", ""))
    except urllib.error.HTTPError as e:
        return str(json.loads(e.read() or b"{}").get("checks", {}).get("component", ""))
    except OSError:
        return ""
