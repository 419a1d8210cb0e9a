"""What the in-process bridge logs during a test: tracebacks and the access log's statuses.

Integration tests run the bridge on this process's reactor (``tests.servers.fixture.start_bridge``),
so everything it logs passes through ``twisted.logger.globalLogPublisher``. Bad input must
never produce a traceback nor a 500 (helper-common.md); the hostile-input tests install a
``BridgeLog`` for their whole run and assert on it at the end.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from zope.interface import provider

from bridge.http.site import ACCESS_FIELDS

# Text that only a traceback or Twisted's report of an unhandled failure contains.
TRACEBACK_MARKERS = ("Traceback", "Unhandled Error", "Unhandled error in Deferred")


class BridgeLog:
    """Collects twisted.logger events until the test ends (``add_cleanup`` removes the observer)."""

    def __init__(self, add_cleanup: Any) -> None:
        self.events: list[LogEvent] = []

        @provider(ILogObserver)
        def observe(event: LogEvent) -> None:
            self.events.append(event)

        globalLogPublisher.addObserver(observe)
        add_cleanup(globalLogPublisher.removeObserver, observe)

    def tracebacks(self) -> list[str]:
        """Each logged failure or traceback, as text (a failure's traceback included)."""
        found = []
        for event in self.events:
            text = formatEvent(event) or ""
            failure = event.get("log_failure")
            if failure is not None:
                found.append(f"{text}\n{failure.getTraceback()}")
            elif any(marker in text for marker in TRACEBACK_MARKERS):
                found.append(text)
        return found

    def statuses(self, at_least: int = 500) -> list[str]:
        """Access lines whose status is ``at_least`` or more ("GET /api/x 500")."""
        found = []
        for event in self.events:
            if event.get("json_fields") != ACCESS_FIELDS:  # not an access line (BridgeSite.log)
                continue
            status = event.get("status")
            if isinstance(status, int) and status >= at_least:
                found.append(f"{event.get('method')} {event.get('path')} {status}")
        return found

    def summary(self, limit: int = 5) -> str:
        """The first few tracebacks and 5xx lines, for a failure message."""
        parts = [*self.statuses()[:limit], *self.tracebacks()[:limit]]
        return "\n----\n".join(parts)[-12000:]
