"""The webhook POST on the real reactor against local servers: address checks at delivery,
no redirects, timeouts, per-host concurrency, and the signature header."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.protocol import Factory, Protocol
from twisted.trial import unittest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from bridge.config import PushConfig
from bridge.push.client import Outcome, WebhookClient
from bridge.push.signing import verify


class Hook(Resource):
    isLeaf = True

    def __init__(self, status: int = 200, hold: float = 0.0) -> None:
        super().__init__()
        self.status, self.hold = status, hold
        self.bodies: list[tuple[bytes, str | None]] = []
        self.active = self.peak = 0

    def render_POST(self, request: Request) -> Any:
        self.bodies.append((request.content.read(), request.getHeader("X-Bridge-Signature")))
        request.setResponseCode(self.status)
        if self.status == 302:
            request.setHeader("Location", "http://127.0.0.1:1/elsewhere")
        if not self.hold:
            return b""
        self.active += 1
        self.peak = max(self.peak, self.active)

        def done() -> None:
            self.active -= 1
            request.finish()

        reactor.callLater(self.hold, done)
        return NOT_DONE_YET


class ClientTests(unittest.TestCase):
    def serve(self, hook: Resource | Factory) -> int:
        factory = Site(hook) if isinstance(hook, Resource) else hook
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return port.getHost().port

    def client(self, **changes: Any) -> WebhookClient:
        config = PushConfig(enabled=True, allowed_hosts=changes.pop("allowed", ["127.0.0.1", "localhost"]), **changes)
        client = WebhookClient(reactor, config)
        self.addCleanup(lambda: defer.Deferred.fromCoroutine(client.close()))
        return client

    async def test_signed_post_is_delivered(self) -> None:
        """A 2xx is delivered; the body arrives as sent with a signature the secret verifies."""
        hook = Hook()
        port = self.serve(hook)
        outcome, _ = await self.client().post(f"http://127.0.0.1:{port}/x", b'{"a":1}', "k")
        self.assertEqual(outcome, Outcome.DELIVERED)
        ((body, signature),) = hook.bodies
        self.assertEqual(body, b'{"a":1}')
        self.assertTrue(verify(body, "k", signature or ""))

    async def test_statuses(self) -> None:
        """410 is gone; a redirect is not followed but failed; 500 failed."""
        for status, expected in [(410, Outcome.GONE), (302, Outcome.FAILED), (500, Outcome.FAILED)]:
            port = self.serve(Hook(status))
            outcome, _ = await self.client().post(f"http://127.0.0.1:{port}/x", b"{}", "k")
            self.assertEqual(outcome, expected, status)

    async def test_name_resolving_to_loopback_is_refused(self) -> None:
        """A listed name that resolves to a loopback address is never connected to (DNS rebinding)."""
        hook = Hook()
        port = self.serve(hook)
        outcome, why = await self.client().post(f"https://localhost:{port}/x", b"{}", "k")
        self.assertEqual((outcome, why), (Outcome.REFUSED, "address not allowed"))
        self.assertEqual(hook.bodies, [])

    async def test_host_no_longer_listed_is_refused(self) -> None:
        """A webhook whose host left push.allowed_hosts is refused without a connection."""
        hook = Hook()
        port = self.serve(hook)
        outcome, _ = await self.client(allowed=["other.example"]).post(f"http://127.0.0.1:{port}/x", b"{}", "k")
        self.assertEqual(outcome, Outcome.REFUSED)
        self.assertEqual(hook.bodies, [])

    async def test_silent_server_times_out(self) -> None:
        """A server that accepts and never answers fails the delivery after the timeouts."""
        port = self.serve(Factory.forProtocol(Protocol))
        started = reactor.seconds()
        outcome, why = await self.client(connect_timeout=0.2, response_timeout=0.3).post(
            f"http://127.0.0.1:{port}/x", b"{}", "k"
        )
        self.assertEqual((outcome, why), (Outcome.FAILED, "timed out"))
        self.assertLess(reactor.seconds() - started, 3)

    async def test_per_host_concurrency(self) -> None:
        """No more than push.per_host deliveries to one host run at once."""
        hook = Hook(hold=0.2)
        port = self.serve(hook)
        client = self.client(per_host=2)
        posts = [defer.Deferred.fromCoroutine(client.post(f"http://127.0.0.1:{port}/x", b"{}", "k")) for _ in range(6)]
        results = await defer.gatherResults(posts)
        self.assertEqual([outcome for outcome, _ in results], [Outcome.DELIVERED] * 6)
        self.assertEqual(hook.peak, 2)
        await task.deferLater(reactor, 0, lambda: None)
