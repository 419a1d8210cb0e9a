"""Live events through two bridge processes serving the same user (DESIGN.md, "Live events"
and "Several processes"): event ids and stream tokens of one process at the other.

Process B shares A's store file (its MUC Light component points at a port where nothing
listens, so only A's component serves rooms): the store is where the stream token key is
shared.
"""

from __future__ import annotations

from twisted.internet import reactor

from tests.integration.test_sse import SseTestCase, sleep
from tests.servers.fixture import RunningBridge, start_bridge
from tests.servers.server import free_port


class TwoProcessesSseTests(SseTestCase):
    async def _start(self) -> None:
        await super()._start()
        # A's store migrated first: two processes migrating one new SQLite file at once race.
        started = self.bridge.root.getServiceNamed("store").started
        assert started is not None
        await started
        self.other: RunningBridge = await start_bridge(
            reactor,
            self.mktemp(),
            self.addCleanup,
            storage={"url": self.bridge.config.storage.url},
            muclight={"port": free_port()},
        )
        tokens = self.other.parts.tokens
        assert tokens is not None
        await tokens.ready()

    async def token(self, user: tuple[str, str], running: RunningBridge) -> str:
        reply = await running.http.post(running.url("/api/sse/token"), headers={"Authorization": [self.basic(user)]})
        self.assertEqual(reply.code, 201)
        return str((await reply.json())["token"])

    def basic(self, user: tuple[str, str]) -> str:
        from tests.integration.base import basic

        return basic(*user)

    async def test_last_event_id_from_another_process_gets_a_reset(self) -> None:
        """An id a stream got from A, sent to B within B's window, gets a reset there, not B's own events."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        at_b = await self.open_stream(alice, running=self.other)
        at_a = await self.open_stream(alice)
        await self.call("POST", "/api/messages", bob, {"to": alice[0], "body": "one"})
        seen_a = await at_a.next()
        self.assertEqual(seen_a.json["body"], "one")
        await at_a.close()
        await sleep(0.2)  # B's next id is then well after A's id: inside B's window
        await self.call("POST", "/api/messages", bob, {"to": alice[0], "body": "two"})
        self.assertEqual([(await at_b.next()).json["body"] for _ in range(2)], ["one", "two"])
        resumed = await self.open_stream(alice, headers={"Last-Event-ID": str(seen_a.id)}, running=self.other)
        reset = await resumed.next()
        self.assertEqual(
            (reset.name, reset.json), ("reset", {"reason": "Last-Event-ID is from another bridge process"})
        )
        await resumed.nothing_within(0.3)

    async def test_token_of_another_process(self) -> None:
        """A's token is 421 at B while B has no session of the user, then opens B's stream once it has one."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        token = await self.token(alice, self.bridge)
        response, reader = await self.request_stream(None, query=f"?token={token}", running=self.other)
        self.assertEqual(
            (response.code, reader.body),  # type: ignore[attr-defined]
            (421, b'"Stream token belongs to another bridge process"'),
        )
        await self.token(alice, self.other)  # a Basic request: B now holds a session of Alice
        stream = await self.open_stream(None, query=f"?token={token}", running=self.other)
        await self.call("POST", "/api/messages", bob, {"to": alice[0], "body": "via B"})
        self.assertEqual((await stream.next()).json["body"], "via B")
        forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
        response, reader = await self.request_stream(None, query=f"?token={forged}", running=self.other)
        self.assertEqual((response.code, reader.body), (401, b'"Invalid or expired token"'))  # type: ignore[attr-defined]
