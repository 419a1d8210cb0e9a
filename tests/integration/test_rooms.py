"""MUC Light rooms through /api/rooms and the bridge's own component, on a real Prosody
(the harness server grants the component XEP-0356 presence privileges)."""

from __future__ import annotations

import time
from typing import Any

from twisted.internet import reactor, task
from twisted.words.xish import domish

from tests.integration.base import BridgeTestCase, Reply
from tests.servers.prosody import ProsodyServer
from tests.servers.xmpp_client import PlainClient

NS_AFFILIATIONS = "urn:xmpp:muclight:0#affiliations"


async def round_trip(client: PlainClient) -> None:
    """Once the server answers a ping, it has handled (and routed) what the client sent before."""
    await client.iq("get", domish.Element(("urn:xmpp:ping", "ping")), to=client.jid.host)


async def next_groupchat(client: PlainClient, timeout: float = 10.0) -> domish.Element:
    while True:
        message = await client.inbox.get().addTimeout(timeout, reactor)
        if message.getAttribute("type") == "groupchat":
            return message


def notice_users(message: domish.Element) -> dict[str, str]:
    notice = next(message.elements(NS_AFFILIATIONS, "x"))
    return {str(user): user["affiliation"] for user in notice.elements(NS_AFFILIATIONS, "user")}


class RoomsTestCase(BridgeTestCase):
    """A bridge whose MUC Light component is connected before each test starts."""

    async def _start(self) -> None:
        await super()._start()
        await self.component_ready()

    async def component_ready(self) -> None:
        component = self.bridge.parts.component
        assert component is not None
        await component.connected.addTimeout(20, reactor)

    async def room(self, owner: tuple[str, str], *members: tuple[str, str], name: str = "Room") -> str:
        reply = await self.call("POST", "/api/rooms", owner, {"name": name, "subject": "Subject"})
        self.assertEqual(reply.code, 201, reply)
        room_id: str = reply.json["id"]
        for member in members:
            await self.expect("POST", f"/api/rooms/{room_id}/users", owner, {"user": member[0]}, 204)
        return room_id

    async def expect(
        self, method: str, path: str, user: Any, body: Any, code: int, text: Any = None, raw: bytes | None = None
    ) -> Reply:
        reply = await self.call(method, path, user, body, raw=raw)
        self.assertEqual(reply.code, code, (method, path, reply))
        if text is not None:
            self.assertEqual(reply.json, text, (method, path))
        return reply

    async def online(self, user: tuple[str, str]) -> PlainClient:
        """A plain client, available, whose presence the component has seen."""
        client = await self.client(user)
        client.available()
        await round_trip(client)
        return client

    def room_jid(self, room_id: str) -> str:
        return f"{room_id}@{self.server.component}"


class CreateTests(RoomsTestCase):
    async def test_create_with_generated_id(self) -> None:
        """POST /rooms creates a room with a fresh id, the creator as owner, the given name and subject."""
        alice = self.new_user("alice")
        room_id = await self.room(alice, name='Tea <&> "x"')
        info = await self.expect("GET", f"/api/rooms/{room_id}", alice, None, 200)
        self.assertEqual(
            info.json,
            {"name": 'Tea <&> "x"', "subject": "Subject", "participants": [{"user": alice[0], "role": "owner"}]},
        )
        other = await self.room(alice)
        self.assertNotEqual(other, room_id)

    async def test_create_with_given_id_and_conflict(self) -> None:
        """PUT /rooms/{id} creates that room (by id or room JID), and answers 403 when it exists."""
        alice = self.new_user("alice")
        body = {"name": "My Room", "subject": "My Secrets"}
        room_id = f"given-{int(time.time() * 1000)}"
        await self.expect("PUT", f"/api/rooms/{room_id}", alice, body, 201, {"id": room_id})
        await self.expect("PUT", f"/api/rooms/{room_id}", alice, body, 403, "Room already exists")
        by_jid = room_id + "-jid"
        await self.expect("PUT", f"/api/rooms/{self.room_jid(by_jid)}", alice, body, 201, {"id": by_jid})
        await self.expect("GET", f"/api/rooms/{self.room_jid(by_jid)}", alice, None, 200)

    async def test_creation_errors(self) -> None:
        """Creation refuses a missing id, an invalid id, a foreign domain and missing or wrong-typed fields."""
        alice = self.new_user("alice")
        body = {"name": "My Room", "subject": "My Secrets"}
        await self.expect("PUT", "/api/rooms", alice, body, 400, "Missing room ID")
        await self.expect("PUT", "/api/rooms/@invalid", alice, body, 400, "Invalid room ID")
        await self.expect("PUT", "/api/rooms/x@muclight.wrongdomain", alice, body, 400, "Invalid MUC Light domain")
        await self.expect("PUT", "/api/rooms/a%01b", alice, body, 400, "Invalid room ID")
        await self.expect("PUT", "/api/rooms/ok1", alice, {"subject": "s"}, 400, "Missing room name")
        await self.expect("PUT", "/api/rooms/ok1", alice, {"name": "n"}, 400, "Missing room subject")
        await self.expect("POST", "/api/rooms", alice, {"subject": "s"}, 400, "Missing room name")
        await self.expect("POST", "/api/rooms", alice, {"name": "n"}, 400, "Missing room subject")
        reply = await self.expect("POST", "/api/rooms", alice, {"name": 5, "subject": "s"}, 400)
        self.assertTrue(reply.json.startswith("Validation failed for key: roomname"), reply)
        reply = await self.expect("POST", "/api/rooms", alice, {"name": "n", "subject": "a\x00b"}, 400)
        self.assertTrue(reply.json.startswith("Validation failed for key: subject"), reply)
        await self.expect("POST", "/api/rooms", alice, None, 400, raw=b"[1, 2]")
        await self.expect("POST", "/api/rooms", alice, None, 400, raw=b"{not json")
        await self.expect("PUT", "/api/rooms/" + "x" * 2000, alice, body, 400, "Invalid room ID")
        await self.expect("POST", "/api/rooms", None, body, 401)

    async def test_list_rooms(self) -> None:
        """GET /rooms lists the rooms the user is in, with id, name and subject, for every occupant."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        await self.expect("GET", "/api/rooms", alice, None, 200, [])
        room_id = await self.room(alice, bob, name="Listed")
        expected = [{"id": room_id, "name": "Listed", "subject": "Subject"}]
        await self.expect("GET", "/api/rooms", alice, None, 200, expected)
        await self.expect("GET", "/api/rooms", bob, None, 200, expected)


class InfoAndConfigTests(RoomsTestCase):
    async def test_info_errors(self) -> None:
        """Reading a room that does not exist is 404; reading one the user is not in is 403."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        room_id = await self.room(alice)
        await self.expect("GET", "/api/rooms/badroom", bob, None, 404, "Room not found")
        await self.expect("GET", f"/api/rooms/{room_id}", bob, None, 403)
        await self.expect("GET", "/api/rooms/@bad", bob, None, 400, "Invalid room ID")

    async def test_config_by_owner_member_and_non_member(self) -> None:
        """The owner changes name and subject; a member and a non-member get 403 and change nothing."""
        alice, bob, eve = self.new_user("alice"), self.new_user("bob"), self.new_user("eve")
        room_id = await self.room(alice, bob, name="old")
        new = {"name": "new <name>", "subject": "new & subject"}
        await self.expect("PUT", f"/api/rooms/{room_id}/config", alice, new, 204)
        info = await self.expect("GET", f"/api/rooms/{room_id}", bob, None, 200)
        self.assertEqual((info.json["name"], info.json["subject"]), ("new <name>", "new & subject"))
        other = {"name": "other", "subject": "other"}
        await self.expect("PUT", f"/api/rooms/{room_id}/config", bob, other, 403)
        await self.expect("PUT", f"/api/rooms/{room_id}/config", eve, other, 403)
        info = await self.expect("GET", f"/api/rooms/{room_id}", alice, None, 200)
        self.assertEqual(info.json["name"], "new <name>")

    async def test_config_errors(self) -> None:
        """Config of a missing room is 404; a wrong-typed subject is 400 "Validation failed ..."."""
        alice = self.new_user("alice")
        room_id = await self.room(alice)
        await self.expect("PUT", "/api/rooms/badroom/config", alice, {"name": "n", "subject": "s"}, 404)
        reply = await self.expect("PUT", f"/api/rooms/{room_id}/config", alice, {"name": "n", "subject": 123}, 400)
        self.assertTrue(reply.json.startswith("Validation failed "), reply)
        await self.expect("PUT", f"/api/rooms/{room_id}/config", alice, {"name": "n"}, 400, "Missing room subject")


class MembershipTests(RoomsTestCase):
    async def test_invite(self) -> None:
        """The owner adds a member; a non-member and a plain member may not invite (403)."""
        alice, bob, carol, eve = (self.new_user(n) for n in ("alice", "bob", "carol", "eve"))
        room_id = await self.room(alice, bob)
        info = await self.expect("GET", f"/api/rooms/{room_id}", alice, None, 200)
        self.assertIn({"user": bob[0], "role": "member"}, info.json["participants"])
        await self.expect("POST", f"/api/rooms/{room_id}/users", eve, {"user": carol[0]}, 403)
        await self.expect("POST", f"/api/rooms/{room_id}/users", bob, {"user": carol[0]}, 403)
        await self.expect("POST", "/api/rooms/badroom/users", alice, {"user": carol[0]}, 404, "Room not found")
        await self.expect("POST", f"/api/rooms/{room_id}/users", alice, {}, 400, "Missing JID")
        await self.expect("POST", f"/api/rooms/{room_id}/users", alice, {"user": "@bad"}, 400, "Invalid user JID: @bad")
        await self.expect("POST", f"/api/rooms/{room_id}/users", alice, {"user": ["x"]}, 400)
        # Adding an existing member changes nothing and is not an error.
        await self.expect("POST", f"/api/rooms/{room_id}/users", alice, {"user": bob[0]}, 204)

    async def test_remove_member(self) -> None:
        """The owner removes a member, who is told by the room and can no longer read it."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        room_id = await self.room(alice, bob)
        phone = await self.online(bob)
        await self.expect("DELETE", f"/api/rooms/{room_id}/users/{bob[0]}", alice, None, 204)
        notice = await next_groupchat(phone)
        self.assertEqual(notice["from"], self.room_jid(room_id))
        self.assertEqual(notice_users(notice), {bob[0]: "none"})
        await self.expect("GET", f"/api/rooms/{room_id}", bob, None, 403)

    async def test_removal_errors(self) -> None:
        """Removal refuses invalid or missing JIDs, a member removing someone else, and a missing room."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        room_id = await self.room(alice, bob)
        path = f"/api/rooms/{room_id}/users/"
        await self.expect("DELETE", path + "@invalid", alice, None, 400, "Invalid user JID: @invalid")
        await self.expect("DELETE", path, alice, None, 400, "Missing JID")
        reply = await self.expect("DELETE", path + alice[0], bob, None, 403)
        self.assertTrue(reply.json.startswith("Given user does not have permission"), reply)
        await self.expect("DELETE", f"/api/rooms/badroom/users/{bob[0]}", alice, None, 404, "Room not found")

    async def test_member_leaves(self) -> None:
        """A member removes themself (leaves) and gets the notice."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        room_id = await self.room(alice, bob)
        phone = await self.online(bob)
        await self.expect("DELETE", f"/api/rooms/{room_id}/users/{bob[0]}", bob, None, 204)
        self.assertEqual(notice_users(await next_groupchat(phone)), {bob[0]: "none"})
        await self.expect("GET", "/api/rooms", bob, None, 200, [])

    async def test_owner_leaves_and_hands_over(self) -> None:
        """When the owner leaves, the remaining member becomes owner and is told both changes."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        room_id = await self.room(alice, bob)
        phone = await self.online(bob)
        await self.expect("DELETE", f"/api/rooms/{room_id}/users/{alice[0]}", alice, None, 204)
        self.assertEqual(notice_users(await next_groupchat(phone)), {alice[0]: "none", bob[0]: "owner"})
        info = await self.expect("GET", f"/api/rooms/{room_id}", bob, None, 200)
        self.assertEqual(info.json["participants"], [{"user": bob[0], "role": "owner"}])

    async def test_last_occupant_leaving_destroys_the_room(self) -> None:
        """A room whose last occupant leaves is gone (404)."""
        alice = self.new_user("alice")
        room_id = await self.room(alice)
        await self.expect("DELETE", f"/api/rooms/{room_id}/users/{alice[0]}", alice, None, 204)
        await self.expect("GET", f"/api/rooms/{room_id}", alice, None, 404, "Room not found")


class MessageTests(RoomsTestCase):
    async def test_message_reaches_rest_archive_and_xmpp_client(self) -> None:
        """A room message is archived for REST readers and broadcast to an XMPP occupant from room/sender."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        room_id = await self.room(alice, bob)
        phone = await self.online(bob)
        reply = await self.expect("POST", f"/api/rooms/{room_id}/messages", alice, {"body": "Hi <all> & 'you'"}, 200)
        sent_id = reply.json["id"]
        received = await next_groupchat(phone)
        self.assertEqual(received["from"], f"{self.room_jid(room_id)}/{alice[0]}")
        self.assertEqual((received["id"], str(received.body)), (sent_id, "Hi <all> & 'you'"))
        history = await self.expect("GET", f"/api/rooms/{room_id}/messages", bob, None, 200)
        # As MongooseIM's: creating is not archived, adding bob is (messages_are_archived_in_room).
        affiliation, message = history.json
        self.assertEqual(affiliation["type"], "affiliation")
        self.assertEqual((affiliation["user"], affiliation["affiliation"]), (bob[0], "member"))
        self.assertEqual(affiliation["from"], self.room_jid(room_id))
        self.assertEqual(
            {k: message[k] for k in ("type", "id", "from", "body")},
            {"type": "message", "id": sent_id, "from": alice[0], "body": "Hi <all> & 'you'"},
        )
        self.assertLess(abs(message["timestamp"] - time.time() * 1000), 60_000)

    async def test_message_by_room_jid(self) -> None:
        """Messages can be sent and read with the room JID instead of the id."""
        alice = self.new_user("alice")
        room_jid = self.room_jid(await self.room(alice))
        await self.expect("POST", f"/api/rooms/{room_jid}/messages", alice, {"body": "by jid"}, 200)
        history = await self.expect("GET", f"/api/rooms/{room_jid}/messages?limit=10", alice, None, 200)
        self.assertEqual([m.get("body") for m in history.json], ["by jid"])

    async def test_archive_limit_and_before(self) -> None:
        """limit returns the latest messages; before returns only those sent before that time."""
        alice = self.new_user("alice")
        room_id = await self.room(alice)
        path = f"/api/rooms/{room_id}/messages"
        for body in ("A", "B"):
            await self.expect("POST", path, alice, {"body": body}, 200)
        await task.deferLater(reactor, 0.05, lambda: None)
        middle = int(time.time() * 1000)
        await task.deferLater(reactor, 0.05, lambda: None)
        for body in ("C", "D", "E"):
            await self.expect("POST", path, alice, {"body": body}, 200)
        latest = await self.expect("GET", path + "?limit=3", alice, None, 200)
        self.assertEqual([m["body"] for m in latest.json], ["C", "D", "E"])
        older = await self.expect("GET", f"{path}?before={middle}&limit=10", alice, None, 200)
        self.assertEqual([m.get("body") for m in older.json], ["A", "B"])
        one = await self.expect("GET", f"{path}?before={middle}&limit=1", alice, None, 200)
        self.assertEqual([m["body"] for m in one.json], ["B"])
        await self.expect("GET", path + "?limit=0", alice, None, 200, [])

    async def test_markers_are_sent_archived_and_returned(self) -> None:
        """markable and each chat marker go out as XEP-0333 and come back from the archive."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        room_id = await self.room(alice, bob)
        phone = await self.online(alice)
        path = f"/api/rooms/{room_id}/messages"
        await self.expect("POST", path, bob, {"body": "Floor is lava!", "markable": True}, 200)
        received = await next_groupchat(phone)
        self.assertIsNotNone(next(received.elements("urn:xmpp:chat-markers:0", "markable"), None))
        markers = [{"type": kind, "id": "Ragnarok"} for kind in ("received", "displayed", "acknowledged")]
        for marker in markers:
            await self.expect("POST", path, bob, {"chat_marker": marker}, 200)
        history = await self.expect("GET", path, alice, None, 200)
        _, markable, *marked = history.json
        self.assertIs(markable["markable"], True)
        self.assertEqual([m["chat_marker"] for m in marked], markers)
        self.assertTrue(all("body" not in m for m in marked))

    async def test_message_errors(self) -> None:
        """Sending refuses bad bodies, no content, bad markers, non-members (403) and missing rooms (404)."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        room_id = await self.room(alice)
        path = f"/api/rooms/{room_id}/messages"
        await self.expect("POST", path, alice, {"body": {"body": "Too nested"}}, 400, "Invalid message body")
        await self.expect("POST", path, alice, {"no_body": "x"}, 400, "No valid message elements")
        await self.expect("POST", path, alice, {"markable": True}, 400, "No valid message elements")
        bad = {"chat_marker": {"type": "bad", "id": "x"}}
        await self.expect("POST", path, alice, bad, 400, "Invalid chat marker")
        await self.expect("POST", path, alice, {"chat_marker": "received"}, 400, "Invalid chat marker")
        await self.expect("POST", path, alice, {"body": "a\x07b"}, 400, "Invalid message body")
        await self.expect("POST", path, alice, None, 400, "Invalid request body", raw=b'"not an object"')
        await self.expect("POST", path, alice, None, 400, "Invalid request body", raw=b"This is not JSON")
        await self.expect("POST", path, bob, {"body": "Hi"}, 403)
        await self.expect("POST", "/api/rooms/badroom/messages", alice, {"body": "Hi"}, 404, "Room not found")
        history = await self.expect("GET", path, alice, None, 200)
        self.assertEqual(history.json, [])

    async def test_archive_errors(self) -> None:
        """Reading the archive refuses bad limits and times, unknown parameters, missing rooms and non-members."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        room_id = await self.room(alice)
        path = f"/api/rooms/{room_id}/messages"
        await self.expect("GET", path + "?limit=x", alice, None, 400, "Invalid limit")
        await self.expect("GET", path + "?limit=501", alice, None, 400, "Invalid limit")
        await self.expect("GET", path + "?before=x", alice, None, 400, "Invalid value of 'before'")
        await self.expect("GET", path + "?kuropatwa", alice, None, 400, "Invalid query string")
        await self.expect("GET", "/api/rooms/badroom/messages", alice, None, 404, "Room not found")
        await self.expect("GET", path, bob, None, 403)


class HostileInputTests(RoomsTestCase):
    async def test_jids_with_empty_labels_are_400(self) -> None:
        """Room ids and user JIDs with an empty domain label get 400 with the table's strings, never a 500."""
        alice = self.new_user("alice")
        room_id = await self.room(alice)
        config = {"name": "n", "subject": "s"}
        for bad in ("a@b..c", f"x@.{self.server.component}", f"x@{self.server.component}..", "x@."):
            await self.expect("GET", f"/api/rooms/{bad}", alice, None, 400, "Invalid room ID")
            await self.expect("PUT", f"/api/rooms/{bad}", alice, config, 400, "Invalid room ID")
            await self.expect("PUT", f"/api/rooms/{bad}/config", alice, config, 400, "Invalid room ID")
            await self.expect("GET", f"/api/rooms/{bad}/messages", alice, None, 400, "Invalid room ID")
            await self.expect("POST", f"/api/rooms/{bad}/messages", alice, {"body": "x"}, 400, "Invalid room ID")
            await self.expect("POST", f"/api/rooms/{bad}/users", alice, {"user": alice[0]}, 400, "Invalid room ID")
        users = f"/api/rooms/{room_id}/users"
        for bad in ("a@b..c", "a@.localhost", "a@localhost.."):
            await self.expect("DELETE", f"{users}/{bad}", alice, None, 400, f"Invalid user JID: {bad}")
            await self.expect("POST", users, alice, {"user": bad}, 400, f"Invalid user JID: {bad}")
        info = await self.expect("GET", f"/api/rooms/{room_id}", alice, None, 200)
        self.assertEqual(info.json["participants"], [{"user": alice[0], "role": "owner"}])

    async def test_member_jids_are_validated_and_normalised(self) -> None:
        """Over-long parts are 400; a domain's final dot is dropped (RFC 7622 3.2), so "bob@localhost." is bob."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        room_id = await self.room(alice)
        path = f"/api/rooms/{room_id}/users"
        for bad in ("x" * 1100 + "@localhost", "x@" + "d" * 1100, "x@" + ("d" * 60 + ".") * 18 + "d"):
            reply = await self.expect("POST", path, alice, {"user": bad}, 400)
            self.assertTrue(reply.json.startswith("Invalid user JID: x"), reply)
        await self.expect("POST", path, alice, {"user": bob[0] + "."}, 204)
        info = await self.expect("GET", f"/api/rooms/{room_id}", alice, None, 200)
        self.assertEqual(sorted(p["user"] for p in info.json["participants"]), sorted([alice[0], bob[0]]), info.json)
        await self.expect("GET", f"/api/rooms/{room_id}", bob, None, 200)
        await self.expect("DELETE", f"{path}/{bob[0]}.", alice, None, 204)
        info = await self.expect("GET", f"/api/rooms/{room_id}", alice, None, 200)
        self.assertEqual(info.json["participants"], [{"user": alice[0], "role": "owner"}])
        jid_path = f"/api/rooms/{self.room_jid(room_id)}./messages"
        await self.expect("GET", jid_path, alice, None, 200)

    async def test_room_archive_before_past_year_9999(self) -> None:
        """GET /api/rooms/{id}/messages with a before past 9999-12-31 is 400, not a 500."""
        alice = self.new_user("alice")
        path = f"/api/rooms/{await self.room(alice)}/messages"
        await self.expect("GET", path + "?before=253402300800001", alice, None, 400, "Invalid value of 'before'")
        await self.call("POST", path, alice, {"body": "kept"})
        history = await self.expect("GET", path + "?before=253402300800000", alice, None, 200)
        self.assertEqual([m["body"] for m in history.json], ["kept"])


class WhitespaceTests(RoomsTestCase):
    async def test_component_keeps_attribute_whitespace(self) -> None:
        """A TAB in a chat marker id survives the component's archive and broadcast wherever the server passes it on."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        room_id = await self.room(alice, bob)
        phone = await self.online(bob)
        marker = {"type": "displayed", "id": "a\tb"}
        await self.expect("POST", f"/api/rooms/{room_id}/messages", alice, {"chat_marker": marker}, 200)
        received = await next_groupchat(phone)
        broadcast_id = next(received.elements("urn:xmpp:chat-markers:0", "displayed"))["id"]
        history = await self.expect("GET", f"/api/rooms/{room_id}/messages", bob, None, 200)
        self.assertEqual(history.json[-1]["chat_marker"]["id"], broadcast_id)
        if not isinstance(self.server, ProsodyServer):
            # ejabberd writes attribute whitespace as references, so the component gets the
            # TAB; Prosody 0.12 writes it raw and the component's parser reads a space.
            self.assertEqual(broadcast_id, "a\tb")


class ServiceNotFoundTests(RoomsTestCase):
    async def test_disconnected_component_is_muc_light_server_not_found(self) -> None:
        """A disconnected component ("Component unavailable") is 404 "MUC Light server not found"."""
        alice = self.new_user("alice")
        component = self.bridge.parts.component
        assert component is not None
        await component.stopService()
        self.addCleanup(component.startService)
        await self.expect("GET", "/api/rooms", alice, None, 404, "MUC Light server not found")
        await self.expect("GET", "/api/rooms/someroom", alice, None, 404, "MUC Light server not found")


class UndeclaredServiceTests(BridgeTestCase):
    bridge_sections = {"muclight": {"service": "nowhere.localhost", "component": False}}

    async def test_undeclared_service_is_muc_light_server_not_found(self) -> None:
        """A service the server does not know (Prosody: not-allowed) is 404 "MUC Light server not found"."""
        alice = self.new_user("alice")
        reply = await self.call("POST", "/api/rooms", alice, {"name": "n", "subject": "s"})
        self.assertEqual((reply.code, reply.json), (404, "MUC Light server not found"))
        reply = await self.call("GET", "/api/rooms/x", alice)
        self.assertEqual((reply.code, reply.json), (404, "MUC Light server not found"))
