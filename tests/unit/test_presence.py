"""Presence, unit by unit: stanzas to JSON, the contacts' tracker, PUT input, the user's own presence."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial import unittest
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bridge.api.errors import BadRequest
from bridge.api.presence import presence_input
from bridge.protocol.presence import (
    MAX_STATUS,
    PresenceInfo,
    build_presence,
    contacts_json,
    event_json,
    received_presence,
)
from bridge.xmpp.events import SessionEvents
from bridge.xmpp.presence import RETRY_FOR, PresenceTracker, ServicePresence, go_available, set_presence

OWN = "alice@localhost"


def stanza(
    sender: str | None,
    kind: str | None = None,
    show: str | None = None,
    status: str | None = None,
    priority: str | None = None,
) -> domish.Element:
    element = domish.Element(("jabber:client", "presence"))
    if sender is not None:
        element["from"] = sender
    if kind is not None:
        element["type"] = kind
    for name, value in (("show", show), ("status", status), ("priority", priority)):
        if value is not None:
            element.addElement(name, content=value)
    return element


class FakeSession:
    """What the presence code uses of a session: its JID, ``send``, ``round_trip``, ``available``."""

    def __init__(self, jid: str = f"{OWN}/rest-1") -> None:
        self.jid = JID(jid)
        self.available = False
        self.sent: list[domish.Element] = []
        self.round_trips = 0

    def send(self, element: domish.Element) -> None:
        self.sent.append(element)

    def find(self, cls: type) -> None:
        return None

    async def round_trip(self) -> None:
        self.round_trips += 1


class ReceivedPresenceTests(unittest.TestCase):
    def test_available_with_show_status_priority(self) -> None:
        """A contact's available presence gives its full JID, show, status and priority."""
        found = received_presence(stanza("bob@localhost/phone", show="away", status="Out", priority="5"), OWN)
        assert found is not None
        self.assertEqual((found.jid.full(), found.type), ("bob@localhost/phone", "available"))
        self.assertEqual(found.info, PresenceInfo("away", "Out", 5))
        self.assertEqual(
            event_json(found),
            {"from": "bob@localhost/phone", "type": "available", "show": "away", "status": "Out", "priority": 5},
        )

    def test_plain_available_defaults(self) -> None:
        """Without show, status or priority the presence is plain available with priority 0."""
        found = received_presence(stanza("bob@localhost/phone"), OWN)
        assert found is not None
        self.assertEqual(event_json(found), {"from": "bob@localhost/phone", "type": "available", "priority": 0})

    def test_untrusted_values_are_read_leniently(self) -> None:
        """An unknown show is plain available, a bad priority 0, a long status is cut to MAX_STATUS."""
        for priority in ("128", "-129", "x", "1.5", "99999999999999", "", "\u0661"):
            found = received_presence(stanza("bob@localhost/p", priority=priority), OWN)
            assert found is not None
            self.assertEqual(found.info.priority, 0, priority)
        found = received_presence(stanza("bob@localhost/p", show="online", priority=" -128 "), OWN)
        assert found is not None
        self.assertEqual((found.info.show, found.info.priority), (None, -128))
        found = received_presence(stanza("bob@localhost/p", status="x" * 5000), OWN)
        assert found is not None and found.info.status is not None
        self.assertEqual(len(found.info.status), MAX_STATUS)

    def test_status_without_language_is_preferred(self) -> None:
        """Of several statuses, the one without xml:lang is shown."""
        element = stanza("bob@localhost/p")
        element.addElement("status", content="Hallo")[("http://www.w3.org/XML/1998/namespace", "lang")] = "de"
        element.addElement("status", content="Hello")
        found = received_presence(element, OWN)
        assert found is not None
        self.assertEqual(found.info.status, "Hello")

    def test_unavailable(self) -> None:
        """Unavailable presence keeps its status and has no priority; a bare sender means every resource."""
        found = received_presence(stanza("bob@localhost/phone", "unavailable", status="Bye"), OWN)
        assert found is not None
        self.assertEqual(event_json(found), {"from": "bob@localhost/phone", "type": "unavailable", "status": "Bye"})
        bare = received_presence(stanza("bob@localhost", "unavailable"), OWN)
        assert bare is not None
        self.assertEqual(event_json(bare), {"from": "bob@localhost", "type": "unavailable"})

    def test_what_is_not_contact_presence(self) -> None:
        """Subscriptions, probes, errors, the user's own resources, servers, MUC occupancy and junk are skipped."""
        for kind in ("subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe", "error", "bogus"):
            self.assertIsNone(received_presence(stanza("bob@localhost/p", kind), OWN), kind)
        senders = (f"{OWN}/phone", "ALICE@localhost/x", "localhost", "localhost/x", None, "bad@@jid", "bob@localhost")
        for sender in senders:
            self.assertIsNone(received_presence(stanza(sender), OWN), sender)
        muc = stanza("room@conference.localhost/nick")
        muc.addElement(("http://jabber.org/protocol/muc#user", "x"))
        self.assertIsNone(received_presence(muc, OWN))

    def test_contacts_json_sorted(self) -> None:
        """GET /api/presence lists contacts by JID, resources by name, show and status only when set."""
        table = {
            "carol@localhost": {"b": PresenceInfo(), "a": PresenceInfo("dnd", "busy", -1)},
            "bob@localhost": {"phone": PresenceInfo(priority=3)},
            "gone@localhost": {},
        }
        self.assertEqual(
            contacts_json(table),
            [
                {"jid": "bob@localhost", "resources": [{"resource": "phone", "priority": 3}]},
                {
                    "jid": "carol@localhost",
                    "resources": [
                        {"resource": "a", "show": "dnd", "status": "busy", "priority": -1},
                        {"resource": "b", "priority": 0},
                    ],
                },
            ],
        )


class TrackerTests(unittest.TestCase):
    def tracker(self, limit: int = 100) -> PresenceTracker:
        tracker = PresenceTracker(limit)
        tracker.parent = FakeSession()  # type: ignore[assignment]
        return tracker

    def test_follows_available_and_unavailable(self) -> None:
        """Available adds or updates a resource, unavailable removes it, a bare unavailable all of the contact's."""
        tracker = self.tracker()
        tracker.observe(stanza("bob@localhost/phone", show="away"))
        tracker.observe(stanza("bob@localhost/pc"))
        tracker.observe(stanza("carol@localhost/x"))
        tracker.observe(stanza("bob@localhost/phone", show="dnd", status="busy"))
        self.assertEqual(
            tracker.available(),
            {
                "bob@localhost": {"phone": PresenceInfo("dnd", "busy"), "pc": PresenceInfo()},
                "carol@localhost": {"x": PresenceInfo()},
            },
        )
        tracker.observe(stanza("bob@localhost/pc", "unavailable"))
        self.assertEqual(set(tracker.available()["bob@localhost"]), {"phone"})
        tracker.observe(stanza("bob@localhost", "unavailable"))
        carol = {"jid": "carol@localhost", "resources": [{"resource": "x", "priority": 0}]}
        self.assertEqual(tracker.as_json(), [carol])
        tracker.observe(stanza("carol@localhost/x", "subscribe"))
        tracker.observe(stanza(f"{OWN}/phone"))
        self.assertEqual(len(tracker), 1)

    def test_bounded_forgetting_the_least_recently_updated(self) -> None:
        """Past its limit the tracker forgets the resource updated longest ago, never growing."""
        tracker = self.tracker(limit=3)
        for name in ("a", "b", "c"):
            tracker.observe(stanza(f"{name}@localhost/r"))
        tracker.observe(stanza("a@localhost/r", show="away"))  # a is now the most recent
        tracker.observe(stanza("d@localhost/r"))
        self.assertEqual(sorted(tracker.available()), ["a@localhost", "c@localhost", "d@localhost"])
        for n in range(1000):
            tracker.observe(stanza(f"spam{n}@localhost/r"))
        self.assertEqual(len(tracker), 3)

    def test_a_broken_stanza_does_not_raise(self) -> None:
        """The stream's observer swallows (and logs) whatever a stanza makes go wrong."""
        tracker = self.tracker()
        tracker.parent = None  # type: ignore[assignment]
        tracker._received(stanza("bob@localhost/p"))
        self.assertEqual(len(self.flushLoggedErrors(AttributeError)), 1)


class InputTests(unittest.TestCase):
    def test_valid_bodies(self) -> None:
        """show, status and priority are optional; priority defaults to the configured one."""
        self.assertEqual(presence_input({}), PresenceInfo(None, None, 0))
        self.assertEqual(presence_input({}, default_priority=-1), PresenceInfo(None, None, -1))
        self.assertEqual(
            presence_input({"show": "xa", "status": "Gone <&>", "priority": -128}), PresenceInfo("xa", "Gone <&>", -128)
        )
        self.assertEqual(presence_input({"show": None, "status": "", "priority": 127}), PresenceInfo(None, None, 127))
        self.assertEqual(presence_input({"status": "x" * MAX_STATUS}).status, "x" * MAX_STATUS)

    def test_invalid_values(self) -> None:
        """Each bad value gets its field's 400 message."""
        cases: list[tuple[dict[str, Any], str]] = [
            ({"show": "available"}, "Invalid show"),
            ({"show": "online"}, "Invalid show"),
            ({"show": ""}, "Invalid show"),
            ({"show": 1}, "Invalid show"),
            ({"show": ["away"]}, "Invalid show"),
            ({"status": "a\x00b"}, "Invalid status"),
            ({"status": "\ud800"}, "Invalid status"),
            ({"status": "x" * (MAX_STATUS + 1)}, "Invalid status"),
            ({"status": 5}, "Invalid status"),
            ({"priority": 128}, "Invalid priority"),
            ({"priority": -129}, "Invalid priority"),
            ({"priority": 10**400}, "Invalid priority"),
            ({"priority": 1.0}, "Invalid priority"),
            ({"priority": float("nan")}, "Invalid priority"),
            ({"priority": True}, "Invalid priority"),
            ({"priority": "1"}, "Invalid priority"),
            ({"priority": None}, "Invalid priority"),
        ]
        for body, message in cases:
            with self.assertRaises(BadRequest, msg=repr(body)) as caught:
                presence_input(body)
            self.assertEqual((caught.exception.status, caught.exception.message), (400, message), repr(body))


class OwnPresenceTests(unittest.TestCase):
    async def test_first_put_tells_the_service_later_ones_do_not(self) -> None:
        """The first PUT broadcasts and tells the service; later ones only broadcast; each waits a round trip."""
        session = FakeSession()
        service = JID("muclight.localhost")
        await set_presence(session, PresenceInfo("away", "Lunch", 3), [service])  # type: ignore[arg-type]
        self.assertTrue(session.available)
        self.assertEqual(
            [e.toXml() for e in session.sent],
            [
                "<presence><show>away</show><status>Lunch</status><priority>3</priority></presence>",
                "<presence to='muclight.localhost'>"
                "<show>away</show><status>Lunch</status><priority>3</priority></presence>",
            ],
        )
        await set_presence(session, PresenceInfo(), [service])  # type: ignore[arg-type]
        self.assertEqual(session.sent[-1].toXml(), "<presence><priority>0</priority></presence>")
        self.assertEqual((len(session.sent), session.round_trips), (3, 2))

    def test_a_stream_keeps_the_presence_set(self) -> None:
        """A stream opening on a session whose user set a presence does not announce sse.priority over it."""
        session = FakeSession()
        session.available = True
        go_available(session, 0, [JID("muclight.localhost")])  # type: ignore[arg-type]
        self.assertEqual(session.sent, [])

    def test_build_presence_escapes(self) -> None:
        """The user's status is text content, escaped."""
        self.assertEqual(
            build_presence(PresenceInfo(status="<b>&")).toXml(),
            "<presence><status>&lt;b&gt;&amp;</status><priority>0</priority></presence>",
        )


class EventTests(unittest.TestCase):
    def test_contact_presence_becomes_an_event(self) -> None:
        """A stream session's events include contacts' presence, not subscription requests nor its own."""
        seen: list[tuple[str, dict[str, Any]]] = []
        handler = SessionEvents(lambda name, data: seen.append((name, data)), "muclight.localhost", Clock())
        handler.parent = FakeSession()  # type: ignore[assignment]
        handler._presence(stanza("bob@localhost/phone", show="chat", priority="1"))
        handler._presence(stanza("bob@localhost", "subscribe"))
        handler._presence(stanza(f"{OWN}/rest-1"))
        handler._presence(stanza("bob@localhost/phone", "unavailable"))
        self.assertEqual(
            seen,
            [
                ("presence", {"from": "bob@localhost/phone", "type": "available", "show": "chat", "priority": 1}),
                ("presence", {"from": "bob@localhost/phone", "type": "unavailable"}),
            ],
        )


SERVICE = "muclight.localhost"


class ServicePresenceTests(unittest.TestCase):
    """A directed presence the service bounced (its component down or moving) is sent again."""

    def setUp(self) -> None:
        from tests.unit.test_roster import Wire

        self.wire = Wire()
        self.wire.session.attach(ServicePresence())
        go_available(self.wire.session, -1, [JID(SERVICE)])
        self.wire.clock.advance(0)
        self.wire.sent()

    def bounce(self) -> None:
        self.wire.receive(
            f"<presence type='error' from='{SERVICE}' to='{OWN}/rest-1'><error type='wait'>"
            "<remote-server-timeout xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>"
        )

    def resent_after(self, seconds: float) -> list[domish.Element]:
        self.wire.clock.advance(seconds)
        return [e for e in self.wire.sent() if e.name == "presence" and e.getAttribute("to") == SERVICE]

    def test_bounced_presence_is_sent_again_with_backoff(self) -> None:
        """Each bounce brings the same directed presence back after 1, 2, 4, then 5 s."""
        for delay in (1.0, 2.0, 4.0, 5.0, 5.0):
            self.bounce()
            self.assertEqual(self.resent_after(delay - 0.01), [])
            again = self.resent_after(0.01)
            self.assertEqual(len(again), 1)
            self.assertEqual(str(again[0].priority), "-1")

    def test_one_outage_is_retried_for_a_bounded_time(self) -> None:
        """A service that keeps bouncing is told again for RETRY_FOR seconds, then no more."""
        attempts = 0
        for _ in range(100):
            self.bounce()
            again = self.resent_after(5.0)
            if not again:
                break
            attempts += 1
        self.assertGreater(attempts, 5)
        self.assertLessEqual(attempts, RETRY_FOR / 5 + 4)
        self.bounce()
        self.assertEqual(self.resent_after(10.0), [])

    def test_a_new_outage_starts_afresh(self) -> None:
        """After a quiet spell a bounce is retried from the first delay again."""
        for _ in range(4):
            self.bounce()
            self.resent_after(5.0)
        self.wire.clock.advance(30)
        self.bounce()
        self.assertEqual(len(self.resent_after(1.0)), 1)

    def test_other_errors_and_unavailable_sessions_are_left_alone(self) -> None:
        """A presence error from an entity never told, or on a session no longer available, is not retried."""
        self.wire.receive(f"<presence type='error' from='bob@localhost' to='{OWN}/rest-1'/>")
        self.assertEqual(self.resent_after(10.0), [])
        self.wire.session.available = False
        self.bounce()
        self.assertEqual(self.resent_after(10.0), [])

    def test_a_pending_retry_absorbs_more_bounces(self) -> None:
        """Bounces that arrive while a re-send is pending schedule no second one."""
        self.bounce()
        self.bounce()
        self.assertEqual(len(self.resent_after(1.0)), 1)
        self.assertEqual(self.resent_after(10.0), [])
