"""Headless Chromium for tests, driven through chromedriver's W3C WebDriver HTTP API.

A real browser is the only honest check that ``EventSource``, CORS and stream tokens work
together; a handful of JSON calls to chromedriver (Debian's ``chromium-driver``) are all it
takes, so no WebDriver client library is needed. Everything here is asynchronous, so the
bridge under test keeps running on the same reactor while the browser talks to it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from treq.client import HTTPClient
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.web.client import Agent, HTTPConnectionPool

from tests.servers.server import free_port

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_paths() -> tuple[str, str] | None:
    """(chromium, chromedriver) when both are installed, else None."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        return None
    return chromium, driver


class WebDriverError(Exception):
    """chromedriver answered a command with an error."""


class HeadlessChromium:
    """One chromedriver process and one browser session with a fresh profile."""

    def __init__(self, reactor: Any, chromium: str, driver: str) -> None:
        self._reactor = reactor
        self._chromium = chromium
        self._driver = driver
        self._workdir = Path(tempfile.mkdtemp(prefix="bridge-chromium-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._pool = HTTPConnectionPool(reactor, persistent=False)
        self._http = HTTPClient(Agent(reactor, pool=self._pool))
        self._base = ""
        self._session = ""

    @property
    def log_file(self) -> Path:
        return self._workdir / "chromedriver.log"

    async def start(self) -> None:
        port = free_port()
        self._process = subprocess.Popen(
            [self._driver, f"--port={port}", f"--log-path={self.log_file}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._base = f"http://127.0.0.1:{port}"
        await self._wait_for_port(port, 15.0)
        options = {
            "binary": self._chromium,
            "args": [*CHROMIUM_FLAGS, f"--user-data-dir={self._workdir / 'profile'}"],
        }
        capabilities = {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}
        value = await self._call("POST", "/session", {"capabilities": capabilities})
        self._session = value["sessionId"]

    async def _wait_for_port(self, port: int, timeout: float) -> None:
        deadline = self._reactor.seconds() + timeout
        while True:
            try:
                connected = await connectProtocol(TCP4ClientEndpoint(self._reactor, "127.0.0.1", port), Protocol())
                connected.transport.loseConnection()
                return
            except Exception:
                if self._reactor.seconds() > deadline:
                    raise RuntimeError(f"chromedriver did not listen within {timeout} s") from None
                await deferLater(self._reactor, 0.1)

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = await self._http.request(
            method,
            self._base + path,
            data=json.dumps(body if body is not None else {}).encode() if method == "POST" else None,
            headers={"Content-Type": ["application/json"]},
        )
        answer = json.loads(await response.content() or b"{}")
        value = answer.get("value")
        if response.code >= 400:
            raise WebDriverError(f"{method} {path}: {response.code} {value}")
        return value

    async def get(self, url: str) -> None:
        """Load ``url`` in the browser's tab."""
        await self._call("POST", f"/session/{self._session}/url", {"url": url})

    async def execute(self, script: str, *args: Any) -> Any:
        """Run ``script`` (a function body) in the page and return what it returns."""
        return await self._call(
            "POST", f"/session/{self._session}/execute/sync", {"script": script, "args": list(args)}
        )

    async def stop(self) -> None:
        """Quit the browser and chromedriver, and let the reactor see their connections close."""
        if self._session:
            quitting = defer.Deferred.fromCoroutine(self._call("DELETE", f"/session/{self._session}"))
            with contextlib.suppress(Exception):  # the process is killed below anyway
                await quitting.addTimeout(10, self._reactor)
            self._session = ""
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        self._process = None
        await self._pool.closeCachedConnections()
        await deferLater(self._reactor, 0.3)
        shutil.rmtree(self._workdir, ignore_errors=True)
