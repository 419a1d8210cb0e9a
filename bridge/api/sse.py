"""``/api/sse``: live events as Server-Sent Events (WHATWG HTML, "Server-sent events").

``GET /api/sse`` (Basic auth, or ``?token=`` from ``POST /api/sse/token``) answers
``text/event-stream`` and writes each event as it arrives: ``message`` and
``room.message`` with an increasing ``id:``, ``reset`` when a ``Last-Event-ID`` is outside
the replay window (or was given by another bridge process: ``bridge.events``), and a final
``close`` when the bridge ends the stream. Comment lines keep idle connections (and
proxies) alive.

A ``?token=`` is checked by ``bridge.api.tokens``: one that is forged, expired or
malformed is 401 "Invalid or expired token" with ``WWW-Authenticate: Bearer``; a valid one
(any bridge process sharing the store's key may have issued it) that reaches a process
without a live session of its user is 421 "Stream token belongs to another bridge
process", since only a process with that session can serve the stream (the bridge never
has the user's password).

Back-pressure: each stream is a push producer on its HTTP connection. When the client
stops reading and the transport's buffer fills, events queue in the stream, up to
``sse.max_queued_bytes``; past that the client is disconnected. The XMPP side is never
paused, so one slow client cannot stall the user's session or the daemon.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

from klein import Klein
from twisted.internet import defer, task
from twisted.internet.defer import CancelledError
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request
from zope.interface import implementer

from bridge.api.auth import Authenticator
from bridge.api.errors import ApiError, BadRequest, render_failure
from bridge.api.input import query_args
from bridge.api.rendering import Response, json_errors, json_route
from bridge.api.tokens import InvalidToken, MisdirectedToken, StreamTokens
from bridge.config import SseConfig
from bridge.events import Event, EventHub
from bridge.http.limits import EventStreams
from bridge.http.request import bridge_request
from bridge.xmpp.session import Session

log = Logger()

KEEPALIVE = b": keep-alive\n\n"
# Ids are decimal integers; anything longer is not one of ours.
MAX_EVENT_ID_DIGITS = 19
# Seconds a closing stream may take to flush its final event before it is aborted.
CLOSE_GRACE = 2.0
CLOSE_POLL = 0.02
# A valid stream token at a process without a live session of its user.
MISDIRECTED = "Stream token belongs to another bridge process"


def format_event(event: Event) -> bytes:
    """The wire form of ``event``; one without a name only sets the client's last id."""
    if not event.name:
        return b"id: %d\n\n" % event.id
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event.id, event.name.encode(), event.data.encode("utf-8"))


def final_event(reason: str) -> bytes:
    return b"event: close\ndata: %s\n\n" % json.dumps({"reason": reason}).encode()


def parse_event_id(value: str | None) -> int | None:
    """A ``Last-Event-ID``: None when absent or empty, 400 when it is not one of our ids."""
    if not value:
        return None
    value = value.strip(" \t")  # optional whitespace around a header value (RFC 9110)
    if not value.isascii() or not value.isdigit() or len(value) > MAX_EVENT_ID_DIGITS:
        raise BadRequest("Invalid Last-Event-ID")
    return int(value)


def _base_transport(transport: Any) -> Any:
    """The socket-level transport under any wrappers (TLS), which knows when it closed."""
    while not hasattr(transport, "disconnected") and getattr(transport, "transport", None) is not None:
        transport = transport.transport
    return transport


@implementer(IPushProducer)
class EventStream:
    """One open ``text/event-stream`` response, with a bounded queue of unsent events."""

    def __init__(self, request: Request, clock: IReactorTime, config: SseConfig, user: str) -> None:
        self._request = request
        self._clock = clock
        self._config = config
        self._user = user
        self._queue: deque[bytes] = deque()
        self.queued = 0
        self.peak_queued = 0
        self.cut_off = False
        self.started = False
        self._paused = False
        self._gone = False
        self._transport: Any = None
        self._keepalive = task.LoopingCall(self._keep_alive)
        self._keepalive.clock = clock
        # Fires when the bridge ends the stream; a client going away cancels the handler instead.
        self.ended: defer.Deferred[None] = defer.Deferred()
        request.notifyFinish().addBoth(self._connection_gone)

    def start(self) -> None:
        self.started = True
        request = self._request
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", b"text/event-stream")
        request.setHeader(b"Cache-Control", b"no-cache")
        request.setHeader(b"X-Accel-Buffering", b"no")
        assert request.channel is not None
        self._transport = request.channel.transport
        request.registerProducer(self, True)
        self._keepalive.start(self._config.keepalive, now=False)

    def deliver(self, event: Event) -> None:
        self._write(format_event(event))

    def _write(self, data: bytes) -> None:
        if self._gone:
            return
        if self._paused or self._queue:
            self._queue.append(data)
            self.queued += len(data)
            self.peak_queued = max(self.peak_queued, self.queued)
            if self.queued > self._config.max_queued_bytes:
                self._cut()
            return
        self._request.write(data)

    def _keep_alive(self) -> None:
        if not self._paused and not self._queue:
            self._write(KEEPALIVE)

    def _cut(self) -> None:
        log.info(
            "Cut off an event stream of {user}: the client stopped reading ({queued} bytes queued)",
            user=self._user,
            queued=self.queued,
        )
        self.cut_off = True
        self._stop()
        if self._transport is not None:
            self._transport.abortConnection()

    def _stop(self) -> None:
        self._gone = True
        self._queue.clear()
        self.queued = 0
        if self._keepalive.running:
            self._keepalive.stop()

    def _connection_gone(self, _: object) -> None:
        self._stop()

    # IPushProducer: the HTTP channel relays its transport's buffer state here.

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        while self._queue and not self._paused and not self._gone:
            data = self._queue.popleft()
            self.queued -= len(data)
            self._request.write(data)

    def stopProducing(self) -> None:
        self._stop()

    def end(self, reason: str) -> defer.Deferred[None]:
        """Send the final ``close`` event, finish the response and close the connection."""
        if self._gone:
            return defer.succeed(None)
        transport = self._transport
        if self._queue or self._paused:
            # The client is not keeping up; the final event would not reach it in time.
            self._cut()
        else:
            self._request.write(final_event(reason))
            self._stop()
            self._request.unregisterProducer()
            self._request.finish()
            if transport is not None:
                transport.loseConnection()
        if not self.ended.called:
            self.ended.callback(None)
        return _closed(transport, self._clock) if transport is not None else defer.succeed(None)


def _closed(transport: Any, clock: IReactorTime) -> defer.Deferred[None]:
    """Fires once ``transport`` has flushed and closed; aborts it after ``CLOSE_GRACE``."""
    base = _base_transport(transport)
    deadline = clock.seconds() + CLOSE_GRACE
    done: defer.Deferred[None] = defer.Deferred()

    def check() -> None:
        closed = getattr(base, "disconnected", True)
        if not closed and clock.seconds() >= deadline:
            transport.abortConnection()
            closed = True
        if closed:
            poll.stop()
            done.callback(None)

    poll = task.LoopingCall(check)
    poll.clock = clock
    poll.start(CLOSE_POLL, now=True)
    return done


class SseApi:
    """``GET /api/sse`` streams and ``POST /api/sse/token``."""

    app = json_errors(Klein())

    def __init__(
        self,
        auth: Authenticator,
        hub: EventHub,
        tokens: StreamTokens,
        clock: IReactorTime,
        config: SseConfig,
        realm: str,
        streams: EventStreams | None = None,
    ) -> None:
        self._auth = auth
        # Open streams (limits.max_streams, and max_streams_per_user once the user is known).
        self._streams = streams if streams is not None else EventStreams()
        self._realm = realm
        self._hub = hub
        self._tokens = tokens
        self._clock = clock
        self._config = config

    async def _session(self, request: Request, token: str | None) -> Session:
        if token is None:
            return await self._auth.session(request)
        await self._tokens.ready()
        try:
            session = self._tokens.serving_session(token)
        except InvalidToken:
            # Not "Basic": a browser would prompt for a password instead of reporting the error.
            challenge = f'Bearer realm="{self._realm}", error="invalid_token"'
            raise ApiError(401, "Invalid or expired token", {"WWW-Authenticate": challenge}) from None
        except MisdirectedToken:
            raise ApiError(421, MISDIRECTED) from None
        bridge_request(request).user_jid = session.jid.userhost()
        return session

    @app.route("/", methods=["GET"], strict_slashes=False)
    async def stream(self, request: Request) -> bytes | None:
        try:
            if request.method == b"GET":  # HEAD only says what a stream would be
                self._streams.begin(bridge_request(request))
            args = query_args(request, {"token", "last_event_id"})
            session = await self._session(request, args.get("token"))
            header = request.getHeader(b"last-event-id")
            last_seen = parse_event_id(
                header.decode("utf-8", "replace") if header is not None else args.get("last_event_id")
            )
        except CancelledError:
            raise
        except Exception:
            return render_failure(request, Failure())
        if request.method == b"HEAD":
            request.setHeader(b"Content-Type", b"text/event-stream")
            request.setHeader(b"Cache-Control", b"no-cache")
            return b""
        user = session.jid.userhost()
        try:
            self._streams.open(bridge_request(request), user)
        except ApiError:
            return render_failure(request, Failure())
        try:
            return await self._serve(request, session, user, last_seen)
        finally:
            self._streams.close(user)

    async def _serve(self, request: Request, session: Session, user: str, last_seen: int | None) -> bytes | None:
        stream = EventStream(request, self._clock, self._config, user)
        try:
            await self._hub.open(session, stream, last_seen)
        except CancelledError:
            self._hub.close(stream)
            raise
        except Exception:
            self._hub.close(stream)
            if stream.started:
                log.failure("Could not start an event stream")
                stream.end("error")
                return None
            return render_failure(request, Failure())
        try:
            await stream.ended
        finally:
            self._hub.close(stream)
        return None

    @app.route("/token", methods=["POST"])
    @json_route
    async def token(self, request: Request) -> Response:
        session = await self._auth.session(request)
        await self._tokens.ready()
        return Response(201, {"token": self._tokens.issue(session), "expires_in": self._tokens.lifetime})
