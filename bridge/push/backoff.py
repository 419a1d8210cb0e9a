"""When a failed delivery is tried again: exponential backoff with jitter, for 24 hours.

Attempt n (0 for the first retry) waits ``BASE * 2**n`` seconds, at most ``CAP``, with
"equal jitter": half of it fixed, half random, so the first retry comes within
``BASE`` (2.5 s, under the 5 s the contract allows) and retries of many notifications
after one outage spread out. A notification still undelivered ``GIVE_UP`` seconds after
it was queued is dropped (and counted).
"""

from __future__ import annotations

import random
from collections.abc import Callable

BASE = 2.5
CAP = 1800.0
GIVE_UP = 24 * 3600.0


def retry_delay(attempt: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based); ``rand`` gives [0, 1)."""
    ceiling = min(CAP, BASE * 2 ** min(attempt, 30))
    return ceiling / 2 + ceiling / 2 * rand()


def expired(queued_at: float, now: float) -> bool:
    """Whether a notification queued at ``queued_at`` (Unix s) is past the retry period."""
    return now - queued_at >= GIVE_UP
