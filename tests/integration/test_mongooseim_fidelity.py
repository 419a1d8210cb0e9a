"""The bridge behaves as MongooseIM's client REST API and mod_muc_light did (issue #12),
checked against the run's real server: the cases of MongooseIM's rest_client_SUITE and
muc_light_SUITE that the bridge used to answer differently."""

from __future__ import annotations

import time
from typing import Any

from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.xish import domish

from tests.integration.test_rooms import NS_AFFILIATIONS, RoomsTestCase, next_groupchat, notice_users, round_trip
from tests.integration.test_sse import SseTestCase
from tests.servers.xmpp_client import PlainClient

NS_MUCLIGHT = "urn:xmpp:muclight:0"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_RSM = "http://jabber.org/protocol/rsm"


def affiliations(*items: tuple[str, str]) -> domish.Element:
    query = domish.Element((NS_AFFILIATIONS, "query"))
    for jid, affiliation in items:
        query.addElement("user", content=jid)["affiliation"] = affiliation
    return query


class FidelityTestCase(RoomsTestCase, SseTestCase):
    timeout = 90

    async def online(self, user: tuple[str, str]) -> PlainClient:
        """A plain client, available, that told the service its full JID (directed presence)."""
        client = await self.client(user)
        client.available()
        presence = domish.Element((None, "presence"))
        presence["to"] = self.server.component
        client.send(presence)
        await round_trip(client)
        return client

    async def three_member_room(self) -> tuple[str, dict[str, tuple[str, str]], dict[str, PlainClient]]:
        """The suites' default room: alice owns it, bob and kate are members, all online."""
        users = {name: self.new_user(name) for name in ("alice", "bob", "kate")}
        clients = {name: await self.online(user) for name, user in users.items()}
        room_id = await self.room(users["alice"], users["bob"], users["kate"])
        kate = users["kate"][0]
        for client in clients.values():
            # Every occupant's last set-up notice announces kate; what follows is the test's.
            while kate not in notice_users(await next_groupchat(client)):
                pass
        return room_id, users, clients


class SseAndArchiveTests(FidelityTestCase):
    async def test_room_events_carry_the_bare_room_id(self) -> None:
        """`room.message` events name the room by its bare id, `from` by JID (room_msg/aff_change over SSE)."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        room_id = await self.room(alice)
        reader = await self.open_stream(bob)
        await self.expect("POST", f"/api/rooms/{room_id}/users", alice, {"user": bob[0]}, 204)
        joined = await reader.next()
        self.assertEqual(joined.name, "room.message")
        self.assertEqual(
            {k: joined.json[k] for k in ("room", "from", "type", "user")},
            {"room": room_id, "from": self.room_jid(room_id), "type": "affiliation", "user": bob[0]},
        )
        sent = await self.expect("POST", f"/api/rooms/{room_id}/messages", alice, {"body": "Hi all!"}, 200)
        message = await reader.next()
        self.assertEqual(
            {k: message.json[k] for k in ("room", "from", "type", "body", "id")},
            {"room": room_id, "from": alice[0], "type": "message", "body": "Hi all!", "id": sent.json["id"]},
        )

    async def test_archive_holds_what_mongooseim_archived(self) -> None:
        """After create, add bob and two messages the archive is [affiliation(bob, member), message, message]."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        room_id = await self.room(alice, bob)
        for sender in (alice, bob):
            await self.expect("POST", f"/api/rooms/{room_id}/messages", sender, {"body": "Hi all!"}, 200)
        history = (await self.expect("GET", f"/api/rooms/{room_id}/messages", alice, None, 200)).json
        self.assertEqual([item["type"] for item in history], ["affiliation", "message", "message"])
        self.assertEqual((history[0]["user"], history[0]["affiliation"]), (bob[0], "member"))
        self.assertEqual([item["from"] for item in history[1:]], [alice[0], bob[0]])
        only_created = await self.room(alice)
        await self.expect("GET", f"/api/rooms/{only_created}/messages", alice, None, 200, [])

    async def test_non_json_room_message_is_invalid_request_body(self) -> None:
        """A room message body that is not a JSON object is 400 "Invalid request body" (JSON Content-Type)."""
        alice = self.new_user("alice")
        room_id = await self.room(alice)
        path = f"/api/rooms/{room_id}/messages"
        json_type = {"Content-Type": "application/json"}
        for raw in (b'"This is not JSON object"', b"This is not JSON", b"[1, 2]"):
            reply = await self.call("POST", path, alice, raw=raw, headers=json_type)
            self.assertEqual((reply.code, reply.json), (400, "Invalid request body"), raw)
        await self.expect("GET", path, alice, None, 200, [])


class OwnerHandOverTests(FidelityTestCase):
    async def test_owner_leaving_promotes_a_member_in_the_same_notice(self) -> None:
        """The owner leaving over REST makes bob owner in the notice of her leaving (auto_select_owner)."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        room_id = await self.room(alice, bob)
        phone = await self.online(bob)
        await self.expect("DELETE", f"/api/rooms/{room_id}/users/{alice[0]}", alice, None, 204)
        notice = await next_groupchat(phone)
        self.assertEqual(notice_users(notice), {alice[0]: "none", bob[0]: "owner"})
        info = (await self.expect("GET", f"/api/rooms/{room_id}", bob, None, 200)).json
        self.assertEqual(info["participants"], [{"user": bob[0], "role": "owner"}])

    async def test_implicit_owner_change(self) -> None:
        """The owner stepping down while removing bob makes kate owner, announced in one notice."""
        room_id, users, clients = await self.three_member_room()
        alice, bob, kate = users["alice"][0], users["bob"][0], users["kate"][0]
        await clients["alice"].iq("set", affiliations((bob, "none"), (alice, "member")), to=self.room_jid(room_id))
        expected = {kate: "owner", bob: "none", alice: "member"}
        for name in ("alice", "kate"):
            self.assertEqual(notice_users(await next_groupchat(clients[name])), expected, name)
        self.assertEqual(notice_users(await next_groupchat(clients["bob"])), {bob: "none"})
        info = (await self.expect("GET", f"/api/rooms/{room_id}", users["kate"], None, 200)).json
        roles = {p["user"]: p["role"] for p in info["participants"]}
        self.assertEqual(roles, {kate: "owner", alice: "member"})

    async def test_edge_case_owner_change(self) -> None:
        """The owner demoting herself and removing everyone else stays owner; the notice lists only removals."""
        room_id, users, clients = await self.three_member_room()
        alice, bob, kate = users["alice"][0], users["bob"][0], users["kate"][0]
        change = affiliations((alice, "member"), (bob, "none"), (kate, "none"))
        await clients["alice"].iq("set", change, to=self.room_jid(room_id))
        self.assertEqual(notice_users(await next_groupchat(clients["alice"])), {bob: "none", kate: "none"})
        info = (await self.expect("GET", f"/api/rooms/{room_id}", users["alice"], None, 200)).json
        self.assertEqual(info["participants"], [{"user": alice, "role": "owner"}])


class MaxOccupantsTests(FidelityTestCase):
    bridge_sections = {"muclight": {"max_occupants": 2}}

    async def test_exceeding_max_occupants_is_bad_request(self) -> None:
        """Past max_occupants creating is modify/bad-request over XMPP and adding is REST 400."""
        alice, bob, kate = self.new_user("alice"), self.new_user("bob"), self.new_user("kate")
        phone = await self.online(alice)
        create = domish.Element((NS_MUCLIGHT + "#create", "query"))
        occupants = create.addElement("occupants")
        for user in (bob, kate):
            occupants.addElement("user", content=user[0])["affiliation"] = "member"
        try:
            await phone.iq("set", create, to=self.server.component)
        except StanzaError as e:
            self.assertEqual((e.type, e.condition), ("modify", "bad-request"))
        else:
            self.fail("a room past max_occupants was created")
        room_id = await self.room(alice, bob)
        reply = await self.call("POST", f"/api/rooms/{room_id}/users", alice, {"user": kate[0]})
        self.assertEqual((reply.code, reply.json), (400, "Max occupants number reached"))
        info = (await self.expect("GET", f"/api/rooms/{room_id}", alice, None, 200)).json
        self.assertEqual(len(info["participants"]), 2)


class ServiceDiscoTests(FidelityTestCase):
    async def test_service_disco_info_lists_the_mam_namespaces_rooms_serve(self) -> None:
        """disco#info of the service lists urn:xmpp:mam:1 and :2, and a room answers a MAM query in each."""
        alice = self.new_user("alice")
        room_id = await self.room(alice)
        await self.expect("POST", f"/api/rooms/{room_id}/messages", alice, {"body": "archived"}, 200)
        phone = await self.online(alice)
        info = await phone.iq("get", domish.Element((NS_DISCO_INFO, "query")), to=self.server.component)
        features = {f["var"] for f in info.query.elements(NS_DISCO_INFO, "feature")}
        self.assertTrue({NS_MUCLIGHT, "urn:xmpp:mam:1", "urn:xmpp:mam:2"} <= features, features)
        for ns in ("urn:xmpp:mam:1", "urn:xmpp:mam:2"):
            query = domish.Element((ns, "query"))
            query["queryid"] = "q-" + ns[-1]
            result = await phone.iq("set", query, to=self.room_jid(room_id))
            self.assertIsNotNone(next(result.elements(ns, "fin"), None), ns)

    async def disco_items(self, client: PlainClient, **rsm: str) -> tuple[list[str], dict[str, str]]:
        query = domish.Element((NS_DISCO_ITEMS, "query"))
        if rsm:
            page = query.addElement((NS_RSM, "set"))
            for name, value in rsm.items():
                page.addElement(name, content=value)
        result = await client.iq("get", query, to=self.server.component)
        jids = [item["jid"] for item in result.query.elements(NS_DISCO_ITEMS, "item")]
        found = next(result.query.elements(NS_RSM, "set"), None)
        return jids, {} if found is None else {e.name: str(e) for e in found.elements()}

    async def test_disco_items_honours_rsm(self) -> None:
        """disco#items of the service pages the user's rooms with max and after, with count (XEP-0059)."""
        alice = self.new_user("alice")
        rooms = sorted([self.room_jid(await self.room(alice)) for _ in range(3)])
        phone = await self.online(alice)
        self.assertEqual(await self.disco_items(phone), (rooms, {}))
        first, page = await self.disco_items(phone, max="2")
        self.assertEqual((first, page["count"], page["last"]), (rooms[:2], "3", rooms[1]))
        rest, page = await self.disco_items(phone, max="2", after=page["last"])
        self.assertEqual((rest, page["count"]), (rooms[2:], "3"))
        try:
            await self.disco_items(phone, max="10", after=f"oops@{self.server.component}")
        except StanzaError as e:
            self.assertEqual(e.condition, "item-not-found")
        else:
            self.fail("an unknown RSM after was accepted")


class MicrosecondTests(FidelityTestCase):
    bridge_sections = {"sse": {"timestamp_unit": "us"}}

    async def test_event_timestamps_in_microseconds_archive_in_milliseconds(self) -> None:
        """With sse.timestamp_unit = "us" events are stamped in microseconds; the archive stays in ms."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        room_id = await self.room(alice, bob)
        reader = await self.open_stream(bob)
        before_us = time.time() * 1_000_000
        await self.expect("POST", f"/api/rooms/{room_id}/messages", alice, {"body": "when?"}, 200)
        event = await reader.next()
        stamp: Any = event.json["timestamp"]
        self.assertIsInstance(stamp, int)
        self.assertLess(abs(stamp - before_us), 60_000_000, stamp)
        history = (await self.expect("GET", f"/api/rooms/{room_id}/messages", bob, None, 200)).json
        self.assertLess(abs(history[-1]["timestamp"] - before_us / 1000), 60_000, history[-1])


class MissingAccountTests(FidelityTestCase):
    """Why ``POST /api/contacts`` for a missing local account is not 404 as on MongooseIM,
    which asked its own user database: no side-effect-free stanza tells a missing account
    from an existing one that does not share presence with the asker, on either server."""

    async def answer(self, client: PlainClient, to: str, payload: domish.Element) -> str:
        try:
            await client.iq("get", payload, to=to)
        except StanzaError as e:
            return f"{e.type}/{e.condition}"
        return "result"

    async def test_probes_answer_alike_for_missing_and_existing_accounts(self) -> None:
        """disco#info/#items, ping and vCard to a bare JID answer the same whether the account exists."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        phone = await self.client(alice)
        missing = f"zorro-{time.time_ns()}@{self.server.domain}"
        for ns, name in (
            (NS_DISCO_INFO, "query"),
            (NS_DISCO_ITEMS, "query"),
            ("urn:xmpp:ping", "ping"),
            ("vcard-temp", "vCard"),
        ):
            existing = await self.answer(phone, bob[0], domish.Element((ns, name)))
            absent = await self.answer(phone, missing, domish.Element((ns, name)))
            self.assertEqual(existing, absent, ns)
        # So the bridge cannot answer 404 as MongooseIM did: the contact is added.
        await self.expect("POST", "/api/contacts", alice, {"jid": missing}, 204)
