"""MUC Light room administration on the in-memory component (``tests.unit.muclight_stub``):
creation, info, configuration, affiliations and destroy, as MongooseIM's muc_light_SUITE."""

from __future__ import annotations

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bridge.muclight.protocol import parse_element
from bridge.muclight.rooms import RoomSettings
from bridge.protocol.namespaces import NS_AFFILIATIONS, NS_CONFIGURATION, NS_CREATE, NS_DESTROY, NS_INFO
from bridge.protocol.xml import child
from bridge.store import Room
from tests.unit.muclight_stub import ALICE, BOB, KATE, MIKE, ROOM_JID, SERVICE, HandlerTestCase, query


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
