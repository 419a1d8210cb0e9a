"""The JSON-lines log observer (bridge.logs) on hand-made events."""

from __future__ import annotations

import io
import json

from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, LogPublisher, formatEvent
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyChannel

from bridge.http import site as site_module
from bridge.http.request import BridgeRequest
from bridge.http.site import ACCESS_FIELDS, BridgeSite
from bridge.logs import event_record, json_observer


class JsonLinesTests(unittest.TestCase):
    def emit(self, level: LogLevel = LogLevel.info, **kwargs: object) -> list[dict[str, object]]:
        out = io.StringIO()
        publisher = LogPublisher(json_observer(out, LogLevel.info))
        log = Logger(namespace="bridge.test", observer=publisher)
        log.emit(level, **kwargs)  # type: ignore[arg-type]
        return [json.loads(line) for line in out.getvalue().splitlines()]

    def test_one_object_per_line_with_the_formats_fields(self) -> None:
        """An access line becomes one JSON object: time, level, namespace, message and its own fields."""
        (record,) = self.emit(
            format="{method} {path} {status} {duration:.1f}ms user={user}",
            method="POST",
            path="/api/messages",
            status=200,
            duration=3.14159,
            user="alice@localhost",
        )
        self.assertEqual(record["message"], "POST /api/messages 200 3.1ms user=alice@localhost")
        self.assertEqual((record["level"], record["namespace"]), ("info", "bridge.test"))
        self.assertEqual(
            {k: record[k] for k in ("method", "path", "status", "user")},
            {"method": "POST", "path": "/api/messages", "status": 200, "user": "alice@localhost"},
        )
        self.assertRegex(record["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

    def test_fields_the_format_does_not_name_stay_out(self) -> None:
        """A value passed to the logger but not named by its format (e.g. a password) is not written."""
        (record,) = self.emit(format="Login for {jid}", jid="alice@localhost", password="hunter2")
        self.assertNotIn("hunter2", json.dumps(record))
        self.assertEqual(record["jid"], "alice@localhost")

    def test_debug_is_left_out_and_failures_carry_a_traceback(self) -> None:
        """Events below info are dropped; a failure's traceback is included."""
        self.assertEqual(self.emit(LogLevel.debug, format="noise"), [])
        try:
            raise ValueError("boom")
        except ValueError:
            failure = Failure()
        record = event_record(
            {"log_format": "Failed", "log_level": LogLevel.error, "log_failure": failure, "log_time": 0.0}
        )
        self.assertEqual(record["level"], "error")
        self.assertIn("ValueError: boom", record["traceback"])
        self.assertEqual(record["time"], "1970-01-01T00:00:00.000Z")


class AccessLineTests(unittest.TestCase):
    """The access line is written out before it is logged, with its fields beside it."""

    def access(self, path: bytes) -> dict[str, object]:
        events: list[dict[str, object]] = []
        self.patch(site_module, "log", Logger(namespace="bridge.http.site", observer=LogPublisher(events.append)))
        request = BridgeRequest(DummyChannel())
        request.method, request.path, request.code = b"POST", path, 200
        request.user_jid = "alice@localhost"
        BridgeSite(Resource(), 1000, 60.0, Clock()).log(request)
        (event,) = events
        return event

    def test_text_and_json_fields_are_the_lines(self) -> None:
        event = self.access(b"/api/messages")
        self.assertEqual(formatEvent(event), "POST /api/messages 200 0.0ms user=alice@localhost")
        record = event_record(event)
        self.assertEqual(
            {name: record[name] for name in ACCESS_FIELDS},
            {"method": "POST", "path": "/api/messages", "status": 200, "duration": 0.0, "user": "alice@localhost"},
        )
        self.assertNotIn("json_fields", record)

    def test_braces_in_a_path_are_text(self) -> None:
        event = self.access(b"/api/{user}/%7B")
        self.assertEqual(formatEvent(event), "POST /api/{user}/%7B 200 0.0ms user=alice@localhost")
        self.assertEqual(event_record(event)["path"], "/api/{user}/%7B")
