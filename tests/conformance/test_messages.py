"""rest_client_SUITE's one-to-one message scenarios (groups messages, messages_with_props,
messages_with_thread), against the bridge in front of the run's XMPP server."""

from __future__ import annotations

import secrets
import time
from typing import Any

from twisted.words.xish import domish

from tests.conformance.helpers import ConformanceCase, User, next_chat, now_ms, round_trip, sleep
from tests.servers.xmpp_client import NS_PROPERTIES, PlainClient


def stanza(to: str, stanza_id: str, body: str) -> domish.Element:
    """A chat message as a Smack client writes it (a valid xml:lang: ejabberd refuses en_US)."""
    message = domish.Element((None, "message"))
    message["to"], message["id"], message["type"] = to, stanza_id, "chat"
    message["xml:lang"] = "en"
    message.addElement("body", content=body)["xml:lang"] = "en-US"
    return message


def with_props(to: str, stanza_id: str) -> domish.Element:
    message = stanza(to, stanza_id, "Test message with properties")
    props = message.addElement((NS_PROPERTIES, "properties"))
    for name, kind, value in (
        ("some_string", "string", "abcdefghijklmnopqrstuvwxyz"),
        ("some_number", "long", "1234567890"),
    ):
        prop = props.addElement("property")
        prop.addElement("name", content=name)
        prop.addElement("value", content=value)["type"] = kind
    return message


def with_malformed_props(to: str, stanza_id: str) -> domish.Element:
    """Properties in no namespace of their own, with numbered element names: not Smack's."""
    message = stanza(to, stanza_id, "Test message with malformed properties")
    props = message.addElement("properties")
    for element, name, kind, value in (
        ("property1", "some_string", "string", "abcdefghijklmnopqrstuvwxyz"),
        ("property2", "some_number", "long", "1234567890"),
    ):
        prop = props.addElement(element)
        prop.addElement("name", content=name)
        prop.addElement("value", content=value)["type"] = kind
    return message


def with_thread(to: str, stanza_id: str, thread: str | None, parent: str | None = None) -> domish.Element:
    message = stanza(to, stanza_id, "Test message with thread" if thread else "Test message without thread")
    if thread is not None:
        element = message.addElement("thread", content=thread)
        if parent is not None:
            element["parent"] = parent
    return message


def new_id() -> str:
    return secrets.token_hex(5).upper()


class MessagesTests(ConformanceCase):
    def assert_messages(self, sent: list[dict[str, str]], received: list[dict[str, Any]]) -> None:
        self.assertEqual(len(received), len(sent), received)
        for expected, got in zip(sent, received, strict=True):
            self.assertEqual(
                {k: got[k] for k in ("from", "id", "body")}, {k: expected[k] for k in ("from", "id", "body")}
            )
            self.assertIsInstance(got["timestamp"], int)

    async def test_msg_is_sent_and_delivered_over_xmpp(self) -> None:
        """Ports msg_is_sent_and_delivered_over_xmpp: a POSTed message reaches the recipient's XMPP client as chat."""
        alice, bob = self.users("alice", "bob")
        phone = await self.online(bob)
        sent = await self.send_chat(alice, bob)
        received = await next_chat(phone)
        self.assertEqual((received["type"], str(received.body)), ("chat", sent["body"]))

    async def test_msg_is_sent_and_delivered_over_sse(self) -> None:
        """Ports msg_is_sent_and_delivered_over_sse: a message to a user with an open stream arrives as a JSON event."""
        alice, bob = self.users("alice", "bob")
        stream = await self.open_stream(alice)
        sent = await self.send_chat(bob, alice)
        event = await stream.next()
        self.assertEqual(event.name, "message")
        self.assertEqual({k: event.json[k] for k in ("body", "to", "from", "id")}, sent)

    async def test_message_sending_errors(self) -> None:
        """Ports message_sending_errors: no body, no recipient and an invalid recipient are 400s with their strings."""
        alice, bob = self.users("alice", "bob")
        message = {"to": bob[0], "body": f"hello, {bob[0]} it's me"}
        await self.expect("POST", "/api/messages", alice, {"to": bob[0]}, 400, "Missing message body")
        await self.expect("POST", "/api/messages", alice, {"body": message["body"]}, 400, "Missing recipient JID")
        await self.expect("POST", "/api/messages", alice, {**message, "to": "@invalid"}, 400, "Invalid recipient JID")

    async def three_conversations(self) -> tuple[User, User, list[dict[str, str]]]:
        alice, bob, kate = self.users("alice", "bob", "kate")
        sent = [await self.send_chat(bob, alice), await self.send_chat(alice, bob), await self.send_chat(kate, alice)]
        return alice, kate, sent

    async def test_all_messages_are_archived(self) -> None:
        """Ports all_messages_are_archived: GET /messages lists what the user sent and received, oldest first."""
        alice, _, sent = await self.three_conversations()
        reply = await self.expect("GET", "/api/messages", alice, None, 200)
        self.assert_messages(sent, reply.json)

    async def test_messages_with_user_are_archived(self) -> None:
        """Ports messages_with_user_are_archived: GET /messages/{with} lists only the conversation with that contact."""
        alice, kate, sent = await self.three_conversations()
        reply = await self.expect("GET", f"/api/messages/{kate[0]}", alice, None, 200)
        self.assert_messages(sent[2:], reply.json)

    async def test_messages_can_be_paginated(self) -> None:
        """Ports messages_can_be_paginated: limit keeps the latest messages; before keeps only older ones."""
        alice, bob = self.users("alice", "bob")
        # MongooseIM writes A, B, C into the archive on three past days; here the days are
        # seconds apart (the servers' archive stamps have one-second resolution).
        for body in ("A", "B"):
            await self.send_chat(alice, bob, body)
            await self.send_chat(bob, alice, body)
        await sleep(1.1)
        prior_to = now_ms()
        await sleep(1.1)
        for sender, to in ((alice, bob), (bob, alice)):
            await self.send_chat(sender, to, "C")
        path = f"/api/messages/{bob[0]}"
        self.assertEqual(len((await self.expect("GET", path + "?limit=10", alice)).json), 6)
        self.assertEqual(len((await self.expect("GET", path + "?limit=3", alice)).json), 3)
        older = (await self.expect("GET", f"{path}?before={prior_to}&limit=10", alice)).json
        self.assertEqual([m["body"] for m in older], ["A", "A", "B", "B"])
        latest_two = (await self.expect("GET", f"{path}?before={prior_to}&limit=2", alice)).json
        self.assertEqual([m["body"] for m in latest_two], ["B", "B"])

    async def test_message_query_errors(self) -> None:
        """Ports message_query_errors: a bad interlocutor, limit, before or query string is a 400 with its string."""
        alice, bob = self.users("alice", "bob")
        path = f"/api/messages/{bob[0]}"
        await self.expect("GET", "/api/messages/@invalid", alice, None, 400, "Invalid interlocutor JID")
        await self.expect("GET", path + "?limit=x", alice, None, 400, "Invalid limit")
        await self.expect("GET", path + "?before=x", alice, None, 400, "Invalid value of 'before'")
        await self.expect("GET", path + "?kuropatwa", alice, None, 400, "Invalid query string")


class XmppOriginMessagesTests(ConformanceCase):
    """Messages written by an XMPP client (Smack style) and read back over REST."""

    async def exchange(self, build: Any) -> tuple[User, User, domish.Element, domish.Element]:
        """Alice's client sends ``build(to, id)`` to Bob's client; returns both users and both stanzas."""
        alice, bob = self.users("alice", "bob")
        laptop: PlainClient = await self.online(alice)
        phone = await self.online(bob)
        message = build(bob[0], new_id())
        laptop.send(message)
        received = await next_chat(phone)
        await round_trip(laptop)
        return alice, bob, message, received

    async def latest(self, alice: User, bob: User) -> dict[str, Any]:
        reply = await self.expect("GET", f"/api/messages/{bob[0]}?limit=1", alice, None, 200)
        (item,) = reply.json
        return dict(item)

    async def test_msg_with_props_is_sent_and_delivered_over_xmpp(self) -> None:
        """Ports msg_with_props_is_sent_and_delivered_over_xmpp: a message with Smack properties is delivered."""
        _, _, message, received = await self.exchange(with_props)
        self.assertEqual((received["id"], str(received.body)), (message["id"], str(message.body)))

    async def test_msg_with_props_can_be_parsed(self) -> None:
        """Ports msg_with_props_can_be_parsed: the archived message has its id and both properties."""
        alice, bob, message, _ = await self.exchange(with_props)
        item = await self.latest(alice, bob)
        self.assertEqual(item["id"], message["id"])
        self.assertEqual(item["properties"], {"some_string": "abcdefghijklmnopqrstuvwxyz", "some_number": "1234567890"})

    async def test_msg_with_malformed_props_is_sent_and_delivered_over_xmpp(self) -> None:
        """Ports msg_with_malformed_props_is_sent_and_delivered_over_xmpp: non-Smack properties still deliver."""
        _, _, message, received = await self.exchange(with_malformed_props)
        self.assertEqual(received["id"], message["id"])

    async def test_msg_with_malformed_props_can_be_parsed(self) -> None:
        """Ports msg_with_malformed_props_can_be_parsed: the archive returns such a message, with its id."""
        alice, bob, message, _ = await self.exchange(with_malformed_props)
        item = await self.latest(alice, bob)
        self.assertEqual((item["id"], item["body"]), (message["id"], "Test message with malformed properties"))

    async def test_msg_with_thread_is_sent_and_delivered_over_xmpp(self) -> None:
        """Ports msg_with_thread_is_sent_and_delivered_over_xmpp: a message with a thread is delivered."""
        thread = new_id()
        _, _, _, received = await self.exchange(lambda to, sid: with_thread(to, sid, thread))
        self.assertEqual(str(received.thread), thread)

    async def test_msg_with_thread_can_be_parsed(self) -> None:
        """Ports msg_with_thread_can_be_parsed: the archived message has its id and thread."""
        thread = new_id()
        alice, bob, message, _ = await self.exchange(lambda to, sid: with_thread(to, sid, thread))
        item = await self.latest(alice, bob)
        self.assertEqual((item["id"], item["thread"]), (message["id"], thread))
        self.assertNotIn("parent", item)

    async def test_msg_with_thread_and_parent_is_sent_and_delivered_over_xmpp(self) -> None:
        """Ports msg_with_thread_and_parent_is_sent_and_delivered_over_xmpp: thread and parent are delivered."""
        thread, parent = new_id(), new_id()
        _, _, _, received = await self.exchange(lambda to, sid: with_thread(to, sid, thread, parent))
        self.assertEqual((str(received.thread), received.thread["parent"]), (thread, parent))

    async def test_msg_with_thread_and_parent_can_be_parsed(self) -> None:
        """Ports msg_with_thread_and_parent_can_be_parsed: the archived message has its id, thread and parent."""
        thread, parent = new_id(), new_id()
        alice, bob, message, _ = await self.exchange(lambda to, sid: with_thread(to, sid, thread, parent))
        item = await self.latest(alice, bob)
        self.assertEqual((item["id"], item["thread"], item["parent"]), (message["id"], thread, parent))

    async def test_msg_without_thread_is_sent_and_delivered_over_xmpp(self) -> None:
        """Ports msg_without_thread_is_sent_and_delivered_over_xmpp: a plain message is delivered."""
        _, _, message, received = await self.exchange(lambda to, sid: with_thread(to, sid, None))
        self.assertEqual((received["id"], received.thread), (message["id"], None))

    async def test_msg_without_thread_can_be_parsed(self) -> None:
        """Ports msg_without_thread_can_be_parsed: the archive returns it with its id and no thread."""
        alice, bob, message, _ = await self.exchange(lambda to, sid: with_thread(to, sid, None))
        item = await self.latest(alice, bob)
        self.assertEqual(item["id"], message["id"])
        self.assertNotIn("thread", item)


class MicrosecondEventsTests(ConformanceCase):
    bridge_sections = {"sse": {"timestamp_unit": "us"}}

    async def test_msg_is_sent_and_delivered_over_sse_with_microsecond_timestamps(self) -> None:
        """Ports msg_is_sent_and_delivered_over_sse with MongooseIM's SSE timestamps, which are microseconds."""
        alice, bob = self.users("alice", "bob")
        stream = await self.open_stream(alice)
        sent = await self.send_chat(bob, alice)
        event = await stream.next()
        self.assertEqual({k: event.json[k] for k in ("body", "to", "from", "id")}, sent)
        self.assertLess(abs(event.json["timestamp"] - time.time() * 1_000_000), 60 * 1_000_000)
