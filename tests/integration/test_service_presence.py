"""A component that comes up after a stream's session announced itself still learns it.

The session's directed presence to the MUC Light service bounces while no component is
connected (Prosody: ``remote-server-timeout``, ejabberd: ``remote-server-not-found``): a
takeover between bridge processes, or a component restart. ``ServicePresence`` sends it
again, so the component that comes up delivers live room messages to the stream. The server
here grants no XEP-0356 privileges, so directed presence is all the component can learn from.
"""

from __future__ import annotations

import atexit
from typing import Any

from twisted.internet import defer, reactor, task

from tests.integration.test_sse import SseTestCase
from tests.servers.fixture import XmppServer, new_user, server_class, start_bridge

_plain: XmppServer | None = None


def plain_server() -> XmppServer:
    """This run's server of the kind under test without XEP-0356 privileges, started once."""
    global _plain
    if _plain is None:
        _plain = server_class()(privileges=False)
        _plain.start()
        atexit.register(_plain.cleanup)
    return _plain


class LateComponentTests(SseTestCase):
    timeout = 90

    async def _start(self) -> None:
        self.own = plain_server()
        own = self.own
        self.sections: dict[str, Any] = {
            "xmpp": {"port": own.c2s_port, "ca_file": str(own.ca_file), "domains": [own.domain]},
            "muclight": {"service": own.component, "port": own.component_port, "secret": own.component_secret},
        }
        # The bridge that serves the stream runs no component: the service is down for it.
        self.bridge = await start_bridge(
            reactor,
            self.mktemp(),
            self.addCleanup,
            xmpp=self.sections["xmpp"],
            muclight={**self.sections["muclight"], "component": False},
        )

    def new_user(self, prefix: str = "user") -> tuple[str, str]:
        return new_user(prefix, self.own)

    async def test_stream_session_announced_before_the_component_gets_room_messages(self) -> None:
        """A stream opened while no component was connected receives live room messages once one connects."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        stream = await self.open_stream(bob)  # bob's session goes available; the service bounces it
        await task.deferLater(reactor, 1.5, lambda: None)
        rooms = await start_bridge(
            reactor, self.mktemp(), self.addCleanup, xmpp=self.sections["xmpp"], muclight=self.sections["muclight"]
        )
        assert rooms.parts.component is not None
        await rooms.parts.component.connected.addTimeout(10, reactor)
        self.bridge = rooms  # rooms are created and posted to through the component's bridge
        reply = await self.call("POST", "/api/rooms", alice, {"name": "late", "subject": "s"})
        self.assertEqual(reply.code, 201, reply)
        room_id = reply.json["id"]
        reply = await self.call("POST", f"/api/rooms/{room_id}/users", alice, {"user": bob[0]})
        self.assertEqual(reply.code, 204, reply)
        # The retries come 1, 2, 4 then 5 s apart: within 12 s the component knows bob's session.
        for attempt in range(12):
            sent = await self.call("POST", f"/api/rooms/{room_id}/messages", alice, {"body": f"try {attempt}"})
            self.assertEqual(sent.code, 200, sent)
            try:
                while True:
                    event = await stream.next(timeout=1.0)
                    if event.name == "room.message" and event.json.get("type") == "message":
                        self.assertEqual(event.json["room"], room_id)
                        return
            except defer.TimeoutError:
                continue
        self.fail("no room message reached the stream within 12 s of the component connecting")
