"""The MUC Light handlers on an in-memory component stream, for the handler tests: the
real ``ComponentConnection`` over wokkel's ``XmlStreamStub``, an in-memory store and a
``Clock``."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest
from twisted.words.protocols.jabber.error import NS_XMPP_STANZAS
from twisted.words.xish import domish
from wokkel.test.helpers import XmlStreamStub

from bridge.muclight.component import ComponentConnection
from bridge.muclight.handlers import service_handlers
from bridge.muclight.protocol import parse_element
from bridge.muclight.rooms import RoomSettings
from bridge.protocol.namespaces import NS_AFFILIATIONS
from bridge.protocol.xml import child, to_xml
from bridge.store import (
    ArchivedItem,
    ArchivePage,
    ArchiveQuery,
    NewArchiveItem,
    Room,
    RoomExists,
    Store,
    VersionConflict,
)

SERVICE = "muclight.localhost"
ROOM_JID = f"testroom@{SERVICE}"
ALICE, BOB, KATE, MIKE = (f"{name}@localhost" for name in ("alice", "bob", "kate", "mike"))


class MemoryStore(Store):
    """Just enough of ``Store`` for the handlers: rooms, an archive and blocking in dicts."""

    def __init__(self) -> None:
        self.rooms: dict[str, Room] = {}
        self.archive: dict[str, list[NewArchiveItem]] = {}
        self.denied: dict[str, list[tuple[str, str]]] = {}
        # update_room raises VersionConflict this many times first (another process won).
        self.conflicts = 0
        # The occupants' available resources as stored, in the order they were recorded.
        self.available: dict[str, None] = {}

    async def get_room(self, room_id: str) -> Room | None:
        return self.rooms.get(room_id)

    async def user_rooms(self, user: str) -> list[Room]:
        return [room for room in self.rooms.values() if room.affiliation(user) is not None]

    async def create_room(self, room: Room, notice: NewArchiveItem | None) -> list[ArchivedItem]:
        if room.room_id in self.rooms:
            raise RoomExists(room.room_id)
        self.rooms[room.room_id] = room
        self.archive[room.room_id] = [notice] if notice is not None else []
        return []

    async def update_room(
        self, room_id: str, expected_version: str, room: Room | None, archive: list[NewArchiveItem]
    ) -> list[ArchivedItem]:
        if self.conflicts:
            self.conflicts -= 1
            raise VersionConflict(room_id)
        if room is None:
            self.rooms.pop(room_id, None)
            self.archive.pop(room_id, None)
            return []
        self.rooms[room_id] = room
        self.archive[room_id].extend(archive)
        return []

    async def archive_message(self, room_id: str, item: NewArchiveItem) -> ArchivedItem | None:
        if room_id not in self.rooms:
            return None
        self.archive[room_id].append(item)
        return ArchivedItem(str(len(self.archive[room_id])), 0, item.stanza_id, item.kind, item.sender, item.xml)

    async def query_archive(self, room_id: str, query: ArchiveQuery) -> ArchivePage:
        items = [
            ArchivedItem(str(n), 1000 * n, item.stanza_id, item.kind, item.sender, item.xml)
            for n, item in enumerate(self.archive[room_id], start=1)
        ]
        return ArchivePage(items, True, len(items))

    async def archived_message(self, room_id: str, stanza_id: str, sender: str) -> ArchivedItem | None:
        for n, item in enumerate(self.archive.get(room_id, []), start=1):
            if (item.stanza_id, item.kind, item.sender) == (stanza_id, "message", sender):
                return ArchivedItem(str(n), 1000 * n, item.stanza_id, item.kind, item.sender, item.xml)
        return None

    def is_archive_id(self, text: str) -> bool:
        return text.isdigit()

    async def set_available(self, full_jid: str, available: bool) -> None:
        self.available.pop(full_jid, None)
        if available:
            self.available[full_jid] = None

    async def available_resources(self, max_age: float) -> list[str]:
        return list(self.available)

    async def blocking_list(self, user: str) -> list[tuple[str, str]]:
        return sorted(self.denied.get(user, []))

    async def set_blocking(self, user: str, changes: list[tuple[str, str, bool]]) -> None:
        denied = self.denied.setdefault(user, [])
        for kind, target, deny in changes:
            if (kind, target) in denied:
                denied.remove((kind, target))
            if deny:
                denied.append((kind, target))

    async def blocking(self, users: list[str], room_jid: str, by: str) -> set[str]:
        found = set()
        for user in users:
            denied = self.denied.get(user, [])
            if ("room", room_jid) in denied or ("user", by) in denied:
                found.add(user)
        return found


class ComponentStub:
    """The real handlers on a real ``ComponentConnection`` whose stream is wokkel's
    ``XmlStreamStub``; what the component sends is serialised at once (a delivery reuses
    one element for every recipient) and parsed back into ``sent``."""

    def __init__(self, store: Store, settings: RoomSettings | None = None) -> None:
        self.clock = Clock()
        self.connection = ComponentConnection(MemoryReactorClock(), "127.0.0.1", 5347, SERVICE, "secret")
        self.handlers = service_handlers(SERVICE, store, settings or RoomSettings(), self.clock)
        for handler in self.handlers:
            handler.setHandlerParent(self.connection)
        self.state = self.handlers[0].state
        self.stub = XmlStreamStub()
        self.sent: list[domish.Element] = []
        self.stub.xmlstream.send = lambda element: self.sent.append(parse_element(to_xml(element)))
        self.connection._connected(self.stub.xmlstream)
        self.connection._authd(self.stub.xmlstream)

    def receive(self, stanza: domish.Element) -> None:
        self.stub.send(stanza)


class HandlerTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.store = MemoryStore()
        self.component = ComponentStub(self.store)
        for user in (ALICE, BOB, KATE, MIKE):
            self.component.state.available.add(f"{user}/res1")
        self.store.rooms["testroom"] = Room(
            "testroom", "Untitled", "", "v1", ((ALICE, "owner"), (BOB, "member"), (KATE, "member"))
        )
        self.store.archive["testroom"] = []

    @property
    def sent(self) -> list[domish.Element]:
        return self.component.sent

    def iq(self, sender: str, to: str, kind: str, payload: domish.Element | None) -> domish.Element:
        """Send one IQ to the component and return its one answer (the IQ with its id)."""
        iq = domish.Element((None, "iq"))
        iq["from"] = sender if "/" in sender or "@" not in sender else f"{sender}/res1"
        iq["to"], iq["type"], iq["id"] = to, kind, f"iq{len(self.sent)}"
        if payload is not None:
            iq.addChild(payload)
        self.sent.clear()
        self.component.receive(iq)
        answers = [s for s in self.sent if s.name == "iq" and s.getAttribute("id") == iq["id"]]
        self.assertEqual(len(answers), 1, [s.toXml() for s in self.sent])
        return answers[0]

    def message(self, sender: str, to: str, kind: str | None = "groupchat", body: str = "hi") -> None:
        message = domish.Element((None, "message"))
        message["from"], message["to"], message["id"] = f"{sender}/res1", to, "m1"
        if kind is not None:
            message["type"] = kind
        message.addElement("body", content=body)
        self.sent.clear()
        self.component.receive(message)

    def assertError(
        self, answer: domish.Element, condition: str, text: str | None = None, kind: str | None = None
    ) -> domish.Element:
        """``answer`` is an error with ``condition`` (and ``text``, ``type`` when given)."""
        self.assertEqual(answer["type"], "error", answer.toXml())
        error = child(answer, "error")
        assert error is not None
        self.assertIsNotNone(child(error, condition, NS_XMPP_STANZAS), error.toXml())
        if text is not None:
            self.assertEqual(str(child(error, "text", NS_XMPP_STANZAS)), text)
        if kind is not None:
            self.assertEqual(error["type"], kind)
        return error

    def notices(self) -> dict[str, list[tuple[str, str]]]:
        """The affiliation notices just sent, by recipient's bare JID."""
        found: dict[str, list[tuple[str, str]]] = {}
        for stanza in self.sent:
            x = child(stanza, "x", NS_AFFILIATIONS) if stanza.name == "message" else None
            if x is not None:
                users = [(str(u), u["affiliation"]) for u in x.elements(NS_AFFILIATIONS, "user")]
                found[stanza["to"].split("/")[0]] = users
        return found


def query(ns: str, *children: tuple[str, str, dict[str, str]]) -> domish.Element:
    element = domish.Element((ns, "query"))
    for name, text, attributes in children:
        added = element.addElement(name, content=text)
        for key, value in attributes.items():
            added[key] = value
    return element
