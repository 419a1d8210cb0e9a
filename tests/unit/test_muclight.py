"""MUC Light protocol units: room rules, presence tracking, MAM query parsing, the REST
input checks and the room JSON, without a server."""

from __future__ import annotations

from twisted.trial import unittest
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bridge.api.errors import BadRequest
from bridge.api.rooms import RoomsApi, message_parts, room_config
from bridge.config import ConfigError, check_startup, parse_config
from bridge.muclight.archive import parse_query
from bridge.muclight.presence import AvailableResources
from bridge.muclight.protocol import parse_element, user_items
from bridge.muclight.rooms import (
    apply_changes,
    check_member_changes,
    creation_affiliations,
    notices_for,
)
from bridge.protocol.convert import room_message_to_json
from bridge.protocol.muclight import bare_jid
from bridge.protocol.namespaces import NS_AFFILIATIONS, NS_DISCO_ITEMS
from bridge.store import Room
from bridge.xmpp.archive import ArchiveClient
from bridge.xmpp.errors import RoomBadRequest
from bridge.xmpp.muclight_client import MucLightClient

ROOM = Room("r", "n", "", "v1", (("o@x", "owner"), ("m@x", "member"), ("n@x", "member")))


class RoomRuleTests(unittest.TestCase):
    def test_creator_is_owner_unless_another_is_named(self) -> None:
        """The creator owns a new room unless the occupant list names an owner."""
        self.assertEqual(creation_affiliations("c@x", [("a@x", "member")]), [("c@x", "owner"), ("a@x", "member")])
        self.assertEqual(creation_affiliations("c@x", [("a@x", "owner")]), [("c@x", "member"), ("a@x", "owner")])
        for bad in ([("a@x", "none")], [("c@x", "member")], [("a@x", "owner"), ("b@x", "owner")]):
            with self.assertRaises(StanzaError):
                creation_affiliations("c@x", bad)

    def test_new_owner_demotes_the_old_one(self) -> None:
        """Naming a new owner makes the old owner a member; both changes are announced."""
        occupants, changes = apply_changes(ROOM, [("m@x", "owner")])
        self.assertEqual(occupants, [("o@x", "member"), ("m@x", "owner"), ("n@x", "member")])
        self.assertEqual(dict(changes), {"m@x": "owner", "o@x": "member"})

    def test_owner_leaving_hands_over_to_the_longest_member(self) -> None:
        """When the owner leaves without a successor, the first member becomes owner."""
        occupants, changes = apply_changes(ROOM, [("o@x", "none")])
        self.assertEqual(occupants, [("m@x", "owner"), ("n@x", "member")])
        self.assertEqual(changes, [("o@x", "none"), ("m@x", "owner")])

    def test_no_op_changes_are_dropped(self) -> None:
        """Making a member a member, or removing a stranger, changes nothing."""
        self.assertEqual(apply_changes(ROOM, [("m@x", "member"), ("z@x", "none")])[1], [])

    def test_members_may_only_leave_or_invite_when_allowed(self) -> None:
        """A member may leave; may add members only with all_can_invite; never promote or remove others."""
        check_member_changes(ROOM, "m@x", [("m@x", "none")], False)
        check_member_changes(ROOM, "m@x", [("new@x", "member")], True)
        for changes, invite in (([("new@x", "member")], False), ([("n@x", "none")], True), ([("m@x", "owner")], True)):
            with self.assertRaises(StanzaError) as caught:
                check_member_changes(ROOM, "m@x", changes, invite)
            self.assertEqual(caught.exception.condition, "not-allowed")

    def test_notices_per_recipient(self) -> None:
        """Newcomers see only themselves and the version; the removed only their removal; others all."""
        notices = notices_for(["o@x", "m@x"], ["o@x", "new@x"], [("new@x", "member"), ("m@x", "none")], "v2", "v1")
        users = {
            jid: [(str(u), u["affiliation"]) for u in x.elements(NS_AFFILIATIONS, "user")] for jid, x in notices.items()
        }
        self.assertEqual(users["new@x"], [("new@x", "member")])
        self.assertEqual(users["m@x"], [("m@x", "none")])
        self.assertEqual(len(users["o@x"]), 2)
        self.assertEqual([e.name for e in notices["o@x"].elements()][:2], ["prev-version", "version"])
        self.assertNotIn("version", [e.name for e in notices["m@x"].elements()])

    def test_bare_jid_uses_the_one_parser(self) -> None:
        """Occupant JIDs in stanzas go through the one JID parser: empty labels, over-long parts are not JIDs."""
        self.assertEqual(bare_jid(" A@X. "), "a@x")
        for bad in ("a@b..c", "a@.x", "x" * 1100 + "@x", "a@" + "d" * 1100, "@x", "a@x/r"):
            self.assertIsNone(bare_jid(bad), bad[:20])

    def test_user_items_refuse_malformed_lists(self) -> None:
        """Occupant lists with duplicates, bad JIDs or unknown affiliations are refused."""
        for users in ((("a@x", "member"), ("a@x", "owner")), (("not a jid@@", "member"),), (("a@x", "admin"),)):
            query = domish.Element((NS_AFFILIATIONS, "query"))
            for jid, affiliation in users:
                query.addElement("user", content=jid)["affiliation"] = affiliation
            self.assertIsNone(user_items(query, NS_AFFILIATIONS))


class PresenceTests(unittest.TestCase):
    def test_available_and_unavailable(self) -> None:
        """Available presence adds a full JID; unavailable and errors remove it; bare JIDs are ignored."""
        table = AvailableResources()
        for sender, kind in (("a@x/1", None), ("a@x/2", None), ("a@x", None), ("a@x/1", "unavailable")):
            presence = domish.Element((None, "presence"))
            presence["from"] = sender
            if kind:
                presence["type"] = kind
            table.observe(presence)
        self.assertEqual(table.resources("a@x"), ["a@x/2"])
        table.remove("a@x/2")
        self.assertEqual((table.resources("a@x"), len(table)), ([], 0))

    def test_hostile_senders_are_ignored(self) -> None:
        """Presence from JIDs that are not valid (empty labels, over-long parts) changes nothing and raises nothing."""
        table = AvailableResources()
        for sender in ("a@b..c/r", "a@.x/r", "a@x/", "x" * 1100 + "@x/r", ""):
            presence = domish.Element((None, "presence"))
            presence["from"] = sender
            table.observe(presence)
        self.assertEqual(len(table), 0)


class ArchiveQueryTests(unittest.TestCase):
    def query(self, xml: str) -> domish.Element:
        return parse_element(xml)

    def test_form_and_rsm(self) -> None:
        """Form fields and RSM become the store query; an empty <before/> asks for the last page."""
        parsed = parse_query(
            self.query(
                "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'>"
                "<field var='end'><value>2026-01-01T00:00:00.5Z</value></field>"
                "<field var='with'><value>A@X</value></field></x>"
                "<set xmlns='http://jabber.org/protocol/rsm'><max>900</max><before/></set></query>"
            ),
            str.isdigit,
        )
        self.assertEqual((parsed.sender, parsed.limit, parsed.from_end), ("a@x", 500, True))
        self.assertEqual(parsed.end, 1767225600500)

    def test_malformed_queries(self) -> None:
        """Bad times, a bad max, and ids that are not archive ids are refused."""
        for body, condition in (
            ("<x xmlns='jabber:x:data'><field var='start'><value>yesterday</value></field></x>", "bad-request"),
            ("<set xmlns='http://jabber.org/protocol/rsm'><max>-1</max></set>", "bad-request"),
            ("<set xmlns='http://jabber.org/protocol/rsm'><after>1 or 1</after></set>", "item-not-found"),
        ):
            with self.assertRaises(StanzaError) as caught:
                parse_query(self.query(f"<query xmlns='urn:xmpp:mam:2'>{body}</query>"), str.isdigit)
            self.assertEqual(caught.exception.condition, condition)


class RestInputTests(unittest.TestCase):
    def test_room_id_or_jid(self) -> None:
        """{id} is a room id or a JID on the service; anything else is a 400."""
        api = RoomsApi(None, "muclight.localhost")  # type: ignore[arg-type]
        self.assertEqual(api.room("Abc").full(), "abc@muclight.localhost")
        self.assertEqual(api.room("abc@muclight.localhost").full(), "abc@muclight.localhost")
        for bad, message in (
            ("@invalid", "Invalid room ID"),
            ("a@other.host", "Invalid MUC Light domain"),
            ("x\x00", "Invalid room ID"),
            ("a@muclight.localhost/r", "Invalid room ID"),
            ("a@b..c", "Invalid room ID"),
            ("x@.muclight.localhost", "Invalid room ID"),
            ("é" * 600, "Invalid room ID"),  # 1,200 bytes: longer than a localpart may be
        ):
            with self.assertRaises(BadRequest) as caught:
                api.room(bad)
            self.assertEqual(caught.exception.message, message)

    def test_user_jid(self) -> None:
        """Member JIDs are validated like every JID input; a domain's final dot is dropped."""
        self.assertEqual(RoomsApi._user("Bob@Localhost."), "bob@localhost")
        for bad in ("a@b..c", "x" * 1100 + "@b", "a@" + "d" * 1100, "a@b/r", "@b"):
            with self.assertRaises(BadRequest) as caught:
                RoomsApi._user(bad)
            self.assertEqual(caught.exception.message, f"Invalid user JID: {bad}"[:300])

    def test_message_parts(self) -> None:
        """markable needs a body; a marker needs a known type and an id; something must be sent."""
        self.assertEqual(message_parts({"body": "b", "markable": True}), ("b", True, None))
        self.assertEqual(
            message_parts({"chat_marker": {"type": "displayed", "id": "1"}}),
            (None, False, {"type": "displayed", "id": "1"}),
        )
        for body, message in (
            ({"markable": True}, "No valid message elements"),
            ({"body": 1}, "Invalid message body"),
            ({"body": "b", "markable": "yes"}, "Invalid markable"),
            ({"chat_marker": {"type": "read", "id": "1"}}, "Invalid chat marker"),
            ({"chat_marker": {"type": "received", "id": ""}}, "Invalid chat marker"),
        ):
            with self.assertRaises(BadRequest) as caught:
                message_parts(body)
            self.assertEqual(caught.exception.message, message)

    def test_room_config(self) -> None:
        """name and subject are required strings; an empty subject is allowed."""
        self.assertEqual(room_config({"name": "n", "subject": ""}), ("n", ""))
        with self.assertRaises(BadRequest):
            room_config({"name": ["n"], "subject": "s"})


class _FakeSession:
    """Answers every IQ with ``answer`` (the MUC Light service's reply)."""

    def __init__(self, answer: domish.Element) -> None:
        self.answer = answer

    async def iq(self, kind: str, payload: domish.Element, to: object = None) -> domish.Element:
        return self.answer


class MucLightClientParsingTests(unittest.TestCase):
    """What the service answers is untrusted text too: hostile JIDs are skipped or refused, never raised."""

    def client(self, answer: str) -> MucLightClient:
        client = MucLightClient(ArchiveClient())
        client.parent = _FakeSession(parse_element(answer))  # type: ignore[assignment]
        return client

    async def test_room_list_skips_malformed_item_jids(self) -> None:
        """disco#items entries whose JID has an empty label or no localpart are not rooms."""
        bad = ("a@b..c", "x@.muclight.localhost", "muclight.localhost", "x" * 1100 + "@muclight.localhost")
        items = "".join(f"<item jid='{jid}'/>" for jid in bad)
        client = self.client(f"<iq type='result'><query xmlns='{NS_DISCO_ITEMS}'>{items}</query></iq>")
        self.assertEqual(await client.rooms(JID("muclight.localhost")), [])

    async def test_create_refuses_a_malformed_room_jid(self) -> None:
        """A creation result from a JID that does not parse is a bad answer (RoomBadRequest), not an IndexError."""
        for origin in ("a@b..c", "x@.muclight.localhost", "r@other.host"):
            client = self.client(f"<iq type='result' from='{origin}'/>")
            with self.assertRaises(RoomBadRequest):
                await client.create(JID("muclight.localhost"), None, "n", "s")
        client = self.client("<iq type='result' from='r1@muclight.localhost'/>")
        self.assertEqual(await client.create(JID("muclight.localhost"), None, "n", "s"), "r1")


class ComponentSerializationTests(unittest.TestCase):
    def test_component_stream_and_room_archive_keep_whitespace(self) -> None:
        """The component writes with to_xml, and a stored room message (to_xml, parse_element) keeps CR and TAB."""
        from bridge.muclight.component import _Factory
        from bridge.protocol.xml import StanzaStream, to_xml

        self.assertIs(_Factory.protocol, StanzaStream)
        message = domish.Element((None, "message"))
        message["from"], message["id"] = "r@muclight.localhost/a@x", "a\tb"
        message.addElement("body", content="one\r\ntwo\rthree")
        stored = parse_element(to_xml(message))
        self.assertEqual((str(stored.body), stored["id"]), ("one\r\ntwo\rthree", "a\tb"))


class RoomJsonTests(unittest.TestCase):
    def test_message_and_affiliation(self) -> None:
        """Room messages and affiliation notices become MongooseIM's room JSON."""
        message = parse_element(
            "<message from='r@m.x/a@x' id='1'><body>hi</body><markable xmlns='urn:xmpp:chat-markers:0'/></message>"
        )
        self.assertEqual(
            room_message_to_json(message, 5),
            {"id": "1", "timestamp": 5, "type": "message", "from": "a@x", "body": "hi", "markable": True},
        )
        notice = parse_element(
            "<message from='r@m.x' id='2'><x xmlns='urn:xmpp:muclight:0#affiliations'><version>v</version>"
            "<user affiliation='member'>b@x</user></x></message>"
        )
        self.assertEqual(
            room_message_to_json(notice, 6),
            {"id": "2", "timestamp": 6, "type": "affiliation", "from": "r@m.x", "affiliation": "member", "user": "b@x"},
        )


class StartupTests(unittest.TestCase):
    def test_component_needs_a_secret(self) -> None:
        """Starting the component without a secret fails with one line naming muclight.secret."""
        with self.assertRaises(ConfigError) as caught:
            check_startup(parse_config("", {}))
        self.assertTrue(str(caught.exception).startswith("muclight.secret: "))
        self.assertNotIn("\n", str(caught.exception))
        check_startup(parse_config("[muclight]\ncomponent = false", {}))
        check_startup(parse_config("", {"BRIDGE_MUCLIGHT_SECRET": "s"}))
