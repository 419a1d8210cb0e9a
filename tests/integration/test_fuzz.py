"""Fuzzing the whole API from its OpenAPI document (schemathesis) against real Prosody.

A bridge runs in this process on the real reactor, in front of the run's XMPP server;
schemathesis runs as a child process (its HTTP client blocks, so it must not share the
reactor's thread) with the credentials of a registered user, a bounded number of
examples per operation and a fixed seed. It checks every answer: no 5xx, the status is one
the document lists for the operation, and headers, content type and body match the
document; an answer slower than ``MAX_RESPONSE_TIME`` or none within ``REQUEST_TIMEOUT``
fails (no hang). The bridge's own log of the run must show no 5xx answer and no traceback
(``tests.integration.bridge_log``): bad input is a 4xx, never a logged failure.
``GET /api/sse`` is left out: its 200 answer never ends by design; its input checks have
their own tests (and ``tests/integration/test_hostile.py`` covers hand-picked bad input).

Size: ``BRIDGE_FUZZ_EXAMPLES`` examples per operation (default 50) in the examples,
coverage and fuzzing phases; the run lasts a couple of minutes. Bugs it found are pinned
by regression tests in ``tests/integration/test_production.py`` (``FuzzRegressionTests``).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue

from tests.integration.base import BridgeTestCase
from tests.integration.bridge_log import BridgeLog

EXAMPLES = int(os.environ.get("BRIDGE_FUZZ_EXAMPLES", "50"))
SEED = int(os.environ.get("BRIDGE_FUZZ_SEED", "20260101"))
MAX_RESPONSE_TIME = 10.0
REQUEST_TIMEOUT = 20.0
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    )
)
# Operations whose success never ends by design.
UNBOUNDED = ("openEventStream",)


def schemathesis_command() -> list[str]:
    script = Path(sys.executable).with_name("schemathesis")
    if script.exists():
        return [str(script)]
    found = shutil.which("schemathesis")
    if found:
        return [found]
    return [sys.executable, "-m", "schemathesis.cli"]


class FuzzTests(BridgeTestCase):
    timeout = 900
    bridge_sections = {
        # One user sends every request: rate limits and the failed-login throttle would only
        # turn most of the run into 429s (which the document allows, and tests cover).
        "limits": {"user_rate": 0.0, "address_rate": 0.0},
        "throttle": {"failures_per_jid": 1_000_000, "failures_per_address": 1_000_000, "failures_per_pair": 1_000_000},
    }

    async def test_api_survives_schemathesis(self) -> None:
        """Generated requests get a documented, well-formed answer in time, never a 5xx, and log no traceback."""
        bridge_log = BridgeLog(self.addCleanup)
        user = self.new_user("fuzz")
        # A contact and some history, so listing and archive operations return data to check.
        other = self.new_user("peer")
        self.assertEqual((await self.call("POST", "/api/contacts", user, {"jid": other[0]})).code, 204)
        self.assertEqual((await self.call("POST", "/api/messages", user, {"to": other[0], "body": "x"})).code, 200)
        report = Path(self.mktemp()).resolve()
        report.mkdir(parents=True)
        arguments = [
            "run",
            self.bridge.url("/api-docs"),
            "--url",
            self.bridge.base,
            "--auth",
            f"{user[0]}:{user[1]}",
            "--checks",
            CHECKS,
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            str(SEED),
            "--phases",
            "examples,coverage,fuzzing,stateful",
            # One worker: with threads, Hypothesis 6.15x sometimes fails in its own code
            # ("AST constructor recursion depth mismatch") and the run reports an error.
            "--workers",
            "1",
            "--max-response-time",
            str(MAX_RESPONSE_TIME),
            "--request-timeout",
            str(REQUEST_TIMEOUT),
            "--generation-database",
            "none",
            "--no-color",
            "--report",
            "junit",
            "--report-dir",
            str(report),
        ]
        for operation in UNBOUNDED:
            arguments += ["--exclude-operation-id", operation]
        environment = {**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"}
        out, err, code = await getProcessOutputAndValue(
            schemathesis_command()[0], schemathesis_command()[1:] + arguments, env=environment, reactor=reactor
        )
        output = (out + err).decode("utf-8", "replace")
        (report / "output.txt").write_text(output)
        self.assertEqual(code, 0, output[-12000:])
        self.assertGreater(len(bridge_log.statuses(100)), 1000, "the bridge's access log was not captured")
        self.assertEqual(bridge_log.statuses(500), [], "5xx answers in the bridge's access log")
        self.assertEqual(bridge_log.tracebacks(), [], "tracebacks in the bridge's log")
