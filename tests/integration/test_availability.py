"""An XMPP server that is down, silent or restarting gives 503/504 quickly, never a hang."""

from __future__ import annotations

import time

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.trial import unittest

from tests.integration.base import Reply, basic
from tests.servers.fixture import RunningBridge, bridge_config
from tests.servers.prosody import ProsodyServer
from tests.servers.server import free_port


class AvailabilityTests(unittest.TestCase):
    timeout = 60

    async def start(self, **xmpp: object) -> RunningBridge:
        config = bridge_config(self.mktemp(), xmpp=xmpp)
        running = RunningBridge(reactor, config)
        await running.start()
        self.addCleanup(lambda: defer.Deferred.fromCoroutine(running.stop()))
        return running

    async def get(self, running: RunningBridge, user: tuple[str, str]) -> tuple[Reply, float]:
        started = time.monotonic()
        response = await running.http.get(running.url("/api/messages"), headers={"Authorization": [basic(*user)]})
        return Reply(response.code, response.headers, await response.content()), time.monotonic() - started

    async def test_server_down_gives_503_with_retry_after(self) -> None:
        """Nothing listening on the c2s port: 503 with Retry-After, well within 5 s."""
        running = await self.start(port=free_port())
        reply, elapsed = await self.get(running, ("alice@localhost", "pw"))
        self.assertEqual((reply.code, reply.json), (503, "XMPP server unavailable"))
        self.assertTrue(reply.header("Retry-After"))
        self.assertLess(elapsed, 5)

    async def test_silent_server_gives_504(self) -> None:
        """A server that accepts TCP but never answers: 504 after xmpp.timeout, not a hang."""
        silent = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            protocol.Factory.forProtocol(protocol.Protocol)
        )
        self.addCleanup(silent.stopListening)
        running = await self.start(port=silent.getHost().port, timeout=1.0)
        reply, elapsed = await self.get(running, ("alice@localhost", "pw"))
        self.assertEqual((reply.code, reply.json), (504, "XMPP server timeout"))
        self.assertLess(elapsed, 3)

    async def test_untrusted_certificate_gives_503(self) -> None:
        """A server certificate the bridge does not trust: 503, and the password is never sent."""
        own = ProsodyServer()
        own.start()
        self.addCleanup(own.cleanup)
        own.register("alice", "pw")
        running = await self.start(port=own.c2s_port, ca_file="")  # system trust only
        reply, _ = await self.get(running, ("alice@localhost", "pw"))
        self.assertEqual(reply.code, 503)
        self.assertNotIn("Authenticated as alice", own.log_file.read_text())


class RestartTests(unittest.TestCase):
    timeout = 90

    async def test_server_restart(self) -> None:
        """While the server is down requests get 503; after it is back the next request succeeds."""
        own = ProsodyServer()
        own.start()
        self.addCleanup(own.cleanup)
        own.register("alice", "pw")
        config = bridge_config(self.mktemp(), xmpp={"port": own.c2s_port, "ca_file": str(own.ca_file)})
        running = RunningBridge(reactor, config)
        await running.start()
        self.addCleanup(lambda: defer.Deferred.fromCoroutine(running.stop()))
        user = ("alice@localhost", "pw")

        async def get() -> Reply:
            response = await running.http.get(running.url("/api/messages"), headers={"Authorization": [basic(*user)]})
            return Reply(response.code, response.headers, await response.content())

        self.assertEqual((await get()).code, 200)
        own.stop()
        started = time.monotonic()
        down = await get()
        self.assertEqual(down.code, 503)
        self.assertLess(time.monotonic() - started, 5)
        own.start()
        back = time.monotonic()
        self.assertEqual((await get()).code, 200)
        self.assertLess(time.monotonic() - back, 10)
