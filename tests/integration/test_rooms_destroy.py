"""``DELETE /api/rooms/{id}``: the owner destroys a MUC Light room, through the bridge's own
component, on the run's real server (Prosody, or ejabberd with BRIDGE_TEST_SERVER=ejabberd)."""

from __future__ import annotations

from tests.integration.test_rooms import RoomsTestCase, next_groupchat, notice_users
from tests.integration.test_sse import SseReader, SseTestCase

NS_DESTROY = "urn:xmpp:muclight:0#destroy"


class DestroyTests(RoomsTestCase, SseTestCase):
    timeout = 90

    async def next_room_event(self, reader: SseReader) -> dict[str, object]:
        while True:
            event = await reader.next(timeout=10)
            if event.name == "room.message":
                data: dict[str, object] = event.json
                return data

    async def test_owner_destroys_room(self) -> None:
        """The owner's DELETE is 204; occupants are told (XMPP notice, and a stream's affiliation event `none`);
        the room and its archive are gone."""
        alice, bob, carol = self.new_user("alice"), self.new_user("bob"), self.new_user("carol")
        room_id = await self.room(alice, bob, carol)
        await self.expect("POST", f"/api/rooms/{room_id}/messages", alice, {"body": "before"}, 200)
        phone = await self.online(carol)
        stream = await self.open_stream(bob)
        # A member may not destroy the room, an outsider neither; nothing changes.
        eve = self.new_user("eve")
        reply = await self.expect("DELETE", f"/api/rooms/{room_id}", bob, None, 403)
        self.assertEqual(reply.json, "Given user cannot delete this room")
        await self.expect("DELETE", f"/api/rooms/{room_id}", eve, None, 403, "Given user does not occupy this room")
        await self.expect("GET", f"/api/rooms/{room_id}", bob, None, 200)

        await self.expect("DELETE", f"/api/rooms/{room_id}", alice, None, 204)
        event = await self.next_room_event(stream)
        wanted = {"type": "affiliation", "room": room_id, "user": bob[0], "affiliation": "none"}
        self.assertEqual({key: event.get(key) for key in wanted}, wanted)
        self.assertEqual(event["from"], self.room_jid(room_id))
        notice = await next_groupchat(phone)
        self.assertEqual(notice["from"], self.room_jid(room_id))
        self.assertEqual(notice_users(notice), {carol[0]: "none"})
        self.assertIsNotNone(next(notice.elements(NS_DESTROY, "x"), None))

        for user in (alice, bob):
            await self.expect("GET", f"/api/rooms/{room_id}", user, None, 404, "Room not found")
            await self.expect("GET", f"/api/rooms/{room_id}/messages", user, None, 404, "Room not found")
            await self.expect("GET", "/api/rooms", user, None, 200, [])
        await self.expect("DELETE", f"/api/rooms/{room_id}", alice, None, 404, "Room not found")
        # The archive went with the room: the same id created again starts empty.
        body = {"name": "again", "subject": "s"}
        await self.expect("PUT", f"/api/rooms/{room_id}", alice, body, 201, {"id": room_id})
        archive = await self.expect("GET", f"/api/rooms/{room_id}/messages", alice, None, 200)
        self.assertEqual([item for item in archive.json if item["type"] == "message"], [])

    async def test_destroy_errors(self) -> None:
        """An unknown room is 404, an invalid id 400, a room JID of another domain 400, no credentials 401."""
        alice = self.new_user("alice")
        await self.expect("DELETE", "/api/rooms/nosuchroom", alice, None, 404, "Room not found")
        await self.expect("DELETE", "/api/rooms/@bad", alice, None, 400, "Invalid room ID")
        await self.expect("DELETE", "/api/rooms/x@muclight.wrongdomain", alice, None, 400, "Invalid MUC Light domain")
        await self.expect("DELETE", "/api/rooms/nosuchroom", None, None, 401)

    async def test_destroy_by_room_jid(self) -> None:
        """A room JID on the service names the room as well as its bare id."""
        alice = self.new_user("alice")
        room_id = await self.room(alice)
        await self.expect("DELETE", f"/api/rooms/{self.room_jid(room_id)}", alice, None, 204)
        await self.expect("GET", f"/api/rooms/{room_id}", alice, None, 404, "Room not found")
