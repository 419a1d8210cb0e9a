"""The MUC Light component driven by ordinary XMPP clients with raw MUC Light stanzas, on
a real Prosody: with XEP-0356 privileges (the shared server), with directed presence only
(a second server without privileges), and across a Prosody restart."""

from __future__ import annotations

import atexit
import secrets
from typing import Any

from twisted.internet import reactor, task, threads
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.xish import domish

from bridge.muclight.component import ComponentConnection
from tests.integration.base import BridgeTestCase
from tests.integration.test_rooms import RoomsTestCase, next_groupchat, notice_users, round_trip
from tests.servers.fixture import new_user, start_bridge, xmpp_client
from tests.servers.prosody import ProsodyServer
from tests.servers.xmpp_client import PlainClient

NS = "urn:xmpp:muclight:0"
NS_MAM = "urn:xmpp:mam:2"
NS_RSM = "http://jabber.org/protocol/rsm"


def query(ns: str, *children: tuple[str, str | None, dict[str, str]]) -> domish.Element:
    element = domish.Element((ns, "query"))
    for name, text, attributes in children:
        added = element.addElement(name, content=text)
        for key, value in attributes.items():
            added[key] = value
    return element


def groupchat(to: str, body: str) -> domish.Element:
    message = domish.Element((None, "message"))
    message["to"], message["type"], message["id"] = to, "groupchat", secrets.token_hex(6)
    message.addElement("body", content=body)
    return message


async def condition_of(deferred: Any) -> str:
    try:
        await deferred
    except StanzaError as e:
        return str(e.condition)
    raise AssertionError("expected a stanza error")


class RawStanzaTests(RoomsTestCase):
    async def create(self, client: PlainClient, *members: str) -> tuple[str, domish.Element]:
        create = domish.Element((NS + "#create", "query"))
        create.addElement("configuration").addElement("roomname", content="Raw room")
        occupants = create.addElement("occupants")
        for member in members:
            occupants.addElement("user", content=member)["affiliation"] = "member"
        result = await client.iq("set", create, to=self.server.component)
        return result["from"], result

    async def test_plain_client_drives_the_room(self) -> None:
        """A plain client creates a room, reads it with versions, lists it, chats and is echoed with a stanza-id."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        phone = await self.online(alice)
        tablet = await self.online(bob)
        room_jid, _ = await self.create(phone, bob[0])
        self.assertTrue(room_jid.endswith("@" + self.server.component))
        for client, user, affiliation in ((phone, alice, "owner"), (tablet, bob, "member")):
            created = await next_groupchat(client)
            self.assertEqual((created["from"], notice_users(created)), (room_jid, {user[0]: affiliation}))
        info = await phone.iq("get", query(NS + "#info", ("version", "", {})), to=room_jid)
        version = str(next(info.query.elements(NS + "#info", "version")))
        self.assertEqual(str(next(info.query.configuration.elements())), "Raw room")
        occupants = {str(u): u["affiliation"] for u in info.query.occupants.elements()}
        self.assertEqual(occupants, {alice[0]: "owner", bob[0]: "member"})
        same = await phone.iq("get", query(NS + "#info", ("version", version, {})), to=room_jid)
        self.assertIsNone(same.query)
        items = await tablet.iq(
            "get", domish.Element(("http://jabber.org/protocol/disco#items", "query")), to=self.server.component
        )
        listed = [(i["jid"], i["name"], i["version"]) for i in items.query.elements()]
        self.assertEqual(listed, [(room_jid, "Raw room", version)])

        phone.send(groupchat(room_jid, "hello <room>"))
        for client in (phone, tablet):
            echoed = await next_groupchat(client)
            self.assertEqual((echoed["from"], str(echoed.body)), (f"{room_jid}/{alice[0]}", "hello <room>"))
            stanza_id = next(echoed.elements("urn:xmpp:sid:0", "stanza-id"))
            self.assertEqual(stanza_id["by"], room_jid)

        change = query(NS + "#configuration", ("subject", "To be or not", {}))
        await tablet.iq("set", change, to=room_jid)
        for client in (phone, tablet):
            notice = await next_groupchat(client)
            x = next(notice.elements(NS + "#configuration", "x"))
            self.assertEqual(str(next(x.elements(NS + "#configuration", "subject"))), "To be or not")

    async def test_non_occupants_get_item_not_found(self) -> None:
        """IQs and groupchat messages from someone outside the room get item-not-found."""
        alice, eve = self.new_user("alice"), self.new_user("eve")
        phone = await self.online(alice)
        room_jid, _ = await self.create(phone)
        intruder = await self.online(eve)
        self.assertEqual(await condition_of(intruder.iq("get", query(NS + "#info"), to=room_jid)), "item-not-found")
        self.assertEqual(await condition_of(intruder.iq("set", query(NS_MAM), to=room_jid)), "item-not-found")
        self.assertEqual(
            await condition_of(intruder.iq("get", query(NS + "#info"), to="nothere@" + self.server.component)),
            "item-not-found",
        )
        intruder.send(groupchat(room_jid, "let me in"))
        bounced = await intruder.inbox.get().addTimeout(10, reactor)
        while bounced.getAttribute("type") != "error":
            bounced = await intruder.inbox.get().addTimeout(10, reactor)
        self.assertEqual(bounced.error.firstChildElement().name, "item-not-found")
        affs = query(NS + "#affiliations", ("user", eve[0], {"affiliation": "member"}))
        self.assertEqual(await condition_of(intruder.iq("set", affs, to=room_jid)), "item-not-found")
        chat = domish.Element((None, "message"))
        chat["to"], chat["type"] = room_jid, "chat"
        chat.addElement("body", content="not groupchat")
        phone.send(chat)
        refused = await phone.inbox.get().addTimeout(10, reactor)
        while refused.getAttribute("type") != "error":
            refused = await phone.inbox.get().addTimeout(10, reactor)
        self.assertEqual(refused.error.firstChildElement().name, "bad-request")

    async def test_member_rules_blocking_and_destroy(self) -> None:
        """Members may not promote, blocked users are skipped, the owner hands over and destroys."""
        alice, bob, carol = self.new_user("alice"), self.new_user("bob"), self.new_user("carol")
        phone, tablet, laptop = await self.online(alice), await self.online(bob), await self.online(carol)
        block = query(NS + "#blocking", ("user", alice[0], {"action": "deny"}))
        await laptop.iq("set", block, to=self.server.component)
        listed = await laptop.iq("get", query(NS + "#blocking"), to=self.server.component)
        self.assertEqual([(e.name, str(e), e["action"]) for e in listed.query.elements()], [("user", alice[0], "deny")])
        room_jid, _ = await self.create(phone, bob[0], carol[0])
        info = await phone.iq("get", query(NS + "#affiliations"), to=room_jid)
        self.assertEqual({str(u) for u in info.query.elements(NS + "#affiliations", "user")}, {alice[0], bob[0]})
        promote = query(NS + "#affiliations", ("user", bob[0], {"affiliation": "owner"}))
        self.assertEqual(await condition_of(tablet.iq("set", promote, to=room_jid)), "not-allowed")
        bad = query(NS + "#affiliations", ("user", "not a jid@@", {"affiliation": "member"}))
        self.assertEqual(await condition_of(phone.iq("set", bad, to=room_jid)), "bad-request")
        self.assertEqual(await condition_of(tablet.iq("set", query(NS + "#destroy"), to=room_jid)), "not-allowed")
        await phone.iq("set", promote, to=room_jid)
        self.assertEqual(await condition_of(phone.iq("set", query(NS + "#destroy"), to=room_jid)), "not-allowed")
        await tablet.iq("set", query(NS + "#destroy"), to=room_jid)
        seen = [await next_groupchat(tablet) for _ in range(3)]  # created, owner change, destroyed
        self.assertEqual(notice_users(seen[1]), {bob[0]: "owner", alice[0]: "member"})
        self.assertIsNotNone(next(seen[2].elements(NS + "#destroy", "x"), None))
        self.assertEqual(await condition_of(tablet.iq("get", query(NS + "#info"), to=room_jid)), "item-not-found")

    async def test_room_mam_with_rsm_paging(self) -> None:
        """The room JID answers MAM queries page by page (RSM before/after), oldest first."""
        alice = self.new_user("alice")
        phone = await self.online(alice)
        room_jid, _ = await self.create(phone)
        for body in ("one", "two", "three"):
            phone.send(groupchat(room_jid, body))
        await phone.iq("get", query(NS + "#configuration"), to=room_jid)
        phone.inbox.pending.clear()

        async def page(rsm: dict[str, str | None]) -> tuple[list[str], domish.Element]:
            mam = domish.Element((NS_MAM, "query"))
            mam["queryid"] = "q1"
            rsm_element = mam.addElement((NS_RSM, "set"))
            for name, value in rsm.items():
                rsm_element.addElement(name, content=value)
            result = await phone.iq("set", mam, to=room_jid)
            bodies = []
            while phone.inbox.pending:
                message = phone.inbox.pending.pop(0)
                forwarded = message.result.forwarded
                inner = next(e for e in forwarded.elements() if e.name == "message")
                bodies.append(str(inner.body) if inner.body else "notice")
            return bodies, next(result.elements(NS_MAM, "fin"))

        last_two, fin = await page({"max": "2", "before": None})
        self.assertEqual((last_two, fin["complete"]), (["two", "three"], "false"))
        first = str(next(next(fin.elements(NS_RSM, "set")).elements(NS_RSM, "first")))
        earlier, fin = await page({"max": "2", "before": first})
        # Creating the room is not archived (as MongooseIM's MUC Light): the archive starts at "one".
        self.assertEqual((earlier, fin["complete"]), (["one"], "true"))
        everything, _ = await page({"max": "10"})
        self.assertEqual(everything, ["one", "two", "three"])


# -- a second Prosody without XEP-0356 privileges: delivery needs directed presence

_plain: ProsodyServer | None = None


def server_without_privileges() -> ProsodyServer:
    global _plain
    if _plain is None:
        _plain = ProsodyServer(privileges=False)
        _plain.start()
        atexit.register(_plain.cleanup)
    return _plain


class DedicatedServerTestCase(BridgeTestCase):
    """A bridge in front of a Prosody of this module's own."""

    def dedicated(self) -> ProsodyServer:
        raise NotImplementedError

    async def _start(self) -> None:
        self.own = own = self.dedicated()
        self.bridge = await start_bridge(
            reactor,
            self.mktemp(),
            self.addCleanup,
            xmpp={"port": own.c2s_port, "ca_file": str(own.ca_file)},
            muclight={"port": own.component_port, "secret": own.component_secret},
        )
        component = self.bridge.parts.component
        assert component is not None
        await component.connected.addTimeout(20, reactor)

    def new_user(self, prefix: str = "user") -> tuple[str, str]:
        return new_user(prefix, self.own)

    async def client(self, user: tuple[str, str], resource: str = "phone") -> PlainClient:
        return await xmpp_client(reactor, user[0], user[1], self.addCleanup, resource, self.own)

    async def call_ok(self, method: str, path: str, user: Any, body: Any = None, code: int = 200) -> Any:
        reply = await self.call(method, path, user, body)
        self.assertEqual(reply.code, code, reply)
        return reply.json


class DirectedPresenceTests(DedicatedServerTestCase):
    def dedicated(self) -> ProsodyServer:
        return server_without_privileges()

    async def test_delivery_follows_directed_presence(self) -> None:
        """Without privileges only clients that sent presence to the service get room messages."""
        alice, bob, carol = self.new_user("alice"), self.new_user("bob"), self.new_user("carol")
        room_id = (await self.call_ok("POST", "/api/rooms", alice, {"name": "n", "subject": "s"}, 201))["id"]
        for member in (bob, carol):
            await self.call_ok("POST", f"/api/rooms/{room_id}/users", alice, {"user": member[0]}, 204)
        directed, broadcast_only = await self.client(bob), await self.client(carol)
        broadcast_only.available()
        directed.available()
        presence = domish.Element((None, "presence"))
        presence["to"] = self.own.component
        directed.send(presence)
        for client in (directed, broadcast_only):
            await round_trip(client)
        sent = await self.call_ok("POST", f"/api/rooms/{room_id}/messages", alice, {"body": "directed"})
        received = await next_groupchat(directed)
        self.assertEqual((received["id"], str(received.body)), (sent["id"], "directed"))
        await task.deferLater(reactor, 1.0, lambda: None)
        self.assertEqual([m for m in broadcast_only.inbox.pending if m.getAttribute("type") == "groupchat"], [])
        history = await self.call_ok("GET", f"/api/rooms/{room_id}/messages", carol)
        self.assertEqual(history[-1]["body"], "directed")
        # Going offline sends the service unavailable presence: nothing is sent to the gone resource.
        await directed.close()
        await self.call_ok("POST", f"/api/rooms/{room_id}/messages", alice, {"body": "after"})
        component = self.bridge.parts.component
        service = next(iter(component))  # type: ignore[call-overload]
        self.assertEqual(service.available.resources(bob[0]), [])


# -- a Prosody this module restarts

_restarted: ProsodyServer | None = None


def server_to_restart() -> ProsodyServer:
    global _restarted
    if _restarted is None:
        _restarted = ProsodyServer()
        _restarted.start()
        atexit.register(_restarted.cleanup)
    return _restarted


class RestartTests(DedicatedServerTestCase):
    timeout = 120

    def dedicated(self) -> ProsodyServer:
        return server_to_restart()

    async def test_rooms_and_archive_survive_a_server_restart(self) -> None:
        """After Prosody restarts the component reconnects within 20 s with rooms and archive intact."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        room_id = (await self.call_ok("POST", "/api/rooms", alice, {"name": "kept", "subject": "s"}, 201))["id"]
        await self.call_ok("POST", f"/api/rooms/{room_id}/users", alice, {"user": bob[0]}, 204)
        sent = await self.call_ok("POST", f"/api/rooms/{room_id}/messages", alice, {"body": "before restart"})
        await threads.deferToThread(self.own.restart)
        restarted = reactor.seconds()
        while True:
            reply = await self.call("GET", f"/api/rooms/{room_id}", bob)
            if reply.code == 200:
                break
            self.assertLess(reactor.seconds() - restarted, 20, reply)
            await task.deferLater(reactor, 0.5, lambda: None)
        self.assertEqual(reply.json["name"], "kept")
        history = await self.call_ok("GET", f"/api/rooms/{room_id}/messages", bob)
        self.assertEqual(history[-1]["id"], sent["id"])
        await self.call_ok("POST", f"/api/rooms/{room_id}/messages", bob, {"body": "after restart"})


class HandshakeTests(unittest.TestCase):
    timeout = 30

    async def test_wrong_secret_is_logged_without_the_secret(self) -> None:
        """A refused handshake is logged with its reason (not-authorized) and never with the secret."""
        server = server_without_privileges()
        secret = "wrong-" + secrets.token_hex(8)
        events: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            events.append(formatEvent(event) or "")

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        connection = ComponentConnection(reactor, "127.0.0.1", server.component_port, server.component, secret)
        connection.startService()
        self.addCleanup(connection.stopService)
        for _ in range(100):
            if any("not-authorized" in event for event in events):
                break
            await task.deferLater(reactor, 0.1, lambda: None)
        refused = [event for event in events if "not-authorized" in event]
        self.assertTrue(refused, events)
        self.assertIn("secret does not match", refused[0])
        self.assertFalse([event for event in events if secret in event])
