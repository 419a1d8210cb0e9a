"""A room message answered 200 is in the room archive even if the daemon is killed at once."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path
from typing import Any

from twisted.internet import threads
from twisted.trial import unittest

from tests.servers.fixture import daemon_config, new_user, xmpp_server
from tests.servers.server import free_port, wait_for_port
from tests.system.test_twistd import twistd


def request(port: int, method: str, path: str, user: tuple[str, str], body: Any = None) -> tuple[int, Any]:
    auth = "Basic " + b64encode(f"{user[0]}:{user[1]}".encode()).decode()
    data = json.dumps(body).encode() if body is not None else None
    call = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        data=data,
        headers={"Authorization": auth, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(call, timeout=15) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def until_answers(port: int, path: str, user: tuple[str, str]) -> None:
    """Until a restarted daemon answers ``GET path`` with 200 (its store and component are up), at most 30 s."""
    deadline = time.monotonic() + 30
    wait_for_port(port)
    while True:
        status, body = request(port, "GET", path, user)
        if status == 200:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} does not answer: {status} {body}")
        time.sleep(0.3)


class SigkillTests(unittest.TestCase):
    timeout = 120

    def start(self, config: str) -> Any:
        server = xmpp_server()
        process = twistd("bridge", "--config", config, env={"BRIDGE_MUCLIGHT_SECRET": server.component_secret})
        self.addCleanup(lambda: process.poll() is None and (process.kill(), process.wait()))
        return process

    def scenario(self) -> None:
        server = xmpp_server()
        alice = new_user("alice")
        port = free_port()
        database = Path(self.mktemp()).resolve()
        database.mkdir(parents=True)
        config = database / "bridge.toml"
        config.write_text(daemon_config(server, port, f"sqlite://{database}/bridge.sqlite3"))
        process = self.start(str(config))
        until_answers(port, "/api/rooms", alice)
        status, created = request(port, "POST", "/api/rooms", alice, {"name": "n", "subject": "s"})
        self.assertEqual(status, 201, created)
        room_id = created["id"]
        status, sent = request(port, "POST", f"/api/rooms/{room_id}/messages", alice, {"body": "survives"})
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        self.assertEqual(status, 200, sent)
        self.start(str(config))
        until_answers(port, "/api/rooms", alice)
        status, history = request(port, "GET", f"/api/rooms/{room_id}/messages", alice)
        self.assertEqual(status, 200, history)
        self.assertEqual([m["id"] for m in history if m["type"] == "message"], [sent["id"]])

    def test_message_survives_sigkill_after_200(self) -> None:
        """SIGKILL right after a 200 for a room message: once restarted, the room archive has the message."""
        return threads.deferToThread(self.scenario)  # type: ignore[return-value]

    def test_component_without_secret_stops_start_up(self) -> None:
        """twistd bridge with the component on and no secret exits with one line naming muclight.secret."""
        path = Path(self.mktemp() + ".toml").resolve()
        path.write_text(f'[storage]\nurl = "sqlite://{path}.sqlite3"\n[http]\nendpoint = "tcp:0:interface=127.0.0.1"\n')
        environment = {key: "" for key in ("BRIDGE_MUCLIGHT_SECRET",)}
        process = twistd("bridge", "--config", str(path), env=environment)
        output, _ = process.communicate(timeout=30)
        self.assertNotEqual(process.returncode, 0)
        lines = output.decode().strip().splitlines()
        self.assertEqual(len(lines), 1, output)
        self.assertTrue(lines[0].startswith("bridge: muclight.secret: "), lines[0])
