"""The push tables of the store on SQLite and PostgreSQL: webhooks, and the delivery queue's leases."""

from __future__ import annotations

import secrets

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from bridge.store import Webhook
from tests.servers.postgres import fresh_test_database
from tests.system.test_store import StoreCase


def webhook(user: str = "a@x", webhook_id: str | None = None) -> Webhook:
    return Webhook(webhook_id or secrets.token_hex(4), user, "https://h.example/x", "s3cret", secrets.token_hex(6))


class PushStoreTests(StoreCase):
    """Mixed into a TestCase that provides ``url()``."""

    async def test_webhooks_round_trip_limit_and_removal(self) -> None:
        """Webhooks are stored per user up to the limit, found by node, and removed with their queued deliveries."""
        clock = Clock()
        store = await self.open(clock)
        first, second = webhook(), webhook()
        self.assertTrue(await store.add_webhook(first, 2))
        clock.advance(1)  # oldest first: ids are random, so equal times have no order
        self.assertTrue(await store.add_webhook(second, 2))
        self.assertFalse(await store.add_webhook(webhook(), 2))
        self.assertTrue(await store.add_webhook(webhook("b@x"), 2))
        found = await store.user_webhooks("a@x")
        self.assertEqual([w.webhook_id for w in found], [first.webhook_id, second.webhook_id])
        self.assertEqual(found[0].secret, "s3cret")
        self.assertEqual((await store.webhook_by_node(first.node)).webhook_id, first.webhook_id)  # type: ignore[union-attr]
        self.assertIsNone(await store.webhook_by_node("nope"))
        await store.enqueue_push([(first.webhook_id, "{}")])
        self.assertIsNone(await store.remove_webhook("b@x", first.webhook_id))
        self.assertIsNotNone(await store.remove_webhook("a@x", first.webhook_id))
        self.assertEqual((await store.push_queue_stats())[0], 0)

    async def test_claim_leases_and_retry(self) -> None:
        """A claimed delivery is invisible to other claimants until its lease runs out or it is released for a retry."""
        clock = Clock()
        clock.advance(1_000_000)
        store = await self.open(clock)
        hook = webhook()
        await store.add_webhook(hook, 10)
        await store.enqueue_push([(hook.webhook_id, '{"n":1}'), (hook.webhook_id, '{"n":2}')])
        self.assertEqual(await store.push_queue_stats(), (2, 1_000_000_000))
        first = await store.claim_push("p1", 30, 1)
        self.assertEqual([p.payload for p in first], ['{"n":1}'])
        self.assertEqual(first[0].webhook.url, hook.url)
        second = await store.claim_push("p2", 30, 10)
        self.assertEqual([p.payload for p in second], ['{"n":2}'])
        self.assertEqual(await store.claim_push("p3", 30, 10), [])
        # p1 fails: due again in 5 s, with one attempt counted.
        await store.retry_push(first[0].delivery_id, clock.seconds() + 5)
        self.assertEqual(await store.claim_push("p3", 30, 10), [])
        clock.advance(5)
        again = await store.claim_push("p3", 30, 10)
        self.assertEqual([(p.payload, p.attempts) for p in again], [('{"n":1}', 1)])
        # p2 died holding its row: once the lease is over someone else gets it.
        clock.advance(26)
        self.assertEqual([p.payload for p in await store.claim_push("p4", 30, 10)], ['{"n":2}'])
        for pending in again:
            await store.finish_push(pending.delivery_id)
        self.assertEqual((await store.push_queue_stats())[0], 1)

    async def test_gone_webhook_drops_its_queue(self) -> None:
        """Marking a webhook gone keeps it (for the next session) and drops its queued deliveries."""
        store = await self.open()
        hook = webhook()
        await store.add_webhook(hook, 10)
        await store.enqueue_push([(hook.webhook_id, "{}")])
        await store.webhook_gone(hook.webhook_id)
        (stored,) = await store.user_webhooks("a@x")
        self.assertTrue(stored.gone)
        self.assertEqual(await store.push_queue_stats(), (0, None))

    async def test_concurrent_claims_never_share_a_row(self) -> None:
        """Claims racing from several processes (connections) never hand out one delivery twice."""
        stores = [await self.open() for _ in range(3)]
        hook = webhook()
        await stores[0].add_webhook(hook, 10)
        await stores[0].enqueue_push([(hook.webhook_id, str(n)) for n in range(60)])
        batches = await defer.gatherResults(
            [
                defer.Deferred.fromCoroutine(s.claim_push(f"p{i}-{j}", 60, 7))
                for j in range(4)
                for i, s in enumerate(stores)
            ]
            + [defer.Deferred.fromCoroutine(stores[0].claim_push("last", 60, 60))]
        )
        ids = [p.delivery_id for batch in batches for p in batch]
        self.assertEqual(len(ids), len(set(ids)))
        self.assertEqual(len(ids), 60)


class SqlitePushStoreTests(PushStoreTests, unittest.TestCase):
    def url(self) -> str:
        if not hasattr(self, "_path"):
            self._path = self.mktemp() + "/store.sqlite3"
        return "sqlite://" + self._path


class PostgresPushStoreTests(PushStoreTests, unittest.TestCase):
    def setUp(self) -> None:
        self._url = fresh_test_database("bridge_push_")

    def url(self) -> str:
        return self._url
