"""The live-event hub: each user's event ids, replay buffer and open streams.

``EventHub`` gives each event of a user session (``bridge.xmpp.events.SessionEvents``) an
increasing id, keeps a small bounded replay buffer per user (so that a stream reconnecting
with ``Last-Event-ID`` gets what it missed, or learns that it cannot), and hands every
event to each open stream of the user. How events are written to HTTP is
``bridge.api.sse``'s business; a stream only has to be a ``Subscriber``.

Event ids (``id:``, and the ``Last-Event-ID`` a client sends back) are decimal integers
``tick * 4096 + tag``. ``tag`` (12 bits) names this process *incarnation*: it is drawn at
random when the hub is made, so that behind a load balancer without affinity
(DESIGN.md, "Several processes") an id that another bridge process gave is recognised
as foreign and answered with a ``reset``, never resumed in this process's buffer (which
would replay its own events: duplicates, or a silent gap). ``tick`` is milliseconds of
the wall clock since 2010-01-01, but at least one more than the user's previous tick, so
ids increase within a stream even when the clock stands still or steps back, and
increase across restarts of the same process (a restarted process starts a new window
anyway: ``UserEvents.begin``). The epoch keeps ids below 2**53 (what a JavaScript client
parses exactly) until 2079, and above the microsecond ids of earlier versions.

Limits: two live processes draw the same tag with probability about n**2 / 8192 for n
processes; then an id of one that falls inside the other's window of the same user would
be resumed there. A process restarted after its clock stepped back by more than its
previous ids ran ahead gives ids lower than before the restart (they still get a reset).
"""

from __future__ import annotations

import functools
import json
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.words.protocols.jabber.jid import JID

from bridge.protocol.jid import parse
from bridge.xmpp.errors import ServerUnavailable
from bridge.xmpp.events import SessionEvents
from bridge.xmpp.pool import SessionPool
from bridge.xmpp.session import Session

RESET = "reset"

# Event ids: tick * TAG_SPACE + tag (see the module docstring).
TAG_BITS = 12
TAG_SPACE = 1 << TAG_BITS
# 2010-01-01T00:00:00Z in Unix milliseconds: ticks count from there.
TICK_EPOCH_MS = 1_262_304_000_000
# Every id stays below this (JavaScript's Number.MAX_SAFE_INTEGER + 1).
MAX_SAFE_ID = 2**53


def new_tag() -> int:
    """A random tag for this process incarnation's event ids."""
    return secrets.randbelow(TAG_SPACE)


def id_tag(event_id: int) -> int:
    """The incarnation tag of ``event_id``."""
    return event_id % TAG_SPACE


# Why a stream was ended by the bridge (the data of its final ``close`` event).
SHUTDOWN = "shutdown"
SESSION_ENDED = "session_ended"

log = Logger()


@dataclass(frozen=True)
class ReplayLimits:
    """How much of each user's recent events is kept for ``Last-Event-ID`` resumption
    (``[sse] replay_events``, ``replay_seconds``, ``replay_bytes``)."""

    events: int
    seconds: float
    size: int  # bytes


@dataclass(frozen=True)
class Event:
    """One event as every stream of the user sees it; ``data`` is its JSON text.

    An event without a name is only a position: it tells the client the id to resume from.
    """

    id: int
    name: str
    data: str
    created: float

    @cached_property
    def size(self) -> int:
        """Roughly the bytes it takes on the wire, for the replay buffer's byte limit."""
        return len(self.data.encode("utf-8")) + len(self.name) + 32


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class Subscriber(Protocol):
    """An open event stream, as the hub sees it."""

    def start(self) -> None:
        """Send the response headers: from now on the stream receives events."""

    def deliver(self, event: Event) -> None:
        """Send ``event`` (or queue it, within the stream's limit)."""

    def end(self, reason: str) -> defer.Deferred[None]:
        """Close the stream with a final event; fires once the connection is closed."""


class UserEvents:
    """One user's event ids, replay buffer and open streams.

    Everything after ``horizon`` is still in the buffer; a stream that last saw an id at or
    after it can be resumed exactly. A new session begins a new horizon: messages that
    arrived while the user had no session went elsewhere, so nothing before can be resumed.
    """

    def __init__(self, clock: IReactorTime, limits: ReplayLimits, tag: int | None = None) -> None:
        self._clock = clock
        self._limits = limits
        self.tag = new_tag() if tag is None else tag
        self._tick = 0
        self._buffer: deque[Event] = deque()
        self._bytes = 0
        self.last_id = 0
        self.horizon = 0
        self.session: Session | None = None
        self.streams: dict[Subscriber, tuple[Session, Callable[[], None]]] = {}

    def _new_id(self) -> int:
        # Milliseconds of the wall clock, so that ids increase across restarts, yet never
        # less than one more than the last tick (several events a millisecond, a clock
        # stepping back). The tag in the low bits says which process incarnation gave it.
        now = int(self._clock.seconds() * 1000) - TICK_EPOCH_MS
        self._tick = max(self._tick + 1, now)
        self.last_id = self._tick * TAG_SPACE + self.tag
        return self.last_id

    def is_own(self, event_id: int) -> bool:
        """Whether ``event_id`` can be one this process incarnation gave."""
        return id_tag(event_id) == self.tag

    def begin(self, session: Session) -> None:
        self.session = session
        self._buffer.clear()
        self._bytes = 0
        self.horizon = self._new_id()

    def add(self, name: str, data: dict[str, Any]) -> None:
        event = Event(self._new_id(), name, _json(data), self._clock.seconds())
        self._buffer.append(event)
        self._bytes += event.size
        self._trim()
        for stream in list(self.streams):
            stream.deliver(event)

    def _trim(self) -> None:
        limits = self._limits
        oldest = self._clock.seconds() - limits.seconds
        while self._buffer and (
            len(self._buffer) > limits.events or self._bytes > limits.size or self._buffer[0].created < oldest
        ):
            dropped = self._buffer.popleft()
            self._bytes -= dropped.size
            self.horizon = dropped.id

    def position(self) -> Event:
        return Event(self.last_id, "", "", self._clock.seconds())

    def since(self, last_seen: int) -> list[Event] | None:
        """The events after ``last_seen``, or None when some may be missing.

        An id of another process incarnation (another tag) is never resumed here: this
        buffer does not hold that process's events.
        """
        self._trim()
        if not self.is_own(last_seen) or not self.horizon <= last_seen <= self.last_id:
            return None
        return [event for event in self._buffer if event.id > last_seen]

    def reset(self, reason: str) -> Event:
        return Event(self.last_id, RESET, _json({"reason": reason}), self._clock.seconds())


def _reset_reason(events: UserEvents, last_seen: int) -> str:
    if not events.is_own(last_seen):
        return "Last-Event-ID is from another bridge process"
    return "Last-Event-ID is outside the replay window"


class EventHub(Service):
    """Connects user sessions to their open event streams.

    ``room_service`` is the MUC Light service whose rooms' messages are events and which is
    told the session's full JID; ``priority`` the presence priority of a session that serves
    streams; ``timestamp_unit`` "ms" or "us" (``[sse]``).
    """

    def __init__(
        self,
        clock: IReactorTime,
        pool: SessionPool,
        room_service: str,
        replay: ReplayLimits,
        priority: int = 0,
        timestamp_unit: str = "ms",
        tag: int | None = None,
    ) -> None:
        self._clock = clock
        # This process incarnation's event id tag, shared by every user's events.
        self.tag = new_tag() if tag is None else tag
        self._pool = pool
        self._room_service = room_service
        self._replay = replay
        self._priority = priority
        self._timestamp_unit = timestamp_unit
        self._users: dict[str, UserEvents] = {}
        self._streams: dict[Subscriber, UserEvents] = {}
        # Streams being closed by the bridge whose connections have not closed yet.
        self._closing: set[defer.Deferred[None]] = set()

    def stream_count(self, user: str) -> int:
        """How many streams ``user`` (a bare JID) has open."""
        events = self._users.get(user)
        return 0 if events is None else len(events.streams)

    def _events_of(self, session: Session) -> UserEvents:
        """The user's events, begun anew when ``session`` is not the one they came from.

        The session's ``SessionEvents`` is attached on its first stream (a session that only
        serves REST calls never turns stanzas into events) and stays; only the events of the
        user's current session are kept (``_received``).
        """
        user = session.jid.userhost()
        events = self._users.get(user)
        if events is None:
            events = self._users[user] = UserEvents(self._clock, self._replay, self.tag)
        if events.session is not session:
            events.begin(session)
            if session.find(SessionEvents) is None:
                receiver = functools.partial(self._received, user, session)
                session.attach(SessionEvents(receiver, self._room_service, self._clock, self._timestamp_unit))
            session.ended.addCallback(lambda _: self._session_ended(user, session))
        return events

    def _received(self, user: str, session: Session, name: str, data: dict[str, Any]) -> None:
        """An event of ``session``: added to the user's events while it is their current session."""
        events = self._users.get(user)
        if events is not None and events.session is session:
            events.add(name, data)

    async def open(self, session: Session, stream: Subscriber, last_seen: int | None) -> None:
        """Attach ``stream`` to the user's events once its session is ready for them.

        Resumes after ``last_seen`` when the buffer still holds everything since, else sends
        a ``reset`` event. The stream holds the session open until ``close``.
        """
        if not self.running:
            raise ServerUnavailable("the bridge is shutting down")
        events = self._events_of(session)
        await session.get(SessionEvents).start(self._priority, self._services())
        if not session.alive:
            raise ServerUnavailable("the XMPP stream has ended")
        stream.start()
        events.streams[stream] = (session, self._pool.hold(session))
        self._streams[stream] = events
        if last_seen is None:
            stream.deliver(events.position())
            return
        missed = events.since(last_seen)
        if missed is None:
            stream.deliver(events.reset(_reset_reason(events, last_seen)))
        elif missed:
            for event in missed:
                stream.deliver(event)
        else:
            stream.deliver(events.position())

    def _services(self) -> list[JID]:
        service = parse(self._room_service)
        return [service] if service is not None else []

    def close(self, stream: Subscriber) -> None:
        """Detach ``stream`` (gone or ended) and release its hold on the session."""
        events = self._streams.pop(stream, None)
        if events is None:
            return
        _, release = events.streams.pop(stream)
        release()

    def _session_ended(self, user: str, session: Session) -> None:
        events = self._users.get(user)
        if events is None:
            return
        for stream, (held, _) in list(events.streams.items()):
            if held is session:
                self._track(self._end(stream, SESSION_ENDED))
        if events.session is session:
            events.session = None
            if not events.streams:
                del self._users[user]

    def _end(self, stream: Subscriber, reason: str) -> defer.Deferred[None]:
        """End ``stream``; one stream failing to end must not keep the others open."""
        try:
            closing = stream.end(reason)
        except Exception:
            log.failure("Could not end an event stream")
            closing = defer.succeed(None)
        self.close(stream)
        return closing

    def _track(self, closing: defer.Deferred[None]) -> None:
        if closing.called:
            return
        self._closing.add(closing)
        closing.addBoth(lambda _: self._closing.discard(closing))

    def stopService(self) -> defer.Deferred[None]:
        """End every stream with a final ``close`` event, and wait until each is closed."""
        super().stopService()
        ending = list(self._closing)
        for stream in list(self._streams):
            ending.append(self._end(stream, SHUTDOWN))
        self._users.clear()
        done: defer.Deferred[Any] = defer.DeferredList(ending, consumeErrors=True)
        return done.addCallback(lambda _: None)
