"""Live events, unit by unit: stanza classification, replay buffer, stream writing, tokens, config."""

from __future__ import annotations

import base64
import json
from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial import unittest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bridge.api.errors import BadRequest
from bridge.api.sse import CLOSE_GRACE, EventStream, format_event, parse_event_id
from bridge.api.tokens import KEY_WAIT, MAX_TOKENS_PER_USER, InvalidToken, MisdirectedToken, StreamTokens, user_part
from bridge.config import ConfigError, SseConfig, parse_config
from bridge.events import (
    MAX_SAFE_ID,
    RESET,
    TAG_SPACE,
    TICK_EPOCH_MS,
    Event,
    EventHub,
    ReplayLimits,
    UserEvents,
    _reset_reason,
    id_tag,
)
from bridge.http.site import BridgeSite
from bridge.protocol.events import incoming_event
from bridge.xmpp.errors import ServerUnavailable
from bridge.xmpp.events import REMEMBERED_ROOM_MESSAGES, RecentRoomMessages, SessionEvents
from bridge.xmpp.pool import SessionPool

OWN = "alice@localhost"
ROOMS = "muclight.localhost"
NOW = 1_700_000_000_000
# The [sse] defaults of the replay window.
REPLAY = ReplayLimits(events=100, seconds=300.0, size=1_048_576)


def message(sender: str | None, to: str = OWN, kind: str | None = "chat", body: str | None = "hi") -> domish.Element:
    element = domish.Element(("jabber:client", "message"))
    if sender is not None:
        element["from"] = sender
    element["to"] = to
    if kind is not None:
        element["type"] = kind
    element["id"] = "m1"
    if body is not None:
        element.addElement("body", content=body)
    return element


def carbon(direction: str, outer_from: str, inner: domish.Element) -> domish.Element:
    outer = message(outer_from, to=f"{OWN}/rest-1", body=None)
    forwarded = outer.addElement(("urn:xmpp:carbons:2", direction)).addElement(("urn:xmpp:forward:0", "forwarded"))
    forwarded.addChild(inner)
    return outer


class ClassificationTests(unittest.TestCase):
    def event(self, stanza: domish.Element) -> tuple[str, dict[str, Any]] | None:
        return incoming_event(stanza, OWN, ROOMS, NOW)

    def test_chat_message_is_a_message_event(self) -> None:
        """A chat message with a body becomes a `message` event with the API's JSON."""
        found = self.event(message("bob@localhost/phone"))
        self.assertEqual(
            found, ("message", {"id": "m1", "from": "bob@localhost", "to": OWN, "timestamp": NOW, "body": "hi"})
        )

    def test_normal_and_untyped_messages_count_as_chat(self) -> None:
        """Messages of type normal, or without a type, are one-to-one messages too."""
        for kind in ("normal", None):
            found = self.event(message("bob@localhost", kind=kind))
            self.assertEqual(found and found[0], "message")

    def test_delayed_message_keeps_its_delay_stamp(self) -> None:
        """An offline message's XEP-0203 delay stamp is its timestamp."""
        stanza = message("bob@localhost")
        stanza.addElement(("urn:xmpp:delay", "delay"))["stamp"] = "2018-07-11T17:10:49.949Z"
        found = self.event(stanza)
        assert found is not None
        self.assertEqual(found[1]["timestamp"], 1531329049949)

    def test_messages_without_content_are_ignored(self) -> None:
        """Empty bodies, server notices, errors, headlines and MAM results are no events."""
        privilege = message("localhost", body=None)
        privilege.addElement(("urn:xmpp:privilege:2", "privilege"))
        result = message(OWN, body=None)
        result.addElement(("urn:xmpp:mam:2", "result"))["id"] = "r1"
        cases = [
            privilege,
            result,
            message("bob@localhost", body=""),
            message("bob@localhost", kind="error"),
            message("bob@localhost", kind="headline"),
        ]
        for stanza in cases:
            self.assertIsNone(self.event(stanza), stanza.toXml())

    def test_chat_marker_alone_is_an_event(self) -> None:
        """A bodiless XEP-0333 marker is exposed, since the API's JSON carries chat_marker."""
        stanza = message("bob@localhost", body=None)
        stanza.addElement(("urn:xmpp:chat-markers:0", "displayed"))["id"] = "m0"
        found = self.event(stanza)
        assert found is not None
        self.assertEqual(found[1]["chat_marker"], {"type": "displayed", "id": "m0"})

    def test_received_and_sent_carbons_are_unwrapped_and_marked(self) -> None:
        """Carbons from the user's bare JID are unwrapped and marked received or sent."""
        received = self.event(carbon("received", OWN, message("bob@localhost/pc", to=f"{OWN}/phone")))
        assert received is not None
        self.assertEqual(
            (received[1]["from"], received[1]["to"], received[1]["carbon"]), ("bob@localhost", OWN, "received")
        )
        sent = self.event(carbon("sent", OWN, message(f"{OWN}/phone", to="bob@localhost")))
        assert sent is not None
        self.assertEqual((sent[1]["from"], sent[1]["to"], sent[1]["carbon"]), (OWN, "bob@localhost", "sent"))

    def test_forged_or_malformed_carbons_are_dropped(self) -> None:
        """Carbons not from the user's own bare JID, or that do not concern the user, are dropped."""
        genuine_inner = message("bob@localhost/pc", to=f"{OWN}/phone")
        cases = [
            carbon("received", "mallory@localhost", genuine_inner),
            carbon("received", f"{OWN}/other", message("bob@localhost/pc", to=f"{OWN}/phone")),
            carbon("received", "localhost", message("bob@localhost/pc", to=f"{OWN}/phone")),
            carbon("received", "a..b@@", message("bob@localhost/pc", to=f"{OWN}/phone")),
            carbon("received", OWN, message("bob@localhost/pc", to="carol@localhost")),
            carbon("sent", OWN, message("bob@localhost/pc", to=OWN)),
            carbon("received", OWN, message("bob@localhost/pc", to=f"{OWN}/phone", kind="groupchat")),
        ]
        missing = message(OWN, to=f"{OWN}/rest-1", body="outer")
        missing.addElement(("urn:xmpp:carbons:2", "received"))
        cases.append(missing)
        for stanza in cases:
            self.assertIsNone(self.event(stanza), stanza.toXml())
        forged_without_from = carbon("received", OWN, message("bob@localhost", to=f"{OWN}/phone"))
        del forged_without_from.attributes["from"]
        self.assertIsNone(self.event(forged_without_from))

    def test_room_broadcast_and_affiliation_notice(self) -> None:
        """Groupchat from a MUC Light room is `room.message` with the bare room id as `room`."""
        room = f"room1@{ROOMS}"
        broadcast = self.event(message(f"{room}/bob@localhost", to=f"{OWN}/rest-1", kind="groupchat"))
        self.assertEqual(
            broadcast,
            (
                "room.message",
                {
                    "id": "m1",
                    "from": "bob@localhost",
                    "timestamp": NOW,
                    "body": "hi",
                    "type": "message",
                    "room": "room1",
                },
            ),
        )
        notice = message(room, to=f"{OWN}/rest-1", kind="groupchat", body="")
        notice.addElement(("urn:xmpp:muclight:0#affiliations", "x")).addElement("user", content=OWN)["affiliation"] = (
            "owner"
        )
        found = self.event(notice)
        assert found is not None
        self.assertEqual(found[0], "room.message")
        self.assertEqual((found[1]["type"], found[1]["user"], found[1]["affiliation"]), ("affiliation", OWN, "owner"))
        self.assertEqual((found[1]["room"], found[1]["from"]), ("room1", room))

    def test_groupchat_from_elsewhere_is_ignored(self) -> None:
        """Groupchat not from a room of the configured service, or malformed, is no event."""
        for sender in ("room@conference.localhost/x", ROOMS, f"{ROOMS}/x", "bad..jid@", None):
            self.assertIsNone(self.event(message(sender, kind="groupchat")), sender)
        bare_room_body = message(f"room1@{ROOMS}", kind="groupchat")
        self.assertIsNone(self.event(bare_room_body))


class TimestampUnitTests(unittest.TestCase):
    """``[sse] timestamp_unit``: event timestamps in ms (default) or, as MongooseIM, in us."""

    def received(self, unit: str | None, stanza: domish.Element) -> dict[str, Any]:
        seen: list[tuple[str, dict[str, Any]]] = []
        clock = Clock()
        clock.advance(1_700_000_000.123456)
        receiver = lambda name, data: seen.append((name, data))  # noqa: E731
        if unit is None:
            handler = SessionEvents(receiver, ROOMS, clock)
        else:
            handler = SessionEvents(receiver, ROOMS, clock, timestamp_unit=unit)
        handler.parent = FakeSession(f"{OWN}/rest-1")  # type: ignore[assignment]
        handler._received(stanza)
        self.assertEqual(len(seen), 1)
        return seen[0][1]

    def test_milliseconds_by_default(self) -> None:
        """Without the option a live event's timestamp is Unix milliseconds."""
        self.assertEqual(self.received(None, message("bob@localhost/pc"))["timestamp"], 1_700_000_000_123)

    def test_microseconds_when_configured(self) -> None:
        """With "us" live messages, room messages and delayed messages are stamped in microseconds."""
        self.assertEqual(self.received("us", message("bob@localhost/pc"))["timestamp"], 1_700_000_000_123_456)
        room = message(f"room1@{ROOMS}/bob@localhost", to=f"{OWN}/rest-1", kind="groupchat")
        self.assertEqual(self.received("us", room)["timestamp"], 1_700_000_000_123_456)
        delayed = message("bob@localhost")
        delayed.addElement(("urn:xmpp:delay", "delay"))["stamp"] = "2023-11-14T22:13:20.500Z"
        self.assertEqual(self.received("us", delayed)["timestamp"], 1_700_000_000_500_000)

    def test_the_hub_passes_the_unit_to_sessions(self) -> None:
        """EventHub configures each session's events with the configured unit."""
        hub = EventHub(Clock(), SessionPool.__new__(SessionPool), ROOMS, REPLAY, timestamp_unit="us")
        session = FakeSession(f"{OWN}/rest-1")
        hub._events_of(session)  # type: ignore[arg-type]
        handler = session.find(SessionEvents)
        assert handler is not None
        self.assertEqual(handler.timestamp_unit, "us")


class RepeatedRoomMessageTests(unittest.TestCase):
    """A room's second broadcast of one message (after a component takeover) is one event."""

    def setUp(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.handler = SessionEvents(lambda name, data: self.seen.append((name, data)), ROOMS, Clock())
        self.handler.parent = FakeSession(f"{OWN}/rest-1")  # type: ignore[assignment]

    def room(self, room: str, sender: str, message_id: str | None) -> None:
        stanza = message(f"{room}@{ROOMS}/{sender}", to=f"{OWN}/rest-1", kind="groupchat")
        if message_id is None:
            del stanza.attributes["id"]
        else:
            stanza["id"] = message_id
        self.handler._received(stanza)

    def test_the_same_room_sender_and_id_is_dropped(self) -> None:
        """The same (room, sender, id) again is dropped; another room, sender or id, a chat message with
        that id, and room messages without an id are events."""
        for room, sender, message_id in [
            ("r1", "bob@localhost", "m1"),
            ("r1", "bob@localhost", "m1"),
            ("r2", "bob@localhost", "m1"),
            ("r1", "kate@localhost", "m1"),
            ("r1", "bob@localhost", "m2"),
            ("r1", "bob@localhost", None),
            ("r1", "bob@localhost", None),
        ]:
            self.room(room, sender, message_id)
        self.handler._received(message("bob@localhost/pc"))
        self.handler._received(message("bob@localhost/pc"))
        got = [(name, data.get("room"), data["from"], data["id"]) for name, data in self.seen]
        self.assertEqual(
            got,
            [
                ("room.message", "r1", "bob@localhost", "m1"),
                ("room.message", "r2", "bob@localhost", "m1"),
                ("room.message", "r1", "kate@localhost", "m1"),
                ("room.message", "r1", "bob@localhost", "m2"),
                ("room.message", "r1", "bob@localhost", ""),
                ("room.message", "r1", "bob@localhost", ""),
                ("message", None, "bob@localhost", "m1"),
                ("message", None, "bob@localhost", "m1"),
            ],
        )

    def test_the_memory_is_bounded(self) -> None:
        """The session remembers its latest REMEMBERED_ROOM_MESSAGES room messages, in a fixed ring."""
        for n in range(REMEMBERED_ROOM_MESSAGES + 1):
            self.room("r1", "bob@localhost", f"m{n}")
        self.room("r1", "bob@localhost", f"m{REMEMBERED_ROOM_MESSAGES}")  # the newest: dropped
        self.room("r1", "bob@localhost", "m0")  # the oldest, forgotten: an event again
        self.assertEqual(len(self.seen), REMEMBERED_ROOM_MESSAGES + 2)
        self.assertEqual(self.seen[-1][1]["id"], "m0")
        recent = RecentRoomMessages()
        self.assertEqual(len(recent._ring), REMEMBERED_ROOM_MESSAGES * 8)


class ReplayBufferTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000)
        self.events = UserEvents(self.clock, ReplayLimits(events=3, seconds=60, size=10_000))
        self.events.begin(object())  # type: ignore[arg-type]

    def add(self, n: int) -> list[int]:
        ids = []
        for i in range(n):
            self.events.add("message", {"body": str(i)})
            ids.append(self.events.last_id)
        return ids

    def test_ids_increase_and_start_from_the_wall_clock(self) -> None:
        """Ids are increasing integers: milliseconds since 2010 times 4096, plus this incarnation's tag."""
        clock = Clock()
        clock.advance(1_700_000_000)
        events = UserEvents(clock, REPLAY, tag=5)
        events.begin(object())  # type: ignore[arg-type]
        ids = [events.last_id]
        for _ in range(3):
            events.add("message", {})
            ids.append(events.last_id)
        self.assertEqual(ids, sorted(set(ids)))
        self.assertEqual(ids[0], (1_700_000_000_000 - TICK_EPOCH_MS) * TAG_SPACE + 5)
        self.assertEqual({id_tag(each) for each in ids}, {5})
        # Above the microsecond ids of earlier versions, below 2**53 for decades.
        self.assertGreater(ids[0], 1_700_000_000_000_000)
        clock.advance(50 * 365 * 86_400)
        events.add("message", {})
        self.assertLess(events.last_id, MAX_SAFE_ID)

    def test_ids_increase_when_the_clock_stands_still_or_steps_back(self) -> None:
        """Ids keep increasing, with the same tag, when the clock does not move or moves back."""
        first = self.add(3)
        self.clock.advance(-10)
        later = self.add(3)
        ids = first + later
        self.assertEqual(ids, sorted(set(ids)))
        self.assertEqual({id_tag(each) for each in ids}, {self.events.tag})
        replay = self.events.since(later[0])
        assert replay is not None
        self.assertEqual([event.id for event in replay], later[1:])

    def test_own_ids_resume_exactly(self) -> None:
        """Each id of ours in the window resumes with exactly the events after it."""
        ids = self.add(3)
        for n, seen in enumerate(ids):
            replay = self.events.since(seen)
            assert replay is not None
            self.assertEqual([event.id for event in replay], ids[n + 1 :])

    def test_foreign_ids_in_our_window_are_not_resumed(self) -> None:
        """An id with another process's tag, even between our own ids, gets a reset, not our events."""
        ids = self.add(3)
        other_tag = (self.events.tag + 1) % TAG_SPACE
        for seen in ids[:-1]:
            foreign = seen - self.events.tag + other_tag
            self.assertTrue(self.events.horizon <= foreign <= self.events.last_id)
            self.assertIsNone(self.events.since(foreign))

    def test_two_processes_draw_their_own_tags(self) -> None:
        """Two hubs (processes) give ids whose tags tell them apart; each refuses the other's."""
        mine = UserEvents(self.clock, REPLAY, tag=1)
        theirs = UserEvents(self.clock, REPLAY, tag=2)
        for events in (mine, theirs):
            events.begin(object())  # type: ignore[arg-type]
            events.add("message", {})
        self.assertIsNone(mine.since(theirs.last_id))
        self.assertIsNone(theirs.since(mine.last_id))
        self.assertEqual(mine.since(mine.last_id), [])
        reset = mine.reset(_reset_reason(mine, theirs.last_id))
        self.assertEqual(
            (reset.name, json.loads(reset.data)), (RESET, {"reason": "Last-Event-ID is from another bridge process"})
        )
        hubs = {EventHub(Clock(), SessionPool.__new__(SessionPool), ROOMS, REPLAY).tag for _ in range(20)}
        self.assertGreater(len(hubs), 1)

    def test_replay_within_the_window(self) -> None:
        """Everything after a recent id is returned, in order; the newest id gives nothing."""
        first, second, third = self.add(3)
        replay = self.events.since(first)
        assert replay is not None
        self.assertEqual([event.id for event in replay], [second, third])
        self.assertEqual(self.events.since(third), [])

    def test_ids_outside_the_window(self) -> None:
        """Evicted, unknown, future and pre-session ids cannot be resumed."""
        before = self.events.last_id
        ids = self.add(5)
        self.assertIsNone(self.events.since(before))
        self.assertIsNone(self.events.since(ids[0]))
        self.assertIsNotNone(self.events.since(ids[1]))
        self.assertIsNone(self.events.since(ids[-1] + 1))
        self.assertIsNone(self.events.since(0))

    def test_age_and_size_limits(self) -> None:
        """Events older than replay_seconds, or beyond replay_bytes, leave the window."""
        first, _ = self.add(2)
        self.clock.advance(61)
        self.assertIsNone(self.events.since(first))
        big = UserEvents(self.clock, ReplayLimits(events=100, seconds=300, size=500))
        big.begin(object())  # type: ignore[arg-type]
        start = big.last_id
        for _ in range(5):
            big.add("message", {"body": "x" * 200})
        self.assertIsNone(big.since(start))

    def test_a_new_session_starts_a_new_window(self) -> None:
        """After the user's session changed, nothing from before can be resumed."""
        (last,) = self.add(1)
        self.events.begin(object())  # type: ignore[arg-type]
        self.assertIsNone(self.events.since(last))
        self.assertEqual(self.events.since(self.events.last_id), [])

    def test_no_replay_when_disabled(self) -> None:
        """replay_events = 0 keeps nothing: any earlier id gets a reset."""
        none = UserEvents(self.clock, ReplayLimits(events=0, seconds=300, size=1_048_576))
        none.begin(object())  # type: ignore[arg-type]
        start = none.last_id
        none.add("message", {})
        self.assertIsNone(none.since(start))

    def test_every_stream_gets_each_event(self) -> None:
        """Events go to every open stream of the user."""
        got: list[list[Event]] = [[], []]

        class Stream:
            def __init__(self, into: list[Event]) -> None:
                self.deliver = into.append

        for into in got:
            self.events.streams[Stream(into)] = (object(), lambda: None)  # type: ignore[index]
        self.add(2)
        self.assertEqual([[e.data for e in each] for each in got], [['{"body":"0"}', '{"body":"1"}']] * 2)


class WireFormatTests(unittest.TestCase):
    def test_event_and_position_lines(self) -> None:
        """An event has id, event and one data line; a position only an id."""
        self.assertEqual(
            format_event(Event(7, "message", '{"body":"a\\nb"}', 0)),
            b'id: 7\nevent: message\ndata: {"body":"a\\nb"}\n\n',
        )
        self.assertEqual(format_event(Event(8, "", "", 0)), b"id: 8\n\n")

    def test_last_event_id_parsing(self) -> None:
        """Absent or empty ids are None; digits are ids; anything else is a 400."""
        self.assertIsNone(parse_event_id(None))
        self.assertIsNone(parse_event_id(""))
        self.assertEqual(parse_event_id(" 123 "), 123)
        for bad in ("abc", "-1", "1.5", "1" * 20, "\uff11", "1\x00", "<1>"):
            self.assertRaises(BadRequest, parse_event_id, bad)


class StreamResource(Resource):
    isLeaf = True

    def __init__(self, clock: Clock, config: SseConfig) -> None:
        super().__init__()
        self._clock = clock
        self._config = config
        self.stream: EventStream | None = None

    def render_GET(self, request: Any) -> Any:
        self.stream = EventStream(request, self._clock, self._config, OWN)
        self.stream.start()
        return NOT_DONE_YET


class EventStreamTests(unittest.TestCase):
    """An EventStream on the bridge's real Site and HTTP channel, over an in-memory transport."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.resource = StreamResource(self.clock, SseConfig(keepalive=15, max_queued_bytes=1000))
        site = BridgeSite(self.resource, max_body=1000, idle_timeout=60, clock=self.clock)
        self.channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.transport = StringTransport()
        self.channel.makeConnection(self.transport)
        self.channel.dataReceived(b"GET /api/sse HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert self.resource.stream is not None
        self.stream = self.resource.stream

    def event(self, n: int, size: int = 10) -> Event:
        return Event(n, "message", json.dumps({"body": "x" * size}), 0)

    def test_headers_and_immediate_writes(self) -> None:
        """The response is text/event-stream, uncached, unbuffered, and events are written at once."""
        self.stream.deliver(self.event(1))
        written = self.transport.value()
        head = written.split(b"\r\n\r\n")[0].lower()
        self.assertIn(b"content-type: text/event-stream", head)
        self.assertIn(b"cache-control: no-cache", head)
        self.assertIn(b"x-accel-buffering: no", head)
        self.assertIn(b"id: 1\nevent: message\n", written)

    def test_an_idle_stream_lives_an_hour_on_keepalives(self) -> None:
        """An hour without events: a comment every 15 s, and the connection stays open."""
        self.transport.clear()
        for _ in range(240):
            self.clock.advance(15)
        self.assertEqual(self.transport.value().count(b": keep-alive\n\n"), 240)
        self.assertFalse(self.transport.disconnecting)
        self.stream.deliver(self.event(2))
        self.assertIn(b"id: 2\n", self.transport.value())

    def test_paused_stream_queues_then_flushes_in_order(self) -> None:
        """While the transport is full, events queue; on resume they are written in order."""
        self.transport.producer.pauseProducing()  # what the transport does when its buffer fills
        self.transport.clear()
        self.stream.deliver(self.event(1))
        self.stream.deliver(self.event(2))
        self.clock.advance(15)  # no keep-alive into a full buffer
        self.assertEqual(self.transport.value(), b"")
        self.assertEqual(self.stream.queued, 2 * len(format_event(self.event(1))))
        self.transport.producer.resumeProducing()
        written = self.transport.value()
        self.assertLess(written.index(b"id: 1\n"), written.index(b"id: 2\n"))
        self.assertEqual(self.stream.queued, 0)

    def test_client_not_reading_is_cut_off_past_the_limit(self) -> None:
        """Past max_queued_bytes the connection is aborted and the queue dropped."""
        self.transport.producer.pauseProducing()
        self.stream.deliver(self.event(1, size=500))
        self.assertFalse(self.stream.cut_off)
        self.stream.deliver(self.event(2, size=500))
        self.assertTrue(self.stream.cut_off)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.stream.queued, 0)
        self.stream.deliver(self.event(3, size=500))
        self.assertEqual(self.stream.queued, 0)

    def test_end_writes_a_final_event_and_closes(self) -> None:
        """Ending a stream sends `close` with the reason, finishes the response and closes."""
        ended: list[None] = []
        self.stream.ended.addCallback(ended.append)
        closed = self.stream.end("shutdown")
        written = self.transport.value()
        self.assertIn(b'event: close\ndata: {"reason": "shutdown"}\n\n', written)
        self.assertTrue(written.endswith(b"0\r\n\r\n"))  # the chunked response is complete
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(ended, [None])
        self.assertFalse(closed.called)  # until the connection has closed
        self.transport.disconnected = True
        self.clock.advance(0.1)
        self.assertTrue(closed.called)
        self.clock.advance(60)
        self.assertNotIn(b"keep-alive", self.transport.value())

    def test_end_aborts_a_connection_that_does_not_close(self) -> None:
        """A connection that has not closed within the grace period is aborted, and end() fires."""
        closed = self.stream.end("shutdown")
        self.clock.advance(CLOSE_GRACE + 0.1)
        self.assertTrue(closed.called)

    def test_end_of_a_stalled_stream_aborts_at_once(self) -> None:
        """A stream whose client is not reading is aborted instead of waiting to flush."""
        self.transport.producer.pauseProducing()
        self.stream.deliver(self.event(1))
        self.stream.end("shutdown")
        self.assertTrue(self.stream.cut_off)
        self.assertNotIn(b"event: close", self.transport.value())

    def test_client_going_away_stops_keepalives(self) -> None:
        """Once the connection is lost nothing more is written and no timer is left."""
        self.channel.connectionLost(Exception("gone"))
        self.assertEqual(self.clock.getDelayedCalls(), [])


class FakeSession:
    def __init__(self, jid: str = OWN) -> None:
        self.jid = JID(jid)
        self.alive = True
        self.holds = 0
        self.last_used = 0.0
        self.ended: defer.Deferred[None] = defer.Deferred()
        self.handlers: list[Any] = []

    def attach(self, handler: Any) -> Any:
        self.handlers.append(handler)
        return handler

    def find(self, cls: type) -> Any:
        return next((each for each in self.handlers if type(each) is cls), None)

    def end(self) -> None:
        self.alive = False
        self.ended.callback(None)


class TokenTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.pool = SessionPool(self.clock, None, idle_timeout=100)  # type: ignore[arg-type]
        self.tokens = StreamTokens(self.clock, self.pool, lifetime=60)
        self.tokens.startService()
        self.session = FakeSession()

    def issue(self) -> str:
        return self.tokens.issue(self.session)  # type: ignore[arg-type]

    def test_token_maps_to_its_session_and_holds_it(self) -> None:
        """A fresh token gives its session back and holds it open."""
        token = self.issue()
        self.assertGreaterEqual(len(token), 40)
        self.assertIs(self.tokens.session_for(token), self.session)
        self.assertEqual(self.session.holds, 1)
        self.assertNotEqual(self.issue(), token)

    def test_first_part_names_the_user(self) -> None:
        """The part before the first dot is the URL-safe base64 (no padding) of the bare JID (DESIGN.md)."""
        first, dot, secret = self.issue().partition(".")
        self.assertTrue(dot and len(secret) >= 40)
        self.assertNotIn("=", first)
        decoded = base64.urlsafe_b64decode(first + "=" * (-len(first) % 4)).decode()
        self.assertEqual(decoded, self.session.jid.userhost())

    def test_wrong_tokens_give_nothing(self) -> None:
        """Unknown, altered, empty and oversized tokens give no session."""
        token = self.issue()
        for wrong in ("", "x", token[:-1], token + "A", token.upper(), "A" * 10_000, "\x00"):
            self.assertIsNone(self.tokens.session_for(wrong), wrong)

    def test_token_expires_and_releases_the_session(self) -> None:
        """After its lifetime a token is refused and its hold released."""
        token = self.issue()
        self.clock.advance(59.9)
        self.assertIsNotNone(self.tokens.session_for(token))
        self.clock.advance(0.1)
        self.assertIsNone(self.tokens.session_for(token))
        self.assertEqual(self.session.holds, 0)
        self.assertEqual(len(self.tokens), 0)

    def test_token_of_an_ended_session_is_refused(self) -> None:
        """When the session ends, its tokens are retired at once."""
        token = self.issue()
        self.session.end()
        self.assertIsNone(self.tokens.session_for(token))
        self.assertEqual(len(self.tokens), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_issuer_refuses_a_token_of_an_ended_session_even_with_a_new_session(self) -> None:
        """The issuer refuses a token of its ended session as invalid (not misdirected), even with a new session."""
        token = self.issue()
        self.session.end()
        self.assertRaises(InvalidToken, self.tokens.serving_session, token)
        new = FakeSession()
        self.pool._sessions[OWN] = (new, b"")  # type: ignore[assignment]
        self.assertRaises(InvalidToken, self.tokens.serving_session, token)
        fresh = self.tokens.issue(new)  # type: ignore[arg-type]
        self.assertIs(self.tokens.session_for(fresh), new)

    def test_tokens_per_user_are_capped(self) -> None:
        """Issuing past the per-user cap releases the oldest holds (their tokens then need a live session)."""
        first = self.issue()
        for _ in range(MAX_TOKENS_PER_USER):
            self.issue()
        self.assertIsNone(self.tokens.session_for(first))
        self.assertEqual(len(self.tokens), MAX_TOKENS_PER_USER)
        self.assertEqual(self.session.holds, MAX_TOKENS_PER_USER)

    def test_stop_retires_every_token(self) -> None:
        """Stopping the service releases every hold and leaves no timer."""
        self.issue()
        self.tokens.stopService()
        self.assertEqual((len(self.tokens), self.session.holds), (0, 0))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertRaises(ServerUnavailable, self.issue)


class SseConfigTests(unittest.TestCase):
    def test_defaults_and_values(self) -> None:
        """The [sse] section has documented defaults and accepts integers for seconds."""
        self.assertEqual(parse_config("").sse, SseConfig())
        config = parse_config("[sse]\nkeepalive = 5\npriority = -1\nreplay_events = 0\n").sse
        self.assertEqual((config.keepalive, config.priority, config.replay_events), (5.0, -1, 0))
        self.assertEqual(SseConfig().timestamp_unit, "ms")
        self.assertEqual(parse_config('[sse]\ntimestamp_unit = "us"\n').sse.timestamp_unit, "us")

    def test_bad_values_name_the_key(self) -> None:
        """Each bad value is refused with the key's path."""
        cases = {
            "keepalive = 0": "sse.keepalive",
            "keepalive = inf": "sse.keepalive",
            "keepalive = nan": "sse.keepalive",
            "max_queued_bytes = -1": "sse.max_queued_bytes",
            "replay_events = -1": "sse.replay_events",
            "replay_seconds = 0": "sse.replay_seconds",
            "replay_bytes = 0": "sse.replay_bytes",
            "token_lifetime = 1.5": "sse.token_lifetime",
            "priority = 128": "sse.priority",
            "priority = true": "sse.priority",
            'timestamp_unit = "s"': "sse.timestamp_unit",
            "timestamp_unit = 1000": "sse.timestamp_unit",
            "colour = 1": "sse.colour",
        }
        for line, key in cases.items():
            with self.assertRaises(ConfigError) as raised:
                parse_config(f"[sse]\n{line}\n")
            self.assertTrue(str(raised.exception).startswith(key + ":"), (line, str(raised.exception)))


class KeyStore:
    """The store's side of stream tokens: the first candidate key is kept (``SqlStore`` does it in SQL)."""

    def __init__(self) -> None:
        self.key: bytes | None = None
        self.failure: Exception | None = None
        self.pending: defer.Deferred[None] | None = None

    async def stream_token_key(self, candidate: bytes) -> bytes:
        if self.pending is not None:
            await self.pending
        if self.failure is not None:
            raise self.failure
        if self.key is None:
            self.key = candidate
        return self.key


class OtherPool:
    """Another process's pool: at most one live session per user, held without a timer."""

    def __init__(self) -> None:
        self.sessions: dict[str, FakeSession] = {}

    def live_session(self, bare: str) -> FakeSession | None:
        session = self.sessions.get(bare)
        return session if session is not None and session.alive else None

    def hold(self, session: FakeSession) -> Any:
        session.holds += 1
        return lambda: None


class SharedTokenTests(unittest.TestCase):
    """Two bridge processes (two StreamTokens) behind one load balancer."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = KeyStore()
        self.a = self.process(self.store)
        self.b_pool = OtherPool()
        self.b = self.process(self.store, self.b_pool)
        self.session = FakeSession()

    def process(self, store: Any, pool: Any = None) -> StreamTokens:
        tokens = StreamTokens(self.clock, pool or OtherPool(), 60, store)
        tokens.startService()
        self.addCleanup(tokens.stopService)
        return tokens

    def issue(self) -> str:
        return self.a.issue(self.session)  # type: ignore[arg-type]

    def test_a_token_of_another_process_with_the_same_key_validates(self) -> None:
        """A token issued by A is valid at B, which serves it with its own live session of the user."""
        self.assertTrue(self.a.key_shared and self.b.key_shared)
        token = self.issue()
        self.assertEqual(self.b.user_of(token), OWN)
        own = self.b_pool.sessions[OWN] = FakeSession(f"{OWN}/rest-b")
        self.assertIs(self.b.serving_session(token), own)

    def test_a_valid_token_without_a_session_here_is_misdirected(self) -> None:
        """B has no live session of the token's user: the token is valid but misdirected, not invalid."""
        token = self.issue()
        self.assertRaises(MisdirectedToken, self.b.serving_session, token)
        self.b_pool.sessions[OWN] = ended = FakeSession()
        ended.alive = False
        self.assertRaises(MisdirectedToken, self.b.serving_session, token)
        self.assertIsNone(self.b.session_for(token))

    def test_another_key_is_invalid(self) -> None:
        """A process with another key refuses the token as invalid."""
        token = self.issue()
        stranger = self.process(KeyStore())
        self.assertRaises(InvalidToken, stranger.user_of, token)

    def test_expired_is_invalid(self) -> None:
        """Past its lifetime a token is invalid on every process."""
        token = self.issue()
        self.b_pool.sessions[OWN] = FakeSession()
        self.clock.advance(59.9)
        self.b.serving_session(token)
        self.clock.advance(0.1)
        self.assertRaises(InvalidToken, self.b.serving_session, token)

    def test_tampered_parts_are_invalid(self) -> None:
        """Another user's part, expiry, nonce or MAC in a token makes it invalid."""
        token = self.issue()
        user, expires, nonce, mac = token.split(".")
        self.b_pool.sessions["mallory@localhost"] = FakeSession("mallory@localhost")
        for forged in (
            f"{user_part('mallory@localhost')}.{expires}.{nonce}.{mac}",
            f"{user}.{int(expires) + 3_600_000}.{nonce}.{mac}",
            f"{user}.{expires}.{nonce[:-1]}{'A' if nonce[-1] != 'A' else 'Q'}.{mac}",
            f"{user}.{expires}.{nonce}.{mac[:-1]}{'B' if mac[-1] != 'B' else 'C'}",
        ):
            self.assertRaises(InvalidToken, self.b.serving_session, forged)

    def test_garbage_and_oversized_tokens_are_invalid(self) -> None:
        """Malformed, oversized or non-ASCII tokens are InvalidToken, never another exception."""
        token = self.issue()
        user, expires, nonce, mac = token.split(".")
        cases = [
            "",
            ".",
            "...",
            "a.b.c.d",
            token + ".x",
            "A" * 10_000,
            "x" * 2000 + "." + token,
            f"{user}.-1.{nonce}.{mac}",
            f"{user}.{'9' * 40}.{nonce}.{mac}",
            f"{user}.{expires}.{nonce}.{mac}=",
            f"{user}.{expires}.{nonce}.{mac}\u00e9",
            "\x00" * 4,
            "é.1.2.3",
        ]
        for wrong in cases:
            self.assertRaises(InvalidToken, self.b.user_of, wrong)
        for n in range(300):
            self.assertRaises(InvalidToken, self.b.user_of, secrets_text(n))

    def test_without_a_readable_store_the_key_is_this_processs_own(self) -> None:
        """A store that cannot give the key leaves a per-process key: tokens valid here, not elsewhere."""
        failing = KeyStore()
        failing.failure = RuntimeError("no database")
        lonely = self.process(failing, OtherPool())
        self.assertFalse(lonely.key_shared)
        token = lonely.issue(self.session)  # type: ignore[arg-type]
        self.assertIs(lonely.serving_session(token), self.session)
        self.assertRaises(InvalidToken, self.b.user_of, token)

    def test_ready_waits_for_the_key_but_not_forever(self) -> None:
        """Token requests wait for the shared key, at most KEY_WAIT seconds, then use this process's key."""
        slow = KeyStore()
        slow.key, slow.pending = self.store.key, defer.Deferred()
        tokens = self.process(slow)
        waiting = defer.Deferred.fromCoroutine(tokens.ready())
        self.assertFalse(waiting.called)
        self.clock.advance(KEY_WAIT)
        self.assertTrue(waiting.called)
        self.assertFalse(tokens.key_shared)
        early = tokens.issue(self.session)  # type: ignore[arg-type]
        slow.pending.callback(None)
        self.assertTrue(tokens.key_shared)
        # Tokens issued before the key arrived stay valid here; new ones are signed with it.
        self.assertEqual(tokens.user_of(early), OWN)
        self.assertEqual(self.b.user_of(tokens.issue(self.session)), OWN)  # type: ignore[arg-type]


def secrets_text(seed: int) -> str:
    """Deterministic junk of printable ASCII and dots, some of it token-shaped."""
    import random

    chooser = random.Random(seed)
    alphabet = "ABCxyz019-_.=+/ %\x7f"
    return "".join(chooser.choice(alphabet) for _ in range(chooser.randint(1, 200)))
