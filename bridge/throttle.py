"""Counting failed logins so the bridge cannot be used to guess passwords.

Three counters, all of failures the XMPP server itself reported (a request refused here
never reaches the server and is not counted again):

* per (JID, client address) pair, with exponential backoff: ``failures_per_pair`` failures
  close the pair for ``window`` seconds, each further failure doubles that (at most
  ``2**MAX_DOUBLINGS`` windows). This stops one guesser; it is kept below
  ``failures_per_jid`` so that one address alone cannot throttle a JID for everybody.
* per JID, a sliding window (``failures_per_jid`` in ``window`` s): the bound on guesses at
  one password from all addresses together.
* per client address, a sliding window (``failures_per_address``): the bound on spraying one
  password over many JIDs. A JID that logged in from that address before (a "known pair",
  remembered for ``TRUST_SECONDS``) is not held by it, so an attacker inventing JIDs cannot
  lock the address's known users out.

Whether an attempt is refused depends on the JID and the address only, never on the password
or on a live session: once throttled, every attempt gets the same 429. Only failures count,
so many users logging in at once from one address are never slowed.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from twisted.internet.interfaces import IReactorTime

from bridge.config import ThrottleConfig

# Above this many keys, keys whose failures have all expired are dropped.
_PRUNE_AT = 10_000
# A closed pair stays closed at most window * 2**MAX_DOUBLINGS seconds (16 min by default).
MAX_DOUBLINGS = 4
# How long a successful login makes its (JID, address) pair exempt from the address throttle,
# and how many such pairs are remembered (the oldest are forgotten first).
TRUST_SECONDS = 7 * 24 * 3600.0
MAX_TRUSTED = 100_000


class FailureThrottle:
    """A sliding window per key: ``limit`` failures within ``window`` s close the key."""

    def __init__(self, clock: IReactorTime, limit: int, window: float) -> None:
        self._clock = clock
        self._limit = limit
        self._window = window
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        while failures and now - failures[0] >= self._window:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may try again; 0 when it is not throttled."""
        now = self._clock.seconds()
        failures = self._recent(key, now)
        if failures is None or len(failures) < self._limit:
            return 0.0
        return failures[-self._limit] + self._window - now

    def record(self, key: str) -> None:
        now = self._clock.seconds()
        if len(self._failures) > _PRUNE_AT:
            for stale in list(self._failures):
                self._recent(stale, now)
        failures = self._failures.setdefault(key, deque(maxlen=self._limit))
        failures.append(now)

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)


class BackoffThrottle:
    """Per key: ``limit`` failures (none a ``window`` apart) close the key, for longer each time.

    The first closure lasts ``window`` seconds, each failure after it doubles the next one,
    up to ``2**MAX_DOUBLINGS`` windows. A key quiet for a window after its closure ended
    starts again from nothing.
    """

    def __init__(self, clock: IReactorTime, limit: int, window: float) -> None:
        self._clock = clock
        self._limit = limit
        self._window = window
        # key -> (failures, time of the last one)
        self._failures: dict[str, tuple[int, float]] = {}

    def _closure(self, count: int) -> float:
        if count < self._limit:
            return 0.0
        return self._window * 2 ** min(count - self._limit, MAX_DOUBLINGS)

    def _current(self, key: str, now: float) -> tuple[int, float] | None:
        state = self._failures.get(key)
        if state is None:
            return None
        count, last = state
        if now - last >= self._closure(count) + self._window:
            del self._failures[key]
            return None
        return state

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may try again; 0 when it is not throttled."""
        now = self._clock.seconds()
        state = self._current(key, now)
        if state is None:
            return 0.0
        count, last = state
        return max(0.0, last + self._closure(count) - now)

    def record(self, key: str) -> None:
        now = self._clock.seconds()
        if len(self._failures) > _PRUNE_AT:
            for stale in list(self._failures):
                self._current(stale, now)
        state = self._current(key, now)
        self._failures[key] = ((state[0] if state else 0) + 1, now)

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)


class LoginThrottle:
    """The failed-login throttle the authenticator (and the request limits) consult."""

    def __init__(self, clock: IReactorTime, config: ThrottleConfig) -> None:
        self._clock = clock
        self._pairs = BackoffThrottle(clock, config.failures_per_pair, config.window)
        self._jids = FailureThrottle(clock, config.failures_per_jid, config.window)
        self._addresses = FailureThrottle(clock, config.failures_per_address, config.window)
        # (JID, address) pairs that logged in, oldest success first.
        self._trusted: OrderedDict[str, float] = OrderedDict()

    def retry_after(self, bare: str, address: str) -> float:
        """Seconds until ``bare`` may try from ``address``; 0 when it may now.

        Never looks at the password or the user's session, so a throttled attempt is
        answered the same way whatever it carries.
        """
        pair = _pair(bare, address)
        wait = max(self._pairs.retry_after(pair), self._jids.retry_after(bare))
        if not self._is_trusted(pair):
            wait = max(wait, self._addresses.retry_after(address))
        return wait

    def failed(self, bare: str, address: str) -> None:
        """The server refused ``bare``'s credentials sent from ``address``."""
        self._pairs.record(_pair(bare, address))
        self._jids.record(bare)
        self._addresses.record(address)

    def succeeded(self, bare: str, address: str) -> None:
        """``bare`` proved its password from ``address``: that pair starts afresh and is known.

        The JID's own count is left to expire, so that a user who logs in meanwhile does not
        give a guesser elsewhere a new allowance.
        """
        pair = _pair(bare, address)
        self._pairs.clear(pair)
        self._trusted[pair] = self._clock.seconds()
        self._trusted.move_to_end(pair)
        while len(self._trusted) > MAX_TRUSTED:
            self._trusted.popitem(last=False)

    def _is_trusted(self, pair: str) -> bool:
        since = self._trusted.get(pair)
        if since is None:
            return False
        if self._clock.seconds() - since >= TRUST_SECONDS:
            del self._trusted[pair]
            return False
        return True


def _pair(bare: str, address: str) -> str:
    # A bare JID never contains a space, so the pair key is unambiguous.
    return f"{bare} {address}"
