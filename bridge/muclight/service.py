"""The MUC Light service (MongooseIM's ``urn:xmpp:muclight:0``) on the component stream.

Service JID: disco#info and disco#items (the sender's rooms with name and version), room
creation with a generated id, blocking lists. Room JIDs: creation with a given id,
info / configuration / affiliations (with version checks), configuration and affiliation
changes, destroy, groupchat messages and XEP-0313 MAM (``bridge.muclight.archive``).
Anyone who does not occupy a room gets ``item-not-found`` for anything sent to it.

Stanzas for one room are handled one at a time, in arrival order: a change is committed
to the store, then announced, then acknowledged, so a client that gets the answer to an
IQ sent after a message knows the message is archived. Broadcasts and notices go to the
occupants' available full JIDs (``bridge.muclight.presence``).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID
from twisted.words.protocols.jabber.xmlstream import toResponse
from twisted.words.xish import domish
from wokkel.subprotocols import XMPPHandler

from bridge.convert import child, to_xml
from bridge.jid import parse
from bridge.muclight import archive, rsm
from bridge.muclight.presence import AvailableResources
from bridge.muclight.protocol import (
    CONFIG_FIELDS,
    NOT_OCCUPANT,
    NS_AFFILIATIONS,
    NS_BLOCKING,
    NS_BRIDGE_ERRORS,
    NS_CONFIGURATION,
    NS_CREATE,
    NS_DATA,
    NS_DESTROY,
    NS_DISCO_INFO,
    NS_DISCO_ITEMS,
    NS_INFO,
    NS_MAM,
    NS_MAM_1,
    NS_MUCLIGHT,
    NS_PING,
    NS_PRIVILEGE,
    NS_RSM,
    NS_SID,
    add_users,
    bare_jid,
    user_items,
    version_of,
)
from bridge.muclight.rooms import (
    Refused,
    RoomSettings,
    affiliations_notice,
    apply_changes,
    check_member_changes,
    creation_affiliations,
    new_room_id,
    new_version,
    notices_for,
)
from bridge.store import OWNER, NewArchiveItem, Room, RoomExists, Store, StoreError, VersionConflict

log = Logger()

STANZA_NAMESPACES = ("jabber:component:accept", "jabber:client", "jabber:server")
# Attempts at a change when another process changed the same room meanwhile.
RETRIES = 3

IqResult = tuple[domish.Element | None, str | None]


def plain(element: domish.Element) -> domish.Element:
    """``element`` with stanza-level namespaces removed, so it serialises the same on any
    stream and in the archive (where it is parsed back as ``jabber:client``)."""
    if element.uri in STANZA_NAMESPACES:
        element.uri = None
    if element.defaultUri in STANZA_NAMESPACES:
        element.defaultUri = None
    for each in element.elements():
        plain(each)
    return element


def _jid(text: str | None) -> JID | None:
    """A stanza's ``to`` or ``from``; None when absent or not a JID (``bridge.jid.parse``)."""
    return parse(text)


class MucLightService(XMPPHandler):
    """Serves ``service`` (e.g. ``muclight.example.com``) and its rooms from ``store``."""

    def __init__(self, service: str, store: Store, settings: RoomSettings) -> None:
        super().__init__()
        self.service = service
        self.store = store
        self.settings = settings
        self.available = AvailableResources()
        self.privileged = False
        self._locks: dict[str, defer.DeferredLock] = {}
        # Requests being handled, so tests and shutdown can wait for them.
        self.pending: set[defer.Deferred[None]] = set()

    def connectionInitialized(self) -> None:
        self.xmlstream.addObserver("/iq[@type='get']", self._on_stanza, handler=self._handle_iq)
        self.xmlstream.addObserver("/iq[@type='set']", self._on_stanza, handler=self._handle_iq)
        self.xmlstream.addObserver("/message", self._on_stanza, handler=self._handle_message)
        self.xmlstream.addObserver("/presence", self._on_presence)

    # -- dispatch

    def _on_stanza(self, stanza: domish.Element, handler: Callable[[domish.Element], Awaitable[None]]) -> None:
        stanza.handled = True  # type: ignore[attr-defined]
        work = defer.Deferred.fromCoroutine(self._guarded(handler, stanza))
        self.pending.add(work)
        work.addBoth(lambda _: self.pending.discard(work))

    async def _guarded(self, handler: Callable[[domish.Element], Awaitable[None]], stanza: domish.Element) -> None:
        try:
            await handler(stanza)
        except Refused as e:
            self._send_error(stanza, e)
        except StoreError as e:
            log.error("Store failure handling a {name}: {why}", name=stanza.name, why=str(e))
            self._send_error(stanza, Refused("internal-server-error"))
        except Exception:
            log.failure("Unexpected failure handling a {name}", name=stanza.name)
            self._send_error(stanza, Refused("internal-server-error"))

    def _send(self, stanza: domish.Element) -> None:
        if self.xmlstream is None:
            log.warn("Component stream down: a {name} for {to} is lost", name=stanza.name, to=stanza.getAttribute("to"))
            return
        self.send(stanza)

    def _send_error(self, stanza: domish.Element, refused: Refused) -> None:
        if stanza.getAttribute("type") in ("error", "result") or not stanza.getAttribute("from"):
            return
        app = domish.Element((NS_BRIDGE_ERRORS, NOT_OCCUPANT)) if refused.not_occupant else None
        error = StanzaError(refused.condition, text=refused.text, appCondition=app)
        response = toResponse(stanza, "error")
        response.addChild(error.getElement())
        self._send(response)

    async def _in_room(self, room_id: str, work: Callable[[], Awaitable[None]]) -> None:
        lock = self._locks.setdefault(room_id, defer.DeferredLock())
        await lock.acquire()
        try:
            await work()
        finally:
            lock.release()
            if not lock.locked and not lock.waiting:
                self._locks.pop(room_id, None)

    def _room_jid(self, room_id: str) -> str:
        return f"{room_id}@{self.service}"

    # -- presence

    def _on_presence(self, presence: domish.Element) -> None:
        presence.handled = True  # type: ignore[attr-defined]
        self.available.observe(presence)

    # -- IQ

    async def _handle_iq(self, iq: domish.Element) -> None:
        to, sender = _jid(iq.getAttribute("to")), _jid(iq.getAttribute("from"))
        payload = next(iter(iq.elements()), None)
        if to is None or sender is None or payload is None or to.resource:
            raise Refused("bad-request")
        if to.host != self.service:
            raise Refused("service-unavailable")
        if to.user is None:
            result, origin = await self._service_iq(iq, sender, payload)
            self._reply(iq, result, origin)
            return
        room_id = to.user

        async def work() -> None:
            result, origin = await self._room_iq(iq, room_id, sender, payload)
            self._reply(iq, result, origin)

        await self._in_room(room_id, work)

    def _reply(self, iq: domish.Element, payload: domish.Element | None, origin: str | None) -> None:
        response = toResponse(iq, "result")
        if origin is not None:
            response["from"] = origin
        if payload is not None:
            response.addChild(payload)
        self._send(response)

    async def _service_iq(self, iq: domish.Element, sender: JID, payload: domish.Element) -> IqResult:
        kind, key = iq["type"], (payload.uri, payload.name)
        user = sender.userhost()
        if kind == "get" and key == (NS_PING, "ping"):
            return None, None
        if kind == "get" and key == (NS_DISCO_INFO, "query"):
            return self._service_info(), None
        if not sender.user:
            raise Refused("not-allowed", "MUC Light serves users")
        if kind == "get" and key == (NS_DISCO_ITEMS, "query"):
            return await self._disco_items(user, payload), None
        if kind == "set" and key == (NS_CREATE, "query"):
            return await self._create(iq, user, None, payload)
        if key == (NS_BLOCKING, "query"):
            return await (self._get_blocking(user) if kind == "get" else self._set_blocking(user, payload)), None
        raise Refused("feature-not-implemented")

    def _service_info(self) -> domish.Element:
        query = domish.Element((NS_DISCO_INFO, "query"))
        identity = query.addElement("identity")
        identity["category"], identity["type"], identity["name"] = "conference", "text", "MUC Light"
        # The MAM namespaces the rooms answer (``_room_iq``), listed here as MongooseIM did.
        for feature in (NS_MUCLIGHT, NS_MAM_1, NS_MAM, NS_DISCO_INFO, NS_DISCO_ITEMS):
            query.addElement("feature")["var"] = feature
        return query

    async def _disco_items(self, user: str, payload: domish.Element) -> domish.Element:
        """The user's rooms by room JID; one XEP-0059 page of them when the query asks."""
        rooms = {self._room_jid(room.room_id): room for room in await self.store.user_rooms(user)}
        jids = sorted(rooms)
        page = rsm.parse_request(child(payload, "set", NS_RSM))
        query = domish.Element((NS_DISCO_ITEMS, "query"))
        chosen, first_index = rsm.select(jids, page)
        for jid in chosen:
            item = query.addElement("item")
            item["jid"], item["name"], item["version"] = jid, rooms[jid].name, rooms[jid].version
        if page is not None:
            query.addChild(rsm.answer(chosen, first_index, len(jids)))
        return query

    async def _room_iq(self, iq: domish.Element, room_id: str, sender: JID, payload: domish.Element) -> IqResult:
        kind, key = iq["type"], (payload.uri, payload.name)
        user = sender.userhost()
        if kind == "set" and key == (NS_CREATE, "query"):
            return await self._create(iq, user, room_id, payload)
        room = await self._occupied(room_id, user)
        if kind == "get":
            if key == (NS_CONFIGURATION, "query"):
                return self._configuration(room, version_of(payload)), None
            if key == (NS_AFFILIATIONS, "query"):
                return self._affiliations(room, version_of(payload)), None
            if key == (NS_INFO, "query"):
                return self._info(room, version_of(payload)), None
            if key == (NS_DISCO_INFO, "query"):
                return self._room_disco(room), None
            if key == (NS_PING, "ping"):
                return None, None
            if key in ((NS_MAM, "query"), (NS_MAM_1, "query")):
                return self._mam_form(payload.uri), None
        else:
            if key == (NS_CONFIGURATION, "query"):
                await self._set_configuration(iq, room, user, payload)
                return None, None
            if key == (NS_AFFILIATIONS, "query"):
                await self._set_affiliations(iq, room, user, payload)
                return None, None
            if key == (NS_DESTROY, "query"):
                await self._destroy(iq, room, user)
                return None, None
            if key in ((NS_MAM, "query"), (NS_MAM_1, "query")):
                return await self._mam_query(iq, room, payload), None
        if payload.uri is not None and payload.uri.startswith(NS_MUCLIGHT):
            raise Refused("bad-request")
        raise Refused("feature-not-implemented")

    async def _occupied(self, room_id: str, user: str) -> Room:
        room = await self.store.get_room(room_id)
        if room is None:
            raise Refused("item-not-found")
        if room.affiliation(user) is None:
            raise Refused("item-not-found", not_occupant=True)
        return room

    # -- reading a room

    def _config_children(self, parent: domish.Element, room: Room) -> None:
        parent.addElement("roomname", content=room.name)
        parent.addElement("subject", content=room.subject)

    def _configuration(self, room: Room, version: str | None) -> domish.Element | None:
        if version == room.version:
            return None
        query = domish.Element((NS_CONFIGURATION, "query"))
        query.addElement("version", content=room.version)
        self._config_children(query, room)
        return query

    def _affiliations(self, room: Room, version: str | None) -> domish.Element | None:
        if version == room.version:
            return None
        query = domish.Element((NS_AFFILIATIONS, "query"))
        query.addElement("version", content=room.version)
        add_users(query, list(room.affiliations))
        return query

    def _info(self, room: Room, version: str | None) -> domish.Element | None:
        if version == room.version:
            return None
        query = domish.Element((NS_INFO, "query"))
        query.addElement("version", content=room.version)
        self._config_children(query.addElement("configuration"), room)
        add_users(query.addElement("occupants"), list(room.affiliations))
        return query

    def _room_disco(self, room: Room) -> domish.Element:
        query = domish.Element((NS_DISCO_INFO, "query"))
        identity = query.addElement("identity")
        identity["category"], identity["type"], identity["name"] = "conference", "text", room.name
        for feature in (NS_MUCLIGHT, NS_MAM, NS_MAM_1, NS_DISCO_INFO):
            query.addElement("feature")["var"] = feature
        return query

    # -- notices

    def _deliver(self, user: str, stanza: domish.Element) -> None:
        """Send ``stanza`` to every available full JID of ``user`` (none: the archive waits)."""
        for full in self.available.resources(user):
            stanza["to"] = full
            self._send(stanza)

    def _notice(self, room_jid: str, stanza_id: str, *payloads: domish.Element) -> domish.Element:
        message = domish.Element((None, "message"))
        message["from"], message["type"], message["id"] = room_jid, "groupchat", stanza_id
        for payload in payloads:
            message.addChild(payload)
        message.addElement("body")
        return message

    def _archived_notice(self, room_jid: str, stanza_id: str, items: list[tuple[str, str]], version: str) -> str:
        message = domish.Element((None, "message"))
        message["from"], message["type"], message["id"] = room_jid, "groupchat", stanza_id
        message.addChild(affiliations_notice(items, version))
        return to_xml(message)

    # -- creating

    def _parse_create(self, payload: domish.Element) -> tuple[dict[str, str], list[tuple[str, str]]]:
        config = dict(CONFIG_FIELDS)
        requested: list[tuple[str, str]] = []
        for element in payload.elements():
            if element.uri != NS_CREATE:
                raise Refused("bad-request")
            if element.name == "configuration":
                config.update(self._config_values(element, NS_CREATE))
            elif element.name == "occupants":
                items = user_items(element, NS_CREATE)
                if items is None:
                    raise Refused("bad-request", "Invalid occupant list")
                requested = items
            else:
                raise Refused("bad-request")
        return config, requested

    def _config_values(self, container: domish.Element, ns: str) -> dict[str, str]:
        values: dict[str, str] = {}
        for element in container.elements():
            if element.uri != ns or element.name not in CONFIG_FIELDS:
                raise Refused("bad-request", f"Unknown configuration field: {element.name}"[:200])
            values[element.name] = str(element)
        return values

    async def _create(self, iq: domish.Element, creator: str, room_id: str | None, payload: domish.Element) -> IqResult:
        config, requested = self._parse_create(payload)
        affiliations = creation_affiliations(creator, requested)
        for _ in range(5):
            chosen = room_id or new_room_id()
            room_jid = self._room_jid(chosen)
            blocked = await self.store.blocking([jid for jid, _ in requested], room_jid, creator)
            occupants = [(jid, aff) for jid, aff in affiliations if jid not in blocked]
            if len(occupants) > self.settings.max_occupants:
                raise Refused("bad-request", "Max occupants number reached")
            version = new_version()
            room = Room(chosen, config["roomname"], config["subject"], version, tuple(occupants))
            stanza_id = iq.getAttribute("id") or uuid.uuid4().hex
            try:
                # As MongooseIM's MUC Light: creating is announced, not archived; the
                # archive starts with the first change or message.
                await self.store.create_room(room, None)
            except RoomExists:
                if room_id is not None:
                    raise Refused("conflict", "Room already exists") from None
                continue
            log.info("Room {room} created by {user}", room=room_jid, user=creator)
            for jid, affiliation in occupants:
                self._deliver(
                    jid, self._notice(room_jid, stanza_id, affiliations_notice([(jid, affiliation)], version))
                )
            return None, room_jid
        raise Refused("internal-server-error", "Could not generate a free room id")

    # -- changing

    async def _commit(
        self, room: Room, new: Room | None, archive_items: list[NewArchiveItem], retry: bool = True
    ) -> None:
        try:
            await self.store.update_room(room.room_id, room.version, new, archive_items)
        except VersionConflict:
            # Another bridge process changed the room since it was read.
            raise Refused("wait" if retry else "conflict") from None

    async def _retrying(self, room: Room, user: str, change: Callable[[Room], Awaitable[None]]) -> None:
        for attempt in range(RETRIES):
            try:
                await change(room)
                return
            except Refused as e:
                if e.condition != "wait" or attempt == RETRIES - 1:
                    if e.condition == "wait":
                        raise Refused("resource-constraint", "The room keeps changing; try again") from None
                    raise
            room = await self._occupied(room.room_id, user)

    async def _set_configuration(self, iq: domish.Element, room: Room, user: str, payload: domish.Element) -> None:
        values = self._config_values(payload, NS_CONFIGURATION)
        if not values:
            raise Refused("bad-request", "No configuration fields")
        only_subject = set(values) == {"subject"}
        if room.affiliation(user) != OWNER and not (self.settings.all_can_configure or only_subject):
            raise Refused("not-allowed", "Given user does not have permission to change config")

        async def change(current: Room) -> None:
            version = new_version()
            new = Room(
                current.room_id,
                values.get("roomname", current.name),
                values.get("subject", current.subject),
                version,
                current.affiliations,
            )
            await self._commit(current, new, [])
            notice = domish.Element((NS_CONFIGURATION, "x"))
            notice.addElement("prev-version", content=current.version)
            notice.addElement("version", content=version)
            for name, value in values.items():
                notice.addElement(name, content=value)
            message = self._notice(self._room_jid(current.room_id), iq.getAttribute("id") or uuid.uuid4().hex, notice)
            for jid in current.occupants:
                self._deliver(jid, message)

        await self._retrying(room, user, change)

    async def _set_affiliations(self, iq: domish.Element, room: Room, user: str, payload: domish.Element) -> None:
        requested = user_items(payload, NS_AFFILIATIONS)
        if not requested:
            raise Refused("bad-request", "Invalid affiliation list")
        room_jid = self._room_jid(room.room_id)
        stanza_id = iq.getAttribute("id") or uuid.uuid4().hex

        async def change(current: Room) -> None:
            if current.affiliation(user) != OWNER:
                check_member_changes(current, user, requested, self.settings.all_can_invite)
            joining = [jid for jid, aff in requested if aff != "none" and current.affiliation(jid) is None]
            blocked = await self.store.blocking(joining, room_jid, user)
            occupants, changes = apply_changes(current, [item for item in requested if item[0] not in blocked])
            if not changes:
                return
            if len(occupants) > self.settings.max_occupants:
                raise Refused("bad-request", "Max occupants number reached")
            version = new_version()
            if occupants:
                new: Room | None = Room(current.room_id, current.name, current.subject, version, tuple(occupants))
                archived = [
                    NewArchiveItem(
                        stanza_id, "affiliation", None, self._archived_notice(room_jid, stanza_id, changes, version)
                    )
                ]
            else:
                new, archived = None, []
            await self._commit(current, new, archived)
            if new is None:
                log.info("Room {room} destroyed: its last occupant left", room=room_jid)
            notices = notices_for(current.occupants, [jid for jid, _ in occupants], changes, version, current.version)
            for jid, notice in notices.items():
                self._deliver(jid, self._notice(room_jid, stanza_id, notice))

        await self._retrying(room, user, change)

    async def _destroy(self, iq: domish.Element, room: Room, user: str) -> None:
        if room.affiliation(user) != OWNER:
            raise Refused("not-allowed", "Given user cannot delete this room")
        room_jid = self._room_jid(room.room_id)
        stanza_id = iq.getAttribute("id") or uuid.uuid4().hex

        async def change(current: Room) -> None:
            await self._commit(current, None, [])
            log.info("Room {room} destroyed by {user}", room=room_jid, user=user)
            for jid in current.occupants:
                destroyed = domish.Element((NS_DESTROY, "x"))
                self._deliver(jid, self._notice(room_jid, stanza_id, affiliations_notice([(jid, "none")]), destroyed))

        await self._retrying(room, user, change)

    # -- blocking

    async def _get_blocking(self, user: str) -> domish.Element:
        query = domish.Element((NS_BLOCKING, "query"))
        for kind, target in await self.store.blocking_list(user):
            query.addElement(kind, content=target)["action"] = "deny"
        return query

    async def _set_blocking(self, user: str, payload: domish.Element) -> None:
        changes: list[tuple[str, str, bool]] = []
        for element in payload.elements():
            action = element.getAttribute("action")
            target = bare_jid(str(element))
            if element.uri != NS_BLOCKING or element.name not in ("room", "user") or action not in ("deny", "allow"):
                raise Refused("bad-request")
            if target is None or (element.name == "room" and target.split("@", 1)[1] != self.service):
                raise Refused("bad-request", "Invalid JID")
            changes.append((element.name, target, action == "deny"))
        if not changes:
            raise Refused("bad-request")
        await self.store.set_blocking(user, changes)

    # -- room archive

    def _mam_form(self, ns: str) -> domish.Element:
        query = domish.Element((ns, "query"))
        form = query.addElement((NS_DATA, "x"))
        form["type"] = "form"
        for var in ("FORM_TYPE", "with", "start", "end"):
            field = form.addElement("field")
            field["var"] = var
            if var == "FORM_TYPE":
                field["type"] = "hidden"
                field.addElement("value", content=ns)
        return query

    async def _mam_query(self, iq: domish.Element, room: Room, payload: domish.Element) -> domish.Element:
        query = archive.parse_query(payload, self.store.is_archive_id)
        page = await self.store.query_archive(room.room_id, query)
        room_jid = self._room_jid(room.room_id)
        for item in page.items:
            self._send(archive.result_message(payload.uri, room_jid, iq["from"], payload.getAttribute("queryid"), item))
        return archive.fin(payload.uri, page)

    # -- messages

    async def _handle_message(self, message: domish.Element) -> None:
        message_type = message.getAttribute("type", "normal")
        to, sender = _jid(message.getAttribute("to")), _jid(message.getAttribute("from"))
        if message_type == "error":
            # A delivery bounced: that resource is gone.
            if sender is not None and sender.resource:
                self.available.remove(sender.full())
            return
        if to is None or sender is None:
            return
        if to.user is None:
            self._service_message(message, sender)
            return
        if message_type != "groupchat" or not sender.user:
            raise Refused("bad-request", "Rooms take groupchat messages")
        room_id = to.user

        async def work() -> None:
            await self._groupchat(message, room_id, sender.userhost())

        await self._in_room(room_id, work)

    def _service_message(self, message: domish.Element, sender: Any) -> None:
        privilege = next(message.elements(NS_PRIVILEGE, "privilege"), None)
        if privilege is not None and not sender.user and sender.resource is None:
            granted = {perm.getAttribute("access"): perm.getAttribute("type") for perm in privilege.elements()}
            self.privileged = granted.get("presence") in ("managed_entity", "roster")
            log.info("XEP-0356 privileges from {server}: {granted}", server=sender.full(), granted=granted)

    async def _groupchat(self, message: domish.Element, room_id: str, user: str) -> None:
        room = await self._occupied(room_id, user)
        room_jid = self._room_jid(room_id)
        stanza_id = message.getAttribute("id") or uuid.uuid4().hex
        broadcast = domish.Element((None, "message"))
        broadcast["from"], broadcast["type"], broadcast["id"] = f"{room_jid}/{user}", "groupchat", stanza_id
        for element in list(message.elements()):
            if element.uri == NS_SID and element.name == "stanza-id":
                continue  # only the room stamps its archive ids
            broadcast.addChild(plain(element))
        item = await self.store.archive_message(room_id, NewArchiveItem(stanza_id, "message", user, to_xml(broadcast)))
        if item is None:
            raise Refused("item-not-found")
        sid = broadcast.addElement((NS_SID, "stanza-id"))
        sid["id"], sid["by"] = item.archive_id, room_jid
        for jid in room.occupants:
            self._deliver(jid, broadcast)
