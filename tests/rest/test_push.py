"""``/api/push`` (webhooks for offline notifications, XEP-0357): the REST contract.

The user's server behind the fake session is a few canned IQ answers (disco, enable,
disable); what Prosody and ejabberd do is tests/integration/test_push.py's.
"""

from __future__ import annotations

from twisted.logger import formatEvent, globalLogPublisher
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from tests.rest.fakes import BOB, RestTestCase, ServerTimeout, StanzaError, basic, make_site
from tests.unit.test_push import MemoryPushStore

NS_PUSH = "urn:xmpp:push:0"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
CONFIG = '[push]\nenabled = true\nallowed_hosts = ["hooks.example", "127.0.0.1"]\n'


class FakePushServer:
    """Answers disco#info (with or without ``urn:xmpp:push:0``) and enable/disable."""

    def __init__(self, push: bool = True, refuse: Exception | None = None) -> None:
        self.push = push
        self.refuse = refuse
        self.requests: list[tuple[str, dict[str, str]]] = []

    def __call__(self, stanza_type: str, payload: domish.Element, to: JID | None) -> domish.Element:
        result = domish.Element((None, "iq"))
        result["type"] = "result"
        if payload.uri == DISCO_INFO:
            query = result.addElement((DISCO_INFO, "query"))
            if self.push and to is not None and to.user:
                query.addElement("feature")["var"] = NS_PUSH
            return result
        self.requests.append((payload.name, dict(payload.attributes)))
        if self.refuse is not None:
            raise self.refuse
        return result


class PushTests(RestTestCase):
    def setUp(self) -> None:
        self.store = MemoryPushStore()
        self.bridge = make_site(CONFIG, self.store)
        self.request = self.bridge.request

    def serve(self, server: FakePushServer, user: str | None = None) -> FakePushServer:
        if user is None:
            self.bridge.session().iq_answer = server
        else:
            self.bridge.session(user).iq_answer = server
        return server

    async def test_register_list_and_delete(self) -> None:
        """POST is 201 {id, secret} after enabling push for a fresh node; GET lists it; DELETE 204 disables it."""
        server = self.serve(FakePushServer())
        response, created = await self.request("POST", "/api/push", {"url": "https://hooks.example/a"})
        self.assertEqual(response.code, 201, created)
        self.assertEqual(set(created), {"id", "secret"})
        (stored,) = self.store.webhooks.values()
        self.assertEqual(
            (stored.webhook_id, stored.secret, stored.user), (created["id"], created["secret"], "alice@localhost")
        )
        self.assertEqual(server.requests, [("enable", {"jid": "muclight.localhost", "node": stored.node})])
        self.assertAnswer(
            await self.request("GET", "/api/push"), 200, [{"id": created["id"], "url": "https://hooks.example/a"}]
        )
        self.assertAnswer(await self.request("DELETE", f"/api/push/{created['id']}"), 204)
        self.assertEqual(server.requests[-1], ("disable", {"jid": "muclight.localhost", "node": stored.node}))
        self.assertAnswer(await self.request("GET", "/api/push"), 200, [])
        self.assertAnswer(await self.request("DELETE", f"/api/push/{created['id']}"), 404, "Webhook not found")

    async def test_bad_urls_are_400_and_hosts_403(self) -> None:
        """Missing, malformed or oversized URLs are 400 "Invalid webhook URL", unlisted hosts 403; nothing enabled."""
        server = self.serve(FakePushServer())
        for body in [
            {},
            {"url": None},
            {"url": 5},
            {"url": ""},
            {"url": "ftp://hooks.example/"},
            {"url": "http://hooks.example/"},
            {"url": "https://hooks.example/" + "a" * 5000},
            {"url": {"$ne": 1}},
            {"url": ["https://hooks.example/"]},
            {"url": "https://a@hooks.example/"},
        ]:
            self.assertAnswer(await self.request("POST", "/api/push", body), 400, "Invalid webhook URL")
        self.assertAnswer(
            await self.request("POST", "/api/push", {"url": "https://evil.example/"}), 403, "Webhook host not allowed"
        )
        self.assertAnswer(await self.request("POST", "/api/push", [1, 2]), 400, "Invalid JSON: expected an object")
        response, _ = await self.request(
            "POST", "/api/push", data=b'{"url": "https://hooks.example/"', headers={"Content-Type": "application/json"}
        )
        self.assertEqual(response.code, 400)
        self.assertEqual((server.requests, self.store.webhooks), ([], {}))

    async def test_server_without_push_is_501(self) -> None:
        """A server whose disco lacks urn:xmpp:push:0 is 501 with the contract's string; nothing is stored."""
        self.serve(FakePushServer(push=False))
        self.assertAnswer(
            await self.request("POST", "/api/push", {"url": "https://hooks.example/"}),
            501,
            "the XMPP server has no push (XEP-0357)",
        )
        self.assertEqual(self.store.webhooks, {})

    async def test_refused_enable_removes_the_webhook(self) -> None:
        """When the server refuses to enable push the answer maps its error and the webhook is not kept."""
        self.serve(FakePushServer(refuse=StanzaError("not-allowed")))
        response, _ = await self.request("POST", "/api/push", {"url": "https://hooks.example/"})
        self.assertEqual(response.code, 403)
        self.assertEqual(self.store.webhooks, {})
        self.serve(FakePushServer(refuse=ServerTimeout("slow")))
        response, _ = await self.request("POST", "/api/push", {"url": "https://hooks.example/"})
        self.assertEqual(response.code, 504)
        self.assertEqual(self.store.webhooks, {})

    async def test_other_users_webhook_is_404(self) -> None:
        """Bob cannot see or delete alice's webhook."""
        self.serve(FakePushServer())
        self.serve(FakePushServer(), BOB)
        _, created = await self.request("POST", "/api/push", {"url": "https://hooks.example/"})
        self.assertAnswer(await self.request("GET", "/api/push", auth=basic(BOB)), 200, [])
        self.assertAnswer(await self.request("DELETE", f"/api/push/{created['id']}", auth=basic(BOB)), 404)
        self.assertAnswer(await self.request("DELETE", "/api/push/" + "x" * 300), 404)
        self.assertEqual(len(self.store.webhooks), 1)

    async def test_secret_is_never_logged(self) -> None:
        """Registering logs neither the webhook's secret nor the user's password."""
        events: list[dict[str, object]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.serve(FakePushServer())
        _, created = await self.request("POST", "/api/push", {"url": "https://hooks.example/"})
        text = "\n".join(formatEvent(event) or "" for event in events)
        self.assertNotIn(created["secret"], text)
        self.assertNotIn(basic().split()[1], text)

    async def test_needs_credentials(self) -> None:
        """Without credentials every push route is 401."""
        for method in ("GET", "POST"):
            response, _ = await self.request(method, "/api/push", auth=None)
            self.assertEqual(response.code, 401)


class PushDisabledTests(RestTestCase):
    async def test_disabled_routes_are_404_and_send_nothing(self) -> None:
        """With push off, each route answers 404 "Push notifications are not enabled" and no IQ goes out."""
        session = self.bridge.session()
        for method, path, body in [
            ("POST", "/api/push", {"url": "https://h/"}),
            ("GET", "/api/push", None),
            ("DELETE", "/api/push/abc", None),
        ]:
            self.assertAnswer(await self.request(method, path, body), 404, "Push notifications are not enabled")
        self.assertEqual(session.iqs, [])
