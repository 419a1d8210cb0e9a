"""Contacts through two bridge processes serving the same user (DESIGN.md, "Several
processes"): each process has its own XMPP session of the user, and an answer given
through one must not leave the other claiming, or acting on, what the server dropped.

Checked on Prosody 0.12 and ejabberd 23.01 (``BRIDGE_TEST_SERVER=ejabberd``).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor

from tests.integration.base import Reply, basic
from tests.integration.test_contacts import ContactsTestCase, path, plain_roster, received, send, settle
from tests.servers.fixture import RunningBridge, start_bridge

User = tuple[str, str]


class TwoBridgesTestCase(ContactsTestCase):
    """``self.bridge`` is process A; ``self.other`` is process B (no MUC Light component)."""

    async def _start(self) -> None:
        await super()._start()
        self.other: RunningBridge = await start_bridge(
            reactor, self.mktemp(), self.addCleanup, muclight={"component": False}
        )

    async def call_b(self, method: str, where: str, user: User, body: Any = None) -> Reply:
        import json

        headers = {"Authorization": [basic(*user)]}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = ["application/json"]
        response = await self.other.http.request(method, self.other.url(where), data=data, headers=headers)
        return Reply(response.code, response.headers, await response.content())

    async def contacts_b(self, user: User) -> dict[str, dict[str, Any]]:
        reply = await self.call_b("GET", "/api/contacts", user)
        self.assertEqual(reply.code, 200, reply)
        return {contact["jid"]: contact for contact in reply.json}


class DeclineThenAcceptTests(TwoBridgesTestCase):
    async def pending_on_both(self, alice: User, bob: User) -> Any:
        """Bob (an XMPP client) asks Alice, who lists her contacts through A and through B."""
        self.assertEqual(await self.contacts(alice), {})
        self.assertEqual(await self.contacts_b(alice), {})
        phone = await self.online(bob)
        await send(phone, alice[0], "subscribe")
        pending = {bob[0]: {"jid": bob[0], "subscription": "none", "ask": "in"}}
        self.assertEqual(await self.contacts(alice), pending)
        self.assertEqual(await self.contacts_b(alice), pending)
        return phone

    async def test_decline_via_a_then_accept_via_b(self) -> None:
        """A request declined through process A is gone from B too: B's accept is 404 and Bob gets no subscription."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        phone = await self.pending_on_both(alice, bob)
        declined = await self.call("DELETE", path(bob[0]), alice)
        self.assertEqual(declined.code, 204, declined)
        await settle(phone)
        self.assertEqual(len(received(phone, "unsubscribed", alice[0])), 1)
        self.assertEqual(await self.contacts_b(alice), {})

        accepted = await self.call_b("PUT", path(bob[0]), alice, {"action": "accept"})
        self.assertEqual((accepted.code, accepted.json), (404, "Contact not found"))
        await settle(phone)
        self.assertEqual(received(phone, "subscribed", alice[0]), [])
        self.assertEqual((await plain_roster(phone))[alice[0]]["subscription"], "none")
        self.assertEqual(await self.contacts(alice), {})
        self.assertEqual(await self.contacts_b(alice), {})

    async def test_accept_the_server_does_not_confirm_is_404_and_leaves_no_pre_approval(self) -> None:
        """B still listing a request that is gone answers accept 404, and Bob's next request is not auto-approved."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        phone = await self.pending_on_both(alice, bob)
        # Declined by one of Alice's own XMPP clients: no bridge session is told (the documented limit).
        laptop = await self.client(alice, "laptop")
        await send(laptop, bob[0], "unsubscribed")
        self.assertEqual(await self.contacts_b(alice), {bob[0]: {"jid": bob[0], "subscription": "none", "ask": "in"}})

        accepted = await self.call_b("PUT", path(bob[0]), alice, {"action": "accept"})
        self.assertEqual((accepted.code, accepted.json), (404, "Contact not found"))
        self.assertEqual(await self.contacts_b(alice), {})
        await send(phone, alice[0], "subscribe")
        await settle(phone)
        self.assertEqual(received(phone, "subscribed", alice[0]), [])
        self.assertEqual((await plain_roster(phone))[alice[0]].getAttribute("ask"), "subscribe")
        self.assertEqual(await self.contacts_b(alice), {bob[0]: {"jid": bob[0], "subscription": "none", "ask": "in"}})

    async def test_accept_via_a_is_seen_by_b(self) -> None:
        """A request accepted through A shows as subscription 'from' through B; B's accept again is 204."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        phone = await self.pending_on_both(alice, bob)
        accepted = await self.call("PUT", path(bob[0]), alice, {"action": "accept"})
        self.assertEqual(accepted.code, 204, accepted)
        self.assertEqual(await self.contacts_b(alice), {bob[0]: {"jid": bob[0], "subscription": "from", "ask": "none"}})
        again = await self.call_b("PUT", path(bob[0]), alice, {"action": "accept"})
        self.assertEqual(again.code, 204, again)
        self.assertEqual((await plain_roster(phone))[alice[0]]["subscription"], "to")
