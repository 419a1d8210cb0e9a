"""``/api/presence`` and ``presence`` events against the run's real server (Prosody, or
ejabberd with BRIDGE_TEST_SERVER=ejabberd), with plain XMPP clients as the contacts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import reactor
from twisted.words.xish import domish

from tests.integration.test_sse import SseReader, SseTestCase, sleep
from tests.servers.xmpp_client import PlainClient


def presence(to: str | None = None, kind: str | None = None, **children: str) -> domish.Element:
    element = domish.Element((None, "presence"))
    if to is not None:
        element["to"] = to
    if kind is not None:
        element["type"] = kind
    for name, value in children.items():
        element.addElement(name, content=value)
    return element


async def wait_for(client: PlainClient, match: Callable[[domish.Element], bool]) -> domish.Element:
    while True:
        stanza = await client.presences.get().addTimeout(10, reactor)
        if match(stanza):
            return stanza


def from_rest(user: str) -> Callable[[domish.Element], bool]:
    """Matches presence from one of the bridge's sessions of ``user``."""
    return lambda p: p.getAttribute("from", "").startswith(user + "/rest-")


class PresenceTestCase(SseTestCase):
    async def contacts(self, alice: tuple[str, str], bob: tuple[str, str]) -> PlainClient:
        """Alice and bob see each other's presence (both subscriptions); bob's phone is available.

        Set up with plain clients only; alice's is closed again, so her only resource left is
        whatever the bridge opens.
        """
        laptop, phone = await self.client(alice, "laptop"), await self.client(bob)
        laptop.available()
        phone.available()
        for asker, answerer, asker_jid, answerer_jid in (
            (phone, laptop, bob[0], alice[0]),
            (laptop, phone, alice[0], bob[0]),
        ):
            asker.send(presence(answerer_jid, "subscribe"))
            await wait_for(answerer, lambda p: p.getAttribute("type") == "subscribe")
            answerer.send(presence(asker_jid, "subscribed"))
        await wait_for(phone, lambda p: p.getAttribute("from") == f"{alice[0]}/laptop" and not p.getAttribute("type"))
        await wait_for(laptop, lambda p: p.getAttribute("from") == f"{bob[0]}/phone" and not p.getAttribute("type"))
        await laptop.close()
        await wait_for(phone, lambda p: p.getAttribute("type") == "unavailable")
        return phone

    async def listing(self, user: tuple[str, str], wanted: Any) -> Any:
        """GET /api/presence until it answers ``wanted`` (presence arrives on its own time)."""
        reply = None
        for _ in range(50):
            reply = await self.call("GET", "/api/presence", user)
            self.assertEqual(reply.code, 200, reply)
            if reply.json == wanted:
                return reply.json
            await sleep(0.1)
        self.assertEqual(reply.json if reply else None, wanted)

    async def next_presence(self, reader: SseReader) -> dict[str, Any]:
        while True:
            event = await reader.next(timeout=10)
            if event.name == "presence":
                data: dict[str, Any] = event.json
                return data


class ContactPresenceTests(PresenceTestCase):
    async def test_contact_presence_follows_plain_client(self) -> None:
        """Bob's client going available, away and unavailable shows in alice's GET /api/presence and stream."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        phone = await self.contacts(alice, bob)
        # Alice's own other device is no contact of hers: never listed, never an event.
        tablet = await self.client(alice, "tablet")
        tablet.available()
        await self.expect_204("PUT", "/api/presence", alice, {})
        await self.listing(alice, [{"jid": bob[0], "resources": [{"resource": "phone", "priority": 0}]}])
        stream = await self.open_stream(alice)

        phone.send(presence(show="away", status="Lunch <&>", priority="2"))
        self.assertEqual(
            await self.next_presence(stream),
            {"from": f"{bob[0]}/phone", "type": "available", "show": "away", "status": "Lunch <&>", "priority": 2},
        )
        away = {"resource": "phone", "show": "away", "status": "Lunch <&>", "priority": 2}
        await self.listing(alice, [{"jid": bob[0], "resources": [away]}])

        desk = await self.client(bob, "desk")
        desk.send(presence(show="dnd", priority="-1"))
        self.assertEqual(
            await self.next_presence(stream),
            {"from": f"{bob[0]}/desk", "type": "available", "show": "dnd", "priority": -1},
        )
        desk_json = {"resource": "desk", "show": "dnd", "priority": -1}
        await self.listing(alice, [{"jid": bob[0], "resources": [desk_json, away]}])

        phone.send(presence(kind="unavailable", status="Bye"))
        self.assertEqual(
            await self.next_presence(stream), {"from": f"{bob[0]}/phone", "type": "unavailable", "status": "Bye"}
        )
        await self.listing(alice, [{"jid": bob[0], "resources": [desk_json]}])
        await desk.close()
        event = await self.next_presence(stream)
        self.assertEqual((event["from"], event["type"]), (f"{bob[0]}/desk", "unavailable"))
        await self.listing(alice, [])
        tablet.send(presence(show="xa"))
        await stream.nothing_within(0.5)

    async def test_stream_alone_gives_presence_events(self) -> None:
        """A stream's session is available, so it gets contacts' presence as events without any PUT."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        phone = await self.contacts(alice, bob)
        stream = await self.open_stream(alice)
        first = await self.next_presence(stream)  # bob's current presence, answering the stream's
        self.assertEqual(first, {"from": f"{bob[0]}/phone", "type": "available", "priority": 0})
        phone.send(presence(show="chat"))
        self.assertEqual(
            await self.next_presence(stream),
            {"from": f"{bob[0]}/phone", "type": "available", "show": "chat", "priority": 0},
        )
        await self.listing(
            alice, [{"jid": bob[0], "resources": [{"resource": "phone", "show": "chat", "priority": 0}]}]
        )

    async def expect_204(self, method: str, path: str, user: tuple[str, str], body: Any) -> None:
        reply = await self.call(method, path, user, body)
        self.assertEqual(reply.code, 204, reply)


class OwnPresenceTests(PresenceTestCase):
    async def test_put_presence_reaches_contact(self) -> None:
        """PUT /api/presence is 204 and bob's client receives alice's presence with show, status and priority."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        phone = await self.contacts(alice, bob)
        reply = await self.call(
            "PUT", "/api/presence", alice, {"show": "dnd", "status": "In a <meeting>", "priority": 5}
        )
        self.assertEqual(reply.code, 204, reply)
        seen = await wait_for(phone, from_rest(alice[0]))
        self.assertIsNone(seen.getAttribute("type"))
        self.assertEqual((str(seen.show), str(seen.status), str(seen.priority)), ("dnd", "In a <meeting>", "5"))

        # A stream opened now keeps that presence instead of announcing sse.priority.
        await self.open_stream(alice)
        await sleep(0.5)
        self.assertEqual([p.toXml() for p in phone.presences.pending if from_rest(alice[0])(p)], [])

        reply = await self.call("PUT", "/api/presence", alice, {"show": "chat"})
        self.assertEqual(reply.code, 204, reply)
        seen = await wait_for(phone, from_rest(alice[0]))
        self.assertEqual((str(seen.show), seen.status, str(seen.priority)), ("chat", None, "0"))

    async def test_session_that_never_asks_stays_invisible(self) -> None:
        """A session serving only GET /api/presence sends no presence: bob sees nothing, alice lists nobody."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        phone = await self.contacts(alice, bob)
        reply = await self.call("GET", "/api/presence", alice)
        self.assertEqual((reply.code, reply.json), (200, []))
        await sleep(0.5)
        self.assertEqual([p.toXml() for p in phone.presences.pending if from_rest(alice[0])(p)], [])

    async def test_invalid_presence_is_400(self) -> None:
        """Bad show, status or priority values get their 400 strings; no credentials 401."""
        alice = self.new_user("alice")
        for body, message in (
            ({"show": "online"}, "Invalid show"),
            ({"show": 3}, "Invalid show"),
            ({"status": "a\u0000b"}, "Invalid status"),
            ({"status": "x" * 1024}, "Invalid status"),
            ({"priority": 128}, "Invalid priority"),
            ({"priority": "1"}, "Invalid priority"),
            ({"priority": 1.5}, "Invalid priority"),
        ):
            reply = await self.call("PUT", "/api/presence", alice, body)
            self.assertEqual((reply.code, reply.json), (400, message), body)
        reply = await self.call("PUT", "/api/presence", alice, raw=b"[1]")
        self.assertEqual((reply.code, reply.json), (400, "Invalid JSON: expected an object"))
        self.assertEqual((await self.call("PUT", "/api/presence", None, {})).code, 401)
        self.assertEqual((await self.call("GET", "/api/presence", None)).code, 401)
