"""``python3 -m bridge.demo``, the README's first command: Prosody and the bridge, then a clean stop."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from base64 import b64encode
from pathlib import Path
from typing import Any

from twisted.trial import unittest

from tests.servers.server import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


def call(port: int, user: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="POST" if body else "GET")
    request.add_header("Authorization", "Basic " + b64encode(f"{user}:secret".encode()).decode())
    if body is not None:
        request.add_header("Content-Type", "application/json")
        request.data = json.dumps(body).encode()
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


class DemoTests(unittest.TestCase):
    timeout = 90

    def setUp(self) -> None:
        if shutil.which("prosody") is None:
            raise unittest.SkipTest("the demo runs Debian's Prosody, which is not installed")

    def test_readme_calls_work_and_sigterm_stops_everything(self) -> None:
        """The demo answers the README's calls outside the checkout; SIGTERM stops both servers and cleans up."""
        port = free_port()
        cwd = Path(self.mktemp()).resolve()
        cwd.mkdir()
        process = subprocess.Popen(
            [sys.executable, "-m", "bridge.demo", "--port", str(port)],
            cwd=cwd,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.addCleanup(lambda: process.poll() is None and os.killpg(process.pid, signal.SIGKILL))
        assert process.stdout is not None
        first, second = process.stdout.readline().decode(), process.stdout.readline().decode()
        prosody = re.search(r"Prosody on 127\.0\.0\.1:(\d+);", first)
        config = re.search(r"Bridge config: (\S+);", second)
        self.assertIsNotNone(prosody, first)
        self.assertIsNotNone(config, second)
        assert prosody is not None and config is not None
        wait_for_port(port, timeout=30)

        sent = call(port, "alice@localhost", "/api/messages", {"to": "bob@localhost", "body": "hi"})
        archive = call(port, "bob@localhost", "/api/messages?limit=10")
        self.assertEqual(
            [(m["id"], m["from"], m["to"], m["body"]) for m in archive],
            [(sent["id"], "alice@localhost", "bob@localhost", "hi")],
        )
        self.assertEqual(call(port, "bob@localhost", "/api/messages/alice@localhost"), archive)

        process.send_signal(signal.SIGTERM)
        self.assertEqual(process.wait(30), 0)
        self.assertFalse(listening(port), "the bridge outlived the demo")
        self.assertFalse(listening(int(prosody.group(1))), "Prosody outlived the demo")
        self.assertFalse(Path(config.group(1)).exists())
