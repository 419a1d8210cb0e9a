"""rest_client_SUITE's room scenarios (groups muc, muc_config, muc_disabled): MUC Light
rooms over /api/rooms, with the bridge's own component as the MUC Light service."""

from __future__ import annotations

from typing import Any

from tests.conformance.helpers import (
    NS_AFFILIATIONS,
    ConformanceCase,
    User,
    fresh_id,
    next_groupchat,
    notice_users,
    now_ms,
    query,
    sleep,
)


def participant(info: dict[str, Any], user: User) -> str | None:
    """The role ``user`` has in the room info, if any."""
    roles = [p["role"] for p in info["participants"] if p["user"] == user[0]]
    return roles[0] if roles else None


class RoomTests(ConformanceCase):
    def assert_room_info(self, owner: User, info: dict[str, Any]) -> None:
        for key in ("subject", "name", "participants"):
            self.assertIn(key, info)
        self.assertEqual(participant(info, owner), "owner")

    def assert_aff_notice(self, notice: Any, user: User, affiliation: str) -> None:
        self.assertTrue(notice.getAttribute("id"), notice.toXml())
        self.assertEqual(notice_users(notice).get(user[0]), affiliation, notice.toXml())

    async def test_room_is_created(self) -> None:
        """Ports room_is_created: POST /rooms creates a room whose info shows its creator as owner."""
        (alice,) = self.users("alice")
        room_id = await self.rest_room(alice)
        self.assert_room_info(alice, await self.room_info(alice, room_id))

    async def test_room_is_created_with_given_identifier(self) -> None:
        """Ports room_is_created_with_given_identifier: PUT /rooms/{id} creates the room with that id."""
        (alice,) = self.users("alice")
        room_id = fresh_id()
        body = {"name": "new_room_name", "subject": "This room subject"}
        await self.expect("PUT", f"/api/rooms/{room_id}", alice, body, 201, {"id": room_id})
        self.assert_room_info(alice, await self.room_info(alice, room_id))

    async def test_room_creation_errors(self) -> None:
        """Ports room_creation_errors: missing or invalid id, name or subject are 400s; an existing id is 403."""
        (alice,) = self.users("alice")
        room = {"name": "My Room", "subject": "My Secrets"}
        path = f"/api/rooms/{fresh_id()}"
        await self.expect("PUT", "/api/rooms", alice, room, 400, "Missing room ID")
        await self.expect("PUT", "/api/rooms/@invalid", alice, room, 400, "Invalid room ID")
        await self.expect("PUT", path, alice, {"subject": room["subject"]}, 400, "Missing room name")
        await self.expect("PUT", path, alice, {"name": room["name"]}, 400, "Missing room subject")
        await self.expect("PUT", path, alice, room, 201)
        await self.expect("PUT", path, alice, room, 403)

    async def test_room_query_errors(self) -> None:
        """Ports room_query_errors: an unknown room is 404 "Room not found"; someone else's room is 403."""
        alice, bob = self.users("alice", "bob")
        room_id = await self.rest_room(alice)
        await self.expect("GET", "/api/rooms/badroom", bob, None, 404, "Room not found")
        await self.expect("GET", f"/api/rooms/{room_id}", bob, None, 403)

    async def test_user_is_invited_to_a_room(self) -> None:
        """Ports user_is_invited_to_a_room: an added user is a member, and the owner's client can read the list."""
        alice, bob = self.users("alice", "bob")
        laptop = await self.online(alice)
        room_id = await self.rest_room(alice, bob)
        self.assertEqual(participant(await self.room_info(alice, room_id), bob), "member")
        result = await laptop.iq("get", query(NS_AFFILIATIONS), to=self.room_jid(room_id))
        self.assertEqual(result["type"], "result")

    async def test_user_is_removed_from_a_room(self) -> None:
        """Ports user_is_removed_from_a_room: the owner removes a member, whose client is told affiliation none."""
        alice, bob = self.users("alice", "bob")
        room_id = await self.rest_room(alice, bob)
        phone = await self.online(bob)
        await self.expect("DELETE", f"/api/rooms/{room_id}/users/{bob[0]}", alice, None, 204)
        self.assert_aff_notice(await next_groupchat(phone), bob, "none")

    async def test_user_removal_errors(self) -> None:
        """Ports user_removal_errors: an invalid or missing user JID is 400; an unknown room is 404."""
        alice, bob = self.users("alice", "bob")
        room_id = await self.rest_room(alice, bob)
        path = f"/api/rooms/{room_id}/users/"
        await self.expect("DELETE", path + "@invalid", alice, None, 400, "Invalid user JID: @invalid")
        await self.expect("DELETE", path, alice, None, 400, "Missing JID")
        # MongooseIM's text here is "Room does not exist"; the bridge's contract is 404 "Room not found".
        await self.expect("DELETE", f"/api/rooms/badroom/users/{bob[0]}", alice, None, 404)

    async def test_owner_can_leave_a_room_and_auto_select_owner(self) -> None:
        """Ports owner_can_leave_a_room_and_auto_select_owner: when the owner leaves, the member becomes owner."""
        alice, bob = self.users("alice", "bob")
        room_id = await self.rest_room(alice, bob)
        phone = await self.online(bob)
        await self.expect("DELETE", f"/api/rooms/{room_id}/users/{alice[0]}", alice, None, 204)
        notice = await next_groupchat(phone)
        self.assert_aff_notice(notice, alice, "none")
        self.assert_aff_notice(notice, bob, "owner")

    async def test_user_can_leave_a_room(self) -> None:
        """Ports user_can_leave_a_room: a member removes themself and is told so."""
        alice, bob = self.users("alice", "bob")
        room_id = await self.rest_room(alice, bob)
        phone = await self.online(bob)
        await self.expect("DELETE", f"/api/rooms/{room_id}/users/{bob[0]}", bob, None, 204)
        self.assert_aff_notice(await next_groupchat(phone), bob, "none")

    async def test_rooms_can_be_listed(self) -> None:
        """Ports rooms_can_be_listed: GET /rooms is empty at first, then lists the room for owner and member alike."""
        alice, bob = self.users("alice", "bob")
        await self.expect("GET", "/api/rooms", alice, None, 200, [])
        room_id = await self.rest_room(alice, bob)
        listed = (await self.expect("GET", "/api/rooms", alice)).json
        self.assertEqual(len(listed), 1)
        self.assertEqual(listed[0]["id"], room_id)
        self.assertIn("name", listed[0])
        self.assertIn("subject", listed[0])
        await self.expect("GET", "/api/rooms", bob, None, 200, listed)

    async def test_invitation_to_room_is_forbidden_for_non_member(self) -> None:
        """Ports invitation_to_room_is_forbidden_for_non_member: someone outside the room may not add users (403)."""
        alice, bob = self.users("alice", "bob")
        room_id = await self.rest_room(alice)
        await self.expect("POST", f"/api/rooms/{room_id}/users", bob, {"user": "auser@domain.com"}, 403)

    async def room_with_messages(self) -> tuple[User, User, str, list[dict[str, str]]]:
        """Alice's room with Bob, a message from each, both seen as groupchat by both XMPP clients."""
        alice, bob = self.users("alice", "bob")
        clients = [await self.online(alice), await self.online(bob)]
        room_id = await self.rest_room(alice, bob)
        for client in clients:
            await next_groupchat(client)  # creation / Bob's addition
        await next_groupchat(clients[0])  # Alice also sees Bob's addition
        sent = []
        for sender in (alice, bob):
            reply = await self.send_room_message(sender, room_id, {"body": "Hi all!"})
            self.assertEqual(reply.code, 200, reply)
            self.assertIsInstance(reply.json["id"], str)
            sent.append({"id": reply.json["id"], "from": sender[0], "body": "Hi all!"})
        for expected in sent:
            for client in clients:
                received = await next_groupchat(client)
                self.assertEqual((received["type"], str(received.body)), ("groupchat", expected["body"]))
                self.assertEqual(received["id"], expected["id"])
        return alice, bob, room_id, sent

    async def test_msg_is_sent_and_delivered_in_room(self) -> None:
        """Ports msg_is_sent_and_delivered_in_room: each occupant's message reaches every occupant's client."""
        await self.room_with_messages()

    async def test_sending_message_by_not_room_member_results_in_forbidden(self) -> None:
        """Ports sending_message_by_not_room_member_results_in_forbidden: an outsider's room message is 403."""
        alice, bob = self.users("alice", "bob")
        room_id = await self.rest_room(alice)
        reply = await self.send_room_message(bob, room_id, {"body": "Hello, I'm not member"})
        self.assertEqual(reply.code, 403, reply)

    async def test_sending_invalid_message_to_room_results_in_bad_request(self) -> None:
        """Ports sending_invalid_message_to_room_results_in_bad_request: each malformed room message is its 400."""
        (alice,) = self.users("alice")
        room_id = await self.rest_room(alice)
        path = f"/api/rooms/{room_id}/messages"
        await self.expect("POST", path, alice, {"body": {"body": "Too nested"}}, 400, "Invalid message body")
        await self.expect("POST", path, alice, {"no_body": "This should be in body"}, 400, "No valid message elements")
        await self.expect("POST", path, alice, {"markable": True}, 400, "No valid message elements")
        marker = {"chat_marker": {"type": "bad", "id": "some_id"}}
        await self.expect("POST", path, alice, marker, 400, "Invalid chat marker")
        await self.expect("POST", path, alice, "This is not JSON object", 400, "Invalid request body")

    async def test_messages_are_archived_in_room(self) -> None:
        """Ports messages_are_archived_in_room: the archive is Bob's addition (oldest), then the two messages."""
        _, bob, room_id, sent = await self.room_with_messages()
        archive = await self.room_messages(bob, room_id)
        self.assertEqual(len(archive), 3, archive)
        affiliation, *messages = archive
        self.assertEqual(
            {k: affiliation.get(k) for k in ("type", "affiliation", "user")},
            {"type": "affiliation", "affiliation": "member", "user": bob[0]},
        )
        self.assertEqual([{k: m[k] for k in ("id", "from", "body")} for m in messages], sent)

    async def member_room_with_clients(self) -> tuple[User, User, str, list[Any]]:
        alice, bob = self.users("alice", "bob")
        room_id = await self.rest_room(alice, bob)
        return alice, bob, room_id, [await self.online(alice), await self.online(bob)]

    async def test_chat_markers_are_archived_in_room(self) -> None:
        """Ports chat_markers_are_archived_in_room: three markers sent over REST come back from the archive in order."""
        alice, bob, room_id, clients = await self.member_room_with_clients()
        markers = [
            {"chat_marker": {"type": kind, "id": "RagnarokIsComing"}}
            for kind in ("received", "displayed", "acknowledged")
        ]
        for marker in markers:
            reply = await self.send_room_message(bob, room_id, marker)
            self.assertEqual(reply.code, 200, reply)
            for client in clients:
                await next_groupchat(client)
        archive = await self.room_messages(alice, room_id)
        self.assertEqual(archive[0]["type"], "affiliation")
        self.assertEqual([{"chat_marker": m.get("chat_marker")} for m in archive[1:]], markers)

    async def test_markable_property_is_archived_in_room(self) -> None:
        """Ports markable_property_is_archived_in_room: a markable message is archived as markable."""
        alice, bob, room_id, clients = await self.member_room_with_clients()
        reply = await self.send_room_message(bob, room_id, {"markable": True, "body": "Floor is lava!"})
        self.assertEqual(reply.code, 200, reply)
        for client in clients:
            await next_groupchat(client)
        archive = await self.room_messages(alice, room_id)
        self.assertEqual(len(archive), 2, archive)
        self.assertIs(archive[1].get("markable"), True)

    async def test_room_message_query_errors(self) -> None:
        """Ports room_message_query_errors: a bad limit, before or query string on the room archive is its 400."""
        (alice,) = self.users("alice")
        room_id = await self.rest_room(alice)
        path = f"/api/rooms/{room_id}/messages"
        await self.expect("GET", path + "?limit=x", alice, None, 400, "Invalid limit")
        await self.expect("GET", path + "?before=x", alice, None, 400, "Invalid value of 'before'")
        await self.expect("GET", path + "?kuropatwa", alice, None, 400, "Invalid query string")

    async def test_only_room_participant_can_read_messages(self) -> None:
        """Ports only_room_participant_can_read_messages: someone outside the room reading its archive gets 403."""
        alice, bob = self.users("alice", "bob")
        room_id = await self.rest_room(alice)
        await self.expect("GET", f"/api/rooms/{room_id}/messages", bob, None, 403)

    async def test_messages_can_be_paginated_in_room(self) -> None:
        """Ports messages_can_be_paginated_in_room: limit keeps the latest entries; before cuts off newer days."""
        alice, bob = self.users("alice", "bob")
        room_id = await self.rest_room(alice, bob)
        # MongooseIM writes one message per user on each of four days; here a "day" is 50 ms.
        days: list[list[str]] = []
        prior_to = 0
        for day in range(4):
            if day == 2:
                await sleep(0.05)
                prior_to = now_ms()
            await sleep(0.05)
            bodies = [f"day {day} from {user[0]}" for user in (alice, bob)]
            for user, body in zip((alice, bob), bodies, strict=True):
                self.assertEqual((await self.send_room_message(user, room_id, {"body": body})).code, 200)
            days.append(bodies)
        ten = await self.room_messages(alice, room_id, "?limit=10")
        self.assertTrue(0 < len(ten) <= 10, ten)
        self.assertEqual(len(await self.room_messages(alice, room_id, "?limit=3")), 3)
        four = await self.room_messages(alice, room_id, f"?limit=4&before={prior_to}")
        self.assertEqual(four[0].get("body"), days[0][0])
        two = await self.room_messages(alice, room_id, f"?limit=2&before={prior_to}")
        self.assertEqual(two[0].get("body"), days[1][0])

    async def test_room_msg_is_sent_and_delivered_over_sse(self) -> None:
        """Ports room_msg_is_sent_and_delivered_over_sse: a room message reaches a member's stream, room = bare id."""
        alice, bob = self.users("alice", "bob")
        room_id = await self.rest_room(alice, bob)
        self.assertEqual(participant(await self.room_info(alice, room_id), bob), "member")
        stream = await self.open_stream(bob)
        reply = await self.send_room_message(alice, room_id, {"body": "Hi all!"})
        self.assertEqual(reply.code, 200, reply)
        event = await stream.next()
        self.assertEqual(event.name, "room.message")
        self.assertEqual(
            {k: event.json.get(k) for k in ("from", "room", "type", "body")},
            {"from": alice[0], "room": room_id, "type": "message", "body": "Hi all!"},
        )
        self.assertIn("id", event.json)

    async def test_aff_change_msg_is_delivered_over_sse(self) -> None:
        """Ports aff_change_msg_is_delivered_over_sse: an addition reaches the stream as an affiliation."""
        alice, bob = self.users("alice", "bob")
        room_id = await self.rest_room(alice)
        stream = await self.open_stream(bob)
        await self.expect("POST", f"/api/rooms/{room_id}/users", alice, {"user": bob[0]}, 204)
        event = await stream.next()
        self.assertEqual(event.name, "room.message")
        self.assertEqual(
            {k: event.json.get(k) for k in ("room", "from", "type", "user")},
            {"room": room_id, "from": self.room_jid(room_id), "type": "affiliation", "user": bob[0]},
        )
        self.assertIn("id", event.json)

    async def test_room_is_created_with_given_jid(self) -> None:
        """Ports room_is_created_with_given_jid: PUT /rooms/{room JID} creates the room and answers its bare id."""
        (alice,) = self.users("alice")
        room_id = fresh_id()
        body = {"name": "new_room_name", "subject": "This room subject"}
        await self.expect("PUT", f"/api/rooms/{self.room_jid(room_id)}", alice, body, 201, {"id": room_id})
        self.assert_room_info(alice, await self.room_info(alice, room_id))

    async def test_room_is_not_created_with_jid_not_matching_hostname(self) -> None:
        """Ports room_is_not_created_with_jid_not_matching_hostname: a room JID of another service is 400."""
        (alice,) = self.users("alice")
        body = {"name": "some_name", "subject": "some subject"}
        await self.expect("PUT", f"/api/rooms/{fresh_id()}@muclight.wrongdomain", alice, body, 400)

    async def test_room_can_be_fetched_by_jid(self) -> None:
        """Ports room_can_be_fetched_by_jid: GET /rooms/{room JID} reads the room."""
        (alice,) = self.users("alice")
        room_id = fresh_id()
        body = {"name": "new_room_name", "subject": "This room subject"}
        await self.expect("PUT", f"/api/rooms/{self.room_jid(room_id)}", alice, body, 201, {"id": room_id})
        self.assert_room_info(alice, await self.room_info(alice, self.room_jid(room_id)))

    async def test_messages_can_be_sent_and_fetched_by_room_jid(self) -> None:
        """Ports messages_can_be_sent_and_fetched_by_room_jid: by room JID, one message is the whole archive."""
        (alice,) = self.users("alice")
        room_jid = self.room_jid(await self.rest_room(alice))
        self.assertEqual((await self.send_room_message(alice, room_jid, {"body": "Hi all!"})).code, 200)
        archive = await self.room_messages(alice, room_jid, "?limit=10")
        self.assertEqual(len(archive), 1, archive)

    async def test_user_can_be_added_and_removed_by_room_jid(self) -> None:
        """Ports user_can_be_added_and_removed_by_room_jid: the room JID works in the users paths."""
        alice, bob = self.users("alice", "bob")
        room_jid = self.room_jid(await self.rest_room(alice))
        await self.expect("POST", f"/api/rooms/{room_jid}/users", alice, {"user": bob[0]}, 204)
        await self.expect("DELETE", f"/api/rooms/{room_jid}/users/{bob[0]}", alice, None, 204)


class RoomConfigTests(ConformanceCase):
    async def change(self, user: User, room: str, name: str, subject: Any) -> Any:
        return await self.call("PUT", f"/api/rooms/{room}/config", user, {"name": name, "subject": subject})

    async def test_config_can_be_changed_by_owner(self) -> None:
        """Ports config_can_be_changed_by_owner: the owner renames the room and changes its subject (204)."""
        (alice,) = self.users("alice")
        room_id = fresh_id()
        room_jid = self.room_jid(room_id)
        await self.expect("PUT", f"/api/rooms/{room_jid}", alice, {"name": "old_name", "subject": "s"}, 201)
        self.assertEqual((await self.room_info(alice, room_id))["name"], "old_name")
        reply = await self.change(alice, room_jid, "new_name", "new_subject")
        self.assertEqual((reply.code, reply.raw), (204, b""))
        info = await self.room_info(alice, room_id)
        self.assertEqual((info["name"], info["subject"]), ("new_name", "new_subject"))

    async def test_config_cannot_be_changed_by_member(self) -> None:
        """Ports config_cannot_be_changed_by_member: a member's config change is 403 and changes nothing."""
        alice, bob = self.users("alice", "bob")
        room_id = await self.rest_room(alice, bob)
        self.assertEqual((await self.change(bob, self.room_jid(room_id), "other_name", "other_subject")).code, 403)
        self.assertEqual((await self.room_info(bob, room_id))["name"], "new_room_name")

    async def test_config_cannot_be_changed_by_non_member(self) -> None:
        """Ports config_cannot_be_changed_by_non_member: an outsider's config change is 403 and changes nothing."""
        alice, bob = self.users("alice", "bob")
        room_id = await self.rest_room(alice)
        self.assertEqual((await self.change(bob, self.room_jid(room_id), "other_name", "other_subject")).code, 403)
        self.assertEqual((await self.room_info(alice, room_id))["name"], "new_room_name")

    async def test_config_change_errors(self) -> None:
        """Ports config_change_errors: an unknown room is 404; a non-string subject is 400 "Validation failed ..."."""
        (alice,) = self.users("alice")
        room_id = await self.rest_room(alice)
        self.assertEqual((await self.change(alice, "badroom", "other_name", "other_subject")).code, 404)
        reply = await self.change(alice, self.room_jid(room_id), "other_name", 123)
        self.assertEqual(reply.code, 400, reply)
        self.assertTrue(reply.json.startswith("Validation failed "), reply)
        self.assertEqual((await self.room_info(alice, room_id))["name"], "new_room_name")


class AllCanConfigureTests(ConformanceCase):
    bridge_sections = {"muclight": {"all_can_configure": True}}

    async def test_config_can_be_changed_by_all(self) -> None:
        """Ports config_can_be_changed_by_all: with all_can_configure a member renames the room (204)."""
        alice, bob = self.users("alice", "bob")
        room_id = await self.rest_room(alice, bob)
        self.assertEqual((await self.room_info(alice, room_id))["name"], "new_room_name")
        reply = await self.call(
            "PUT", f"/api/rooms/{self.room_jid(room_id)}/config", bob, {"name": "other_name", "subject": "s"}
        )
        self.assertEqual((reply.code, reply.raw), (204, b""))
        self.assertEqual((await self.room_info(alice, room_id))["name"], "other_name")


class MucDisabledTests(ConformanceCase):
    bridge_sections = {"muclight": {"component": False}}

    async def test_muc_disabled_errors(self) -> None:
        """Ports muc_disabled_errors: no MUC Light service: 404 "MUC Light server not found"."""
        (alice,) = self.users("alice")
        await self.expect("GET", "/api/rooms/badroom", alice, None, 404, "MUC Light server not found")
