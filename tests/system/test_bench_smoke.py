"""The benchmark suite in smoke mode (tiny sizes), so that it never rots.

It starts its own Prosody servers and ``twistd -n bridge`` processes, drives them with
Debian's ``wrk`` and ``bench.worker`` processes, and prints the table. Timings are never
asserted: the machine running the tests is busy with other work.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from twisted.trial import unittest

ROOT = Path(__file__).resolve().parents[2]

# A row per figure, or the line saying why a scenario could not run yet.
EXPECTED = [
    ("Klein floor (bench.floor)",),
    ("bridge POST, archive off",),
    ("plain XMPP send+ping, archive off",),
    ("bridge POST, archive sql",),
    ("plain XMPP send+ping, archive sql",),
    ("plain XMPP send+ping, 1 client",),
    ("bridge POST, 1 client",),
    ("plain XMPP MAM query, max 50",),
    ("bridge GET /api/messages?limit=50",),
    ("plain XMPP login + send + ping",),
    ("bridge first POST of a new user",),
    ("bridge RSS",),
    ("plain XMPP, 5 receiving clients", "skipped: sse:"),
    ("5 streams, messages to random users", "skipped: sse:"),
    ("room of 3, message to all streams", "skipped: rooms:"),
    ("plain XMPP logins",),
    ("bridge GET /api/sse opened (login included)",),
    ("memory per stream, by part (KB)",),
    ("Prosody mod_rest POST /rest/message", "skipped: modrest:"),
    ("1 bridge process behind HAProxy", "skipped: cluster:"),
    ("3 bridge processes behind HAProxy", "skipped: cluster:"),
]


class BenchSmokeTests(unittest.TestCase):
    timeout = 600

    def test_smoke_run_prints_every_row(self) -> None:
        """``python3 -m bench --smoke`` runs every scenario and prints a table row for each figure."""
        self.assertIsNotNone(shutil.which("wrk"), "the benchmarks need Debian's wrk (apt-get install wrk)")
        done = subprocess.run(
            [sys.executable, "-m", "bench", "--smoke"],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=540,
        )
        output = done.stdout + done.stderr
        self.assertEqual(done.returncode, 0, output[-5000:])
        table = done.stdout.split("| scenario |", 1)
        self.assertEqual(len(table), 2, output[-5000:])
        for alternatives in EXPECTED:
            self.assertTrue(any(text in table[1] for text in alternatives), f"no row for {alternatives}:\n{output}")
        self.assertIn("Targets (issue 5):", table[1])
        self.assertIn("Load average (1/5/15 min): before", done.stdout)
