"""The real daemon: `twistd -n bridge --config FILE` as an admin runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from base64 import b64encode
from pathlib import Path

from twisted.trial import unittest

from tests.servers.fixture import daemon_config, new_user, xmpp_server
from tests.servers.server import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def twistd(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen(
        [*TWISTD, "-n", "--pidfile=", *args],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


class TwistdTests(unittest.TestCase):
    timeout = 60

    def write_config(self, text: str) -> str:
        path = Path(self.mktemp() + ".toml").resolve()
        path.write_text(text)
        return str(path)

    def test_bad_config_exits_with_one_line(self) -> None:
        """Start-up with a bad config exits non-zero with one line naming the key."""
        cases = {
            '[xmpp]\nport = "5222"\n': "bridge: xmpp.port: expected an integer",
            "[xmpp]\nnope = 1\n": "bridge: xmpp.nope: unknown key",
            '[xmpp]\nca_file = "/nonexistent.pem"\n': "bridge: xmpp.ca_file: cannot read /nonexistent.pem",
            '[http]\nendpoint = "bogus:1"\n': "bridge: http.endpoint: not a valid endpoint description",
        }
        for text, expected in cases.items():
            process = twistd("bridge", "--config", self.write_config(text))
            output, _ = process.communicate(timeout=30)
            self.assertNotEqual(process.returncode, 0)
            lines = output.decode().strip().splitlines()
            self.assertEqual(len(lines), 1, output)
            self.assertTrue(lines[0].startswith(expected), lines[0])
        process = twistd("bridge", "-c", "/nonexistent/bridge.toml")
        output, _ = process.communicate(timeout=30)
        self.assertEqual(
            output.decode().strip(),
            "bridge: cannot read config file /nonexistent/bridge.toml: No such file or directory",
        )

    def test_daemon_serves_and_logs_no_secrets(self) -> None:
        """twistd bridge delivers a message end to end; its log has no password or secret."""
        server = xmpp_server()
        alice, bob = new_user("alice"), new_user("bob")
        port = free_port()
        config = self.write_config(daemon_config(server, port, f"sqlite://{Path(self.mktemp()).resolve()}.sqlite3"))
        process = twistd("bridge", "--config", config, env={"BRIDGE_MUCLIGHT_SECRET": server.component_secret})
        try:
            wait_for_port(port)
            auth = "Basic " + b64encode(f"{alice[0]}:{alice[1]}".encode()).decode()
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/messages",
                method="POST",
                data=json.dumps({"to": bob[0], "body": "from twistd"}).encode(),
                headers={"Authorization": auth, "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                self.assertEqual(response.status, 200)
            wrong = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/messages",
                headers={"Authorization": "Basic " + b64encode(f"{bob[0]}:not-{bob[1]}".encode()).decode()},
            )
            with self.assertRaises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(wrong, timeout=10)
            self.assertEqual(caught.exception.code, 401)
        finally:
            process.terminate()
            output, _ = process.communicate(timeout=30)
        log = output.decode()
        # twistd ends a SIGTERM shutdown by re-raising the signal, as the convention wants.
        self.assertIn(process.returncode, (0, -15), log)
        self.assertIn("Server Shut Down.", log)
        self.assertIn("POST /api/messages 200", log)
        for secret in (alice[1], bob[1], f"not-{bob[1]}", server.component_secret, "from twistd"):
            self.assertNotIn(secret, log)
