"""Counting failed logins so the bridge cannot be used to guess passwords.

A sliding window per key (a bare JID, a client address): after ``limit`` failures within
``window`` seconds the key is refused until the oldest failure leaves the window. Only
failures count, so many users logging in at once from one address are never slowed.
"""

from __future__ import annotations

from collections import deque

from twisted.internet.interfaces import IReactorTime

# Above this many keys, keys whose failures have all expired are dropped.
_PRUNE_AT = 10_000


class FailureThrottle:
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
