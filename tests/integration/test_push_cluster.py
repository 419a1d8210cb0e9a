"""Two bridges sharing PostgreSQL drain one push queue: every notification is delivered once."""

from __future__ import annotations

import json

from twisted.internet import reactor, task

from bridge.push import worker
from tests.integration.base import BridgeTestCase
from tests.integration.push_receiver import Receiver
from tests.servers.fixture import start_bridge
from tests.servers.postgres import fresh_test_database

PUSH = {"enabled": True, "allowed_hosts": ["127.0.0.1"]}


class SharedQueueTests(BridgeTestCase):
    timeout = 90

    def setUp(self):  # type: ignore[no-untyped-def]
        self.database = fresh_test_database("bridge_push_cluster_")
        self.bridge_sections = {"push": PUSH, "storage": {"url": self.database}}
        return super().setUp()

    async def test_two_processes_deliver_each_notification_once(self) -> None:
        """Sixty queued notifications, two bridges draining the same PostgreSQL queue: each arrives exactly once."""
        # Small batches, so that both processes take part.
        self.patch(worker, "MAX_IN_FLIGHT", 3)
        second = await start_bridge(reactor, self.mktemp(), self.addCleanup, **self.bridge_sections)
        receiver = Receiver(reactor)
        receiver.delay = 0.1  # a slow webhook: one process's three slots are soon full
        url = receiver.listen()
        self.addCleanup(receiver.stop)
        alice = self.new_user("alice")
        reply = await self.call("POST", "/api/push", alice, {"url": url})
        self.assertEqual(reply.code, 201, reply)
        store = self.bridge.parts.push.store  # type: ignore[union-attr]
        await store.enqueue_push([(reply.json["id"], json.dumps({"n": n})) for n in range(60)])
        self.bridge.parts.push_worker.wake()  # type: ignore[union-attr]
        second.parts.push_worker.wake()  # type: ignore[union-attr]
        await receiver.wait_for(60, 20.0)
        await task.deferLater(reactor, 1.5, lambda: None)
        numbers = sorted(got.json["n"] for got in receiver.received)
        self.assertEqual(numbers, list(range(60)))
        self.assertEqual(await store.push_queue_stats(), (0, None))
        delivered = [self.delivered(bridge) for bridge in (self.bridge, second)]
        self.assertEqual(sum(delivered), 60)
        self.assertTrue(all(delivered), delivered)

    def delivered(self, bridge: object) -> float:
        metrics = bridge.parts.metrics  # type: ignore[attr-defined]
        value = metrics.registry.get_sample_value("bridge_push_deliveries_total", {"outcome": "delivered"})
        return value or 0.0
