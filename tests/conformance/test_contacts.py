"""rest_client_SUITE's roster scenarios: contacts over /api/contacts, watched by the users'
ordinary XMPP clients (which get roster pushes and subscription presences)."""

from __future__ import annotations

from typing import Any

from twisted.words.xish import domish

from tests.conformance.helpers import (
    NS_ROSTER,
    ConformanceCase,
    User,
    contact_path,
    next_presence,
    next_roster_push,
    round_trip,
)
from tests.servers.xmpp_client import PlainClient


def contact(jid: str, subscription: str = "none", ask: str = "none") -> dict[str, str]:
    return {"jid": jid, "subscription": subscription, "ask": ask}


def presence(to: str, presence_type: str) -> domish.Element:
    element = domish.Element((None, "presence"))
    element["to"], element["type"] = to, presence_type
    return element


class RosterTests(ConformanceCase):
    async def online(self, user: User, resource: str = "phone") -> PlainClient:
        """A client as real ones start: it fetches its roster (so it gets pushes), then goes available."""
        client = await self.client(user, resource)
        await client.iq("get", domish.Element((NS_ROSTER, "query")))
        client.available()
        await round_trip(client)
        return client

    async def roster(self, user: User) -> list[dict[str, Any]]:
        reply = await self.expect("GET", "/api/contacts", user, None, 200)
        return list(reply.json)

    async def add_contact_check_roster_push(self, owner: User, client: PlainClient, jid: str) -> None:
        await self.expect("POST", "/api/contacts", owner, {"jid": jid}, 204)
        push = await next_roster_push(client)
        self.assertEqual(push.query.item["jid"], jid)

    async def assert_subscription_remove(self, client: PlainClient) -> None:
        while True:
            push = await next_roster_push(client)
            if push.query.item.getAttribute("subscription") == "remove":
                return

    async def add_roster_item(self, client: PlainClient, jid: str, name: str) -> None:
        item = domish.Element((NS_ROSTER, "query"))
        added = item.addElement("item")
        added["jid"], added["name"] = jid, name
        await client.iq("set", item)

    async def test_add_contact_and_invite(self) -> None:
        """Ports add_contact_and_invite: add, invite (ask out), the contact accepts: subscription to."""
        alice, bob = self.users("alice", "bob")
        her, his = await self.online(alice), await self.online(bob)
        self.assertEqual(await self.roster(bob), [])
        await self.add_contact_check_roster_push(bob, his, alice[0])
        self.assertEqual(await self.roster(bob), [contact(alice[0])])
        await self.expect("PUT", contact_path(alice[0]), bob, {"action": "invite"}, 204)
        await next_roster_push(his)
        await next_presence(her, "subscribe")
        self.assertEqual(await self.roster(bob), [contact(alice[0], ask="out")])
        await self.add_roster_item(her, bob[0], "Bob")
        her.send(presence(bob[0], "subscribed"))
        push = await next_roster_push(his)
        while push.query.item.getAttribute("subscription") != "to":
            push = await next_roster_push(his)
        self.assertEqual(await self.roster(bob), [contact(alice[0], subscription="to")])

    async def test_add_contact_and_be_invited(self) -> None:
        """Ports add_contact_and_be_invited: the contact's request shows as ask in; accepting sends subscribed."""
        alice, bob = self.users("alice", "bob")
        her, his = await self.online(alice), await self.online(bob)
        self.assertEqual(await self.roster(bob), [])
        await self.add_contact_check_roster_push(bob, his, alice[0])
        self.assertEqual(await self.roster(bob), [contact(alice[0])])
        await self.add_roster_item(her, bob[0], "Bobek")
        her.send(presence(bob[0], "subscribe"))
        await next_presence(his, "subscribe")
        await round_trip(her)
        # RFC 3921 8.2.6 would hide {none, in}; MongooseIM's REST API (and the bridge) show it.
        self.assertEqual(await self.roster(bob), [contact(alice[0], ask="in")])
        await self.expect("PUT", contact_path(alice[0]), bob, {"action": "accept"}, 204)
        await next_roster_push(his)
        await next_presence(her, "subscribed")
        push = await next_roster_push(her)
        while push.query.item.getAttribute("subscription") != "to":
            push = await next_roster_push(her)

    async def test_add_and_remove(self) -> None:
        """Ports add_and_remove: a contact is added, then removed (204); the roster is empty again."""
        alice, bob = self.users("alice", "bob")
        his = await self.online(bob)
        await self.add_contact_check_roster_push(bob, his, alice[0])
        self.assertEqual(await self.roster(bob), [contact(alice[0])])
        await self.expect("DELETE", contact_path(alice[0]), bob, None, 204)
        self.assertEqual(await self.roster(bob), [])
        await self.assert_subscription_remove(his)

    async def test_add_and_remove_some_contacts_properly(self) -> None:
        """Ports add_and_remove_some_contacts_properly: a bulk delete of two of three contacts leaves the third."""
        alice, bob, kate, mike = self.users("alice", "bob", "kate", "mike")
        his = await self.online(bob)
        for other in (alice, kate, mike):
            await self.add_contact_check_roster_push(bob, his, other[0])
        reply = await self.expect("DELETE", "/api/contacts", bob, {"to_delete": [alice[0], kate[0]]}, 200)
        self.assertEqual(reply.json, {"not_deleted": []})
        self.assertEqual(await self.roster(bob), [contact(mike[0])])
        await self.assert_subscription_remove(his)

    async def test_add_and_remove_some_contacts_with_nonexisting(self) -> None:
        """Ports add_and_remove_some_contacts_with_nonexisting: a bulk delete reports the JID not in the roster."""
        alice, bob, kate, mike = self.users("alice", "bob", "kate", "mike")
        his = await self.online(bob)
        for other in (alice, kate):
            await self.add_contact_check_roster_push(bob, his, other[0])
        reply = await self.expect("DELETE", "/api/contacts", bob, {"to_delete": [alice[0], kate[0], mike[0]]}, 200)
        self.assertEqual(reply.json, {"not_deleted": [mike[0]]})
        self.assertEqual(await self.roster(bob), [])
        await self.assert_subscription_remove(his)

    async def test_roster_errors(self) -> None:
        """Ports roster_errors: missing or invalid JID or action are 400s; a contact who does not exist is 404."""
        alice, bob = self.users("alice", "bob")
        zorro = "zorro@" + self.server.domain
        await self.expect("POST", "/api/contacts", bob, {}, 400, "Missing JID")
        await self.expect("POST", "/api/contacts", bob, {"jid": "@invalid"}, 400, "Invalid JID: @invalid")
        await self.expect("PUT", contact_path(alice[0]), bob, {"action": "nosuchaction"}, 400, "Invalid action")
        await self.expect("PUT", contact_path(alice[0]), bob, {}, 400, "Missing action")
        await self.expect("PUT", contact_path(zorro), bob, {"action": "invite"}, 404)
        await self.expect("DELETE", contact_path(zorro), bob, None, 404)
        # MongooseIM answered 404 from its own user database; no stanza without side effects
        # tells the bridge that zorro has no account (bridge/api/contacts.py), so it is added.
        await self.expect("POST", "/api/contacts", bob, {"jid": zorro}, 204)
        await self.expect("GET", contact_path(alice[0]), bob, None, 404)
