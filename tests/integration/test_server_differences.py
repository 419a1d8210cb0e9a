"""Where Prosody 0.12 and 13 and ejabberd 23.01 and 24.12 differ, and how the bridge copes: run on all.

Each test names the server behaviour it covers. ``BRIDGE_TEST_SERVER`` picks the server
(see ``tests.servers.fixture``); every test here passes on either.
"""

from __future__ import annotations

import atexit
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import globalLogPublisher
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bridge.protocol.namespaces import NS_CARBONS, NS_MAM
from bridge.xmpp.capabilities import ServerFeatures, discover
from tests.integration.base import BridgeTestCase
from tests.servers.fixture import XmppServer, new_user, server_class, start_bridge


class LogCapture:
    """The bridge's log events of one namespace, collected while a test runs."""

    def __init__(self, test: Any, namespace: str) -> None:
        self.events: list[dict[str, Any]] = []
        self._namespace = namespace
        globalLogPublisher.addObserver(self._observe)
        test.addCleanup(globalLogPublisher.removeObserver, self._observe)

    def _observe(self, event: dict[str, Any]) -> None:
        if event.get("log_namespace") == self._namespace:
            self.events.append(event)


async def known_features(test: BridgeTestCase, domain: str) -> ServerFeatures:
    """Wait until the bridge has discovered ``domain``'s features."""
    capabilities = test.bridge.parts.capabilities
    assert capabilities is not None
    for _ in range(100):
        found = capabilities.features(domain)
        if found is not None:
            return found
        await deferLater(reactor, 0.05)
    test.fail(f"the bridge never discovered what {domain} offers")


class ArchiveQueryTests(BridgeTestCase):
    async def test_microsecond_stamp_counts_in_its_millisecond(self) -> None:
        """Microsecond stamps (ejabberd; Prosody 13, which floors `end` to seconds): before=stamp+1 returns it."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        sent = await self.call("POST", "/api/messages", alice, {"to": bob[0], "body": "now"})
        (item,) = (await self.call("GET", "/api/messages", alice)).json
        self.assertEqual(item["id"], sent.json["id"])
        stamp = item["timestamp"]
        self.assertIsInstance(stamp, int)
        just_after = await self.call("GET", f"/api/messages?before={stamp + 1}", alice)
        self.assertEqual([m["id"] for m in just_after.json], [sent.json["id"]])
        at = await self.call("GET", f"/api/messages/{bob[0]}?before={stamp}", alice)
        self.assertEqual(at.json, [])

    async def test_limit_above_the_servers_page_cap(self) -> None:
        """ejabberd caps a MAM page at 250 results (Prosody at max_archive_query_results): the bridge pages on."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        phone = await self.client(alice)
        count = 270
        for n in range(count):
            message = domish.Element((None, "message"))
            message["to"], message["type"], message["id"] = bob[0], "chat", f"m{n}"
            message.addElement("body", content=f"body {n}")
            phone.send(message)
        await phone.iq("get", domish.Element(("urn:xmpp:ping", "ping")), to=self.server.domain)
        everything = await self.call("GET", "/api/messages?limit=500", alice)
        self.assertEqual(everything.code, 200, everything)
        self.assertEqual([m["id"] for m in everything.json], [f"m{n}" for n in range(count)])
        latest = await self.call("GET", f"/api/messages/{bob[0]}?limit=260", alice)
        self.assertEqual([m["id"] for m in latest.json], [f"m{n}" for n in range(count - 260, count)])


class CapabilityTests(BridgeTestCase):
    async def test_mam_found_on_the_account_and_carbons_on_the_server(self) -> None:
        """Prosody lists MAM only on the user's bare JID, ejabberd on the server too: the bridge finds both."""
        log = LogCapture(self, "bridge.xmpp.capabilities")
        alice = self.new_user("alice")
        reply = await self.call("GET", "/api/messages", alice)
        self.assertEqual(reply.code, 200, reply)
        found = await known_features(self, self.server.domain)
        self.assertTrue(found.mam and found.carbons, found)
        self.assertEqual(found.missing, [])
        (event,) = log.events
        self.assertEqual(event["log_level"].name, "info")
        # A second user of the same domain does not trigger a second discovery.
        await self.call("GET", "/api/messages", self.new_user("bob"))
        await deferLater(reactor, 0.2)
        self.assertEqual(len(log.events), 1)

    async def test_discovery_asks_server_and_account(self) -> None:
        """Server and account disco#info together list MAM and carbons on the run's server."""
        alice = self.new_user("alice")
        await self.call("GET", "/api/messages", alice)
        session = self.bridge.parts.pool.existing(JID(alice[0]), alice[1])
        assert session is not None
        found = await discover(session)
        self.assertIn(NS_MAM, found.features)
        self.assertIn(NS_CARBONS, found.features)


_without_archive: XmppServer | None = None


def server_without_archive() -> XmppServer:
    """A second server of the run's kind without MAM, started on first use (trial has no setUpClass)."""
    global _without_archive
    if _without_archive is None:
        _without_archive = server_class()(archive="off", privileges=False)
        _without_archive.start()
        atexit.register(_without_archive.cleanup)
    return _without_archive


class WithoutArchiveTests(BridgeTestCase):
    """A server without MAM behind its own bridge."""

    async def _start(self) -> None:
        self.plain = plain = server_without_archive()
        self.bridge = await start_bridge(
            reactor,
            self.mktemp(),
            self.addCleanup,
            xmpp={"port": plain.c2s_port, "ca_file": str(plain.ca_file)},
            muclight={"port": plain.component_port, "secret": plain.component_secret},
        )

    def new_user(self, prefix: str = "user") -> tuple[str, str]:
        return new_user(prefix, self.plain)

    async def test_messages_archive_answers_501_and_is_logged(self) -> None:
        """Without MAM, GET /api/messages answers 501 with a clear message and the bridge logs why once."""
        log = LogCapture(self, "bridge.xmpp.capabilities")
        alice, bob = self.new_user("alice"), self.new_user("bob")
        sent = await self.call("POST", "/api/messages", alice, {"to": bob[0], "body": "still delivered"})
        self.assertEqual(sent.code, 200, sent)
        for path in ("/api/messages", f"/api/messages/{bob[0]}"):
            reply = await self.call("GET", path, alice)
            self.assertEqual(reply.code, 501, reply)
            self.assertEqual(reply.json, "the XMPP server has no message archive (XEP-0313)")
        found = await known_features(self, self.plain.domain)
        self.assertFalse(found.mam)
        self.assertTrue(found.carbons)
        (event,) = log.events
        self.assertEqual(event["log_level"].name, "warn")
        self.assertIn(NS_MAM, event["missing"])
        self.assertIn("GET /api/messages answers 501", event["missing"])
