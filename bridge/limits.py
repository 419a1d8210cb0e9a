"""Limits that keep one client from exhausting the daemon (RFC 9110 429 and 503, 408).

* Request rates, per authenticated user and per client address: a token bucket each
  (``limits.user_rate``/``user_burst``, ``address_rate``/``address_burst``); past it, 429
  with ``Retry-After``. A request counts against a user only when its credentials match
  the user's live session, so nobody can spend another user's allowance by sending wrong
  passwords under their JID (failed logins have their own throttle, ``bridge.throttle``).
  A JID the failed-login throttle holds is not looked at here at all: the authenticator
  answers it 429 whatever the password, so no local digest match can tell a right password
  from a wrong one.
* Caps on live XMPP sessions and open event streams (``limits.max_sessions``,
  ``limits.max_streams``): past them, new logins and new streams get 503 with
  ``Retry-After`` while users already in are served as usual. Streams per user
  (``limits.max_streams_per_user``) are counted by the event-stream route once it knows
  the user (Basic or a stream token): past it, 429 with ``Retry-After``.
* Oversized requests: a request line longer than Twisted's 16 KiB line limit gets 414, a
  header line over it, or headers over 16 KiB in all, 431 (Twisted itself closes the
  connection without a word, or answers a bare 400); the connection is then closed.
* Deadlines for receiving a request: Twisted's idle timeout restarts with every byte, so a
  client trickling one header byte every few seconds would hold its connection for ever.
  ``GuardedChannel`` gives the headers ``http.header_timeout`` seconds from their first
  byte and the body ``http.body_timeout`` seconds, then answers 408 and closes.

The defaults serve 200 users logging in at once from one address and 5 messages a second
per user without a single 429 (``tests/integration/test_production.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import Request

from bridge.api.auth import request_credentials
from bridge.api.errors import ApiError, write_json
from bridge.config import LimitsConfig
from bridge.throttle import LoginThrottle
from bridge.xmpp.pool import SessionPool

log = Logger()

# Above this many keys, buckets that have refilled completely are dropped.
_PRUNE_AT = 10_000
# Seconds a client is told to wait when a cap (not a rate) refused it.
CAP_RETRY_AFTER = "10"
EVENT_STREAM_PATH = b"/api/sse"

# Reason phrases Twisted lacks (it writes "Unknown Status"): RFC 6585 and RFC 9110 names.
http.RESPONSES.setdefault(429, b"Too Many Requests")
http.RESPONSES.setdefault(431, b"Request Header Fields Too Large")
http.RESPONSES.setdefault(414, b"URI Too Long")


def is_event_stream(request: Request) -> bool:
    """Whether ``request`` opens a live event stream (a response that does not end by itself)."""
    return request.method == b"GET" and request.path.rstrip(b"/") == EVENT_STREAM_PATH


def client_address(request: Request) -> str:
    address = request.getClientAddress()
    return getattr(address, "host", None) or str(address)


class TokenBuckets:
    """One token bucket per key: ``rate`` tokens a second, at most ``burst`` saved up."""

    def __init__(self, clock: IReactorTime, rate: float, burst: int) -> None:
        self._clock = clock
        self._rate = rate
        self._burst = float(burst)
        # key -> (tokens left, when that was computed)
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> float:
        """Spend one token of ``key``; 0 when allowed, else the seconds until one is there."""
        if self._rate <= 0:
            return 0.0
        now = self._clock.seconds()
        tokens, then = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - then) * self._rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self._rate
        if len(self._buckets) > _PRUNE_AT:
            self._prune(now)
        self._buckets[key] = (tokens - 1.0, now)
        return 0.0

    def _prune(self, now: float) -> None:
        for key, (tokens, then) in list(self._buckets.items()):
            if tokens + (now - then) * self._rate >= self._burst:
                del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass(frozen=True)
class Refusal:
    """Why a request is not served: the answer, and the limit's name for metrics."""

    status: int
    message: str
    retry_after: str
    limit: str


class RequestLimits:
    """Decides, before routing, whether a request may go on; counts open streams and logins."""

    def __init__(
        self,
        clock: IReactorTime,
        config: LimitsConfig,
        pool: SessionPool,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self._config = config
        self._pool = pool
        self._throttle = throttle
        self._users = TokenBuckets(clock, config.user_rate, config.user_burst)
        self._addresses = TokenBuckets(clock, config.address_rate, config.address_burst)
        self.open_streams = 0
        # Bare JIDs with a request in flight that has to log in first.
        self._logging_in: dict[str, int] = {}

    def check(self, request: Request) -> Refusal | None:
        """A refusal for ``request``, or None after reserving what it will hold."""
        wait = self._addresses.take(client_address(request))
        if wait > 0:
            return Refusal(429, "Too many requests", str(math.ceil(wait)), "address")
        credentials = request_credentials(request)
        logging_in = None
        if credentials is not None:
            jid, password = credentials
            bare = jid.userhost()
            if self._throttle is not None and self._throttle.retry_after(bare, client_address(request)) > 0:
                pass  # the authenticator answers 429 without looking at the password
            elif self._pool.existing(jid, password) is not None:
                wait = self._users.take(bare)
                if wait > 0:
                    return Refusal(429, "Too many requests", str(math.ceil(wait)), "user")
            elif not self._pool.has_session(bare):
                # Only users without a session are held by the cap: a wrong password for one
                # with a session goes to the server like any other, never a 503 without it.
                cap = self._config.max_sessions
                if cap and bare not in self._logging_in and len(self._pool) + len(self._logging_in) >= cap:
                    return Refusal(503, "Too many sessions", CAP_RETRY_AFTER, "sessions")
                logging_in = bare
        stream = is_event_stream(request)
        if stream and self._config.max_streams and self.open_streams >= self._config.max_streams:
            return Refusal(503, "Too many event streams", CAP_RETRY_AFTER, "streams")
        if stream:
            self.open_streams += 1
        if logging_in is not None:
            self._logging_in[logging_in] = self._logging_in.get(logging_in, 0) + 1
        if stream or logging_in is not None:
            request.notifyFinish().addBoth(self._finished, stream, logging_in)
        return None

    def _finished(self, _: object, stream: bool, logging_in: str | None) -> None:
        if stream:
            self.open_streams -= 1
        if logging_in is not None:
            left = self._logging_in[logging_in] - 1
            if left:
                self._logging_in[logging_in] = left
            else:
                del self._logging_in[logging_in]


class UserStreams:
    """Open event streams per user, against ``limits.max_streams_per_user`` (0: no cap).

    Counted by the event-stream route after authentication, since only it knows the user
    of a token stream; only authenticated streams count, so nobody fills another user's
    allowance.
    """

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._open: dict[str, int] = {}

    def open(self, request: Request, user: str) -> None:
        """Count a new stream of ``user``; 429 with Retry-After when it has ``cap`` already."""
        count = self._open.get(user, 0)
        if self._cap and count >= self._cap:
            request.bridge_refused = "user_streams"  # type: ignore[attr-defined]  # for metrics
            raise ApiError(429, "Too many event streams for this user", {"Retry-After": CAP_RETRY_AFTER})
        self._open[user] = count + 1

    def close(self, user: str) -> None:
        left = self._open.get(user, 0) - 1
        if left > 0:
            self._open[user] = left
        else:
            self._open.pop(user, None)

    def __getitem__(self, user: str) -> int:
        return self._open.get(user, 0)


class LimitsResource(Resource):
    """Answers refused requests itself; passes the others to the API."""

    isLeaf = True

    def __init__(self, wrapped: Resource, limits: RequestLimits) -> None:
        super().__init__()
        self._wrapped = wrapped
        self._limits = limits

    def render(self, request: Request) -> bytes | int:
        refusal = self._limits.check(request)
        if refusal is None:
            return self._wrapped.render(request)
        request.bridge_refused = refusal.limit  # type: ignore[attr-defined]  # for metrics
        request.setHeader(b"Retry-After", refusal.retry_after.encode())
        return write_json(request, refusal.status, refusal.message)


RESPONSE_408 = (
    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
    b'Connection: close\r\nContent-Length: 17\r\n\r\n"Request timeout"'
)


def _refusal(status: bytes, message: bytes) -> bytes:
    """A complete answer written straight to the transport (there is no request to answer)."""
    body = b'"%s"' % message
    head = b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nConnection: close\r\n" % status
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


RESPONSE_414 = _refusal(b"414 URI Too Long", b"Request URI too long")
RESPONSE_431 = _refusal(b"431 Request Header Fields Too Large", b"Request header too large")


class GuardedChannel(HTTPChannel):
    """An HTTP/1.1 channel with deadlines for receiving each request's headers and body.

    The header deadline starts with the connection, and again with the first byte of each
    further request on a kept-alive connection; it stops once the headers are in. The body
    deadline covers the rest of the request. Either one closes the connection, with 408
    when part of a request had arrived. The site's ``header_timeout``, ``body_timeout`` and
    ``channels`` (a set every open channel joins, for shutdown) are used when present.
    """

    # Seconds a closing connection may take to flush before it is aborted.
    abortTimeout = 5
    site: Any = None  # set by Site.buildProtocol
    _deadline: IDelayedCall | None = None
    _partial = False

    def connectionMade(self) -> None:
        super().connectionMade()
        channels = getattr(self.site, "channels", None)
        if channels is not None:
            channels.add(self)
        self._arm("header")

    def dataReceived(self, data: bytes) -> None:
        if self.line_mode and not self._handlingRequest:
            self._partial = True
            if self._deadline is None:
                self._arm("header")
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        # HTTPChannel answers headers over totalHeadersSize with a bare 400; say what it was.
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            self._too_large(first_line=self._receivedHeaderSize == 0)
            return
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        # LineReceiver closes the connection without an answer; the line still being
        # received is the request line when nothing of this request has arrived before it.
        self._too_large(first_line=self._receivedHeaderSize == 0)

    def _too_large(self, first_line: bool) -> None:
        self._disarm()
        if self.transport is None:
            return
        log.info(
            "Refused a request from {peer}: its {part} is too long",
            peer=client_peer(self.transport),
            part="request line" if first_line else "header",
        )
        self.transport.write(RESPONSE_414 if first_line else RESPONSE_431)
        self._partial = False
        self.timeoutConnection()

    def allHeadersReceived(self) -> None:
        self._disarm()
        super().allHeadersReceived()
        if self.length != 0 and self.transport is not None and not getattr(self.transport, "disconnecting", False):
            self._arm("body")

    def allContentReceived(self) -> None:
        self._disarm()
        self._partial = False
        super().allContentReceived()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._disarm()
        channels = getattr(self.site, "channels", None)
        if channels is not None:
            channels.discard(self)
        super().connectionLost(reason)

    @property
    def idle(self) -> bool:
        """No request is being received or answered on this connection."""
        return not self.requests and not self._partial

    def _arm(self, phase: str) -> None:
        self._disarm()
        timeout = getattr(self.site, f"{phase}_timeout", None)
        if timeout:
            self._deadline = self.callLater(timeout, lambda: self._expired(phase, timeout))

    def _disarm(self) -> None:
        if self._deadline is not None:
            if self._deadline.active():
                self._deadline.cancel()
            self._deadline = None

    def _expired(self, phase: str, timeout: float) -> None:
        self._deadline = None
        if self.transport is None:
            return
        metrics = getattr(self.site, "metrics", None)
        if metrics is not None:
            metrics.timed_out(phase)
        if self._partial:
            log.info(
                "Closing a connection from {peer}: the request {phase} did not arrive within {timeout} s",
                peer=client_peer(self.transport),
                phase="headers" if phase == "header" else "body",
                timeout=timeout,
            )
            self.transport.write(RESPONSE_408)
        self.timeoutConnection()

    def timeoutConnection(self) -> None:
        # HTTPChannel's own version logs every idle keep-alive connection it closes.
        if self.abortTimeout is not None:
            self._abortingCall = self.callLater(self.abortTimeout, self.forceAbortClient)
        self.loseConnection()


def client_peer(transport: Any) -> str:
    peer = transport.getPeer()
    return getattr(peer, "host", None) or str(peer)
