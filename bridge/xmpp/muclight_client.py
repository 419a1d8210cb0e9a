"""The client side of MongooseIM's MUC Light protocol (``urn:xmpp:muclight:0``), on a
user's session: what the REST room calls send to the configured service.

Only stanzas go out, so the same calls work against the bridge's own component and a
MongooseIM server's mod_muc_light. Refusals become the ``RoomError`` kinds of
``bridge.xmpp.errors``. A ``not-allowed`` is ambiguous (Prosody says it for a service that
does not exist, MUC Light for a missing privilege): a disco#info to the service decides.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from twisted.internet import defer
from twisted.words.protocols.jabber.error import StanzaError, exceptionFromStanza
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel.subprotocols import XMPPHandler

from bridge.convert import child
from bridge.jid import parse
from bridge.muclight.protocol import (
    NOT_OCCUPANT,
    NS_AFFILIATIONS,
    NS_BRIDGE_ERRORS,
    NS_CONFIGURATION,
    NS_CREATE,
    NS_DISCO_INFO,
    NS_DISCO_ITEMS,
    NS_INFO,
    bare_jid,
)
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


@dataclass(frozen=True)
class RoomInfo:
    name: str
    subject: str
    participants: list[tuple[str, str]]


def _config(query: domish.Element | None) -> tuple[str, str]:
    if query is None:
        return "", ""
    name = next((str(e) for e in query.elements() if e.name == "roomname"), "")
    subject = next((str(e) for e in query.elements() if e.name == "subject"), "")
    return name, subject


def _users(container: domish.Element | None) -> list[tuple[str, str]]:
    if container is None:
        return []
    users = []
    for element in container.elements():
        jid = bare_jid(str(element))
        if element.name == "user" and jid is not None:
            users.append((jid, element.getAttribute("affiliation", "member")))
    return users


class MucLightClient(XMPPHandler):
    """Room requests on the session it is attached to (``session.handler(MucLightClient)``)."""

    def __init__(self) -> None:
        super().__init__()
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
        query = domish.Element((NS_CREATE, "query"))
        configuration = query.addElement("configuration")
        configuration.addElement("roomname", content=name)
        configuration.addElement("subject", content=subject)
        to = service if room_id is None else JID(tuple=(room_id, service.host, None))
        result = await self._iq("set", to, query, service)
        if room_id is not None:
            return room_id
        origin = parse(result.getAttribute("from", service.full()))
        if origin is None or not origin.user or origin.host != service.host:
            raise RoomBadRequest("The MUC Light service did not name the new room")
        return origin.user

    async def rooms(self, service: JID) -> list[dict[str, str]]:
        """The user's rooms with name and subject (disco#items, then each configuration)."""
        items = await self._iq("get", service, domish.Element((NS_DISCO_ITEMS, "query")), service)
        rooms = []
        for item in items.query.elements() if items.query is not None else []:
            jid = parse(item.getAttribute("jid"))
            if item.name == "item" and jid is not None and jid.user and jid.host == service.host:
                rooms.append(jid)

        async def details(room: JID) -> dict[str, str] | None:
            try:
                name, subject = await self.configuration(room)
            except (RoomNotFound, NotRoomMember):
                return None  # left or destroyed since the listing
            return {"id": room.user or "", "name": name, "subject": subject}

        found = await defer.gatherResults([defer.Deferred.fromCoroutine(details(room)) for room in rooms])
        return [each for each in found if each is not None]

    async def configuration(self, room: JID) -> tuple[str, str]:
        query = domish.Element((NS_CONFIGURATION, "query"))
        result = await self._iq("get", room, query, self._service(room))
        return _config(result.query)

    async def info(self, room: JID) -> RoomInfo:
        result = await self._iq("get", room, domish.Element((NS_INFO, "query")), self._service(room))
        query = result.query
        configuration = child(query, "configuration") if query is not None else None
        occupants = child(query, "occupants") if query is not None else None
        name, subject = _config(configuration)
        return RoomInfo(name, subject, _users(occupants))

    async def configure(self, room: JID, name: str, subject: str) -> None:
        query = domish.Element((NS_CONFIGURATION, "query"))
        query.addElement("roomname", content=name)
        query.addElement("subject", content=subject)
        await self._iq("set", room, query, self._service(room))

    async def set_affiliation(self, room: JID, user: str, affiliation: str) -> None:
        query = domish.Element((NS_AFFILIATIONS, "query"))
        query.addElement("user", content=user)["affiliation"] = affiliation
        await self._iq("set", room, query, self._service(room))

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
            await self._iq("get", room, domish.Element((NS_CONFIGURATION, "query")), self._service(room))
            bounce = self._bounces.get(message_id)
            if bounce is not None:
                raise await self._refusal(bounce, self._service(room))
        finally:
            self._bounces.pop(message_id, None)

    async def archive(self, room: JID, end: int | None, limit: int) -> list[ArchivedMessage]:
        """The room's last ``limit`` archived stanzas at or before ``end`` (ms), oldest first."""
        try:
            return await self.parent.handler(ArchiveClient).query(None, end, limit, archive=room)
        except StanzaError as e:
            raise await self._refusal(e, self._service(room)) from None
