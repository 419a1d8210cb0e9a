"""The MUC Light handlers on an in-memory component stream (wokkel's ``XmlStreamStub``
under the real ``ComponentConnection``), with an in-memory store and a ``Clock``: each
feature's handler, the IQ dispatch table and the one error mapping, without a server."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.logger import globalLogPublisher
from twisted.trial import unittest
from twisted.words.protocols.jabber.error import StanzaError, exceptionFromStanza
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bridge.muclight.handlers import HANDLERS
from bridge.muclight.handlers.base import MucLightHandler
from bridge.muclight.handlers.groupchat import RETRY_WINDOW
from bridge.muclight.presence import MAX_QUEUED
from bridge.muclight.rooms import RoomSettings
from bridge.protocol.muclight import NOT_OCCUPANT
from bridge.protocol.namespaces import (
    NS_AFFILIATIONS,
    NS_BLOCKING,
    NS_BRIDGE_ERRORS,
    NS_DELAY,
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
)
from bridge.protocol.xml import child
from bridge.store import (
    ArchivedItem,
    NewArchiveItem,
    Room,
    StoreError,
)
from bridge.xmpp.archive import ArchiveClient
from bridge.xmpp.errors import NotRoomMember, RoomBadRequest, RoomNotAllowed, RoomNotFound
from bridge.xmpp.errors import RoomExists as RestRoomExists
from bridge.xmpp.muclight_client import MucLightClient
from tests.unit.muclight_stub import (
    ALICE,
    BOB,
    KATE,
    MIKE,
    ROOM_JID,
    SERVICE,
    ComponentStub,
    HandlerTestCase,
    MemoryStore,
    query,
)


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

    def test_retry_of_an_archived_id_is_taken_silently(self) -> None:
        """A groupchat message whose id the room archived from the same sender is neither archived, broadcast
        nor refused again; the same id from another sender is a message of its own."""
        self.message(BOB, ROOM_JID, body="first")
        self.assertEqual(len(self.sent), 3)
        self.message(BOB, ROOM_JID, body="retry")
        self.assertEqual(self.sent, [])
        self.assertEqual([item.sender for item in self.store.archive["testroom"]], [BOB])
        self.assertIn("first", self.store.archive["testroom"][0].xml)
        self.message(KATE, ROOM_JID, body="mine")
        self.assertEqual(len(self.sent), 3)
        self.assertEqual([item.sender for item in self.store.archive["testroom"]], [BOB, KATE])

    def test_retry_of_what_another_process_archived_goes_out_once(self) -> None:
        """A retry of an id the archive holds but this process never broadcast (its first attempt was
        archived by a component that died before sending it) is broadcast now, as archived, with the
        archive id; retried again, it is not."""
        first = domish.Element((None, "message"))
        first["from"], first["type"], first["id"] = f"{ROOM_JID}/{BOB}", "groupchat", "m1"
        first.addElement("body", content="first")
        item = NewArchiveItem("m1", "message", BOB, first.toXml())
        self.successResultOf(defer.ensureDeferred(self.store.post_message("testroom", item, dedupe=True)))
        self.message(BOB, ROOM_JID, body="retry")
        self.assertEqual(sorted(m["to"] for m in self.sent), sorted(f"{u}/res1" for u in (ALICE, BOB, KATE)))
        for sent in self.sent:
            self.assertEqual((sent["from"], sent["id"], str(child(sent, "body"))), (f"{ROOM_JID}/{BOB}", "m1", "first"))
            self.assertEqual([s["id"] for s in sent.elements(NS_SID, "stanza-id")], ["1"])
            delay = child(sent, "delay", NS_DELAY)
            assert delay is not None
            self.assertEqual((delay["from"], delay["stamp"]), (ROOM_JID, "1970-01-01T00:00:01.000Z"))
        self.assertEqual(len(self.store.archive["testroom"]), 1)
        self.message(BOB, ROOM_JID, body="again")
        self.assertEqual(self.sent, [])

    def test_an_old_id_resent_is_only_confirmed(self) -> None:
        """Past RETRY_WINDOW after it was archived, an id resent is not broadcast by a process that did
        not broadcast it: nobody replays a room's history this way."""
        first = domish.Element((None, "message"))
        first["from"], first["type"], first["id"] = f"{ROOM_JID}/{BOB}", "groupchat", "m1"
        item = NewArchiveItem("m1", "message", BOB, first.toXml())
        self.successResultOf(defer.ensureDeferred(self.store.post_message("testroom", item, dedupe=True)))
        self.component.clock.advance(RETRY_WINDOW + 1.001)  # the stub store archived it at 1 s
        self.message(BOB, ROOM_JID, body="late")
        self.assertEqual(self.sent, [])
        self.assertEqual(len(self.store.archive["testroom"]), 1)

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

    def test_presence_changes_reach_the_store_in_order(self) -> None:
        """Available and unavailable presence and a bounce are written to the store in the order they came."""
        self.presence(f"{MIKE}/phone")
        self.presence(f"{MIKE}/tablet")
        self.presence(f"{MIKE}/phone", "unavailable")
        bounce = domish.Element((None, "message"))
        bounce["from"], bounce["to"], bounce["type"] = f"{MIKE}/tablet", ROOM_JID, "error"
        self.component.receive(bounce)
        self.assertEqual([jid for jid in self.store.available if jid.startswith(MIKE)], [f"{MIKE}/res1"])

    def test_a_new_stream_delivers_to_resources_known_from_the_store(self) -> None:
        """A component whose stream comes up (a takeover) restores the stored resources and delivers
        room messages to them without waiting for their presence."""
        store = MemoryStore()
        store.rooms["testroom"] = self.store.rooms["testroom"]
        store.archive["testroom"] = []
        store.available = {f"{ALICE}/laptop": None, f"{KATE}/phone": None}
        component = ComponentStub(store)
        self.assertEqual(component.state.available.resources(ALICE), [f"{ALICE}/laptop"])
        message = domish.Element((None, "message"))
        message["from"], message["to"], message["type"], message["id"] = f"{ALICE}/laptop", ROOM_JID, "groupchat", "x"
        message.addElement("body", content="after takeover")
        component.receive(message)
        self.assertEqual(sorted(m["to"] for m in component.sent), [f"{ALICE}/laptop", f"{KATE}/phone"])

    def test_failed_store_writes_are_logged_once_and_delivery_goes_on(self) -> None:
        """A store that fails presence writes is logged once per outage; the table and deliveries carry on."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)

        async def broken(full_jid: str, available: bool) -> None:
            raise StoreError("database gone")

        self.store.set_available = broken  # type: ignore[method-assign]
        self.presence(f"{MIKE}/phone")
        self.presence(f"{MIKE}/tablet")
        self.assertEqual(
            self.component.state.available.resources(MIKE), [f"{MIKE}/res1", f"{MIKE}/phone", f"{MIKE}/tablet"]
        )
        self.assertEqual(len([e for e in events if e.get("why") == "database gone"]), 1)

    def test_writes_queued_for_a_store_that_hangs_are_bounded(self) -> None:
        """While the store does not answer, at most MAX_QUEUED presence writes wait; later ones are dropped."""
        hung: defer.Deferred[None] = defer.Deferred()

        async def stuck(full_jid: str, available: bool) -> None:
            await hung

        self.store.set_available = stuck  # type: ignore[method-assign]
        journal = self.component.state.available._journal
        assert journal is not None
        for n in range(MAX_QUEUED + 50):
            journal.record(f"{MIKE}/r{n}", True)
        self.assertEqual(len(journal._queue), MAX_QUEUED)
        hung.callback(None)
        self.assertEqual(len(journal._queue), 0)

    def test_restore_does_not_revive_what_went_away_meanwhile(self) -> None:
        """A resource that goes unavailable while the stored table is being loaded stays gone."""
        loading: defer.Deferred[list[str]] = defer.Deferred()

        async def slow(max_age: float) -> list[str]:
            return await loading

        self.store.available_resources = slow  # type: ignore[method-assign]
        table = self.component.state.available
        restored = table.restore()
        self.presence(f"{MIKE}/old", "unavailable")
        loading.callback([f"{MIKE}/old", f"{MIKE}/kept"])
        self.assertTrue(restored.called)
        self.assertEqual(table.resources(MIKE), [f"{MIKE}/res1", f"{MIKE}/kept"])

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


class _SendingSession(_Session):
    """A session that also sends messages: what the component answers is kept in ``delivered``, and
    bounces go to the client's observer as the stream would pass them."""

    def __init__(self, component: HandlerTestCase, sender: str, client: MucLightClient) -> None:
        super().__init__(component, sender)
        self.client, self.delivered = client, []  # type: list[domish.Element]

    def send(self, message: domish.Element) -> None:
        message["from"] = f"{self.sender}/res1"
        self.component.sent.clear()
        self.component.component.receive(message)
        self.delivered.extend(self.component.sent)
        for each in self.component.sent:
            if each.getAttribute("type") == "error" and each["to"].startswith(self.sender):
                self.client._on_bounce(each)


class RestMappingTests(HandlerTestCase):
    """The component's refusals, read by the REST side's MUC Light client, are the RoomError kinds and
    texts the REST API answers with (bridge.api.errors.ROOM_STATUS)."""

    def client(self, sender: str) -> MucLightClient:
        client = MucLightClient(ArchiveClient())
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

    async def test_retry_is_confirmed_to_the_rest_client(self) -> None:
        """MucLightClient.send of a message the room archived already returns (REST answers 200) with
        nothing archived or delivered twice; a stranger's send is still refused."""
        client = MucLightClient(ArchiveClient())
        session = _SendingSession(self, BOB, client)
        client.parent = session  # type: ignore[assignment]
        for _ in range(2):
            message = domish.Element((None, "message"))
            message["to"], message["type"], message["id"] = ROOM_JID, "groupchat", "client-id.1"
            message.addElement("body", content="hi")
            await client.send(JID(ROOM_JID), message)
        self.assertEqual([item.stanza_id for item in self.store.archive["testroom"]], ["client-id.1"])
        self.assertEqual(sorted(m["to"] for m in session.delivered), sorted(f"{u}/res1" for u in (ALICE, BOB, KATE)))
        stranger = MucLightClient(ArchiveClient())
        stranger.parent = _SendingSession(self, MIKE, stranger)  # type: ignore[assignment]
        message = domish.Element((None, "message"))
        message["to"], message["type"], message["id"] = ROOM_JID, "groupchat", "client-id.1"
        with self.assertRaises(NotRoomMember):
            await stranger.send(JID(ROOM_JID), message)


class StanzaErrorTests(unittest.TestCase):
    def test_refusals_are_stanza_errors(self) -> None:
        """The room rules refuse with twisted's StanzaError, condition and text (no custom exception)."""
        from bridge.muclight.rooms import creation_affiliations

        with self.assertRaises(StanzaError) as caught:
            creation_affiliations("c@x", [("a@x", "none")])
        self.assertEqual((caught.exception.condition, caught.exception.type), ("bad-request", "modify"))
