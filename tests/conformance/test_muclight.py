"""muc_light_SUITE's client-side scenarios, as raw MUC Light stanzas from plain XMPP clients
to the bridge's own MUC Light component (the harness's ``muclight.localhost``).

Each scenario starts as MongooseIM's does: Alice, Bob and Kate online, and a room
owned by Alice with Bob and Kate as members (except where the scenario needs no room).
"""

from __future__ import annotations

import contextlib

from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.xish import domish

from tests.conformance.helpers import (
    NS_AFFILIATIONS,
    NS_BLOCKING,
    NS_CONFIGURATION,
    NS_DESTROY,
    NS_DISCO_INFO,
    NS_DISCO_ITEMS,
    NS_INFO,
    NS_MAM_1,
    NS_MAM_2,
    NS_MUCLIGHT,
    NS_RSM,
    ConformanceCase,
    affiliations_query,
    blocking_query,
    child_text,
    config_query,
    create_query,
    fresh_id,
    groupchat,
    next_groupchat,
    query,
    sleep,
    stanza_error,
    text_element,
    version,
    x_of,
)
from tests.servers.xmpp_client import PlainClient


class MucLightCase(ConformanceCase):
    """Alice, Bob and Kate online; ``self.room`` owned by Alice with Bob and Kate as members."""

    with_room = True

    async def _start(self) -> None:
        await super()._start()
        self.alice_user, self.bob_user, self.kate_user = self.users("alice", "bob", "kate")
        self.alice = await self.online(self.alice_user)
        self.bob = await self.online(self.bob_user)
        self.kate = await self.online(self.kate_user)
        self.everyone = [self.alice, self.bob, self.kate]
        if self.with_room:
            self.room = await self.create_xmpp_room(self.alice, [self.bob, self.kate], fresh_id("testroom"))
            self.version = await self.room_version(self.alice, self.room)

    def jid(self, client: PlainClient) -> str:
        return client.jid.userhost()

    async def mike(self) -> PlainClient:
        return await self.online(self.new_user("mike"))

    async def disco_rooms(self, client: PlainClient) -> list[domish.Element]:
        result = await client.iq("get", query(NS_DISCO_ITEMS), to=self.service)
        self.assertEqual(result["from"], self.service)
        self.assertEqual(result.query.uri, NS_DISCO_ITEMS)
        return list(result.query.elements(NS_DISCO_ITEMS, "item"))

    async def verify_config_notices(self, clients: list[PlainClient], changes: list[tuple[str, str]]) -> None:
        for client in clients:
            notice = await next_groupchat(client)
            self.assertEqual(notice["type"], "groupchat")
            x = x_of(notice, NS_CONFIGURATION)
            assert x is not None, notice.toXml()
            new, old = child_text(x, NS_CONFIGURATION, "version"), child_text(x, NS_CONFIGURATION, "prev-version")
            self.assertIsNotNone(new)
            self.assertIsNotNone(old)
            self.assertNotEqual(new, old)
            for key, value in changes:
                self.assertEqual(child_text(x, NS_CONFIGURATION, key), value)

    async def set_config_by_each(self, changes: list[tuple[str, str]]) -> None:
        """Each occupant in turn sends the change; every occupant is told each time."""
        for sender in self.everyone:
            await sender.iq("set", config_query(changes), to=self.room)
            await self.verify_config_notices(self.everyone, changes)

    async def user_leave(self, leaver: PlainClient, remaining: list[PlainClient]) -> None:
        await leaver.iq("set", affiliations_query([(self.jid(leaver), "none")]), to=self.room)
        await self.expect_aff_bcast(remaining, {self.jid(leaver): "none"}, self.room)


class EntityTests(MucLightCase):
    async def test_disco_service(self) -> None:
        """Ports disco_service: the user's server lists the MUC Light service in its disco#items."""
        result = await self.alice.iq("get", query(NS_DISCO_ITEMS), to=self.server.domain)
        self.assertEqual(result["from"], self.server.domain)
        self.assertIn(self.service, [item["jid"] for item in result.query.elements(NS_DISCO_ITEMS, "item")])

    async def service_features(self) -> list[str]:
        result = await self.alice.iq("get", query(NS_DISCO_INFO), to=self.service)
        self.assertEqual(result["from"], self.service)
        identity = next(result.query.elements(NS_DISCO_INFO, "identity"))
        self.assertEqual(identity["category"], "conference")
        return [feature["var"] for feature in result.query.elements(NS_DISCO_INFO, "feature")]

    async def test_disco_features(self) -> None:
        """Ports disco_features: the service's disco#info has a conference identity and the MUC Light feature."""
        self.assertIn(NS_MUCLIGHT, await self.service_features())

    async def test_disco_features_with_mam(self) -> None:
        """Ports disco_features_with_mam: with room archives the service also advertises MAM (mam:1 and mam:2)."""
        features = await self.service_features()
        for feature in (NS_MUCLIGHT, NS_MAM_1, NS_MAM_2):
            self.assertIn(feature, features)

    async def room_features(self) -> list[str]:
        result = await self.alice.iq("get", query(NS_DISCO_INFO), to=self.room)
        return [feature["var"] for feature in result.query.elements(NS_DISCO_INFO, "feature")]

    async def test_disco_info(self) -> None:
        """Ports disco_info: a room's disco#info has the MUC Light feature."""
        self.assertIn(NS_MUCLIGHT, await self.room_features())

    async def test_disco_info_with_mam(self) -> None:
        """Ports disco_info_with_mam: a room's disco#info also advertises MAM (mam:1 and mam:2)."""
        features = await self.room_features()
        for feature in (NS_MUCLIGHT, NS_MAM_1, NS_MAM_2):
            self.assertIn(feature, features)

    async def test_disco_rooms(self) -> None:
        """Ports disco_rooms: disco#items lists only the rooms the user is in, with their versions."""
        await self.create_xmpp_room(self.kate, [], fresh_id("testroom2"))
        (item,) = await self.disco_rooms(self.alice)
        self.assertEqual((item["jid"], item["version"]), (self.room, self.version))

    async def test_disco_rooms_created_page_infinity(self) -> None:
        """Ports disco_rooms_created_page_infinity: a user in one room gets exactly that room."""
        (item,) = await self.disco_rooms(self.alice)
        self.assertEqual(item["jid"], self.room)

    async def test_disco_rooms_rsm(self) -> None:
        """Ports disco_rooms_rsm: disco#items pages with RSM (max, before, after); a bad after is item-not-found."""
        second = await self.create_xmpp_room(self.alice, [self.bob, self.kate], fresh_id("testroom2"))

        async def page(*rsm: domish.Element) -> list[str]:
            rsm_set = domish.Element((NS_RSM, "set"))
            for element in rsm:
                rsm_set.addChild(element)
            result = await self.alice.iq("get", query(NS_DISCO_ITEMS, rsm_set), to=self.service)
            self.assertIsNotNone(next(result.query.elements(NS_RSM, "set"), None), result.toXml())
            return [item["jid"] for item in result.query.elements(NS_DISCO_ITEMS, "item")]

        self.assertEqual(await page(text_element(NS_RSM, "max", "1")), [self.room])
        self.assertEqual(await page(text_element(NS_RSM, "max", "1"), domish.Element((NS_RSM, "before"))), [second])
        self.assertEqual(
            await page(text_element(NS_RSM, "max", "10"), text_element(NS_RSM, "after", self.room)), [second]
        )
        bad = query(NS_DISCO_ITEMS, domish.Element((NS_RSM, "set")))
        bad.set.addChild(text_element(NS_RSM, "max", "10"))
        bad.set.addChild(text_element(NS_RSM, "after", "oops@" + self.service))
        self.assertEqual(await stanza_error(self.alice.iq("get", bad, to=self.service)), ("cancel", "item-not-found"))

    async def test_unauthorized_stanza(self) -> None:
        """Ports unauthorized_stanza: a groupchat to a room the sender is not in bounces as cancel/item-not-found."""
        other = await self.create_xmpp_room(self.kate, [], fresh_id("testroom2"))
        self.alice.send(groupchat(other, "malicious"))
        bounce = await next_groupchat(self.alice)
        self.assertEqual(bounce["type"], "error")
        self.assertEqual((bounce.error["type"], bounce.error.firstChildElement().name), ("cancel", "item-not-found"))
        await self.no_stanzas(self.alice, self.kate)


class RoomlessEntityTests(MucLightCase):
    with_room = False

    async def test_disco_rooms_empty_page_infinity(self) -> None:
        """Ports disco_rooms_empty_page_infinity: a user in no room gets an empty disco#items."""
        self.assertEqual(await self.disco_rooms(self.alice), [])


class OccupantTests(MucLightCase):
    async def test_send_message(self) -> None:
        """Ports send_message: each occupant's groupchat reaches every occupant from room/sender, keeping its id."""
        for sender in self.everyone:
            self.alice.inbox.pending.clear()
            sender.send(groupchat(self.room, "Heyah!", "MyID"))
            for client in self.everyone:
                message = await next_groupchat(client)
                self.assertEqual((message["type"], str(message.body), message["id"]), ("groupchat", "Heyah!", "MyID"))
                self.assertEqual(message["from"], f"{self.room}/{self.jid(sender)}")

    async def test_change_subject(self) -> None:
        """Ports change_subject: every occupant may set the subject, and everyone is told each change."""
        await self.set_config_by_each([("subject", "new subject")])

    async def test_change_roomname(self) -> None:
        """Ports change_roomname: the owner renames the room; reading the configuration shows a roomname."""
        await self.alice.iq("set", config_query([("roomname", "new_test_room")]), to=self.room)
        await next_groupchat(self.alice)
        result = await self.alice.iq(
            "get", query(NS_CONFIGURATION, version(NS_CONFIGURATION, self.version)), to=self.room
        )
        self.assertEqual(child_text(result.query, NS_CONFIGURATION, "roomname"), "new_test_room")

    async def test_set_config_deny(self) -> None:
        """Ports set_config_deny: a member may not rename the room (cancel/not-allowed) and nobody is told anything."""
        refused = await stanza_error(self.kate.iq("set", config_query([("roomname", "new subject")]), to=self.room))
        self.assertEqual(refused, ("cancel", "not-allowed"))
        await self.no_stanzas(*self.everyone)

    async def test_get_room_config(self) -> None:
        """Ports get_room_config: an old version gets version and configuration; the current one, nothing."""
        for client in self.everyone:
            result = await client.iq("get", query(NS_CONFIGURATION, version(NS_CONFIGURATION, "oldver")), to=self.room)
            self.assertEqual(result.query.uri, NS_CONFIGURATION)
            self.assertEqual(child_text(result.query, NS_CONFIGURATION, "version"), self.version)
            self.assertEqual(child_text(result.query, NS_CONFIGURATION, "roomname"), "Test room")
        same = await self.bob.iq("get", query(NS_CONFIGURATION, version(NS_CONFIGURATION, self.version)), to=self.room)
        self.assertEqual((same["type"], same.query), ("result", None))

    def occupants_of(self, element: domish.Element, ns: str) -> dict[str, str]:
        return {str(user): user["affiliation"] for user in element.elements(ns, "user")}

    def default_affiliations(self) -> dict[str, str]:
        return {self.jid(self.alice): "owner", self.jid(self.bob): "member", self.jid(self.kate): "member"}

    async def test_get_room_occupants(self) -> None:
        """Ports get_room_occupants: an old version gets the version and every affiliation; the current one, nothing."""
        for client in self.everyone:
            result = await client.iq("get", query(NS_AFFILIATIONS, version(NS_AFFILIATIONS, "oldver")), to=self.room)
            self.assertEqual(child_text(result.query, NS_AFFILIATIONS, "version"), self.version)
            self.assertEqual(self.occupants_of(result.query, NS_AFFILIATIONS), self.default_affiliations())
        same = await self.bob.iq("get", query(NS_AFFILIATIONS, version(NS_AFFILIATIONS, self.version)), to=self.room)
        self.assertEqual((same["type"], same.query), ("result", None))

    async def test_get_room_info(self) -> None:
        """Ports get_room_info: an old version gets version, configuration and occupants; the current one, nothing."""
        for client in self.everyone:
            result = await client.iq("get", query(NS_INFO, version(NS_INFO, "oldver")), to=self.room)
            self.assertEqual(result.query.uri, NS_INFO)
            self.assertEqual(child_text(result.query, NS_INFO, "version"), self.version)
            occupants = next(result.query.elements(NS_INFO, "occupants"))
            self.assertEqual(self.occupants_of(occupants, NS_INFO), self.default_affiliations())
            configuration = next(result.query.elements(NS_INFO, "configuration"))
            self.assertEqual(child_text(configuration, NS_INFO, "roomname"), "Test room")
        same = await self.bob.iq("get", query(NS_AFFILIATIONS, version(NS_AFFILIATIONS, self.version)), to=self.room)
        self.assertEqual((same["type"], same.query), ("result", None))

    async def test_leave_room(self) -> None:
        """Ports leave_room: occupants leave one by one, owner last; outsiders hear nothing; the room is then gone."""
        occupants = list(self.everyone)
        outsiders: list[PlainClient] = []
        for leaver in (self.kate, self.bob, self.alice):
            occupants.remove(leaver)
            await self.user_leave(leaver, occupants)
            await self.no_stanzas(*outsiders, wait=0.1)
            outsiders.append(leaver)
        refused = await stanza_error(self.alice.iq("get", query(NS_INFO), to=self.room))
        self.assertEqual(refused[1], "item-not-found")

    async def test_change_other_aff_deny(self) -> None:
        """Ports change_other_aff_deny: a member may not remove, promote, demote or (by default) invite others."""
        mike = await self.mike()
        for changes in (
            [(self.jid(self.bob), "none")],
            [(self.jid(self.alice), "member"), (self.jid(self.kate), "owner")],
            [(self.jid(mike), "member")],
        ):
            refused = await stanza_error(self.kate.iq("set", affiliations_query(changes), to=self.room))
            self.assertEqual(refused, ("cancel", "not-allowed"))
        await self.no_stanzas(*self.everyone, mike)


class AllCanConfigureTests(MucLightCase):
    bridge_sections = {"muclight": {"all_can_configure": True}}

    async def test_all_can_configure(self) -> None:
        """Ports all_can_configure: with all_can_configure every occupant may rename the room."""
        await self.set_config_by_each([("roomname", "new subject")])


class OwnerTests(MucLightCase):
    async def test_create_room(self) -> None:
        """Ports create_room: a room created with a given id and two members tells all three their affiliations."""
        room_jid = self.room_jid(fresh_id("bobroom"))
        create = create_query(
            {"roomname": "Bob's room"}, [(self.jid(self.alice), "member"), (self.jid(self.kate), "member")]
        )
        result = await self.bob.iq("set", create, to=room_jid)
        final = {self.jid(self.bob): "owner", self.jid(self.alice): "member", self.jid(self.kate): "member"}
        await self.expect_aff_bcast([self.bob, self.alice, self.kate], final, room_jid)
        self.assertEqual(result["type"], "result")

    async def test_create_room_unique(self) -> None:
        """Ports create_room_unique: a room created at the service JID gets a fresh id and its creator as owner."""
        result = await self.bob.iq("set", create_query({"roomname": "Bob's room"}, []), to=self.service)
        room_jid = result["from"]
        self.assertTrue(room_jid.endswith("@" + self.service), room_jid)
        await self.expect_aff_bcast([self.bob], {self.jid(self.bob): "owner"}, room_jid)

    async def test_create_existing_room_deny(self) -> None:
        """Ports create_existing_room_deny: creating a room that exists is cancel/conflict."""
        refused = await stanza_error(self.bob.iq("set", create_query({}, []), to=self.room))
        self.assertEqual(refused, ("cancel", "conflict"))

    async def destroy(self) -> None:
        await self.alice.iq("set", query(NS_DESTROY), to=self.room)
        everyone_out = {self.jid(c): "none" for c in self.everyone}
        await self.expect_aff_bcast([], everyone_out, self.room, NS_DESTROY)

    async def test_destroy_room(self) -> None:
        """Ports destroy_room: the owner destroys the room; every occupant is told their own removal and the destroy."""
        await self.destroy()

    async def test_destroy_room_get_disco_items_empty(self) -> None:
        """Ports destroy_room_get_disco_items_empty: after the destroy nobody's disco#items lists the room."""
        await self.destroy()
        for client in self.everyone:
            self.assertEqual(await self.disco_rooms(client), [])

    async def test_destroy_room_get_disco_items_one_left(self) -> None:
        """Ports destroy_room_get_disco_items_one_left: after one of two rooms goes, all list the other."""
        other = await self.create_xmpp_room(self.kate, [self.bob, self.alice], fresh_id("testroom2"))
        await self.destroy()
        for client in self.everyone:
            self.assertEqual([item["jid"] for item in await self.disco_rooms(client)], [other])

    async def test_set_config(self) -> None:
        """Ports set_config: the owner renames the room and every occupant is told."""
        await self.alice.iq("set", config_query([("roomname", "The Coven")]), to=self.room)
        await self.verify_config_notices(self.everyone, [("roomname", "The Coven")])

    async def test_assorted_config_doesnt_lead_to_duplication(self) -> None:
        """Ports assorted_config_doesnt_lead_to_duplication: a change naming a field twice stores it once."""
        changes = [("subject", "Elixirs"), ("roomname", "The Coven"), ("subject", "Elixirs")]
        await self.alice.iq("set", config_query(changes), to=self.room)
        await self.verify_config_notices(self.everyone, changes)
        for client in self.everyone:
            result = await client.iq("get", query(NS_CONFIGURATION, version(NS_CONFIGURATION, "oldver")), to=self.room)
            names = [child.name for child in result.query.elements()]
            self.assertEqual(len(names), len(set(names)), names)

    async def test_remove_and_add_users(self) -> None:
        """Ports remove_and_add_users: the owner removes both members, then adds them back; all are told."""
        out = {self.jid(self.bob): "none", self.jid(self.kate): "none"}
        await self.alice.iq("set", affiliations_query(list(out.items())), to=self.room)
        await self.expect_aff_bcast([self.alice], out, self.room)
        back = {self.jid(self.bob): "member", self.jid(self.kate): "member"}
        await self.alice.iq("set", affiliations_query(list(back.items())), to=self.room)
        await self.expect_aff_bcast(self.everyone, back, self.room)

    async def test_explicit_owner_change(self) -> None:
        """Ports explicit_owner_change: the owner leaves, removes Bob and makes Kate owner in one request."""
        changes = {self.jid(self.bob): "none", self.jid(self.alice): "none", self.jid(self.kate): "owner"}
        await self.alice.iq("set", affiliations_query(list(changes.items())), to=self.room)
        await self.expect_aff_bcast([self.kate], changes, self.room)

    async def test_implicit_owner_change(self) -> None:
        """Ports implicit_owner_change: an owner who steps down to member hands ownership to the remaining member."""
        changes = [(self.jid(self.bob), "none"), (self.jid(self.alice), "member")]
        await self.alice.iq("set", affiliations_query(changes), to=self.room)
        told = {self.jid(self.kate): "owner", **dict(changes)}
        await self.expect_aff_bcast([self.kate, self.alice], told, self.room)

    async def test_edge_case_owner_change(self) -> None:
        """Ports edge_case_owner_change: an owner stepping down while removing everyone else stays owner."""
        changes = [(self.jid(self.alice), "member"), (self.jid(self.bob), "none"), (self.jid(self.kate), "none")]
        await self.alice.iq("set", affiliations_query(changes), to=self.room)
        told = {self.jid(self.kate): "none", self.jid(self.bob): "none"}
        await self.expect_aff_bcast([self.alice], told, self.room)

    async def test_adding_wrongly_named_user_triggers_infinite_loop(self) -> None:
        """Ports adding_wrongly_named_user_triggers_infinite_loop: a service JID as occupant loops nothing."""
        create = create_query({}, [("buggyuser@" + self.service, "member")])
        with contextlib.suppress(StanzaError):  # refusing such an occupant is as good as skipping it
            await self.alice.iq("set", create, to=self.room_jid(fresh_id("buggyroom")))
        await sleep(1.0)
        self.assertLessEqual(len(self.alice.inbox.pending), 2, [m.toXml() for m in self.alice.inbox.pending])
        result = await self.alice.iq("get", query(NS_DISCO_INFO), to=self.service)
        self.assertEqual(result["type"], "result")


class MaxOccupantsTests(MucLightCase):
    bridge_sections = {"muclight": {"max_occupants": 3}}

    async def test_max_occupants(self) -> None:
        """Ports max_occupants: growing a room past max_occupants is modify/bad-request, sending nothing."""
        mike = await self.mike()
        members = [(self.jid(c), "member") for c in (self.alice, self.kate, mike)]
        refused = await stanza_error(self.bob.iq("set", create_query({}, members), to=self.service))
        self.assertEqual(refused, ("modify", "bad-request"))
        refused = await stanza_error(
            self.alice.iq("set", affiliations_query([(self.jid(mike), "member")]), to=self.room)
        )
        self.assertEqual(refused, ("modify", "bad-request"))
        await self.no_stanzas(*self.everyone, mike)


class BlockingTests(MucLightCase):
    async def blocklist(self, client: PlainClient) -> set[tuple[str, str, str]]:
        result = await client.iq("get", query(NS_BLOCKING), to=self.service)
        self.assertEqual(result.query.uri, NS_BLOCKING)
        return {(item.name, item["action"], str(item)) for item in result.query.elements()}

    async def test_manage_blocklist(self) -> None:
        """Ports manage_blocklist: users and rooms are denied, listed, then allowed again (an empty list)."""
        self.assertEqual(await self.blocklist(self.alice), set())
        denied = [("user", "deny", "user@" + self.server.domain), ("room", "deny", self.room)]
        await self.alice.iq("set", blocking_query(denied), to=self.service)
        self.assertEqual(await self.blocklist(self.alice), set(denied))
        allowed = [("user", "allow", "user@" + self.server.domain), ("room", "allow", self.room)]
        await self.alice.iq("set", blocking_query(allowed), to=self.service)
        self.assertEqual(await self.blocklist(self.alice), set())

    async def test_block_room(self) -> None:
        """Ports block_room: a user who blocked a room is silently not re-added to it, but can join another."""
        await self.bob.iq("set", blocking_query([("room", "deny", self.room)]), to=self.service)
        await self.user_leave(self.bob, [self.alice, self.kate])
        result = await self.alice.iq("set", affiliations_query([(self.jid(self.bob), "member")]), to=self.room)
        self.assertEqual(result["type"], "result")
        await self.no_stanzas(*self.everyone)
        room_jid = self.room_jid(fresh_id("newroom"))
        await self.alice.iq("set", create_query({}, [(self.jid(self.bob), "member")]), to=room_jid)
        final = {self.jid(self.alice): "owner", self.jid(self.bob): "member"}
        await self.expect_aff_bcast([self.alice, self.bob], final, room_jid)


class BlockUserTests(MucLightCase):
    bridge_sections = {"muclight": {"all_can_invite": True}}

    async def test_block_user(self) -> None:
        """Ports block_user: Alice's blocker is skipped in her new room; Kate may re-add him (all_can_invite)."""
        await self.bob.iq("set", blocking_query([("user", "deny", self.jid(self.alice))]), to=self.service)
        await self.user_leave(self.bob, [self.alice, self.kate])
        room_jid = self.room_jid(fresh_id("new"))
        await self.alice.iq("set", create_query({}, [(self.jid(self.bob), "member")]), to=room_jid)
        await self.expect_aff_bcast([self.alice], {self.jid(self.alice): "owner"}, room_jid)
        await self.no_stanzas(*self.everyone)
        back = {self.jid(self.bob): "member"}
        await self.kate.iq("set", affiliations_query(list(back.items())), to=self.room)
        await self.expect_aff_bcast(self.everyone, back, self.room)
        await self.no_stanzas(*self.everyone)
