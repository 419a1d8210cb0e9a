"""``/api/rooms``: MUC Light group rooms (MongooseIM's client API), driven by MUC Light
stanzas from the user's session to the configured service (``muclight.service``).

``{id}`` is a bare room id or a room JID whose host is the service. Status codes and error
strings follow MongooseIM: 404 "Room not found", 403 for a user outside the room or
without the right, 404 "MUC Light server not found" when the service does not answer.
"""

from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.web.server import Request
from twisted.words.protocols.jabber.jid import JID

from bridge.api.auth import Authenticator
from bridge.api.errors import BadRequest
from bridge.api.input import archive_window, chat_marker, client_id, json_object, markable, message_properties
from bridge.api.rendering import Response, json_errors, json_route
from bridge.protocol.convert import build_message, room_message_to_json
from bridge.protocol.jid import parse
from bridge.protocol.muclight import room_info_json, room_summary_json
from bridge.protocol.xml import is_xml_text
from bridge.xmpp.muclight_client import MucLightClient
from bridge.xmpp.session import Session

# Longest room id accepted (a JID localpart is at most 1023 bytes; ``parse`` checks bytes).
MAX_ROOM_ID = 1023


def room_config(body: dict[str, Any]) -> tuple[str, str]:
    """``name`` and ``subject`` of a create or config body (both required, strings)."""
    values = []
    for key, option, missing in (
        ("name", "roomname", "Missing room name"),
        ("subject", "subject", "Missing room subject"),
    ):
        value = body.get(key)
        if value is None:
            raise BadRequest(missing)
        if not isinstance(value, str) or not is_xml_text(value):
            raise BadRequest(f"Validation failed for key: {option} with reason expected a string of XML text")
        values.append(value)
    return values[0], values[1]


def message_parts(body: dict[str, Any]) -> tuple[str | None, bool, dict[str, str] | None]:
    """(body, markable, chat_marker) of a room message; at least one of body and marker."""
    text = body.get("body")
    if text is not None and (not isinstance(text, str) or not is_xml_text(text)):
        raise BadRequest("Invalid message body")
    is_markable = markable(body) and text is not None
    marker = chat_marker(body)
    if text is None and marker is None:
        raise BadRequest("No valid message elements")
    return text, is_markable, marker


class RoomsApi:
    app = json_errors(Klein())

    def __init__(self, auth: Authenticator, service: str) -> None:
        self._auth = auth
        self._service = JID(service)

    def room(self, value: str) -> JID:
        """The room JID for an ``{id}`` path segment: a room id, or a JID on the service.

        Both go through ``bridge.protocol.jid.parse``: a bare id as the localpart of a JID on the
        service, anything with an ``@`` or ``/`` as a JID of its own.
        """
        if not value or len(value) > MAX_ROOM_ID or not is_xml_text(value):
            raise BadRequest("Invalid room ID")
        if "@" not in value and "/" not in value:
            jid = parse(f"{value}@{self._service.host}")
            if jid is None:
                raise BadRequest("Invalid room ID")
            return jid
        jid = parse(value)
        if jid is None or not jid.user or jid.resource:
            raise BadRequest("Invalid room ID")
        if jid.host != self._service.host:
            raise BadRequest("Invalid MUC Light domain")
        return jid

    async def _client(self, request: Request) -> MucLightClient:
        session: Session = await self._auth.session(request)
        return session.get(MucLightClient)

    @app.route("/", methods=["GET"], strict_slashes=False)
    @json_route
    async def list_rooms(self, request: Request) -> list[dict[str, str]]:
        client = await self._client(request)
        return [room_summary_json(room) for room in await client.rooms(self._service)]

    @app.route("/", methods=["POST"], strict_slashes=False)
    @json_route
    async def create(self, request: Request) -> Response:
        client = await self._client(request)
        name, subject = room_config(json_object(request))
        room_id = await client.create(self._service, None, name, subject)
        return Response(201, {"id": room_id})

    @app.route("/", methods=["PUT"], strict_slashes=False)
    @json_route
    async def create_without_id(self, request: Request) -> None:
        await self._auth.session(request)
        raise BadRequest("Missing room ID")

    @app.route("/<string:room_id>", methods=["PUT"])
    @json_route
    async def create_with_id(self, request: Request, room_id: str) -> Response:
        client = await self._client(request)
        room = self.room(room_id)
        name, subject = room_config(json_object(request))
        created = await client.create(self._service, room.user, name, subject)
        return Response(201, {"id": created})

    @app.route("/<string:room_id>", methods=["GET"])
    @json_route
    async def details(self, request: Request, room_id: str) -> dict[str, Any]:
        client = await self._client(request)
        return room_info_json(await client.info(self.room(room_id)))

    @app.route("/<string:room_id>", methods=["DELETE"])
    @json_route
    async def destroy(self, request: Request, room_id: str) -> Response:
        """Destroy the room (owner): 403 for a member or outsider, 404 for an unknown room."""
        client = await self._client(request)
        await client.destroy(self.room(room_id))
        return Response(204)

    @app.route("/<string:room_id>/config", methods=["PUT"])
    @json_route
    async def configure(self, request: Request, room_id: str) -> Response:
        client = await self._client(request)
        room = self.room(room_id)
        name, subject = room_config(json_object(request))
        await client.configure(room, name, subject)
        return Response(204)

    @app.route("/<string:room_id>/users", methods=["POST"], strict_slashes=False)
    @json_route
    async def invite(self, request: Request, room_id: str) -> Response:
        client = await self._client(request)
        room = self.room(room_id)
        user = self._user(json_object(request).get("user"))
        await client.set_affiliation(room, user, "member")
        return Response(204)

    @app.route("/<string:room_id>/users/", methods=["DELETE"])
    @json_route
    async def remove_nobody(self, request: Request, room_id: str) -> None:
        await self._auth.session(request)
        self.room(room_id)
        raise BadRequest("Missing JID")

    @app.route("/<string:room_id>/users/<string:user>", methods=["DELETE"])
    @json_route
    async def remove(self, request: Request, room_id: str, user: str) -> Response:
        client = await self._client(request)
        room = self.room(room_id)
        await client.set_affiliation(room, self._user(user), "none")
        return Response(204)

    @staticmethod
    def _user(value: object) -> str:
        if value is None or value == "":
            raise BadRequest("Missing JID")
        if not isinstance(value, str) or not is_xml_text(value):
            raise BadRequest("Invalid user JID")
        jid = parse(value)  # stringprep, part lengths, empty labels; "a@b." is "a@b"
        if jid is None or not jid.user or jid.resource:
            raise BadRequest(f"Invalid user JID: {value}"[:300])
        return jid.userhost()

    @app.route("/<string:room_id>/messages", methods=["POST"], strict_slashes=False)
    @json_route
    async def send(self, request: Request, room_id: str) -> dict[str, str]:
        client = await self._client(request)
        room = self.room(room_id)
        try:
            body = json_object(request)
        except BadRequest:
            raise BadRequest("Invalid request body") from None  # MongooseIM's words for it
        text, is_markable, marker = message_parts(body)
        message = build_message(
            room,
            text,
            "groupchat",
            markable=is_markable,
            chat_marker=marker,
            properties=message_properties(body),
            message_id=client_id(body),
        )
        await client.send(room, message)
        return {"id": message["id"]}

    @app.route("/<string:room_id>/messages", methods=["GET"], strict_slashes=False)
    @json_route
    async def messages(self, request: Request, room_id: str) -> list[dict[str, Any]]:
        client = await self._client(request)
        room = self.room(room_id)
        limit, before = archive_window(request)
        end = None if before is None else before - 1
        found = await client.archive(room, end, limit)
        return [room_message_to_json(item.message, item.timestamp, item.archive_id) for item in found]
