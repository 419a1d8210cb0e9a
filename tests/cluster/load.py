"""The mixed load of the cluster tier, as REST clients behind HAProxy would make it.

Senders post one-to-one and room messages with a client ``id`` each, retrying with the same
id until they get a 200 (DESIGN.md, "Idempotent retries"), so a bridge killed mid-request
costs a retry, not a message. Followers keep an event stream open and reconnect with
``Last-Event-ID`` when it breaks, as ``EventSource`` does. Every body is unique, so the
checks count by body.
"""

from __future__ import annotations

import contextlib
import json
import time
from base64 import b64encode
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import treq
from twisted.internet import defer, protocol, task
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http_headers import Headers

# A request that has not answered by then is retried: longer than the bridge's own 5 s
# round-trip timeout, so that a slow answer is not mistaken for a dead bridge.
REQUEST_TIMEOUT = 8.0
# A message not acknowledged by then counts as given up (the checks allow none).
GIVE_UP = 40.0


def basic(jid: str, password: str) -> str:
    return "Basic " + b64encode(f"{jid}:{password}".encode()).decode()


@dataclass
class User:
    jid: str
    password: str

    @property
    def auth(self) -> str:
        return basic(self.jid, self.password)


class Http:
    """JSON requests through one connection pool; every call has a timeout."""

    def __init__(self, reactor: Any, base: str) -> None:
        self.reactor = reactor
        self.base = base
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = 64
        self.client = treq.client.HTTPClient(Agent(reactor, pool=self.pool))

    async def call(self, method: str, path: str, user: User, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": [user.auth]}
        data = None
        if body is not None:
            headers["Content-Type"] = ["application/json"]
            data = json.dumps(body).encode()
        request = self.client.request(method, self.base + path, headers=headers, data=data)
        request.addTimeout(REQUEST_TIMEOUT, self.reactor)
        response = await request
        content = await treq.content(response)
        try:
            return response.code, json.loads(content) if content else None
        except ValueError:
            return response.code, content

    async def close(self) -> None:
        await self.pool.closeCachedConnections()


@dataclass
class Sent:
    """One message a sender got a 200 for, and what it took."""

    body: str
    to: str  # a bare JID, or "room"
    sender: str
    acked_at: float
    attempts: int


@dataclass
class Ledger:
    """What the load did, for the final checks."""

    sent: list[Sent] = field(default_factory=list)
    gave_up: list[str] = field(default_factory=list)
    failed_attempts: Counter[int | str] = field(default_factory=Counter)


async def send_until_acked(
    http: Http, reactor: Any, ledger: Ledger, user: User, path: str, body: dict[str, Any], to: str
) -> None:
    """POST ``body`` (with its client id) until a 200, as a careful client does."""
    deadline = time.monotonic() + GIVE_UP
    attempts = 0
    while time.monotonic() < deadline:
        attempts += 1
        try:
            code, _ = await http.call("POST", path, user, body)
        except Exception as e:  # connection refused or reset by a dying bridge, timeouts
            ledger.failed_attempts[type(e).__name__] += 1
            code = 0
        if code == 200:
            ledger.sent.append(Sent(body["body"], to, user.jid, time.monotonic(), attempts))
            return
        if code:
            ledger.failed_attempts[code] += 1
        await task.deferLater(reactor, 0.3, lambda: None)
    ledger.gave_up.append(body["body"])


class _Lines(protocol.Protocol):
    def __init__(self, follower: Follower) -> None:
        self.follower = follower
        self.buffer = b""
        self.ended: defer.Deferred[None] = defer.Deferred()
        self.event: dict[str, str] = {}

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            self.line(line.decode("utf-8").rstrip("\r"))

    def line(self, line: str) -> None:
        if not line:
            if "data" in self.event or "event" in self.event:
                self.follower.received(self.event)
            elif "id" in self.event:
                self.follower.last_id = self.event["id"]
            self.event = {}
            return
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        self.event[name] = value[1:] if value.startswith(" ") else value

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.ended.callback(None)


@dataclass
class Follower:
    """One user's event stream, reopened with ``Last-Event-ID`` whenever it breaks."""

    user: User
    use_token: bool = False
    last_id: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    resets: list[float] = field(default_factory=list)
    connected_at: list[float] = field(default_factory=list)
    stopped: bool = False
    _reader: _Lines | None = None
    _response: Any = None

    def received(self, event: dict[str, str]) -> None:
        if "id" in event:
            self.last_id = event["id"]
        name = event.get("event", "message")
        if name == "reset":
            self.resets.append(time.monotonic())
        try:
            data = json.loads(event.get("data", "null"))
        except ValueError:
            data = None
        self.events.append({"event": name, "id": event.get("id"), "data": data, "at": time.monotonic()})

    def bodies(self, name: str) -> Counter[str]:
        return Counter(e["data"].get("body") for e in self.events if e["event"] == name and isinstance(e["data"], dict))

    def twice(self, name: str) -> list[str]:
        """Bodies that came twice with no ``reset`` between the copies. After a reset the
        client re-reads the archive and dedupes by id anyway: a room whose component took a
        retry over from a process that died re-sends what that process may have sent."""
        seen: dict[str, float] = {}
        found = []
        for event in self.events:
            if event["event"] != name or not isinstance(event["data"], dict):
                continue
            body = event["data"].get("body")
            if body in seen and not any(seen[body] < reset <= event["at"] for reset in self.resets):
                found.append(body)
            seen[body] = event["at"]
        return found

    async def run(self, reactor: Any, http: Http) -> None:
        agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
        while not self.stopped:
            # A refused or reset connection (a bridge killed under it) is retried.
            with contextlib.suppress(Exception):
                await self._open(reactor, http, agent)
            if not self.stopped:
                await task.deferLater(reactor, 0.5, lambda: None)

    async def _open(self, reactor: Any, http: Http, agent: Agent) -> None:
        headers = Headers({"Accept": ["text/event-stream"]})
        url = http.base + "/api/sse"
        if self.use_token:
            code, answer = await http.call("POST", "/api/sse/token", self.user)
            if code != 201:
                return
            url += "?token=" + answer["token"]
        else:
            headers.addRawHeader("Authorization", self.user.auth)
        if self.last_id is not None:
            headers.addRawHeader("Last-Event-ID", self.last_id)
        opening = agent.request(b"GET", url.encode(), headers)
        opening.addTimeout(REQUEST_TIMEOUT, reactor)
        response = await opening
        if response.code != 200:
            await treq.content(response)
            return
        self.connected_at.append(time.monotonic())
        self._reader = _Lines(self)
        self._response = response
        response.deliverBody(self._reader)
        await self._reader.ended

    def stop(self) -> None:
        self.stopped = True
        if self._response is not None and self._reader is not None and not self._reader.ended.called:
            self._reader.transport.stopProducing()


__all__ = ["Follower", "Http", "Ledger", "ResponseDone", "Sent", "User", "send_until_acked"]
