"""Limits that keep one client from exhausting the daemon (RFC 9110 503, RFC 6585 429).

* Request rates, per authenticated user and per client address: a token bucket each
  (``limits.user_rate``/``user_burst``, ``address_rate``/``address_burst``); past it, 429
  with ``Retry-After``. A request counts against a user only when its credentials match
  the user's live session, so nobody can spend another user's allowance by sending wrong
  passwords under their JID (failed logins have their own throttle, ``bridge.throttle``).
  A JID the failed-login throttle holds is not looked at here at all: the authenticator
  answers it 429 whatever the password, so no local digest match can tell a right password
  from a wrong one.
* A cap on live XMPP sessions (``limits.max_sessions``): past it, new logins get 503 with
  ``Retry-After`` while users already in are served as usual.
* Caps on open event streams, counted by the event-stream route (``EventStreams``): all of
  them (``limits.max_streams``; past it, 503 with ``Retry-After``) as the route starts,
  and each user's (``limits.max_streams_per_user``; past it, 429) once it knows the user
  (Basic or a stream token).

The defaults serve 200 users logging in at once from one address and 5 messages a second
per user without a single 429 (``tests/integration/test_production.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import Resource
from twisted.web.server import Request

from bridge.config import LimitsConfig
from bridge.http.errors import ApiError, write_json
from bridge.http.request import BridgeRequest, bridge_request, client_address
from bridge.throttle import LoginThrottle
from bridge.xmpp.pool import SessionPool

# Above this many keys, buckets that have refilled completely are dropped.
_PRUNE_AT = 10_000
# Seconds a client is told to wait when a cap (not a rate) refused it.
CAP_RETRY_AFTER = "10"


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
    """Decides, before routing, whether a request may go on; counts the logins it lets through."""

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
        # Bare JIDs with a request in flight that has to log in first.
        self._logging_in: dict[str, int] = {}

    def check(self, request: BridgeRequest) -> Refusal | None:
        """A refusal for ``request``, or None after reserving what it will hold.

        The live session found for the request's credentials is left on the request
        (``live_session``) for the authenticator.
        """
        address = client_address(request)
        wait = self._addresses.take(address)
        if wait > 0:
            return Refusal(429, "Too many requests", str(math.ceil(wait)), "address")
        credentials = request.credentials
        if credentials is None:
            return None
        jid, password = credentials
        bare = jid.userhost()
        if self._throttle is not None and self._throttle.retry_after(bare, address) > 0:
            return None  # the authenticator answers 429 without looking at the password
        request.live_session = self._pool.existing(jid, password)
        if request.live_session is not None:
            wait = self._users.take(bare)
            if wait > 0:
                return Refusal(429, "Too many requests", str(math.ceil(wait)), "user")
            return None
        if self._pool.has_session(bare):
            # Only users without a session are held by the cap: a wrong password for one
            # with a session goes to the server like any other, never a 503 without it.
            return None
        cap = self._config.max_sessions
        if cap and bare not in self._logging_in and len(self._pool) + len(self._logging_in) >= cap:
            return Refusal(503, "Too many sessions", CAP_RETRY_AFTER, "sessions")
        self._logging_in[bare] = self._logging_in.get(bare, 0) + 1
        request.notifyFinish().addBoth(self._logged_in, bare)
        return None

    def _logged_in(self, _: object, bare: str) -> None:
        left = self._logging_in[bare] - 1
        if left:
            self._logging_in[bare] = left
        else:
            del self._logging_in[bare]


class EventStreams:
    """Open event streams, against ``limits.max_streams`` and ``max_streams_per_user`` (0: no cap).

    Counted by the event-stream route, which alone knows that a request is a stream and,
    after authentication, whose (a token stream's user is not in its headers); only
    authenticated streams count against a user, so nobody fills another user's allowance.
    """

    def __init__(self, max_streams: int = 0, max_per_user: int = 0) -> None:
        self._cap = max_streams
        self._user_cap = max_per_user
        self.open_streams = 0
        self._open: dict[str, int] = {}

    def begin(self, request: BridgeRequest) -> None:
        """Mark ``request`` as an event stream and count it until it ends; 503 at the cap."""
        request.is_event_stream = True
        if self._cap and self.open_streams >= self._cap:
            request.refusal = "streams"
            raise ApiError(503, "Too many event streams", {"Retry-After": CAP_RETRY_AFTER})
        self.open_streams += 1
        request.notifyFinish().addBoth(self._ended)

    def _ended(self, _: object) -> None:
        self.open_streams -= 1

    def open(self, request: BridgeRequest, user: str) -> None:
        """Count a new stream of ``user``; 429 with Retry-After when it has its cap already."""
        count = self._open.get(user, 0)
        if self._user_cap and count >= self._user_cap:
            request.refusal = "user_streams"
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
        edge = bridge_request(request)
        refusal = self._limits.check(edge)
        if refusal is None:
            return self._wrapped.render(request)
        edge.refusal = refusal.limit
        return write_json(request, refusal.status, refusal.message, {"Retry-After": refusal.retry_after})
