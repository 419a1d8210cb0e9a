"""Live events of a user session: RFC 6121 messages and XEP-0280 Message Carbons.

A session that serves event streams is available (RFC 6121 presence), so the server
delivers messages sent to the user's bare JID to it, and it enables carbons, so that copies
of what the user's other devices send and receive reach it too. ``SessionEvents`` is the
XMPP side of that: it enables carbons, goes available and turns each received stanza into
an API event with the protocol layer (``bridge.protocol.events.incoming_event``: carbon
copies are unwrapped, marked, and accepted only from the user's own bare JID). What happens
to the events (ids, replay, streams) is the event hub's business (``bridge.events``).

A room may send one message twice: when its component took a sender's retry over from a
process that died, it cannot know whether that process broadcast the first attempt, so it
broadcasts the archived message again (``bridge.muclight.handlers.groupchat``). The
session remembers its latest room messages (``RecentRoomMessages``) and drops the copy, so
that a stream gets each room message once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel.subprotocols import XMPPHandler

from bridge.protocol.events import ROOM_MESSAGE, in_microseconds, incoming_event
from bridge.protocol.namespaces import NS_CARBONS
from bridge.protocol.presence import event_json as presence_event_json
from bridge.protocol.presence import received_presence
from bridge.xmpp.presence import go_available
from bridge.xmpp.session import Session

log = Logger()

Receiver = Callable[[str, dict[str, Any]], None]

# How many of its latest room messages a session remembers: far more than a room carries
# between a first broadcast and the broadcast of a retry after a takeover (seconds).
REMEMBERED_ROOM_MESSAGES = 512
_HASH = 8  # bytes


class RecentRoomMessages:
    """The hashes of a session's latest room messages, in a fixed 4 KB ring (a set of
    tuples would take ten times that)."""

    __slots__ = ("_next", "_ring")

    def __init__(self) -> None:
        self._ring = bytearray(REMEMBERED_ROOM_MESSAGES * _HASH)
        self._next = 0

    def seen(self, room: str, sender: str, message_id: str) -> bool:
        """Whether this message (room, sender, id) is among the latest; remembers it."""
        packed = hash((room, sender, message_id)).to_bytes(_HASH, "little", signed=True)
        ring = self._ring
        found = ring.find(packed)
        while found != -1:
            if found % _HASH == 0:
                return True
            found = ring.find(packed, found + 1)
        ring[self._next : self._next + _HASH] = packed
        self._next = (self._next + _HASH) % len(ring)
        return False


class SessionEvents(XMPPHandler):
    """Watches one session's incoming messages and passes their events to ``receiver``.

    ``room_service`` is the MUC Light service whose groupchat counts; ``timestamp_unit`` is
    "ms" (the API's unit) or "us" (MongooseIM's SSE), from ``[sse] timestamp_unit``.
    """

    parent: Session

    def __init__(self, receiver: Receiver, room_service: str, clock: IReactorTime, timestamp_unit: str = "ms") -> None:
        super().__init__()
        self._receiver = receiver
        self._room_service = room_service
        self._clock = clock
        self.timestamp_unit = timestamp_unit
        self.carbons_tried = False
        self._room_messages: RecentRoomMessages | None = None  # made on the first one

    def connectionInitialized(self) -> None:
        self.xmlstream.addObserver("/message", self._received)
        self.xmlstream.addObserver("/presence", self._presence)

    def _presence(self, stanza: domish.Element) -> None:
        """A contact's presence (``bridge.protocol.presence``) as a ``presence`` event."""
        try:
            found = received_presence(stanza, self.parent.jid.userhost())
            if found is not None:
                self._receiver("presence", presence_event_json(found))
        except Exception:
            log.failure("Could not turn a received presence into an event")

    def _received(self, message: domish.Element) -> None:
        try:
            now = self._clock.seconds()
            now_ms = int(now * 1000)
            found = incoming_event(message, self.parent.jid.userhost(), self._room_service, now_ms)
            if found is not None:
                name, data = found
                if name == ROOM_MESSAGE and data.get("type") == "message" and self._repeated(data):
                    return
                if self.timestamp_unit == "us":
                    in_microseconds(data, now_ms, int(now * 1_000_000))
                self._receiver(name, data)
        except Exception:
            # A stanza anyone can send must not break the session's stream.
            log.failure("Could not turn a received message into an event")

    def _repeated(self, data: dict[str, Any]) -> bool:
        message_id = data.get("id")
        if not message_id:
            return False  # nothing to tell two messages apart by
        if self._room_messages is None:
            self._room_messages = RecentRoomMessages()
        return self._room_messages.seen(str(data.get("room")), str(data.get("from")), str(message_id))

    async def start(self, priority: int, services: list[JID]) -> None:
        """Enable carbons (once) and go available, telling ``services`` the full JID."""
        session = self.parent
        if not self.carbons_tried:
            try:
                await session.iq("set", domish.Element((NS_CARBONS, "enable")))
            except StanzaError as e:
                log.warn("The XMPP server refused carbons (XEP-0280): {condition}", condition=e.condition)
            self.carbons_tried = True
        go_available(session, priority, services)
