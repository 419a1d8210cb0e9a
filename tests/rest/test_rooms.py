"""``/api/rooms`` (DESIGN.md's REST table): MUC Light rooms, and how the service's refusals are answered."""

from __future__ import annotations

from tests.rest.fakes import (
    ALICE,
    BOB,
    NotRoomMember,
    RestTestCase,
    RoomBadRequest,
    RoomNotAllowed,
    RoomNotFound,
    RoomServiceNotFound,
    ServerUnavailable,
    archived,
)

SERVICE = "muclight.localhost"
CONFIG = {"name": "Tea", "subject": "Chat about tea"}


class RoomsTestCase(RestTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.rooms = self.bridge.session().rooms

    async def make_room(self, room_id: str = "tea") -> None:
        self.assertAnswer(await self.request("PUT", f"/api/rooms/{room_id}", CONFIG), 201, {"id": room_id})


class CreateTests(RoomsTestCase):
    async def test_create_answers_201_with_the_generated_id(self) -> None:
        """POST /api/rooms answers 201 {id} with the id the service chose."""
        self.assertAnswer(await self.request("POST", "/api/rooms", CONFIG), 201, {"id": "generated1"})
        self.assertEqual(self.rooms.known["generated1"].name, "Tea")

    async def test_create_with_an_id_or_a_room_jid(self) -> None:
        """PUT /api/rooms/{id} takes a bare id or a JID on the service and answers 201 {id}."""
        await self.make_room("tea")
        self.assertAnswer(await self.request("PUT", f"/api/rooms/coffee@{SERVICE}", CONFIG), 201, {"id": "coffee"})

    async def test_existing_id_is_403(self) -> None:
        """PUT /api/rooms/{id} of a room that exists is 403 "Room already exists"."""
        await self.make_room()
        self.assertAnswer(await self.request("PUT", "/api/rooms/tea", CONFIG), 403, "Room already exists")

    async def test_config_errors_are_400(self) -> None:
        """Missing name or subject, and values that are not strings, get the contract's 400 strings."""
        cases = [
            ({"subject": "s"}, "Missing room name"),
            ({"name": "n"}, "Missing room subject"),
            (
                {"name": 1, "subject": "s"},
                "Validation failed for key: roomname with reason expected a string of XML text",
            ),
            (
                {"name": "n", "subject": ["s"]},
                "Validation failed for key: subject with reason expected a string of XML text",
            ),
        ]
        for body, message in cases:
            self.assertAnswer(await self.request("POST", "/api/rooms", body), 400, message)
            self.assertAnswer(await self.request("PUT", "/api/rooms/tea", body), 400, message)
        self.assertEqual(self.rooms.known, {})

    async def test_room_ids_are_checked(self) -> None:
        """PUT /api/rooms without an id is "Missing room ID"; ids that are no JID localpart "Invalid room ID"."""
        self.assertAnswer(await self.request("PUT", "/api/rooms", CONFIG), 400, "Missing room ID")
        for room_id in ("a%20b", "%40muclight.localhost", "x" * 1024):
            self.assertAnswer(await self.request("PUT", f"/api/rooms/{room_id}", CONFIG), 400, "Invalid room ID")
        answer = await self.request("PUT", "/api/rooms/tea@conference.localhost", CONFIG)
        self.assertAnswer(answer, 400, "Invalid MUC Light domain")


class RoomTests(RoomsTestCase):
    async def test_list_and_details(self) -> None:
        """GET /api/rooms lists {id, name, subject}; GET /api/rooms/{id} answers {name, subject, participants}."""
        await self.make_room()
        self.assertAnswer(
            await self.request("GET", "/api/rooms"), 200, [{"id": "tea", "name": "Tea", "subject": "Chat about tea"}]
        )
        self.assertAnswer(
            await self.request("GET", "/api/rooms/tea"),
            200,
            {"name": "Tea", "subject": "Chat about tea", "participants": [{"user": ALICE, "role": "owner"}]},
        )

    async def test_configure_invite_and_remove(self) -> None:
        """Config, adding and removing a user all answer 204 after the matching MUC Light request."""
        await self.make_room()
        self.assertAnswer(await self.request("PUT", "/api/rooms/tea/config", {"name": "T", "subject": "S"}), 204)
        self.assertEqual((self.rooms.known["tea"].name, self.rooms.known["tea"].subject), ("T", "S"))
        self.assertAnswer(await self.request("POST", "/api/rooms/tea/users", {"user": BOB}), 204)
        self.assertAnswer(await self.request("DELETE", f"/api/rooms/tea/users/{BOB}"), 204)
        room = f"tea@{SERVICE}"
        self.assertEqual(self.rooms.calls, [("affiliation", room, BOB, "member"), ("affiliation", room, BOB, "none")])

    async def test_user_errors_are_400(self) -> None:
        """Adding nobody is "Missing JID", a non-JID "Invalid user JID: X"; removing nobody "Missing JID"."""
        await self.make_room()
        self.assertAnswer(await self.request("POST", "/api/rooms/tea/users", {}), 400, "Missing JID")
        answer = await self.request("POST", "/api/rooms/tea/users", {"user": "bad@"})
        self.assertAnswer(answer, 400, "Invalid user JID: bad@")
        self.assertAnswer(await self.request("POST", "/api/rooms/tea/users", {"user": 3}), 400, "Invalid user JID")
        self.assertAnswer(await self.request("DELETE", "/api/rooms/tea/users/"), 400, "Missing JID")
        self.assertEqual(self.rooms.calls, [])

    async def test_send_answers_the_message_id(self) -> None:
        """POST /api/rooms/{id}/messages sends one groupchat message to the room and answers 200 {id}."""
        await self.make_room()
        response, body = await self.request("POST", "/api/rooms/tea/messages", {"body": "hi", "markable": True})
        self.assertEqual(response.code, 200)
        ((kind, room, xml),) = self.rooms.calls
        self.assertEqual((kind, room), ("send", f"tea@{SERVICE}"))
        self.assertIn(f"id='{body['id']}'", xml)
        self.assertIn("type='groupchat'", xml)
        self.assertIn("<markable xmlns='urn:xmpp:chat-markers:0'/>", xml)

    async def test_send_with_a_client_id(self) -> None:
        """POST /api/rooms/{id}/messages with a client id sends it as the stanza id and answers 200 with it,
        every time it is retried; a bad id is 400 "Invalid id" and sends nothing."""
        await self.make_room()
        for _ in range(2):
            answer = await self.request("POST", "/api/rooms/tea/messages", {"body": "hi", "id": "retry-1"})
            self.assertAnswer(answer, 200, {"id": "retry-1"})
        self.assertEqual([(kind, "id='retry-1'" in xml) for kind, _, xml in self.rooms.calls], [("send", True)] * 2)
        self.rooms.calls.clear()
        for client_id in (1, "", "y" * 65, "no spaces", "sm\u00f8rrebr\u00f8d"):
            answer = await self.request("POST", "/api/rooms/tea/messages", {"body": "hi", "id": client_id})
            self.assertAnswer(answer, 400, "Invalid id")
        self.assertEqual(self.rooms.calls, [])

    async def test_message_errors_are_400(self) -> None:
        """A room message with nothing to send, a bad marker or a body that is not JSON gets its 400 string."""
        await self.make_room()
        cases = [
            ({}, "No valid message elements"),
            ({"markable": True}, "No valid message elements"),
            ({"body": 5}, "Invalid message body"),
            ({"body": "x", "markable": "yes"}, "Invalid markable"),
            ({"chat_marker": {"type": "seen", "id": "m1"}}, "Invalid chat marker"),
        ]
        for body, message in cases:
            self.assertAnswer(await self.request("POST", "/api/rooms/tea/messages", body), 400, message)
        answer = await self.request(
            "POST", "/api/rooms/tea/messages", headers={"Content-Type": "application/json"}, data=b"{"
        )
        self.assertAnswer(answer, 400, "Invalid request body")
        self.assertEqual(self.rooms.calls, [])

    async def test_room_archive(self) -> None:
        """GET /api/rooms/{id}/messages answers the room archive as type "message" entries; bad limits are 400."""
        await self.make_room()
        self.rooms.archives["tea"] = [archived(f"tea@{SERVICE}/{BOB}", f"tea@{SERVICE}", "hello", 1000, "r1")]
        self.assertAnswer(
            await self.request("GET", "/api/rooms/tea/messages?limit=10"),
            200,
            [{"id": "r1", "timestamp": 1000, "type": "message", "from": BOB, "body": "hello"}],
        )
        self.assertAnswer(await self.request("GET", "/api/rooms/tea/messages?limit=999"), 400, "Invalid limit")
        self.assertAnswer(await self.request("GET", "/api/rooms/tea/messages?x=1"), 400, "Invalid query string")


class RefusalTests(RoomsTestCase):
    async def test_unknown_room_is_404_on_every_route(self) -> None:
        """Every route on a room the service does not know answers 404 "Room not found"."""
        for method, path, body in (
            ("GET", "/api/rooms/nope", None),
            ("PUT", "/api/rooms/nope/config", CONFIG),
            ("POST", "/api/rooms/nope/users", {"user": BOB}),
            ("DELETE", f"/api/rooms/nope/users/{BOB}", None),
            ("POST", "/api/rooms/nope/messages", {"body": "hi"}),
            ("GET", "/api/rooms/nope/messages", None),
        ):
            self.assertAnswer(await self.request(method, path, body), 404, "Room not found")

    async def test_service_refusals_map_to_403_404_and_400(self) -> None:
        """Not a member and not allowed are 403, a missing service 404, a malformed request 400, each with its text."""
        await self.make_room()
        session = self.bridge.session()
        cases = [
            (NotRoomMember("Given user does not occupy this room"), 403),
            (RoomNotAllowed("Given user does not have permission"), 403),
            (RoomNotFound("Room not found"), 404),
            (RoomServiceNotFound("MUC Light server not found"), 404),
            (RoomBadRequest("Bad config"), 400),
        ]
        for error, status in cases:
            session.failure = error
            for method, path, body in (
                ("GET", "/api/rooms", None),
                ("POST", "/api/rooms", CONFIG),
                ("GET", "/api/rooms/tea", None),
                ("PUT", "/api/rooms/tea/config", CONFIG),
                ("POST", "/api/rooms/tea/users", {"user": BOB}),
                ("DELETE", f"/api/rooms/tea/users/{BOB}", None),
                ("POST", "/api/rooms/tea/messages", {"body": "hi"}),
                ("GET", "/api/rooms/tea/messages", None),
            ):
                self.assertAnswer(await self.request(method, path, body), status, error.message)

    async def test_unreachable_server_is_503(self) -> None:
        """A room call whose stream has ended is 503 "XMPP server unavailable"."""
        await self.make_room()
        self.bridge.session().failure = ServerUnavailable("the XMPP stream has ended")
        self.assertAnswer(await self.request("GET", "/api/rooms/tea"), 503, "XMPP server unavailable")

    async def test_unauthenticated_room_calls_are_401(self) -> None:
        """Room routes without credentials are 401 before the room id is even looked at."""
        for method, path in (("GET", "/api/rooms"), ("PUT", "/api/rooms"), ("GET", "/api/rooms/a%20b")):
            self.assertAnswer(await self.request(method, path, auth=None), 401, "Unauthorized")

    async def test_unrouted_methods_are_405(self) -> None:
        """A method a room path does not have is 405 with Allow."""
        response, body = await self.request("POST", "/api/rooms/tea/config", CONFIG)
        self.assertEqual((response.code, body), (405, "Method not allowed"))
        self.assertEqual(response.headers.getRawHeaders("allow"), ["PUT"])
