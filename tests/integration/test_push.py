"""Offline push (XEP-0357) through the real server's push module: Prosody's mod_cloud_notify,
ejabberd's mod_push. The bridge is the app server; the server decides when to notify.

The webhook receiver runs in the test process (``tests.integration.push_receiver``).
"""

from __future__ import annotations

import time

from twisted.internet import reactor, task
from twisted.words.protocols.jabber.jid import JID

from bridge.push.signing import verify
from tests.integration.base import BridgeTestCase
from tests.integration.bridge_log import BridgeLog
from tests.integration.push_receiver import Receiver

PUSH = {"enabled": True, "allowed_hosts": ["127.0.0.1"]}


class PushTests(BridgeTestCase):
    bridge_sections = {"push": PUSH}

    async def receiver(self) -> tuple[Receiver, str]:
        receiver = Receiver(reactor)
        url = receiver.listen()
        self.addCleanup(receiver.stop)
        return receiver, url

    async def register(self, user: tuple[str, str], url: str) -> dict[str, str]:
        reply = await self.call("POST", "/api/push", user, {"url": url})
        self.assertEqual(reply.code, 201, reply)
        self.assertEqual(set(reply.json), {"id", "secret"})
        return reply.json

    async def go_offline(self, user: tuple[str, str]) -> None:
        """Close the user's bridge session: she has no stream and no session left anywhere."""
        session = self.bridge.parts.pool.existing(JID(user[0]), user[1])
        if session is not None:
            session.close()
            await session.ended
        # Let the server process the stream's end.
        await task.deferLater(reactor, 0.3, lambda: None)

    async def test_offline_chat_message_is_pushed_signed(self) -> None:
        """A message to a user with nothing online reaches her webhook within 2 s, signed with her secret."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        receiver, url = await self.receiver()
        webhook = await self.register(alice, url)
        listed = await self.call("GET", "/api/push", alice)
        self.assertEqual((listed.code, listed.json), (200, [{"id": webhook["id"], "url": url}]))
        await self.go_offline(alice)
        started = reactor.seconds()
        sent = await self.call("POST", "/api/messages", bob, {"to": alice[0], "body": "wake up"})
        self.assertEqual(sent.code, 200, sent)
        await receiver.wait_for(1, 2.0)
        self.assertLess(receiver.received[0].at - started, 2.0)
        got = receiver.received[0]
        self.assertTrue(verify(got.body, webhook["secret"], got.signature or ""), got)
        data = got.json
        self.assertEqual((data["user"], data["id"]), (alice[0], webhook["id"]))
        self.assertLessEqual(set(data), {"user", "id", "count", "from", "body"})
        # Both harnesses have the server include the sender and the body (etc/*push*).
        self.assertEqual(data["body"], "wake up")
        self.assertEqual(JID(data["from"]).userhost(), bob[0])

    async def test_room_message_for_offline_occupant_is_pushed(self) -> None:
        """A room message reaches an offline occupant's webhook (queued by the component) with the room id."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        receiver, url = await self.receiver()
        webhook = await self.register(alice, url)
        created = await self.call("POST", "/api/rooms", bob, {"name": "team", "subject": "s"})
        self.assertEqual(created.code, 201, created)
        room = created.json["id"]
        added = await self.call("POST", f"/api/rooms/{room}/users", bob, {"user": alice[0]})
        self.assertEqual(added.code, 204, added)
        await self.go_offline(alice)
        sent = await self.call("POST", f"/api/rooms/{room}/messages", bob, {"body": "room news"})
        self.assertEqual(sent.code, 200, sent)
        await receiver.wait_for(1, 2.0)
        got = receiver.received[0]
        self.assertTrue(verify(got.body, webhook["secret"], got.signature or ""), got)
        self.assertEqual(
            got.json,
            {"user": alice[0], "id": webhook["id"], "count": 1, "from": bob[0], "body": "room news", "room": room},
        )

    async def test_webhook_failing_three_times_gets_it_once(self) -> None:
        """A receiver answering 500 three times and then 200 gets the notification delivered exactly once."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        receiver, url = await self.receiver()
        receiver.statuses = [500, 500, 500]
        await self.register(alice, url)
        await self.go_offline(alice)
        sent = await self.call("POST", "/api/messages", bob, {"to": alice[0], "body": "retry me"})
        self.assertEqual(sent.code, 200, sent)
        # Retries after about 1.25-2.5, 2.5-5 and 5-10 s.
        await receiver.wait_for(1, 25.0)
        await task.deferLater(reactor, 1.0, lambda: None)
        self.assertEqual((receiver.attempts, len(receiver.received)), (4, 1))

    async def test_disallowed_host_is_403_and_nothing_enabled(self) -> None:
        """A webhook on a host outside push.allowed_hosts is 403 "Webhook host not allowed" and not stored."""
        alice = self.new_user("alice")
        reply = await self.call("POST", "/api/push", alice, {"url": "https://evil.example/hook"})
        self.assertEqual((reply.code, reply.json), (403, "Webhook host not allowed"), reply)
        reply = await self.call("POST", "/api/push", alice, {"url": "http://10.0.0.1/hook"})
        self.assertEqual((reply.code, reply.json), (400, "Invalid webhook URL"), reply)
        listed = await self.call("GET", "/api/push", alice)
        self.assertEqual((listed.code, listed.json), (200, []))

    async def test_deleted_webhook_gets_nothing(self) -> None:
        """After DELETE /api/push/{id} (204) an offline message notifies nobody, and a second DELETE is 404."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        receiver, url = await self.receiver()
        webhook = await self.register(alice, url)
        removed = await self.call("DELETE", f"/api/push/{webhook['id']}", alice)
        self.assertEqual(removed.code, 204, removed)
        again = await self.call("DELETE", f"/api/push/{webhook['id']}", alice)
        self.assertEqual(again.code, 404, again)
        await self.go_offline(alice)
        sent = await self.call("POST", "/api/messages", bob, {"to": alice[0], "body": "nobody hears"})
        self.assertEqual(sent.code, 200, sent)
        await task.deferLater(reactor, 1.5, lambda: None)
        self.assertEqual(receiver.attempts, 0)

    async def test_gone_webhook_is_removed_and_push_disabled(self) -> None:
        """A 410 Gone marks the webhook gone; her next session removes it and disables push on the server."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        receiver, url = await self.receiver()
        receiver.statuses = [410]
        await self.register(alice, url)
        await self.go_offline(alice)
        await self.call("POST", "/api/messages", bob, {"to": alice[0], "body": "first"})
        deadline = time.monotonic() + 5
        while receiver.attempts < 1 and time.monotonic() < deadline:
            await task.deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(receiver.attempts, 1)
        await task.deferLater(reactor, 0.3, lambda: None)
        # Her next session (this request opens one) finishes the job.
        listed = await self.call("GET", "/api/push", alice)
        self.assertEqual((listed.code, listed.json), (200, []))
        await task.deferLater(reactor, 0.5, lambda: None)
        self.assertEqual(await self.bridge.parts.push.store.user_webhooks(alice[0]), [])  # type: ignore[union-attr]
        await self.go_offline(alice)
        await self.call("POST", "/api/messages", bob, {"to": alice[0], "body": "second"})
        await task.deferLater(reactor, 1.5, lambda: None)
        self.assertEqual(receiver.attempts, 1)


class PushHostileTests(BridgeTestCase):
    bridge_sections = {"push": PUSH}

    async def test_hostile_bodies_are_4xx_without_tracebacks(self) -> None:
        """Hostile bodies and ids on /api/push get a 4xx with a JSON string, never a 500 or a logged traceback."""
        log = BridgeLog(self.addCleanup)
        alice = self.new_user("alice")
        cases: list[tuple[str, str, bytes]] = [
            ("POST", "/api/push", b""),
            ("POST", "/api/push", b"{"),
            ("POST", "/api/push", b"\xff\xfe"),
            ("POST", "/api/push", b"[]"),
            ("POST", "/api/push", b'"https://127.0.0.1/"'),
            ("POST", "/api/push", b'{"url": {"a": 1}}'),
            ("POST", "/api/push", b'{"url": "http://127.0.0.1:99999/"}'),
            ("POST", "/api/push", b'{"url": "http://127.0.0.1/\\u0000"}'),
            ("POST", "/api/push", b'{"url": "http://[::1/"}'),
            ("POST", "/api/push", b'{"url": "' + b"a" * 60000 + b'"}'),
            ("POST", "/api/push", b"[" * 5000 + b"]" * 5000),
            ("DELETE", "/api/push/%00", b""),
            ("DELETE", "/api/push/" + "x" * 2000, b""),
            ("DELETE", "/api/push/..%2f..%2fetc", b""),
        ]
        for method, path, raw in cases:
            reply = await self.call(method, path, alice, raw=raw or None)
            self.assertTrue(400 <= reply.code < 500, (method, path, raw[:40], reply))
            self.assertIsInstance(reply.json, str, reply)
        self.assertEqual(log.tracebacks(), [])


class PushDisabledTests(BridgeTestCase):
    async def test_routes_answer_404_when_push_is_off(self) -> None:
        """With [push] enabled = false, /api/push answers 404 "Push notifications are not enabled"."""
        alice = self.new_user("alice")
        reply = await self.call("POST", "/api/push", alice, {"url": "http://127.0.0.1/hook"})
        self.assertEqual((reply.code, reply.json), (404, "Push notifications are not enabled"), reply)
