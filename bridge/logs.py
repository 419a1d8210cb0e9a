"""Logs as JSON lines, for journald, Loki, Elasticsearch and friends (``twisted.logger``).

``twistd --logger=bridge.logs.json_observer -n bridge -c FILE`` writes one JSON object a
line to standard output instead of Twisted's text lines::

    {"time": "2026-01-01T12:00:00.000Z", "level": "info", "namespace": "bridge.http.site",
     "message": "POST /api/messages 200 3.1ms user=alice@localhost",
     "method": "POST", "path": "/api/messages", "status": 200, "duration": 3.1,
     "user": "alice@localhost"}

Beside the formatted ``message`` a record carries exactly the fields its format names (or,
for an event whose format is its text already, as the access log's is, the fields it names
in ``json_fields``), so a JSON log shows nothing a text log would not: the bridge's log
lines never name a password, token, secret or message body, and neither does this output.
A failure adds its ``traceback``. Events below ``info`` are left out.
"""

from __future__ import annotations

import json
import string
import sys
from datetime import UTC, datetime
from typing import IO, Any

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
)
from zope.interface import implementer

_SCALARS = (str, int, float, bool, type(None))


def _field_names(log_format: str) -> list[str]:
    """Top-level names a format string refers to (``{user}``, ``{peer.host}`` -> ``peer``)."""
    names = []
    try:
        for _, field, _, _ in string.Formatter().parse(log_format):
            if field:
                name = field.split(".", 1)[0].split("[", 1)[0]
                if name and not name.startswith("log_") and name not in names:
                    names.append(name)
    except ValueError:
        return []
    return names


def event_record(event: dict[str, Any]) -> dict[str, Any]:
    """One log event as the JSON object written for it."""
    level = event.get("log_level")
    record: dict[str, Any] = {
        "time": datetime.fromtimestamp(event.get("log_time", 0.0), UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
        "level": level.name if isinstance(level, type(LogLevel.info)) else "info",
        "namespace": event.get("log_namespace", ""),
        "message": formatEvent(event),
    }
    log_format = event.get("log_format")
    names = _field_names(log_format) if isinstance(log_format, str) else []
    listed = event.get("json_fields")
    if isinstance(listed, tuple):
        names += [name for name in listed if isinstance(name, str) and name not in names]
    for name in names:
        value = event.get(name)
        if name not in record and isinstance(value, _SCALARS):
            record[name] = value
    failure = event.get("log_failure")
    if failure is not None:
        try:
            record["traceback"] = failure.getTraceback()
        except Exception:
            record["traceback"] = repr(failure)
    return record


@implementer(ILogObserver)
class JsonLinesObserver:
    """Writes each event as one line of JSON to a text stream."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def __call__(self, event: dict[str, Any]) -> None:
        line = json.dumps(event_record(event), ensure_ascii=False, default=str)
        self._out.write(line + "\n")
        self._out.flush()


def json_observer(out: IO[str] | None = None, level: LogLevel = LogLevel.info) -> ILogObserver:
    """The observer ``twistd --logger=bridge.logs.json_observer`` installs: JSON lines on stdout."""
    return FilteringLogObserver(
        JsonLinesObserver(out if out is not None else sys.stdout),
        [LogLevelFilterPredicate(defaultLogLevel=level)],
    )
