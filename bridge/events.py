"""The live-event hub: each user's event ids, replay buffer and open streams.

``EventHub`` gives each event of a user session (``bridge.xmpp.events.SessionEvents``) an
increasing id, keeps a small bounded replay buffer per user (so that a stream reconnecting
with ``Last-Event-ID`` gets what it missed, or learns that it cannot), and hands every
event to each open stream of the user. How events are written to HTTP is
``bridge.api.sse``'s business; a stream only has to be a ``Subscriber``.
"""

from __future__ import annotations

import functools
import json
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

    def __init__(self, clock: IReactorTime, limits: ReplayLimits) -> None:
        self._clock = clock
        self._limits = limits
        self._buffer: deque[Event] = deque()
        self._bytes = 0
        self.last_id = 0
        self.horizon = 0
        self.session: Session | None = None
        self.streams: dict[Subscriber, tuple[Session, Callable[[], None]]] = {}

    def _new_id(self) -> int:
        # Microseconds of the wall clock, so that ids stay increasing across restarts and an
        # id from an earlier process is recognised as out of the window.
        self.last_id = max(self.last_id + 1, int(self._clock.seconds() * 1_000_000))
        return self.last_id

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
        """The events after ``last_seen``, or None when some may be missing."""
        self._trim()
        if not self.horizon <= last_seen <= self.last_id:
            return None
        return [event for event in self._buffer if event.id > last_seen]

    def reset(self, reason: str) -> Event:
        return Event(self.last_id, RESET, _json({"reason": reason}), self._clock.seconds())


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
    ) -> None:
        self._clock = clock
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
            events = self._users[user] = UserEvents(self._clock, self._replay)
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
            stream.deliver(events.reset("Last-Event-ID is outside the replay window"))
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
