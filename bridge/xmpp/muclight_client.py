"""The client side of MongooseIM's MUC Light protocol (``urn:xmpp:muclight:0``), on a
user's session: what the REST room calls send to the configured service.

Only stanzas go out, so the same calls work against the bridge's own component and a
MongooseIM server's mod_muc_light. Refusals become the ``RoomError`` kinds of
``bridge.xmpp.errors``. A ``not-allowed`` is ambiguous (Prosody says it for a service that
does not exist, MUC Light for a missing privilege): a disco#info to the service decides.
"""

from __future__ import annotations

import uuid

from twisted.internet import defer
from twisted.words.protocols.jabber.error import StanzaError, exceptionFromStanza
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel.subprotocols import XMPPHandler

from bridge.protocol.muclight import (
    NOT_OCCUPANT,
    RoomInfo,
    RoomSummary,
    affiliation_query,
    configuration_query,
    create_query,
    created_room_id,
    destroy_query,
    info_query,
    parse_configuration,
    parse_info,
    room_jids,
)
from bridge.protocol.namespaces import NS_BRIDGE_ERRORS, NS_DISCO_INFO, NS_DISCO_ITEMS
from bridge.xmpp.archive import ArchiveClient, ArchivedMessage
from bridge.xmpp.errors import (
    NotRoomMember,
    RoomBadRequest,
    RoomExists,
    RoomNotAllowed,
    RoomNotFound,
    RoomServiceNotFound,
)

SERVICE_NOT_FOUND = "MUC Light server not found"
# What servers answer for a service that is not there: Prosody remote-server-timeout
# ("Component unavailable") or not-allowed (checked by disco), ejabberd forbidden.
_MISSING_SERVICE = ("forbidden", "remote-server-timeout", "remote-server-not-found", "service-unavailable")


class MucLightClient(XMPPHandler):
    """Room requests on the session it is attached to; room archives through ``archive``."""

    def __init__(self, archive: ArchiveClient) -> None:
        super().__init__()
        self._archive = archive
        # Message errors the service sent back, by the id of the message we sent.
        self._bounces: dict[str, StanzaError | None] = {}

    def connectionInitialized(self) -> None:
        self.xmlstream.addObserver("/message[@type='error']", self._on_bounce)

    def _on_bounce(self, message: domish.Element) -> None:
        message_id = message.getAttribute("id")
        if message_id in self._bounces:
            message.handled = True  # type: ignore[attr-defined]
            self._bounces[message_id] = exceptionFromStanza(message)

    async def _refusal(self, error: StanzaError, service: JID) -> Exception:
        condition = error.condition
        if condition == "item-not-found":
            app = getattr(error, "appCondition", None)
            if app is not None and app.uri == NS_BRIDGE_ERRORS and app.name == NOT_OCCUPANT:
                return NotRoomMember("Given user does not occupy this room")
            return RoomNotFound("Room not found")
        if condition == "conflict":
            return RoomExists("Room already exists")
        if condition == "bad-request":
            return RoomBadRequest(error.text or "Bad request")
        if condition in _MISSING_SERVICE:
            return RoomServiceNotFound(SERVICE_NOT_FOUND)
        if condition == "not-allowed":
            try:
                await self.parent.iq("get", domish.Element((NS_DISCO_INFO, "query")), to=service)
            except StanzaError:
                return RoomServiceNotFound(SERVICE_NOT_FOUND)
            return RoomNotAllowed(error.text or "Given user does not have permission")
        return error

    async def _iq(self, kind: str, to: JID, payload: domish.Element, service: JID) -> domish.Element:
        try:
            return await self.parent.iq(kind, payload, to=to)
        except StanzaError as e:
            raise await self._refusal(e, service) from None

    @staticmethod
    def _service(room: JID) -> JID:
        return JID(tuple=(None, room.host, None))

    async def create(self, service: JID, room_id: str | None, name: str, subject: str) -> str:
        """Create a room (with a generated id when ``room_id`` is None); returns its id."""
        to = service if room_id is None else JID(tuple=(room_id, service.host, None))
        result = await self._iq("set", to, create_query(name, subject), service)
        if room_id is not None:
            return room_id
        created = created_room_id(result, service)
        if created is None:
            raise RoomBadRequest("The MUC Light service did not name the new room")
        return created

    async def rooms(self, service: JID) -> list[RoomSummary]:
        """The user's rooms with name and subject (disco#items, then each configuration)."""
        items = await self._iq("get", service, domish.Element((NS_DISCO_ITEMS, "query")), service)

        async def details(room: JID) -> RoomSummary | None:
            try:
                name, subject = await self.configuration(room)
            except (RoomNotFound, NotRoomMember):
                return None  # left or destroyed since the listing
            return RoomSummary(room.user or "", name, subject)

        rooms = room_jids(items, service)
        found = await defer.gatherResults([defer.Deferred.fromCoroutine(details(room)) for room in rooms])
        return [each for each in found if each is not None]

    async def configuration(self, room: JID) -> tuple[str, str]:
        result = await self._iq("get", room, configuration_query(), self._service(room))
        return parse_configuration(result.query)

    async def info(self, room: JID) -> RoomInfo:
        result = await self._iq("get", room, info_query(), self._service(room))
        return parse_info(result)

    async def configure(self, room: JID, name: str, subject: str) -> None:
        await self._iq("set", room, configuration_query(name, subject), self._service(room))

    async def set_affiliation(self, room: JID, user: str, affiliation: str) -> None:
        await self._iq("set", room, affiliation_query(user, affiliation), self._service(room))

    async def destroy(self, room: JID) -> None:
        """Destroy ``room`` (owner only): the service removes it with its occupants and archive,
        and tells each occupant (an affiliation notice ``none`` with a ``#destroy`` element)."""
        await self._iq("set", room, destroy_query(), self._service(room))

    async def send(self, room: JID, message: domish.Element) -> None:
        """Send a groupchat message and return once the room has taken (and archived) it.

        A room handles its stanzas in order, so the answer to an IQ sent right after the
        message comes after the message was archived, or after the room refused it.
        """
        message_id = message.getAttribute("id") or uuid.uuid4().hex
        message["id"] = message_id
        self._bounces[message_id] = None
        try:
            self.parent.send(message)
            await self._iq("get", room, configuration_query(), self._service(room))
            bounce = self._bounces.get(message_id)
            if bounce is not None:
                raise await self._refusal(bounce, self._service(room))
        finally:
            self._bounces.pop(message_id, None)

    async def archive(self, room: JID, end: int | None, limit: int) -> list[ArchivedMessage]:
        """The room's last ``limit`` archived stanzas at or before ``end`` (ms), oldest first."""
        try:
            return await self._archive.query(None, end, limit, archive=room)
        except StanzaError as e:
            raise await self._refusal(e, self._service(room)) from None
