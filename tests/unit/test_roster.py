"""RosterClient on an in-memory XML stream: roster pushes, subscription requests, ask/subscription."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial import unittest
from twisted.words.protocols.jabber import xmlstream
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bridge.protocol.namespaces import NS_ROSTER
from bridge.protocol.roster import Contact, RosterItem, ask_state, contact_view, parse_item, roster_remove, roster_set
from bridge.xmpp.roster import RosterClient
from bridge.xmpp.session import Session

OWN = "alice@localhost"
HEADER = (
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
    b" from='localhost' id='s1' version='1.0'>"
)


class Wire:
    """A bound ``Session`` whose server side is this test: bytes in, parsed stanzas out."""

    def __init__(self) -> None:
        self.clock = Clock()
        authenticator = xmlstream.ConnectAuthenticator("localhost")
        authenticator.jid = JID(OWN + "/rest-1")
        factory = xmlstream.XmlStreamFactory(authenticator)
        self.session = Session(factory, self.clock, timeout=5, jid=JID(OWN + "/rest-1"))
        self.xs = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.xs.makeConnection(self.transport)
        self.xs.dataReceived(HEADER)
        self.xs.dispatch(self.xs, xmlstream.STREAM_AUTHD_EVENT)
        self._out: list[domish.Element] = []
        self._parser = domish.elementStream()
        self._parser.DocumentStartEvent = lambda root: None
        self._parser.ElementEvent = self._out.append
        self._parser.DocumentEndEvent = lambda: None

    def sent(self) -> list[domish.Element]:
        """Every stanza the session wrote since the last call."""
        self._parser.parse(self.transport.value())
        self.transport.clear()
        out, self._out[:] = list(self._out), []
        return out

    def receive(self, xml: str) -> None:
        self.xs.dataReceived(xml.encode("utf-8"))

    def answer(self, request: domish.Element, payload: str = "") -> None:
        self.receive(f"<iq type='result' id='{request['id']}' to='{OWN}/rest-1'>{payload}</iq>")


def item_xml(jid: str, **attributes: str) -> str:
    extra = "".join(f" {k}='{v}'" for k, v in attributes.items() if k != "groups")
    groups = "".join(f"<group>{g}</group>" for g in attributes.get("groups", "").split(",") if g)
    return f"<item jid='{jid}'{extra}>{groups}</item>"


def push_xml(item: str, sender: str | None = None, push_id: str = "push1") -> str:
    from_attribute = f" from='{sender}'" if sender is not None else ""
    return f"<iq type='set' id='{push_id}'{from_attribute}><query xmlns='{NS_ROSTER}'>{item}</query></iq>"


class AskStateTests(unittest.TestCase):
    def test_ask_table(self) -> None:
        """ask is none, out, in or both from the outgoing and incoming pending requests."""
        self.assertEqual(
            [ask_state(out, incoming) for out in (False, True) for incoming in (False, True)],
            ["none", "in", "out", "both"],
        )

    def test_contact_view(self) -> None:
        """A request from a contact that already has the user's presence is not reported as 'in'."""
        self.assertEqual(contact_view(None, "b@x", True), Contact("b@x", "none", "in"))
        waiting = RosterItem("b@x", "to", ask_out=False, name="B", groups=("g",))
        self.assertEqual(contact_view(waiting, "b@x", True), Contact("b@x", "to", "in", "B", ("g",)))
        self.assertEqual(contact_view(RosterItem("b@x", "none", ask_out=True), "b@x", True).ask, "both")
        self.assertEqual(contact_view(RosterItem("b@x", "from"), "b@x", True).ask, "none")
        self.assertEqual(contact_view(RosterItem("b@x", "both", ask_out=True), "b@x", False).ask, "out")


class ParseTests(unittest.TestCase):
    def parse(self, xml: str) -> RosterItem | None:
        parsed: list[domish.Element] = []
        stream = domish.elementStream()
        stream.DocumentStartEvent = lambda root: None
        stream.ElementEvent = parsed.append
        stream.DocumentEndEvent = lambda: None
        stream.parse(f"<q xmlns='{NS_ROSTER}'>{xml}</q>".encode())
        return parse_item(parsed[0])

    def test_item(self) -> None:
        """An item gives its normalised JID, subscription, pending out, name and sorted distinct groups."""
        item = self.parse(
            item_xml("Bob@LocalHost", subscription="to", ask="subscribe", name="B &amp; b", groups="z,a,z")
        )
        self.assertEqual(item, RosterItem("bob@localhost", "to", True, "B & b", ("a", "z")))

    def test_defaults_and_oddities(self) -> None:
        """Missing or unknown subscription is none; remove and JID-less items are skipped."""
        self.assertEqual(self.parse(item_xml("b@x")), RosterItem("b@x"))
        self.assertEqual(self.parse(item_xml("b@x", subscription="sideways", ask="unsubscribe")), RosterItem("b@x"))
        self.assertIsNone(self.parse(item_xml("b@x", subscription="remove")))
        self.assertIsNone(self.parse("<item name='x'/>"))
        self.assertIsNone(self.parse(item_xml("a@b..c")))
        self.assertIsNone(self.parse(item_xml("a b@x")))

    def test_builders(self) -> None:
        """Roster sets carry the bare JID, name and groups; a remove carries subscription='remove'."""
        query = roster_set(JID("b@x/res"), 'B <&> "b"', ["g1", "g<2>"])
        self.assertEqual(
            query.toXml(),
            f"<query xmlns='{NS_ROSTER}'><item jid='b@x' name='B &lt;&amp;&gt; &quot;b&quot;'>"
            "<group>g1</group><group>g&lt;2&gt;</group></item></query>",
        )
        self.assertNotIn("name", roster_set(JID("b@x"), "", []).firstChildElement().attributes)
        self.assertEqual(
            roster_remove(JID("b@x")).toXml(),
            f"<query xmlns='{NS_ROSTER}'><item jid='b@x' subscription='remove'/></query>",
        )


class RosterClientTests(unittest.TestCase):
    def setUp(self) -> None:
        self.wire = Wire()
        self.roster = self.wire.session.attach(RosterClient())
        self.wire.sent()

    def start(self, coroutine: Any) -> defer.Deferred[Any]:
        return defer.Deferred.fromCoroutine(coroutine)

    def load(self, items: str = "") -> None:
        """Answer the first refresh: roster result, then the ping after the initial presence."""
        done = self.start(self.roster.refresh())
        (get,) = self.wire.sent()
        self.assertEqual((get["type"], get.firstChildElement().uri), ("get", NS_ROSTER))
        self.wire.answer(get, f"<query xmlns='{NS_ROSTER}' ver='1'>{items}</query>")
        presence, ping = self.wire.sent()
        self.assertEqual((presence.name, str(presence.priority)), ("presence", "-1"))
        self.assertFalse(presence.hasAttribute("to"))
        self.assertEqual(ping.firstChildElement().name, "ping")
        self.wire.answer(ping)
        self.successResultOf(done)

    def refresh(self) -> list[Contact]:
        """A later refresh: one ping, nothing else."""
        done = self.start(self.roster.contacts())
        (ping,) = self.wire.sent()
        self.assertEqual(ping.firstChildElement().name, "ping")
        self.wire.answer(ping)
        return self.successResultOf(done)

    def test_first_refresh_loads_and_announces_once(self) -> None:
        """The first refresh fetches the roster and sends one priority -1 presence; later ones only ping."""
        self.load(item_xml("bob@localhost", subscription="to", groups="Friends"))
        self.assertEqual(self.refresh(), [Contact("bob@localhost", "to", "none", None, ("Friends",))])
        self.assertEqual(self.refresh(), [Contact("bob@localhost", "to", "none", None, ("Friends",))])

    def test_available_session_is_not_announced_again(self) -> None:
        """A session another feature made available gets no extra presence."""
        self.wire.session.available = True
        done = self.start(self.roster.refresh())
        (get,) = self.wire.sent()
        self.wire.answer(get, f"<query xmlns='{NS_ROSTER}'/>")
        self.assertEqual(self.wire.sent(), [])
        self.successResultOf(done)

    def test_without_incoming_no_presence(self) -> None:
        """Adding a contact fetches the roster but does not make the session available."""
        done = self.start(self.roster.set_item(JID("bob@localhost"), None, None))
        (get,) = self.wire.sent()
        self.wire.answer(get, f"<query xmlns='{NS_ROSTER}'>{item_xml('bob@localhost', name='B', groups='g')}</query>")
        (set_iq,) = self.wire.sent()
        self.assertEqual(set_iq["type"], "set")
        item = set_iq.firstChildElement().firstChildElement()
        self.assertEqual((item["jid"], item["name"], [str(g) for g in item.elements()]), ("bob@localhost", "B", ["g"]))
        self.wire.answer(set_iq)
        self.successResultOf(done)
        self.assertFalse(self.roster.revealed)

    def test_push_updates_and_is_acknowledged(self) -> None:
        """Pushes without 'from' or from the own bare JID are applied and answered with a result."""
        self.load()
        self.wire.receive(push_xml(item_xml("bob@localhost", ask="subscribe"), push_id="p1"))
        self.wire.receive(push_xml(item_xml("carol@localhost", subscription="both"), sender=OWN, push_id="p2"))
        first, second = self.wire.sent()
        self.assertEqual((first["type"], first["id"], first.hasAttribute("to")), ("result", "p1", False))
        self.assertEqual((second["type"], second["id"], second["to"]), ("result", "p2", OWN))
        self.assertEqual(
            self.refresh(),
            [Contact("bob@localhost", "none", "out"), Contact("carol@localhost", "both", "none")],
        )
        self.wire.receive(push_xml(item_xml("bob@localhost", subscription="remove"), push_id="p3"))
        self.assertEqual(self.wire.sent()[0]["type"], "result")
        self.assertEqual([c.jid for c in self.refresh()], ["carol@localhost"])

    def test_push_from_elsewhere_is_refused(self) -> None:
        """A push from another JID (even the user's full JID's server or a contact) changes nothing."""
        self.load()
        for index, sender in enumerate(("mallory@localhost", "localhost", "alice@localhost.evil")):
            self.wire.receive(push_xml(item_xml("bob@localhost"), sender=sender, push_id=f"x{index}"))
            (reply,) = self.wire.sent()
            self.assertEqual((reply["type"], reply["id"], reply["to"]), ("error", f"x{index}", sender))
            self.assertEqual(reply.error.firstChildElement().name, "service-unavailable")
            self.assertFalse(reply.hasAttribute("from"))
        self.assertEqual(self.refresh(), [])

    def test_push_with_several_items_is_bad_request(self) -> None:
        """RFC 6121 pushes carry exactly one item; others are refused."""
        self.load()
        self.wire.receive(push_xml(item_xml("b@x") + item_xml("c@x")))
        (reply,) = self.wire.sent()
        self.assertEqual(reply.error.firstChildElement().name, "bad-request")
        self.assertEqual(self.refresh(), [])

    def test_incoming_requests(self) -> None:
        """Subscribe presences make 'in' until approved, withdrawn, or the contact gets the presence."""
        self.load(item_xml("bob@localhost", subscription="to"))
        for sender in ("bob@localhost/phone", "carol@localhost", "dave@localhost", OWN + "/other", "bad jid"):
            self.wire.receive(f"<presence type='subscribe' from='{sender}'/>")
        self.assertEqual(
            [(c.jid, c.subscription, c.ask) for c in self.refresh()],
            [("bob@localhost", "to", "in"), ("carol@localhost", "none", "in"), ("dave@localhost", "none", "in")],
        )
        self.wire.receive("<presence type='unsubscribe' from='carol@localhost'/>")
        self.wire.receive(push_xml(item_xml("bob@localhost", subscription="both")))
        self.wire.sent()
        approving = self.start(self.roster.approve(JID("dave@localhost")))
        presence, ping = self.wire.sent()
        self.assertEqual((presence["to"], presence["type"]), ("dave@localhost", "subscribed"))
        # RFC 6121 3.1.5: approving a pending request makes the server push subscription 'from'.
        self.wire.receive(push_xml(item_xml("dave@localhost", subscription="from")))
        self.wire.answer(ping)
        self.assertTrue(self.successResultOf(approving))
        self.assertEqual(self.wire.sent()[0]["type"], "result")  # the push's acknowledgement
        self.assertEqual(
            [(c.jid, c.ask) for c in self.refresh()], [("bob@localhost", "none"), ("dave@localhost", "none")]
        )

    def test_approve_without_confirmation_is_false_and_taken_back(self) -> None:
        """An accept the server does not confirm (nothing was pending) is False, forgotten, and cancelled."""
        self.load(item_xml("bob@localhost"))
        self.wire.receive("<presence type='subscribe' from='bob@localhost'/>")
        approving = self.start(self.roster.approve(JID("bob@localhost")))
        subscribed, ping = self.wire.sent()
        self.assertEqual(subscribed["type"], "subscribed")
        self.wire.answer(ping)
        unsubscribed, ping = self.wire.sent()
        self.assertEqual((unsubscribed["to"], unsubscribed["type"]), ("bob@localhost", "unsubscribed"))
        self.wire.answer(ping)
        self.assertFalse(self.successResultOf(approving))
        self.assertEqual([(c.jid, c.subscription, c.ask) for c in self.refresh()], [("bob@localhost", "none", "none")])

    def test_approve_that_only_made_a_pre_approval_removes_the_item_it_created(self) -> None:
        """Prosody's pre-approval of a stranger (a new item, subscription none) is cancelled and its item removed."""
        self.load()
        self.wire.receive("<presence type='subscribe' from='carol@localhost'/>")
        approving = self.start(self.roster.approve(JID("carol@localhost")))
        _, ping = self.wire.sent()
        self.wire.receive(push_xml(item_xml("carol@localhost", subscription="none")))
        self.wire.answer(ping)
        ack, unsubscribed, remove = self.wire.sent()
        self.assertEqual((ack["type"], unsubscribed["type"]), ("result", "unsubscribed"))
        self.assertEqual(remove.firstChildElement().firstChildElement()["subscription"], "remove")
        self.wire.answer(remove)
        self.assertFalse(self.successResultOf(approving))

    def test_approve_of_a_contact_that_has_the_presence_sends_nothing(self) -> None:
        """Accepting a contact whose subscription is already 'from' or 'both' is True at once."""
        self.load(item_xml("bob@localhost", subscription="both"))
        self.assertTrue(self.successResultOf(self.start(self.roster.approve(JID("bob@localhost")))))
        self.assertEqual(self.wire.sent(), [])

    def test_declines_are_told_to_the_users_other_bridge_sessions(self) -> None:
        """Removing a requester tells the user's available rest-* sessions, not other clients or the gone."""
        self.load()
        for resource, kind in (("rest-b", None), ("rest-c", None), ("phone", None), ("rest-c", "unavailable")):
            type_attribute = f" type='{kind}'" if kind else ""
            self.wire.receive(f"<presence from='{OWN}/{resource}'{type_attribute}/>")
        self.wire.receive("<presence from='mallory@localhost/rest-x'/>")
        self.wire.receive("<presence type='subscribe' from='carol@localhost'/>")
        removing = self.start(self.roster.remove(JID("carol@localhost")))
        self.wire.answer(self.wire.sent()[0])
        declined, notice, ping = self.wire.sent()
        self.assertEqual(declined["type"], "unsubscribed")
        self.assertEqual((notice.name, notice["to"], notice["type"]), ("message", f"{OWN}/rest-b", "headline"))
        self.assertEqual(notice.firstChildElement()["jid"], "carol@localhost")
        self.wire.answer(ping)
        self.assertTrue(self.successResultOf(removing))

    def test_a_notice_from_the_users_own_session_forgets_the_request(self) -> None:
        """An 'answered' notice from the user's own JID ends 'ask: in'; one from anyone else changes nothing."""
        self.load()
        self.wire.receive("<presence type='subscribe' from='carol@localhost'/>")
        self.wire.receive("<presence type='subscribe' from='dave@localhost'/>")
        notice = "<message type='headline' from='{0}'><answered xmlns='{1}' jid='{2}'/></message>"
        ns = "urn:xmpp-rest-bridge:roster-answered:0"
        self.wire.receive(notice.format("mallory@localhost/rest-1", ns, "carol@localhost"))
        self.wire.receive(notice.format(f"{OWN}/rest-b", ns, "dave@localhost"))
        self.assertEqual([(c.jid, c.ask) for c in self.refresh()], [("carol@localhost", "in")])

    def test_the_notice_is_no_live_event(self) -> None:
        """The 'answered' headline between bridge sessions never becomes an SSE event."""
        from bridge.protocol.events import incoming_event
        from bridge.xmpp.roster import NS_ANSWERED

        notice = domish.Element((None, "message"))
        notice["from"], notice["to"], notice["type"] = f"{OWN}/rest-b", f"{OWN}/rest-1", "headline"
        notice.addElement((NS_ANSWERED, "answered"))["jid"] = "carol@localhost"
        self.assertIsNone(incoming_event(notice, OWN, "muclight.localhost", 0))

    def test_remove_declines_a_request_before_removing(self) -> None:
        """Removing a requester sends unsubscribed; a roster item is removed with subscription='remove'."""
        self.load(item_xml("bob@localhost", subscription="to"))
        self.wire.receive("<presence type='subscribe' from='bob@localhost'/>")
        self.wire.receive("<presence type='subscribe' from='carol@localhost'/>")
        removing = self.start(self.roster.remove(JID("carol@localhost")))
        self.wire.answer(self.wire.sent()[0])
        declined, ping = self.wire.sent()
        self.assertEqual((declined["to"], declined["type"]), ("carol@localhost", "unsubscribed"))
        self.wire.answer(ping)
        self.assertTrue(self.successResultOf(removing))

        removing = self.start(self.roster.remove(JID("bob@localhost")))
        self.wire.answer(self.wire.sent()[0])
        declined, remove = self.wire.sent()
        self.assertEqual(declined["type"], "unsubscribed")
        self.assertEqual(remove.firstChildElement().firstChildElement()["subscription"], "remove")
        self.wire.answer(remove)
        self.assertTrue(self.successResultOf(removing))

    def test_remove_unknown_is_false(self) -> None:
        """A contact neither in the roster nor asking is not removed, and nothing is sent for it."""
        self.load()
        removing = self.start(self.roster.remove(JID("nobody@localhost")))
        self.wire.answer(self.wire.sent()[0])
        self.assertEqual(self.wire.sent(), [])
        self.assertFalse(self.successResultOf(removing))

    def test_remove_raced_by_another_client_is_false(self) -> None:
        """The server's item-not-found (another client removed it first) means 'not removed'."""
        self.load(item_xml("bob@localhost"))
        removing = self.start(self.roster.remove(JID("bob@localhost")))
        self.wire.answer(self.wire.sent()[0])
        (remove,) = self.wire.sent()
        self.wire.receive(
            f"<iq type='error' id='{remove['id']}'><error type='cancel'>"
            "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )
        self.assertFalse(self.successResultOf(removing))

    def test_remove_all_goes_on_past_an_error(self) -> None:
        """Bulk removal removes each distinct contact once and reports only those the server removed."""
        self.load(item_xml("bob@localhost") + item_xml("carol@localhost"))
        jids = [JID("bob@localhost"), JID("BOB@localhost"), JID("carol@localhost"), JID("nobody@localhost")]
        removing = self.start(self.roster.remove_all(jids))
        self.wire.answer(self.wire.sent()[0])
        (bob,) = self.wire.sent()
        self.assertEqual(bob.firstChildElement().firstChildElement()["jid"], "bob@localhost")
        self.wire.receive(
            f"<iq type='error' id='{bob['id']}'><error type='cancel'>"
            "<not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )
        (carol,) = self.wire.sent()
        self.assertEqual(carol.firstChildElement().firstChildElement()["jid"], "carol@localhost")
        self.wire.answer(carol)
        self.assertEqual(self.wire.sent(), [])
        self.assertEqual(self.successResultOf(removing), {"carol@localhost"})


class LateHandlerTests(unittest.TestCase):
    def test_handler_attached_to_an_available_session_sends_no_presence(self) -> None:
        """A handler attached after the session went available never re-announces it."""
        wire = Wire()
        wire.session.available = True
        roster = wire.session.attach(RosterClient())
        self.assertFalse(roster.watching)
        done = defer.Deferred.fromCoroutine(roster.contacts())
        (get,) = wire.sent()
        wire.answer(get, f"<query xmlns='{NS_ROSTER}'/>")
        self.assertEqual(wire.sent(), [])
        self.assertEqual(self.successResultOf(done), [])
