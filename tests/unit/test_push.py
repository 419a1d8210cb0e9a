"""Offline push units: signing, URL and address checks, the backoff schedule, the config
section, the publish stanza, the component's publish handler and the queue worker on a Clock."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest
from twisted.words.xish import domish

from bridge.config import ConfigError, parse_config
from bridge.protocol.push import NS_PUBSUB, NS_PUSH, disable, enable, parse_publish
from bridge.push.appserver import PushPublishHandler
from bridge.push.backoff import BASE, GIVE_UP, expired, retry_delay
from bridge.push.client import Outcome
from bridge.push.signing import new_secret, signature, verify
from bridge.push.urls import HostNotAllowed, InvalidUrl, address_allowed, check_url
from bridge.push.worker import LEASE, PushWorker
from bridge.store import PendingPush, Webhook
from tests.unit.muclight_stub import SERVICE, HandlerTestCase, MemoryStore

ALLOWED = ["hooks.example", "127.0.0.1", "10.1.2.3"]


class MemoryPushStore(MemoryStore):
    """``MemoryStore`` with the push tables, its times from ``clock``."""

    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__()
        self.clock = clock or Clock()
        self.webhooks: dict[str, Webhook] = {}
        self.queue: dict[int, dict[str, Any]] = {}
        self._next = 0

    async def add_webhook(self, webhook: Webhook, limit: int) -> bool:
        self.webhooks[webhook.webhook_id] = webhook
        return True

    async def user_webhooks(self, user: str) -> list[Webhook]:
        return [w for w in self.webhooks.values() if w.user == user]

    async def webhook_by_node(self, node: str) -> Webhook | None:
        return next((w for w in self.webhooks.values() if w.node == node), None)

    async def remove_webhook(self, user: str, webhook_id: str) -> Webhook | None:
        found = self.webhooks.get(webhook_id)
        if found is None or found.user != user:
            return None
        del self.webhooks[webhook_id]
        return found

    async def webhook_gone(self, webhook_id: str) -> None:
        old = self.webhooks[webhook_id]
        self.webhooks[webhook_id] = Webhook(old.webhook_id, old.user, old.url, old.secret, old.node, 0, True)
        self.queue = {k: v for k, v in self.queue.items() if v["webhook"] != webhook_id}

    async def enqueue_push(self, deliveries: list[tuple[str, str]]) -> None:
        now = self.clock.seconds()
        for webhook_id, payload in deliveries:
            self._next += 1
            self.queue[self._next] = {
                "webhook": webhook_id,
                "payload": payload,
                "created": now,
                "due": now,
                "attempts": 0,
                "lease": 0.0,
            }

    async def claim_push(self, owner: str, lease: float, limit: int) -> list[PendingPush]:
        now = self.clock.seconds()
        found = []
        for key, row in sorted(self.queue.items()):
            if len(found) < limit and row["due"] <= now and row["lease"] <= now:
                row["lease"] = now + lease
                webhook = self.webhooks[row["webhook"]]
                found.append(PendingPush(key, webhook, row["payload"], int(row["created"] * 1000), row["attempts"]))
        return found

    async def finish_push(self, delivery_id: int) -> None:
        self.queue.pop(delivery_id, None)

    async def retry_push(self, delivery_id: int, due: float) -> None:
        row = self.queue[delivery_id]
        row.update(due=due, attempts=row["attempts"] + 1, lease=0.0)

    async def push_queue_stats(self) -> tuple[int, int | None]:
        created = [row["created"] for row in self.queue.values()]
        return len(created), int(min(created) * 1000) if created else None


HOOK = Webhook("w1", "alice@localhost", "https://hooks.example/x", "sekret", "node-1")


class SigningTests(unittest.TestCase):
    def test_signature_is_hmac_sha256_hex_of_the_body(self) -> None:
        """X-Bridge-Signature is "sha256=" and the hex HMAC-SHA256 of the raw body with the secret."""
        body = b'{"user":"a@x"}'
        expected = hmac.new(b"k", body, hashlib.sha256).hexdigest()
        self.assertEqual(signature(body, "k"), "sha256=" + expected)
        self.assertTrue(verify(body, "k", "sha256=" + expected))
        self.assertFalse(verify(body + b" ", "k", "sha256=" + expected))

    def test_secrets_are_fresh_and_long(self) -> None:
        """Each webhook secret is new and carries 256 bits."""
        self.assertNotEqual(new_secret(), new_secret())
        self.assertGreaterEqual(len(new_secret()), 43)


class UrlTests(unittest.TestCase):
    def test_allowed_urls(self) -> None:
        """https to a listed host, and http to a listed loopback literal, are accepted."""
        self.assertEqual(check_url("https://hooks.example/a?b=1", ALLOWED).port, 443)
        self.assertEqual(check_url("https://HOOKS.example:8443/a", ALLOWED).host, "hooks.example")
        self.assertEqual(check_url("http://127.0.0.1:8080/hook", ALLOWED).scheme, "http")

    def test_malformed_urls_are_invalid(self) -> None:
        """Non-strings, other schemes, http to a name or a non-loopback address, user info and junk are InvalidUrl."""
        for url in [
            None,
            5,
            "",
            "hooks.example",
            "ftp://hooks.example/",
            "http://hooks.example/",
            "http://10.1.2.3/",
            "https://user:pw@hooks.example/",
            "https://hooks.example/#f",
            "https://hooks.example:99999/",
            "https://hooks.example:0/",
            "https:///x",
            "https://hooks.example/\x00",
            "https://hooks.example/ a",
            "https://hooks.éxample/",
            "https://[::1/",
            "x" * 3000,
            ["https://hooks.example/"],
        ]:
            with self.assertRaises(InvalidUrl, msg=repr(url)):
                check_url(url, ALLOWED)

    def test_unlisted_hosts_are_not_allowed(self) -> None:
        """A well-formed URL whose host is not listed exactly is HostNotAllowed (no suffix or wildcard match)."""
        for url in [
            "https://evil.example/",
            "https://sub.hooks.example/",
            "https://hooks.example.evil/",
            "http://127.0.0.2/",
            "http://[::1]/",
        ]:
            with self.assertRaises(HostNotAllowed, msg=url):
                check_url(url, ALLOWED)

    def test_resolved_addresses(self) -> None:
        """A listed name may resolve to public addresses only; a private one only as its own listed literal."""
        self.assertTrue(address_allowed("hooks.example", "93.184.216.34", ALLOWED))
        for address in [
            "127.0.0.1",
            "10.0.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "::1",
            "fe80::1",
            "fc00::1",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "::ffff:127.0.0.1",
            "not-an-ip",
        ]:
            self.assertFalse(address_allowed("hooks.example", address, ALLOWED), address)
        self.assertTrue(address_allowed("127.0.0.1", "127.0.0.1", ALLOWED))
        self.assertTrue(address_allowed("10.1.2.3", "10.1.2.3", ALLOWED))
        self.assertFalse(address_allowed("evil.example", "93.184.216.34", ALLOWED))


class BackoffTests(unittest.TestCase):
    def test_schedule(self) -> None:
        """Retries double from within 5 s, with jitter in the upper half, capped, and stop after 24 h."""
        self.assertLessEqual(retry_delay(0, lambda: 0.999), 5.0)
        self.assertEqual(retry_delay(0, lambda: 0.0), BASE / 2)
        self.assertEqual([retry_delay(n, lambda: 1.0) for n in range(4)], [2.5, 5.0, 10.0, 20.0])
        self.assertEqual(retry_delay(100, lambda: 1.0), 1800.0)
        self.assertFalse(expired(0, GIVE_UP - 1))
        self.assertTrue(expired(0, GIVE_UP))


class ConfigTests(unittest.TestCase):
    def test_defaults_and_checks(self) -> None:
        """[push] is off by default; another service than the component's domain, or no component, is refused."""
        self.assertFalse(parse_config("", {}).push.enabled)
        config = parse_config('[push]\nenabled = true\nallowed_hosts = ["hooks.example"]\n', {})
        self.assertEqual(config.push.service_for(config.muclight), "muclight.localhost")
        bad = {
            '[push]\nenabled = true\nservice = "push.example"\n': "push.service",
            "[push]\nenabled = true\n[muclight]\ncomponent = false\n": "push.enabled",
            '[push]\nallowed_hosts = ["*.example"]\n': "push.allowed_hosts[0]",
            '[push]\nallowed_hosts = ["Hooks.example"]\n': "push.allowed_hosts[0]",
            "[push]\nallowed_hosts = 5\n": "push.allowed_hosts",
            "[push]\nper_host = 0\n": "push.per_host",
            "[push]\nresponse_timeout = inf\n": "push.response_timeout",
            "[push]\nsecret = 1\n": "push.secret",
        }
        for text, key in bad.items():
            with self.assertRaises(ConfigError, msg=text) as caught:
                parse_config(text, {})
            self.assertTrue(str(caught.exception).startswith(key + ":"), str(caught.exception))


def publish_iq(node: str | None, body: str | None = "hi", count: str = "1") -> domish.Element:
    pubsub = domish.Element((NS_PUBSUB, "pubsub"))
    publish = pubsub.addElement("publish")
    if node is not None:
        publish["node"] = node
    notification = publish.addElement("item").addElement((NS_PUSH, "notification"))
    form = notification.addElement(("jabber:x:data", "x"))
    form["type"] = "submit"
    for var, value in [
        ("FORM_TYPE", "urn:xmpp:push:summary"),
        ("message-count", count),
        ("last-message-sender", "bob@localhost/phone"),
        ("last-message-body", body),
    ]:
        if value is not None:
            field = form.addElement("field")
            field["var"] = var
            field.addElement("value", content=value)
    return pubsub


class StanzaTests(unittest.TestCase):
    def test_enable_disable_and_publish(self) -> None:
        """enable/disable carry jid and node; a publish's summary form is read, with junk counts ignored."""
        self.assertEqual(enable("push.x", "n1").toXml(), "<enable xmlns='urn:xmpp:push:0' jid='push.x' node='n1'/>")
        self.assertEqual(disable("push.x", "n1")["node"], "n1")
        parsed = parse_publish(publish_iq("n1"))
        assert parsed is not None
        self.assertEqual(
            (parsed.node, parsed.count, parsed.sender, parsed.body), ("n1", 1, "bob@localhost/phone", "hi")
        )
        self.assertIsNone(parse_publish(publish_iq(None)))
        self.assertIsNone(parse_publish(publish_iq("n", count="-3")).count)  # type: ignore[union-attr]
        self.assertIsNone(parse_publish(publish_iq("n", count="9" * 40)).count)  # type: ignore[union-attr]
        self.assertEqual(len(parse_publish(publish_iq("n", body="x" * 10000)).body or ""), 4096)  # type: ignore[union-attr]


class PublishHandlerTests(HandlerTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.store = MemoryPushStore()
        self.store.rooms = {}
        self.component.state.store = self.store
        self.woken = 0
        PushPublishHandler(self.component.state, self.wake).setHandlerParent(self.component.connection)
        self.store.webhooks[HOOK.webhook_id] = HOOK

    def wake(self) -> None:
        self.woken += 1

    def publish(self, sender: str, node: str | None = "node-1") -> domish.Element:
        """Send a publish from exactly ``sender``; its one answer."""
        iq = domish.Element((None, "iq"))
        iq["from"], iq["to"], iq["type"], iq["id"] = sender, SERVICE, "set", "p1"
        iq.addChild(publish_iq(node))
        self.sent.clear()
        self.component.receive(iq)
        (answer,) = [s for s in self.sent if s.name == "iq"]
        return answer

    def test_publish_from_the_users_server_is_queued_and_answered(self) -> None:
        """A publish from the user's domain (as Prosody and ejabberd send it) or bare JID is queued, then answered."""
        for sender in ["localhost", "alice@localhost"]:
            answer = self.publish(sender)
            self.assertEqual(answer["type"], "result", answer.toXml())
        payloads = [json.loads(row["payload"]) for row in self.store.queue.values()]
        self.assertEqual(
            payloads[0],
            {"user": "alice@localhost", "id": "w1", "count": 1, "from": "bob@localhost/phone", "body": "hi"},
        )
        self.assertEqual((len(payloads), self.woken), (2, 2))

    def test_unknown_node_or_other_sender_is_item_not_found(self) -> None:
        """An unknown node, another server, another user or a full JID gets item-not-found and queues nothing."""
        self.assertError(self.publish("localhost", "nope"), "item-not-found")
        for sender in ["evil.example", "bob@localhost", "alice@localhost/res1", "localhost/x", "alice@evil.example"]:
            self.assertError(self.publish(sender), "item-not-found")
        self.assertError(self.publish("localhost", None), "bad-request")
        self.assertEqual(self.store.queue, {})

    def test_room_message_queues_for_offline_occupants_only(self) -> None:
        """Only room occupants the component sees no resource of, and not the sender, get a room notification."""
        from bridge.push.rooms import RoomNotifier
        from bridge.store import Room

        self.component.state.offline_hooks.append(RoomNotifier(self.store, self.wake, self.component.state.track))
        self.store.rooms["r"] = Room("r", "n", "", "v1", (("bob@localhost", "owner"), ("alice@localhost", "member")))
        self.store.archive["r"] = []
        self.message("bob@localhost", f"r@{SERVICE}", body="room news")
        self.assertEqual(self.store.queue, {})  # alice is available (res1)
        self.component.state.available.remove("alice@localhost/res1")
        self.store.archive["r"] = []  # the helper's fixed id would look like a retry
        self.message("bob@localhost", f"r@{SERVICE}", body="room news")
        (row,) = self.store.queue.values()
        self.assertEqual(
            json.loads(row["payload"]),
            {
                "user": "alice@localhost",
                "id": "w1",
                "count": 1,
                "from": "bob@localhost",
                "body": "room news",
                "room": "r",
            },
        )


class ScriptedClient:
    """Answers each post with the next outcome of ``outcomes`` (then delivered), recording the times."""

    def __init__(self, clock: Clock, outcomes: list[Outcome]) -> None:
        self.clock = clock
        self.outcomes = outcomes
        self.posts: list[tuple[float, bytes, str]] = []

    async def post(self, url: str, body: bytes, secret: str) -> tuple[Outcome, str]:
        self.posts.append((self.clock.seconds(), body, secret))
        return (self.outcomes.pop(0) if self.outcomes else Outcome.DELIVERED), "scripted"


class WorkerTests(unittest.TestCase):
    def make(self, outcomes: list[Outcome]) -> tuple[Clock, MemoryPushStore, ScriptedClient, PushWorker, list[str]]:
        clock = Clock()
        store = MemoryPushStore(clock)
        store.webhooks[HOOK.webhook_id] = HOOK
        client = ScriptedClient(clock, outcomes)
        counted: list[str] = []
        gone: list[Webhook] = []
        worker = PushWorker(store, client, clock, on_gone=gone.append, count=counted.append, rand=lambda: 1.0)
        worker.gone = gone  # type: ignore[attr-defined]
        worker.startService()
        self.addCleanup(worker.stopService)
        return clock, store, client, worker, counted

    def enqueue(self, store: MemoryPushStore, worker: PushWorker, payload: str = '{"n":1}') -> None:
        defer.ensureDeferred(store.enqueue_push([(HOOK.webhook_id, payload)]))
        worker.wake()

    def test_delivered_at_once(self) -> None:
        """A queued notification is posted at once with the webhook's secret and leaves the queue."""
        _clock, store, client, worker, counted = self.make([])
        self.enqueue(store, worker)
        self.assertEqual(client.posts, [(0.0, b'{"n":1}', "sekret")])
        self.assertEqual((store.queue, counted), ({}, ["delivered"]))

    def test_backoff_schedule_on_a_clock(self) -> None:
        """Failures are retried after 2.5, 5 and 10 s (no jitter), then delivered once."""
        clock, store, client, worker, counted = self.make([Outcome.FAILED] * 3)
        self.enqueue(store, worker)
        for _ in range(40):
            clock.advance(0.5)
        self.assertEqual([t for t, _, _ in client.posts], [0.0, 2.5, 7.5, 17.5])
        self.assertEqual(counted, ["retried", "retried", "retried", "delivered"])
        self.assertEqual(store.queue, {})

    def test_dropped_after_24_hours(self) -> None:
        """A notification still failing 24 h after it was queued is dropped and counted."""
        clock, store, client, worker, counted = self.make([Outcome.FAILED] * 1000)
        self.enqueue(store, worker)
        for _ in range(60):
            clock.advance(1800)
        self.assertEqual(store.queue, {})
        self.assertEqual(counted[-1], "dropped")
        self.assertLessEqual(client.posts[-1][0], GIVE_UP)

    def test_gone_marks_the_webhook(self) -> None:
        """410 Gone marks the webhook gone, drops its queue and tells the registry; nothing is retried."""
        clock, store, client, worker, counted = self.make([Outcome.GONE])
        self.enqueue(store, worker)
        self.enqueue(store, worker)
        clock.advance(10)
        self.assertTrue(store.webhooks["w1"].gone)
        self.assertEqual((len(client.posts), store.queue, counted), (1, {}, ["gone"]))
        self.assertEqual([w.webhook_id for w in worker.gone], ["w1"])  # type: ignore[attr-defined]

    def test_lease_outlives_a_delivery(self) -> None:
        """The lease is longer than a delivery may take (connect plus response timeouts at their defaults)."""
        config = parse_config("", {}).push
        self.assertGreater(LEASE, config.connect_timeout + config.response_timeout)


class FakeSession:
    """A live user session that records the IQs sent from it."""

    def __init__(self, jid: str) -> None:
        from twisted.words.protocols.jabber.jid import JID

        self.jid = JID(jid + "/rest-1")
        self.alive = True
        self.ended: defer.Deferred[None] = defer.Deferred()
        self.iqs: list[tuple[str, dict[str, str]]] = []

    async def iq(self, stanza_type: str, payload: domish.Element, to: Any = None) -> domish.Element:
        self.iqs.append((payload.name, dict(payload.attributes)))
        return domish.Element((None, "iq"))


class RegistryTests(unittest.TestCase):
    def make(self) -> tuple[MemoryPushStore, Any]:
        from bridge.push.registry import PushRegistry

        store = MemoryPushStore()
        store.webhooks[HOOK.webhook_id] = HOOK
        return store, PushRegistry(store, parse_config("", {}).push, "muclight.localhost")

    def test_gone_with_a_live_session_disables_at_once(self) -> None:
        """A 410 while she has a session here disables push for that node from it and removes the webhook."""
        store, registry = self.make()
        session = FakeSession("alice@localhost")
        registry.session_opened(session)
        defer.ensureDeferred(store.webhook_gone("w1"))
        registry.gone(store.webhooks["w1"])
        self.assertEqual(session.iqs, [("disable", {"jid": "muclight.localhost", "node": "node-1"})])
        self.assertEqual(store.webhooks, {})

    def test_gone_without_a_session_waits_for_the_next(self) -> None:
        """Without a session the gone webhook stays until her next session, which disables push and removes it."""
        store, registry = self.make()
        defer.ensureDeferred(store.webhook_gone("w1"))
        registry.gone(store.webhooks["w1"])
        self.assertIn("w1", store.webhooks)
        session = FakeSession("alice@localhost")
        registry.session_opened(session)
        self.assertEqual(session.iqs, [("disable", {"jid": "muclight.localhost", "node": "node-1"})])
        self.assertEqual(store.webhooks, {})

    def test_ended_session_is_forgotten(self) -> None:
        """A session that ended is not used for a later 410."""
        store, registry = self.make()
        session = FakeSession("alice@localhost")
        registry.session_opened(session)
        session.ended.callback(None)
        defer.ensureDeferred(store.webhook_gone("w1"))
        registry.gone(store.webhooks["w1"])
        self.assertEqual(session.iqs, [])


class MetricsTests(unittest.TestCase):
    def test_push_series(self) -> None:
        """Deliveries are counted by outcome; the queue's depth and oldest age are exported when watched."""
        from bridge.metrics import BridgeMetrics

        metrics = BridgeMetrics("1", [])
        self.assertNotIn(b"bridge_push", metrics.render(None)[0])
        metrics.watch_push_queue(lambda: 3.0, lambda: 12.5)
        metrics.push_delivery("delivered")
        metrics.push_delivery("delivered")
        metrics.push_delivery("dropped")
        text = metrics.render(None)[0].decode()
        self.assertIn('bridge_push_deliveries_total{outcome="delivered"} 2.0', text)
        self.assertIn('bridge_push_deliveries_total{outcome="dropped"} 1.0', text)
        self.assertIn("bridge_push_queue_depth 3.0", text)
        self.assertIn("bridge_push_oldest_pending_seconds 12.5", text)


class HangingClient:
    """A webhook that never answers."""

    def __init__(self) -> None:
        self.posts = 0

    async def post(self, url: str, body: bytes, secret: str) -> tuple[Outcome, str]:
        self.posts += 1
        await defer.Deferred()
        raise AssertionError("never answered")


class WorkerStopTests(unittest.TestCase):
    def test_stop_does_not_wait_for_a_hanging_webhook(self) -> None:
        """Stopping the worker cancels in-flight deliveries at once; the row stays queued for a later claim."""
        clock = Clock()
        store = MemoryPushStore(clock)
        store.webhooks[HOOK.webhook_id] = HOOK
        client = HangingClient()
        worker = PushWorker(store, client, clock)
        worker.startService()
        defer.ensureDeferred(store.enqueue_push([(HOOK.webhook_id, "{}")]))
        worker.wake()
        self.assertEqual(client.posts, 1)
        stopped = worker.stopService()
        self.assertTrue(stopped.called)
        self.assertEqual(len(store.queue), 1)
        self.assertEqual(clock.getDelayedCalls(), [])


class WiringTests(unittest.TestCase):
    def test_build_wires_push_only_when_enabled(self) -> None:
        """With [push] enabled the tree has the registry, the worker and the component's publish handler; off, none."""
        from twisted.internet.testing import MemoryReactorClock

        from bridge.tap import build

        storage = f'[storage]\nurl = "sqlite://{self.mktemp()}/b.sqlite3"\n'
        _, parts = build(
            parse_config(storage + '[push]\nenabled = true\nallowed_hosts = ["h.example"]\n', {}), MemoryReactorClock()
        )
        self.assertIsNotNone(parts.push)
        self.assertIsNotNone(parts.push_worker)
        assert parts.component is not None
        handlers = [h for h in parts.component if isinstance(h, PushPublishHandler)]
        self.assertEqual(len(handlers), 1)
        self.assertEqual(len(handlers[0].state.offline_hooks), 1)
        self.assertEqual(parts.push.service, "muclight.localhost")  # type: ignore[union-attr]
        _, parts = build(parse_config(storage, {}), MemoryReactorClock())
        self.assertIsNone(parts.push)
        assert parts.component is not None
        self.assertEqual([h for h in parts.component if isinstance(h, PushPublishHandler)], [])


class CancelledPostClient:
    """A webhook whose request is cancelled by the stop, as ``WebhookClient`` reports it: failed."""

    async def post(self, url: str, body: bytes, secret: str) -> tuple[Outcome, str]:
        with contextlib.suppress(defer.CancelledError):
            await defer.Deferred()
        return Outcome.FAILED, "cancelled"


class WorkerStopRetryTests(unittest.TestCase):
    def test_delivery_failing_because_of_the_stop_leaves_no_timer(self) -> None:
        """A delivery that fails as the worker stops is released for a retry without scheduling one here."""
        clock = Clock()
        store = MemoryPushStore(clock)
        store.webhooks[HOOK.webhook_id] = HOOK
        worker = PushWorker(store, CancelledPostClient(), clock)
        worker.startService()
        defer.ensureDeferred(store.enqueue_push([(HOOK.webhook_id, "{}")]))
        worker.wake()
        worker.stopService()
        self.assertEqual(clock.getDelayedCalls(), [])
        (row,) = store.queue.values()
        self.assertEqual((row["attempts"], row["lease"]), (1, 0.0))
