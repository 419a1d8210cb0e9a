"""A webhook receiver for the push tests: Twisted web in the test process, HTTP on 127.0.0.1.

It records every POST (headers and raw body) and answers with the next status of
``statuses`` (then 200), so a test can make a webhook fail a few times, or say 410 Gone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site


@dataclass
class Received:
    body: bytes
    signature: str | None
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Receiver(Resource):
    isLeaf = True

    def __init__(self, reactor: Any) -> None:
        super().__init__()
        self.reactor = reactor
        self.statuses: list[int] = []
        # Seconds each answer is held back (a slow webhook).
        self.delay = 0.0
        self.received: list[Received] = []
        self.attempts = 0
        self._waiters: list[tuple[int, defer.Deferred[None]]] = []
        self.port: IListeningPort | None = None

    def render_POST(self, request: Request) -> Any:
        self.attempts += 1
        status = self.statuses.pop(0) if self.statuses else 200
        request.setResponseCode(status)
        if status == 200:
            body = request.content.read()
            signature = request.getHeader("X-Bridge-Signature")
            self.received.append(Received(body, signature, self.reactor.seconds()))
            for wanted, waiter in list(self._waiters):
                if len(self.received) >= wanted and not waiter.called:
                    waiter.callback(None)
        if not self.delay:
            return b""
        self.reactor.callLater(self.delay, lambda: request.finish() if not request.finished else None)
        return NOT_DONE_YET

    async def wait_for(self, count: int, timeout: float) -> None:
        """Until ``count`` notifications were accepted; ``defer.TimeoutError`` after ``timeout`` s."""
        if len(self.received) >= count:
            return
        waiter: defer.Deferred[None] = defer.Deferred()
        self._waiters.append((count, waiter))
        waiter.addTimeout(timeout, self.reactor)
        await waiter

    def listen(self) -> str:
        """Start listening on a free loopback port; the webhook URL."""
        self.port = self.reactor.listenTCP(0, Site(self), interface="127.0.0.1")
        return f"http://127.0.0.1:{self.port.getHost().port}/hook"

    def stop(self) -> Any:
        return self.port.stopListening() if self.port is not None else None
