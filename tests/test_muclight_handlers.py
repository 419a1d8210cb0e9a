"""The MUC Light handlers on an in-memory component stream (wokkel's ``XmlStreamStub``
under the real ``ComponentConnection``), with an in-memory store and a ``Clock``: each
feature's handler, the IQ dispatch table and the one error mapping, without a server."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial import unittest
from twisted.words.protocols.jabber.error import NS_XMPP_STANZAS, StanzaError, exceptionFromStanza
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel.test.helpers import XmlStreamStub

from bridge.convert import child, to_xml
from bridge.muclight.component import ComponentConnection
from bridge.muclight.handlers import HANDLERS, service_handlers
from bridge.muclight.handlers.base import MucLightHandler
from bridge.muclight.protocol import (
    NOT_OCCUPANT,
    NS_AFFILIATIONS,
    NS_BLOCKING,
    NS_BRIDGE_ERRORS,
    NS_CONFIGURATION,
    NS_CREATE,
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
    parse_element,
)
from bridge.muclight.rooms import RoomSettings
from bridge.store import (
    ArchivedItem,
    ArchivePage,
    ArchiveQuery,
    NewArchiveItem,
    Room,
    RoomExists,
    Store,
    StoreError,
    VersionConflict,
)
from bridge.xmpp.errors import NotRoomMember, RoomBadRequest, RoomNotAllowed, RoomNotFound
from bridge.xmpp.errors import RoomExists as RestRoomExists
from bridge.xmpp.muclight_client import MucLightClient

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

    def is_archive_id(self, text: str) -> bool:
        return text.isdigit()

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


class DispatchTests(HandlerTestCase):
    def test_tables_are_disjoint(self) -> None:
        """No two handlers claim the same (addressee, type, namespace, name): each IQ has one owner."""
        seen: dict[object, str] = {}
        for handler in HANDLERS:
            for key in handler.iq_handlers:
                self.assertNotIn(key, seen, f"{handler.__name__} and {seen.get(key)}")
                seen[key] = handler.__name__
                self.assertTrue(callable(getattr(handler, handler.iq_handlers[key])))

    def test_every_handler_shares_the_available_resources(self) -> None:
        """All handlers see one table of available resources, the first attached among them."""
        first = next(iter(self.component.connection))
        self.assertIsInstance(first, MucLightHandler)
        self.assertTrue(all(h.available is first.available for h in self.component.handlers))

    def test_malformed_and_misaddressed(self) -> None:
        """No payload or a full JID is bad-request; another domain is service-unavailable."""
        self.assertError(self.iq(ALICE, SERVICE, "get", None), "bad-request")
        self.assertError(self.iq(ALICE, f"{ROOM_JID}/x", "get", domish.Element((NS_PING, "ping"))), "bad-request")
        self.assertError(
            self.iq(ALICE, "other.localhost", "get", domish.Element((NS_PING, "ping"))), "service-unavailable"
        )

    def test_unknown_payloads(self) -> None:
        """What no handler takes: feature-not-implemented, bad-request for a MUC Light namespace in a room,
        item-not-found for a stranger, not-allowed for a server."""
        self.assertError(self.iq(ALICE, SERVICE, "get", domish.Element(("urn:x", "q"))), "feature-not-implemented")
        self.assertError(self.iq("localhost", SERVICE, "get", domish.Element(("urn:x", "q"))), "not-allowed")
        self.assertError(self.iq(ALICE, ROOM_JID, "get", domish.Element(("urn:x", "q"))), "feature-not-implemented")
        self.assertError(self.iq(ALICE, ROOM_JID, "get", query(NS_DESTROY)), "bad-request")
        self.assertError(self.iq(ALICE, ROOM_JID, "set", query(NS_INFO)), "bad-request")
        error = self.assertError(self.iq(MIKE, ROOM_JID, "get", domish.Element(("urn:x", "q"))), "item-not-found")
        self.assertIsNotNone(child(error, NOT_OCCUPANT, NS_BRIDGE_ERRORS))

    def test_errors_do_not_echo_the_request(self) -> None:
        """An error answer carries only the error, not the request's payload."""
        answer = self.iq(MIKE, ROOM_JID, "get", query(NS_AFFILIATIONS))
        self.assertEqual([e.name for e in answer.elements()], ["error"])

    def test_store_failure_is_internal_server_error_and_logged(self) -> None:
        """A failing store gives internal-server-error, without its message, and is logged."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)

        async def broken(room_id: str) -> Room | None:
            raise StoreError("disk on fire")

        self.store.get_room = broken  # type: ignore[method-assign]
        answer = self.iq(ALICE, ROOM_JID, "get", query(NS_INFO))
        error = self.assertError(answer, "internal-server-error")
        self.assertNotIn("disk", error.toXml())
        self.assertTrue([e for e in events if e.get("why") == "disk on fire"])

    def test_unexpected_failure_is_internal_server_error(self) -> None:
        """An unexpected exception in a handler is answered internal-server-error and logged with its traceback."""

        async def broken(room_id: str) -> Room | None:
            raise RuntimeError("bug")

        self.store.get_room = broken  # type: ignore[method-assign]
        self.assertError(self.iq(ALICE, ROOM_JID, "get", query(NS_INFO)), "internal-server-error")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_errors_and_results_are_never_answered(self) -> None:
        """IQ results and errors sent to the component get no answer."""
        for kind in ("result", "error"):
            iq = domish.Element((None, "iq"))
            iq["from"], iq["to"], iq["type"], iq["id"] = f"{ALICE}/res1", SERVICE, kind, "x"
            self.component.receive(iq)
        self.assertEqual(self.sent, [])

    def test_room_stanzas_wait_for_earlier_ones(self) -> None:
        """An IQ to a room is answered only after a message sent before it is archived (one room, one order)."""
        archived: defer.Deferred[None] = defer.Deferred()
        original = self.store.archive_message

        async def slow(room_id: str, item: NewArchiveItem) -> ArchivedItem | None:
            await archived
            return await original(room_id, item)

        self.store.archive_message = slow  # type: ignore[method-assign]
        self.message(BOB, ROOM_JID)
        iq = domish.Element((None, "iq"))
        iq["from"], iq["to"], iq["type"], iq["id"] = f"{ALICE}/res1", ROOM_JID, "get", "after"
        iq.addChild(domish.Element((NS_PING, "ping")))
        self.component.receive(iq)
        self.assertEqual(self.sent, [])
        self.assertEqual(len(self.component.state.pending), 2)
        archived.callback(None)
        self.assertEqual([s.name for s in self.sent][-1], "iq")
        self.assertIn("message", [s.name for s in self.sent])
        self.assertEqual(self.component.state.pending, set())


class PingTests(HandlerTestCase):
    def test_service_and_room_ping(self) -> None:
        """The service answers a ping from anyone; a room from its occupants only."""
        ping = domish.Element((NS_PING, "ping"))
        self.assertEqual(self.iq("localhost", SERVICE, "get", ping)["type"], "result")
        self.assertEqual(self.iq(BOB, ROOM_JID, "get", domish.Element((NS_PING, "ping")))["type"], "result")
        error = self.assertError(self.iq(MIKE, ROOM_JID, "get", domish.Element((NS_PING, "ping"))), "item-not-found")
        self.assertIsNotNone(child(error, NOT_OCCUPANT, NS_BRIDGE_ERRORS))
        missing = self.assertError(
            self.iq(ALICE, f"nope@{SERVICE}", "get", domish.Element((NS_PING, "ping"))), "item-not-found"
        )
        self.assertIsNone(child(missing, NOT_OCCUPANT, NS_BRIDGE_ERRORS))


class DiscoTests(HandlerTestCase):
    def test_service_disco_lists_the_room_mam_namespaces(self) -> None:
        """The service's disco#info lists MUC Light and both MAM namespaces its rooms answer."""
        answer = self.iq(ALICE, SERVICE, "get", domish.Element((NS_DISCO_INFO, "query")))
        found = child(answer, "query", NS_DISCO_INFO)
        assert found is not None
        features = {f["var"] for f in found.elements(NS_DISCO_INFO, "feature")}
        self.assertTrue({NS_MUCLIGHT, NS_MAM, NS_MAM_1} <= features, features)
        for ns in (NS_MAM, NS_MAM_1):
            form = self.iq(ALICE, ROOM_JID, "get", domish.Element((ns, "query")))
            self.assertEqual(form["type"], "result")
            self.assertIsNotNone(child(form, "query", ns))

    def test_room_disco_names_the_room(self) -> None:
        """A room's disco#info has the room's name as its identity, for occupants."""
        answer = self.iq(BOB, ROOM_JID, "get", domish.Element((NS_DISCO_INFO, "query")))
        identity = child(child(answer, "query", NS_DISCO_INFO), "identity", NS_DISCO_INFO)  # type: ignore[arg-type]
        assert identity is not None
        self.assertEqual(identity["name"], "Untitled")

    def disco_items(self, *rsm: tuple[str, str], sender: str = ALICE) -> domish.Element:
        found = domish.Element((NS_DISCO_ITEMS, "query"))
        if rsm:
            page = found.addElement((NS_RSM, "set"))
            for name, value in rsm:
                page.addElement(name, content=value)
        return self.iq(sender, SERVICE, "get", found)

    def room_page(self, answer: domish.Element) -> tuple[list[str], dict[str, str]]:
        found = child(answer, "query", NS_DISCO_ITEMS)
        assert found is not None
        jids = [item["jid"] for item in found.elements(NS_DISCO_ITEMS, "item")]
        page = child(found, "set", NS_RSM)
        return jids, {} if page is None else {e.name: str(e) for e in page.elements()}

    def test_disco_items_pages_with_rsm(self) -> None:
        """disco#items of the service honours RSM max, after, before and answers count (XEP-0059)."""
        for name in ("testroom2", "testroom3"):
            self.store.rooms[name] = Room(name, name, "", "v1", ((ALICE, "owner"),))
        everything = sorted(f"testroom{n}@{SERVICE}" for n in ("", "2", "3"))
        self.assertEqual(self.room_page(self.disco_items()), (everything, {}))
        jids, page = self.room_page(self.disco_items(("max", "1")))
        self.assertEqual(
            (jids, page["count"], page["first"], page["last"]), (everything[:1], "3", everything[0], everything[0])
        )
        jids, page = self.room_page(self.disco_items(("max", "10"), ("after", everything[0])))
        self.assertEqual((jids, page["count"]), (everything[1:], "3"))
        jids, _ = self.room_page(self.disco_items(("max", "1"), ("before", "")))
        self.assertEqual(jids, everything[2:])
        jids, page = self.room_page(self.disco_items(("max", "0")))
        self.assertEqual((jids, page), ([], {"count": "3"}))
        self.assertError(self.disco_items(("max", "10"), ("after", f"oops@{SERVICE}")), "item-not-found")
        self.assertError(self.disco_items(("max", "x")), "bad-request", "Invalid max")

    def test_disco_items_are_for_users(self) -> None:
        """A server asking for the service's rooms is not-allowed: MUC Light serves users."""
        self.assertError(self.disco_items(sender="localhost"), "not-allowed", "MUC Light serves users")


class AdminTests(HandlerTestCase):
    def set_affiliations(self, sender: str, *items: tuple[str, str]) -> domish.Element:
        users = [("user", jid, {"affiliation": affiliation}) for jid, affiliation in items]
        return self.iq(sender, ROOM_JID, "set", query(NS_AFFILIATIONS, *users))

    def test_implicit_owner_change(self) -> None:
        """The owner stepping down while removing bob makes kate owner, in the same notice (implicit_owner_change)."""
        answer = self.set_affiliations(ALICE, (BOB, "none"), (ALICE, "member"))
        self.assertEqual(answer["type"], "result")
        self.assertEqual(dict(self.store.rooms["testroom"].affiliations), {KATE: "owner", ALICE: "member"})
        notices = self.notices()
        expected = {KATE: "owner", BOB: "none", ALICE: "member"}
        self.assertEqual(dict(notices[ALICE]), expected)
        self.assertEqual(dict(notices[KATE]), expected)
        self.assertEqual(notices[BOB], [(BOB, "none")])

    def test_owner_leaving_promotes_a_member(self) -> None:
        """The owner leaving names a member owner in the same notice (owner_can_leave_a_room_and_auto_select_owner)."""
        self.set_affiliations(ALICE, (ALICE, "none"))
        self.assertEqual(dict(self.store.rooms["testroom"].affiliations), {BOB: "owner", KATE: "member"})
        self.assertEqual(dict(self.notices()[BOB]), {ALICE: "none", BOB: "owner"})

    def test_edge_case_owner_change(self) -> None:
        """The owner demoting herself and removing everyone stays owner; the notice lists only removals."""
        self.set_affiliations(ALICE, (ALICE, "member"), (BOB, "none"), (KATE, "none"))
        self.assertEqual(self.store.rooms["testroom"].affiliations, ((ALICE, "owner"),))
        notices = self.notices()
        self.assertEqual(dict(notices[ALICE]), {BOB: "none", KATE: "none"})
        self.assertEqual((notices[BOB], notices[KATE]), ([(BOB, "none")], [(KATE, "none")]))

    def test_explicit_owner_change(self) -> None:
        """Naming kate owner while alice and bob leave leaves kate the only occupant, as owner."""
        self.set_affiliations(ALICE, (BOB, "none"), (ALICE, "none"), (KATE, "owner"))
        self.assertEqual(self.store.rooms["testroom"].affiliations, ((KATE, "owner"),))

    def test_members_may_not_remove_others(self) -> None:
        """A member removing someone else is not-allowed with MongooseIM's text."""
        answer = self.set_affiliations(BOB, (KATE, "none"))
        self.assertError(answer, "not-allowed", "Given user does not have permission to change affiliations")

    def test_max_occupants_is_bad_request(self) -> None:
        """Creating or growing a room past max_occupants is modify/bad-request (muc_light_SUITE max_occupants)."""
        self.component.state.settings = RoomSettings(max_occupants=1)
        users = [("user", jid, {"affiliation": "member"}) for jid in (ALICE, KATE)]
        create = query(NS_CREATE)
        occupants = create.addElement("occupants")
        for name, jid, attributes in users:
            occupants.addElement(name, content=jid)["affiliation"] = attributes["affiliation"]
        for answer in (self.iq(BOB, SERVICE, "set", create), self.set_affiliations(ALICE, (MIKE, "member"))):
            self.assertError(answer, "bad-request", "Max occupants number reached", kind="modify")
        self.assertNotIn(MIKE, self.store.rooms["testroom"].occupants)

    def test_creation_is_not_archived(self) -> None:
        """Creating a room archives nothing; adding bob archives one affiliation entry."""
        create = query(NS_CREATE)
        create.addElement("configuration").addElement("roomname", content="Bob's room")
        answer = self.iq(ALICE, f"bobroom@{SERVICE}", "set", create)
        self.assertEqual(answer["type"], "result")
        self.assertEqual(self.store.archive["bobroom"], [])
        self.assertEqual(self.notices(), {ALICE: [(ALICE, "owner")]})
        self.iq(ALICE, f"bobroom@{SERVICE}", "set", query(NS_AFFILIATIONS, ("user", BOB, {"affiliation": "member"})))
        archived = self.store.archive["bobroom"]
        self.assertEqual([item.kind for item in archived], ["affiliation"])
        x = child(parse_element(archived[0].xml), "x", NS_AFFILIATIONS)
        assert x is not None
        self.assertEqual([(str(u), u["affiliation"]) for u in x.elements(NS_AFFILIATIONS, "user")], [(BOB, "member")])

    def test_create_with_a_generated_id(self) -> None:
        """Creating on the service JID answers from the new room's JID; every notice carries the IQ's id."""
        create = query(NS_CREATE)
        create.addElement("occupants").addElement("user", content=BOB)["affiliation"] = "member"
        answer = self.iq(ALICE, SERVICE, "set", create)
        self.assertEqual(answer["type"], "result")
        room_id = JID(answer["from"]).user
        self.assertEqual(JID(answer["from"]).host, SERVICE)
        self.assertEqual(self.store.rooms[room_id].affiliations, ((ALICE, "owner"), (BOB, "member")))
        self.assertEqual({m["id"] for m in self.sent if m.name == "message"}, {answer["id"]})

    def test_create_an_existing_room_is_conflict(self) -> None:
        """Creating a room whose id is taken is conflict "Room already exists"."""
        self.assertError(self.iq(MIKE, ROOM_JID, "set", query(NS_CREATE)), "conflict", "Room already exists")

    def test_versions_come_from_the_clock(self) -> None:
        """A new room's version starts with the injected clock's time in hexadecimal milliseconds."""
        self.component.clock.advance(1000)
        self.iq(ALICE, f"clocked@{SERVICE}", "set", query(NS_CREATE))
        self.assertTrue(self.store.rooms["clocked"].version.startswith(f"{1000 * 1000:x}-"))

    def test_info_and_version_checks(self) -> None:
        """Info, configuration and affiliations answer the room, or nothing when the client's version is current."""
        for ns in (NS_INFO, NS_CONFIGURATION, NS_AFFILIATIONS):
            full = child(self.iq(BOB, ROOM_JID, "get", query(ns)), "query", ns)
            assert full is not None
            self.assertEqual(str(child(full, "version", ns)), "v1")
            current = self.iq(BOB, ROOM_JID, "get", query(ns, ("version", "v1", {})))
            self.assertEqual((current["type"], list(current.elements())), ("result", []))
        info = child(self.iq(BOB, ROOM_JID, "get", query(NS_INFO)), "query", NS_INFO)
        occupants = child(info, "occupants", NS_INFO)  # type: ignore[arg-type]
        assert occupants is not None
        self.assertEqual([str(u) for u in occupants.elements()], [ALICE, BOB, KATE])

    def test_configuration_change(self) -> None:
        """A member may change only the subject; the change is announced with both versions to every occupant."""
        refused = self.iq(BOB, ROOM_JID, "set", query(NS_CONFIGURATION, ("roomname", "x", {})))
        self.assertError(refused, "not-allowed", "Given user does not have permission to change config")
        self.assertEqual(self.iq(BOB, ROOM_JID, "set", query(NS_CONFIGURATION, ("subject", "s", {})))["type"], "result")
        self.assertEqual(self.store.rooms["testroom"].subject, "s")
        notices = [m for m in self.sent if m.name == "message"]
        self.assertEqual(sorted(m["to"] for m in notices), sorted(f"{u}/res1" for u in (ALICE, BOB, KATE)))
        x = child(notices[0], "x", NS_CONFIGURATION)
        assert x is not None
        self.assertEqual(str(child(x, "prev-version", NS_CONFIGURATION)), "v1")
        bad = self.iq(ALICE, ROOM_JID, "set", query(NS_CONFIGURATION, ("colour", "red", {})))
        self.assertError(bad, "bad-request", "Unknown configuration field: colour")

    def test_destroy(self) -> None:
        """Only the owner destroys a room; every occupant is told, and the room is gone."""
        refused = self.iq(BOB, ROOM_JID, "set", query(NS_DESTROY))
        self.assertError(refused, "not-allowed", "Given user cannot delete this room")
        self.assertEqual(self.iq(ALICE, ROOM_JID, "set", query(NS_DESTROY))["type"], "result")
        self.assertNotIn("testroom", self.store.rooms)
        told = [m for m in self.sent if m.name == "message" and child(m, "x", NS_DESTROY) is not None]
        self.assertEqual(len(told), 3)

    def test_a_lost_race_is_retried(self) -> None:
        """A change that loses to another process is read again and applied; one that keeps losing is
        resource-constraint."""
        self.store.conflicts = 2
        self.assertEqual(self.iq(ALICE, ROOM_JID, "set", query(NS_DESTROY))["type"], "result")
        self.store.rooms["testroom"] = Room("testroom", "n", "", "v1", ((ALICE, "owner"),))
        self.store.conflicts = 3
        answer = self.iq(ALICE, ROOM_JID, "set", query(NS_CONFIGURATION, ("subject", "s", {})))
        self.assertError(answer, "resource-constraint", "The room keeps changing; try again")
        self.assertEqual([m for m in self.sent if m.name == "message"], [])


class BlockingTests(HandlerTestCase):
    def test_deny_allow_and_list(self) -> None:
        """Denied rooms and users are listed; allow removes them; a blocked user is not added to a room."""
        items = [("room", ROOM_JID, {"action": "deny"}), ("user", ALICE, {"action": "deny"})]
        self.assertEqual(self.iq(MIKE, SERVICE, "set", query(NS_BLOCKING, *items))["type"], "result")
        listed = child(self.iq(MIKE, SERVICE, "get", query(NS_BLOCKING)), "query", NS_BLOCKING)
        assert listed is not None
        self.assertEqual(sorted((e.name, str(e)) for e in listed.elements()), [("room", ROOM_JID), ("user", ALICE)])
        answer = self.iq(ALICE, ROOM_JID, "set", query(NS_AFFILIATIONS, ("user", MIKE, {"affiliation": "member"})))
        self.assertEqual(answer["type"], "result")
        self.assertNotIn(MIKE, self.store.rooms["testroom"].occupants)
        self.iq(MIKE, SERVICE, "set", query(NS_BLOCKING, ("user", ALICE, {"action": "allow"})))
        self.assertEqual(self.store.denied[MIKE], [("room", ROOM_JID)])

    def test_bad_items(self) -> None:
        """A room of another service is "Invalid JID"; an unknown action or an empty list is bad-request."""
        other = self.iq(MIKE, SERVICE, "set", query(NS_BLOCKING, ("room", "r@elsewhere", {"action": "deny"})))
        self.assertError(other, "bad-request", "Invalid JID")
        self.assertError(
            self.iq(MIKE, SERVICE, "set", query(NS_BLOCKING, ("user", ALICE, {"action": "x"}))), "bad-request"
        )
        self.assertError(self.iq(MIKE, SERVICE, "set", query(NS_BLOCKING)), "bad-request")
        self.assertError(self.iq("localhost", SERVICE, "get", query(NS_BLOCKING)), "not-allowed")


class ArchiveTests(HandlerTestCase):
    def test_results_then_fin(self) -> None:
        """A MAM query sends each archived stanza to the querying resource, then the result with <fin>."""
        self.message(BOB, ROOM_JID, body="one")
        mam = query(NS_MAM)
        mam["queryid"] = "q1"
        answer = self.iq(KATE, ROOM_JID, "set", mam)
        results = [m for m in self.sent if m.name == "message"]
        self.assertEqual(self.sent[-1], answer)
        self.assertEqual([(m["to"], child(m, "result", NS_MAM)["queryid"]) for m in results], [(f"{KATE}/res1", "q1")])  # type: ignore[index]
        fin = child(answer, "fin", NS_MAM)
        assert fin is not None
        self.assertEqual(fin["complete"], "true")

    def test_ids_the_store_rejects_are_item_not_found(self) -> None:
        """An RSM id the store says cannot be its archive id is item-not-found "No such archive id"."""
        mam = query(NS_MAM_1)
        mam.addElement((NS_RSM, "set")).addElement("after", content="abc")
        self.assertError(self.iq(KATE, ROOM_JID, "set", mam), "item-not-found", "No such archive id")
        self.assertError(self.iq(MIKE, ROOM_JID, "set", query(NS_MAM)), "item-not-found")


class GroupchatTests(HandlerTestCase):
    def test_archived_and_broadcast(self) -> None:
        """A groupchat message is archived, then sent from room/sender to every occupant's resource with the
        room's stanza-id (a sender's own stanza-id is dropped)."""
        message = domish.Element((None, "message"))
        message["from"], message["to"], message["type"], message["id"] = f"{BOB}/res1", ROOM_JID, "groupchat", "m1"
        message.addElement("body", content="hi")
        message.addElement((NS_SID, "stanza-id"))["id"] = "forged"
        self.component.receive(message)
        self.assertEqual(sorted(m["to"] for m in self.sent), sorted(f"{u}/res1" for u in (ALICE, BOB, KATE)))
        for sent in self.sent:
            self.assertEqual((sent["from"], sent["id"]), (f"{ROOM_JID}/{BOB}", "m1"))
            self.assertEqual([s["id"] for s in sent.elements(NS_SID, "stanza-id")], ["1"])
        self.assertEqual([item.sender for item in self.store.archive["testroom"]], [BOB])
        self.assertNotIn("forged", self.store.archive["testroom"][0].xml)

    def test_refusals_bounce(self) -> None:
        """A chat message to a room is bad-request; a stranger's groupchat is item-not-found (not occupant)."""
        self.message(BOB, ROOM_JID, kind="chat")
        self.assertError(self.sent[0], "bad-request", "Rooms take groupchat messages")
        self.message(MIKE, ROOM_JID)
        error = self.assertError(self.sent[0], "item-not-found")
        self.assertIsNotNone(child(error, NOT_OCCUPANT, NS_BRIDGE_ERRORS))
        self.assertEqual(self.store.archive["testroom"], [])


class PresenceTests(HandlerTestCase):
    def presence(self, sender: str, kind: str | None = None) -> None:
        presence = domish.Element((None, "presence"))
        presence["from"], presence["to"] = sender, SERVICE
        if kind:
            presence["type"] = kind
        self.component.receive(presence)

    def test_presence_and_bounces_keep_the_table(self) -> None:
        """Available presence adds a resource, unavailable removes it, and a bounced delivery removes it too."""
        self.presence(f"{MIKE}/phone")
        self.assertEqual(self.component.state.available.resources(MIKE), [f"{MIKE}/res1", f"{MIKE}/phone"])
        self.presence(f"{MIKE}/phone", "unavailable")
        bounce = domish.Element((None, "message"))
        bounce["from"], bounce["to"], bounce["type"] = f"{MIKE}/res1", ROOM_JID, "error"
        self.component.receive(bounce)
        self.assertEqual(self.component.state.available.resources(MIKE), [])
        self.assertEqual(self.sent, [])

    def test_privileges_are_logged_not_answered(self) -> None:
        """The server's XEP-0356 privilege message is logged with what it grants and gets no answer."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        message = domish.Element((None, "message"))
        message["from"], message["to"] = "localhost", SERVICE
        perm = message.addElement((NS_PRIVILEGE, "privilege")).addElement("perm")
        perm["access"], perm["type"] = "presence", "managed_entity"
        self.component.receive(message)
        self.assertEqual(self.sent, [])
        self.assertEqual([e["granted"] for e in events if "granted" in e], [{"presence": "managed_entity"}])


class _Session:
    """The user's session as the REST client sees it: answers with what the component sent."""

    def __init__(self, component: HandlerTestCase, sender: str) -> None:
        self.component, self.sender = component, sender

    async def iq(self, kind: str, payload: domish.Element, to: object = None) -> domish.Element:
        answer = self.component.iq(self.sender, str(to), kind, payload)
        if answer["type"] == "error":
            raise exceptionFromStanza(answer)
        return answer


class RestMappingTests(HandlerTestCase):
    """The component's refusals, read by the REST side's MUC Light client, are the RoomError kinds and
    texts the REST API answers with (bridge.api.errors.ROOM_STATUS)."""

    def client(self, sender: str) -> MucLightClient:
        client = MucLightClient()
        client.parent = _Session(self, sender)  # type: ignore[assignment]
        return client

    async def test_refusals_keep_their_rest_meaning(self) -> None:
        """Stranger, missing room, existing room, a member's renaming and a full room map as before."""
        room = JID(ROOM_JID)
        cases: list[tuple[Any, type[Exception], str]] = [
            (self.client(MIKE).info(room), NotRoomMember, "Given user does not occupy this room"),
            (self.client(ALICE).info(JID(f"nope@{SERVICE}")), RoomNotFound, "Room not found"),
            (self.client(MIKE).create(JID(SERVICE), "testroom", "n", "s"), RestRoomExists, "Room already exists"),
            (
                self.client(BOB).configure(room, "n", "s"),
                RoomNotAllowed,
                "Given user does not have permission to change config",
            ),
        ]
        for call, kind, text in cases:
            with self.assertRaises(kind) as caught:
                await call
            self.assertEqual(caught.exception.message, text)  # type: ignore[attr-defined]
        self.component.state.settings = RoomSettings(max_occupants=1)
        with self.assertRaises(RoomBadRequest) as too_many:
            await self.client(ALICE).set_affiliation(room, MIKE, "member")
        self.assertEqual(too_many.exception.message, "Max occupants number reached")


class StanzaErrorTests(unittest.TestCase):
    def test_refusals_are_stanza_errors(self) -> None:
        """The room rules refuse with twisted's StanzaError, condition and text (no custom exception)."""
        from bridge.muclight.rooms import creation_affiliations

        with self.assertRaises(StanzaError) as caught:
            creation_affiliations("c@x", [("a@x", "none")])
        self.assertEqual((caught.exception.condition, caught.exception.type), ("bad-request", "modify"))
