"""Idempotent retries (DESIGN.md, "Guarantees") on a real server: a client ``id`` becomes the
stanza id of room and one-to-one messages, and a room retry is archived and broadcast once."""

from __future__ import annotations

from twisted.words.xish import domish

from bridge.muclight.handlers.groupchat import GroupchatHandler
from bridge.protocol.convert import parse_timestamp
from bridge.protocol.namespaces import NS_DELAY
from bridge.protocol.xml import child
from bridge.store import NewArchiveItem
from tests.integration.base import BridgeTestCase
from tests.integration.test_rooms import RoomsTestCase, next_groupchat
from tests.servers.xmpp_client import PlainClient


class RoomRetryTests(RoomsTestCase):
    async def test_room_retry_is_archived_and_broadcast_once(self) -> None:
        """A room message sent twice with id X answers 200 {"id": X} both times; the archive and an
        occupant's client have it once."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        room_id = await self.room(alice, bob)
        phone = await self.online(bob)
        path = f"/api/rooms/{room_id}/messages"
        for body in ("first", "retry"):
            await self.expect("POST", path, alice, {"body": body, "id": "retry:X-1.a_b"}, 200, {"id": "retry:X-1.a_b"})
        await self.expect("POST", path, alice, {"body": "after", "id": "after-1"}, 200, {"id": "after-1"})
        received = []
        while not received or received[-1] != "after-1":
            received.append((await next_groupchat(phone))["id"])
        self.assertEqual(received, ["retry:X-1.a_b", "after-1"])
        history = await self.expect("GET", f"{path}?limit=50", bob, None, 200)
        messages = [(m["id"], m.get("body")) for m in history.json if m["type"] == "message"]
        self.assertEqual(messages, [("retry:X-1.a_b", "first"), ("after-1", "after")])

    async def test_retry_of_a_message_a_dead_process_archived_is_broadcast(self) -> None:
        """A retry of an id the archive holds from a process that died before broadcasting it (here
        written to the store directly) answers 200 and reaches the occupants once, as archived, with a
        XEP-0203 delay of its archive time; the next retry is not broadcast again."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        room_id = await self.room(alice, bob)
        phone = await self.online(bob)
        component = self.bridge.parts.component
        assert component is not None
        state = next(h for h in component if isinstance(h, GroupchatHandler)).state
        first = domish.Element((None, "message"))
        first["from"], first["type"], first["id"] = f"{self.room_jid(room_id)}/{alice[0]}", "groupchat", "dead-1"
        first.addElement("body", content="before the crash")
        posted = await state.store.post_message(
            room_id, NewArchiveItem("dead-1", "message", alice[0], first.toXml()), True
        )
        assert posted is not None
        path = f"/api/rooms/{room_id}/messages"
        for body in ("retry", "retry again"):
            await self.expect("POST", path, alice, {"body": body, "id": "dead-1"}, 200, {"id": "dead-1"})
        await self.expect("POST", path, alice, {"body": "after", "id": "after-1"}, 200, {"id": "after-1"})
        again = await next_groupchat(phone)
        self.assertEqual((again["id"], str(again.body)), ("dead-1", "before the crash"))
        delay = child(again, "delay", NS_DELAY)
        assert delay is not None
        self.assertEqual(parse_timestamp(delay["stamp"]), posted.item.timestamp)
        self.assertEqual((await next_groupchat(phone))["id"], "after-1")

    async def test_same_id_from_another_member_is_its_own_message(self) -> None:
        """Only a sender's own archived id makes a retry: another member's message with that id is delivered."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        room_id = await self.room(alice, bob)
        path = f"/api/rooms/{room_id}/messages"
        await self.expect("POST", path, alice, {"body": "from alice", "id": "shared"}, 200, {"id": "shared"})
        await self.expect("POST", path, bob, {"body": "from bob", "id": "shared"}, 200, {"id": "shared"})
        history = await self.expect("GET", path, alice, None, 200)
        self.assertEqual(
            [(m["from"], m["body"]) for m in history.json if m["type"] == "message"],
            [(alice[0], "from alice"), (bob[0], "from bob")],
        )


class OneToOneIdTests(BridgeTestCase):
    async def test_client_id_is_the_recipients_stanza_id(self) -> None:
        """POST /api/messages with id X answers {"id": X} and the recipient's stanza carries id X."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        phone: PlainClient = await self.client(bob)
        phone.available()
        reply = await self.call("POST", "/api/messages", alice, {"to": bob[0], "body": "hi", "id": "chat-X.1"})
        self.assertEqual((reply.code, reply.json), (200, {"id": "chat-X.1"}), reply)
        received = await phone.next_message()
        self.assertEqual((received["id"], str(received.body)), ("chat-X.1", "hi"))

    async def test_one_to_one_retry_is_the_servers_to_deduplicate(self) -> None:
        """A 1:1 message retried with id X answers 200 {"id": X} again; Prosody and ejabberd deliver and
        archive it twice, both copies with id X (README, "Idempotent retries")."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        phone: PlainClient = await self.client(bob)
        phone.available()
        for body in ("try", "retry"):
            reply = await self.call("POST", "/api/messages", alice, {"to": bob[0], "body": body, "id": "chat-Y"})
            self.assertEqual((reply.code, reply.json), (200, {"id": "chat-Y"}), reply)
        delivered = [await phone.next_message(), await phone.next_message()]
        self.assertEqual([(m["id"], str(m.body)) for m in delivered], [("chat-Y", "try"), ("chat-Y", "retry")])
        history = await self.call("GET", f"/api/messages/{bob[0]}", alice)
        self.assertEqual([(m["id"], m["body"]) for m in history.json], [("chat-Y", "try"), ("chat-Y", "retry")])
