"""MUC Light room administration (MongooseIM's ``urn:xmpp:muclight:0#...``): creating a
room (on the service JID with a generated id, or on a room JID with that id), reading its
info, configuration and affiliations (nothing when the client's version is current),
changing its configuration and affiliations, and destroying it.

Every change is committed to the store, then announced to the occupants (notices from
``bridge.muclight.rooms``), then acknowledged. A change that loses a race with another
bridge process (``VersionConflict``) is read again and retried a few times.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from twisted.logger import Logger
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.xish import domish

from bridge.muclight.handlers.base import ROOM, SERVICE, Answer, MucLightHandler, Reply, Request
from bridge.muclight.protocol import CONFIG_FIELDS, add_users, user_items, version_of
from bridge.muclight.rooms import (
    affiliations_notice,
    apply_changes,
    archived_notice,
    check_member_changes,
    creation_affiliations,
    new_room_id,
    notices_for,
    room_notice,
)
from bridge.protocol.namespaces import NS_AFFILIATIONS, NS_CONFIGURATION, NS_CREATE, NS_DESTROY, NS_INFO
from bridge.store import OWNER, NewArchiveItem, Room, RoomExists, VersionConflict

log = Logger()

# Attempts at a change when another process changed the same room meanwhile.
RETRIES = 3
# Attempts at a generated room id that is free.
ID_ATTEMPTS = 5


class _Changed(Exception):
    """The room changed since it was read (raised only by ``_commit``): read, try again."""


def config_values(container: domish.Element, ns: str) -> dict[str, str]:
    """The configuration fields ``container`` sets; bad-request for an unknown one."""
    values: dict[str, str] = {}
    for element in container.elements():
        if element.uri != ns or element.name not in CONFIG_FIELDS:
            raise StanzaError("bad-request", text=f"Unknown configuration field: {element.name}"[:200])
        values[element.name] = str(element)
    return values


def parse_create(payload: domish.Element) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """(configuration with defaults, requested occupants) of a creation request."""
    config = dict(CONFIG_FIELDS)
    requested: list[tuple[str, str]] = []
    for element in payload.elements():
        if element.uri != NS_CREATE:
            raise StanzaError("bad-request")
        if element.name == "configuration":
            config.update(config_values(element, NS_CREATE))
        elif element.name == "occupants":
            items = user_items(element, NS_CREATE)
            if items is None:
                raise StanzaError("bad-request", text="Invalid occupant list")
            requested = items
        else:
            raise StanzaError("bad-request")
    return config, requested


def _versioned(ns: str, room: Room, version: str | None) -> domish.Element | None:
    """A ``<query xmlns=ns>`` opening with the room's version; None if ``version`` is it."""
    if version == room.version:
        return None
    query = domish.Element((ns, "query"))
    query.addElement("version", content=room.version)
    return query


def _add_config(parent: domish.Element, room: Room) -> None:
    parent.addElement("roomname", content=room.name)
    parent.addElement("subject", content=room.subject)


class RoomAdminHandler(MucLightHandler):
    iq_handlers = {
        (SERVICE, "set", NS_CREATE, "query"): "create_room",
        (ROOM, "set", NS_CREATE, "query"): "create_room",
        (ROOM, "get", NS_INFO, "query"): "get_info",
        (ROOM, "get", NS_CONFIGURATION, "query"): "get_configuration",
        (ROOM, "get", NS_AFFILIATIONS, "query"): "get_affiliations",
        (ROOM, "set", NS_CONFIGURATION, "query"): "set_configuration",
        (ROOM, "set", NS_AFFILIATIONS, "query"): "set_affiliations",
        (ROOM, "set", NS_DESTROY, "query"): "destroy",
    }

    # -- reading

    async def get_info(self, request: Request) -> Reply:
        room = await self.occupied(request)
        query = _versioned(NS_INFO, room, version_of(request.payload))
        if query is not None:
            _add_config(query.addElement("configuration"), room)
            add_users(query.addElement("occupants"), list(room.affiliations))
        return query

    async def get_configuration(self, request: Request) -> Reply:
        room = await self.occupied(request)
        query = _versioned(NS_CONFIGURATION, room, version_of(request.payload))
        if query is not None:
            _add_config(query, room)
        return query

    async def get_affiliations(self, request: Request) -> Reply:
        room = await self.occupied(request)
        query = _versioned(NS_AFFILIATIONS, room, version_of(request.payload))
        if query is not None:
            add_users(query, list(room.affiliations))
        return query

    # -- creating

    async def create_room(self, request: Request) -> Reply:
        """Create the addressed room, or one with a free generated id; the result comes
        from the new room's JID. As MongooseIM's MUC Light, creating is announced, not
        archived: the archive starts with the first change or message."""
        creator = request.require_user() if request.room_id is None else request.user
        config, requested = parse_create(request.payload)
        affiliations = creation_affiliations(creator, requested)
        settings = self.state.settings
        for _ in range(ID_ATTEMPTS):
            chosen = request.room_id or new_room_id()
            room_jid = self.state.room_jid(chosen)
            blocked = await self.store.blocking([jid for jid, _ in requested], room_jid, creator)
            occupants = [(jid, aff) for jid, aff in affiliations if jid not in blocked]
            if len(occupants) > settings.max_occupants:
                raise StanzaError("bad-request", text="Max occupants number reached")
            version = self.state.new_version()
            room = Room(chosen, config["roomname"], config["subject"], version, tuple(occupants))
            try:
                await self.store.create_room(room, None)
            except RoomExists:
                if request.room_id is not None:
                    raise StanzaError("conflict", text="Room already exists") from None
                continue
            log.info("Room {room} created by {user}", room=room_jid, user=creator)
            for jid, affiliation in occupants:
                notice = affiliations_notice([(jid, affiliation)], version)
                self.deliver(jid, room_notice(room_jid, request.stanza_id, notice))
            return Answer(origin=room_jid)
        raise StanzaError("internal-server-error", text="Could not generate a free room id")

    # -- changing

    async def _commit(self, room: Room, new: Room | None, archive_items: list[NewArchiveItem]) -> None:
        try:
            await self.store.update_room(room.room_id, room.version, new, archive_items)
        except VersionConflict:
            # Another bridge process changed the room since it was read.
            raise _Changed() from None

    async def _retrying(self, request: Request, room: Room, change: Callable[[Room], Awaitable[None]]) -> None:
        for attempt in range(RETRIES):
            try:
                await change(room)
                return
            except _Changed:
                if attempt == RETRIES - 1:
                    raise StanzaError("resource-constraint", text="The room keeps changing; try again") from None
            room = await self.occupied(request)

    async def set_configuration(self, request: Request) -> Reply:
        room = await self.occupied(request)
        values = config_values(request.payload, NS_CONFIGURATION)
        if not values:
            raise StanzaError("bad-request", text="No configuration fields")
        only_subject = set(values) == {"subject"}
        if room.affiliation(request.user) != OWNER and not (self.state.settings.all_can_configure or only_subject):
            raise StanzaError("not-allowed", text="Given user does not have permission to change config")

        async def change(current: Room) -> None:
            version = self.state.new_version()
            name, subject = values.get("roomname", current.name), values.get("subject", current.subject)
            await self._commit(current, Room(current.room_id, name, subject, version, current.affiliations), [])
            notice = domish.Element((NS_CONFIGURATION, "x"))
            notice.addElement("prev-version", content=current.version)
            notice.addElement("version", content=version)
            for field, value in values.items():
                notice.addElement(field, content=value)
            message = room_notice(self.state.room_jid(current.room_id), request.stanza_id, notice)
            for jid in current.occupants:
                self.deliver(jid, message)

        await self._retrying(request, room, change)
        return None

    async def set_affiliations(self, request: Request) -> Reply:
        room = await self.occupied(request)
        requested = user_items(request.payload, NS_AFFILIATIONS)
        if not requested:
            raise StanzaError("bad-request", text="Invalid affiliation list")
        user, room_jid, stanza_id = request.user, self.state.room_jid(room.room_id), request.stanza_id
        settings = self.state.settings

        async def change(current: Room) -> None:
            if current.affiliation(user) != OWNER:
                check_member_changes(current, user, requested, settings.all_can_invite)
            joining = [jid for jid, aff in requested if aff != "none" and current.affiliation(jid) is None]
            blocked = await self.store.blocking(joining, room_jid, user)
            occupants, changes = apply_changes(current, [item for item in requested if item[0] not in blocked])
            if not changes:
                return
            if len(occupants) > settings.max_occupants:
                raise StanzaError("bad-request", text="Max occupants number reached")
            version = self.state.new_version()
            new: Room | None = None
            archived: list[NewArchiveItem] = []
            if occupants:
                new = Room(current.room_id, current.name, current.subject, version, tuple(occupants))
                xml = archived_notice(room_jid, stanza_id, changes, version)
                archived = [NewArchiveItem(stanza_id, "affiliation", None, xml)]
            await self._commit(current, new, archived)
            if new is None:
                log.info("Room {room} destroyed: its last occupant left", room=room_jid)
            notices = notices_for(current.occupants, [jid for jid, _ in occupants], changes, version, current.version)
            for jid, notice in notices.items():
                self.deliver(jid, room_notice(room_jid, stanza_id, notice))

        await self._retrying(request, room, change)
        return None

    async def destroy(self, request: Request) -> Reply:
        room = await self.occupied(request)
        if room.affiliation(request.user) != OWNER:
            raise StanzaError("not-allowed", text="Given user cannot delete this room")
        room_jid = self.state.room_jid(room.room_id)

        async def change(current: Room) -> None:
            await self._commit(current, None, [])
            log.info("Room {room} destroyed by {user}", room=room_jid, user=request.user)
            for jid in current.occupants:
                gone = affiliations_notice([(jid, "none")])
                self.deliver(jid, room_notice(room_jid, request.stanza_id, gone, domish.Element((NS_DESTROY, "x"))))

        await self._retrying(request, room, change)
        return None
