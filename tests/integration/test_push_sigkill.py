"""A notification queued when the daemon is killed (SIGKILL) is delivered after the restart."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from twisted.internet import reactor, threads
from twisted.trial import unittest

from tests.integration.push_receiver import Receiver
from tests.integration.test_rooms_sigkill import request, until_answers
from tests.servers.fixture import daemon_config, new_user, xmpp_server
from tests.servers.server import free_port
from tests.system.test_twistd import ROOT, TWISTD


class PushSigkillTests(unittest.TestCase):
    timeout = 150

    def start(self, config: Path, log: Path) -> subprocess.Popen[bytes]:
        server = xmpp_server()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "BRIDGE_MUCLIGHT_SECRET": server.component_secret}
        with open(log, "ab") as output:
            process = subprocess.Popen(
                [*TWISTD, "-n", "--pidfile=", "bridge", "--config", str(config)],
                cwd=ROOT,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        self.addCleanup(lambda: process.poll() is None and (process.kill(), process.wait()))
        return process

    def wait(self, condition: Any, seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(what)
            time.sleep(0.1)

    def scenario(self, receiver: Receiver, url: str) -> None:
        server = xmpp_server()
        alice, bob = new_user("alice"), new_user("bob")
        port = free_port()
        work = Path(self.mktemp()).resolve()
        work.mkdir(parents=True)
        config = work / "bridge.toml"
        # Sessions idle out after 1 s, so alice is offline soon after registering.
        config.write_text(
            daemon_config(
                server,
                port,
                f"sqlite://{work}/bridge.sqlite3",
                xmpp="idle_timeout = 1.0\n",
                sections='[push]\nenabled = true\nallowed_hosts = ["127.0.0.1"]\n',
            )
        )
        log = work / "bridge.log"
        process = self.start(config, log)
        until_answers(port, "/api/push", alice)
        receiver.statuses = [500] * 1000
        status, created = request(port, "POST", "/api/push", alice, {"url": url})
        self.assertEqual(status, 201, created)
        self.wait(lambda: "Session closed for " + alice[0] in log.read_text(), 20, "alice's session did not idle out")
        time.sleep(0.5)
        status, sent = request(port, "POST", "/api/messages", bob, {"to": alice[0], "body": "after the crash"})
        self.assertEqual(status, 200, sent)
        self.wait(lambda: receiver.attempts >= 1, 10, "no delivery attempt before the kill")
        time.sleep(0.5)  # the failed attempt's retry is committed
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        receiver.statuses = []
        attempts = receiver.attempts
        self.start(config, log)
        self.wait(
            lambda: len(receiver.received) >= 1, 30, "not delivered after the restart:\n" + log.read_text()[-3000:]
        )
        self.assertGreater(receiver.attempts, attempts)
        got = receiver.received[0].json
        self.assertEqual((got["user"], got["body"]), (alice[0], "after the crash"))
        time.sleep(1.5)
        self.assertEqual(len(receiver.received), 1)
        logged = log.read_text()
        self.assertNotIn(created["secret"], logged)
        self.assertNotIn(alice[1], logged)

    async def test_pending_notification_survives_sigkill(self) -> None:
        """SIGKILL with a notification waiting for a retry: the restarted daemon delivers it, once."""
        receiver = Receiver(reactor)
        url = receiver.listen()
        self.addCleanup(receiver.stop)
        await threads.deferToThread(self.scenario, receiver, url)
