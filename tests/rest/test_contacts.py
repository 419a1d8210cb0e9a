"""``/api/contacts`` (DESIGN.md's REST table): the roster and subscriptions, and their errors."""

from __future__ import annotations

from twisted.words.protocols.jabber.jid import JID

from tests.rest.fakes import BOB, Contact, RestTestCase, ServerTimeout, StanzaError


class ContactsTests(RestTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.roster = self.bridge.session().roster

    def add(self, jid: str, subscription: str = "both", name: str | None = None) -> None:
        self.roster.items[jid] = Contact(jid, subscription, "none", name)

    async def test_list_shows_jid_subscription_and_ask(self) -> None:
        """GET /api/contacts answers each roster item as {jid, subscription, ask}, with name and groups when set."""
        self.add(BOB)
        self.roster.items["carol@localhost"] = Contact("carol@localhost", "none", "out", "Carol", ("work",))
        self.assertAnswer(
            await self.request("GET", "/api/contacts"),
            200,
            [
                {"jid": BOB, "subscription": "both", "ask": "none"},
                {"jid": "carol@localhost", "subscription": "none", "ask": "out", "name": "Carol", "groups": ["work"]},
            ],
        )

    async def test_add_is_204_and_sets_the_roster_item(self) -> None:
        """POST /api/contacts {jid} answers 204 and sets the item, with name and groups when given."""
        answer = await self.request("POST", "/api/contacts", {"jid": BOB, "name": "Bob", "groups": ["g"]})
        self.assertAnswer(answer, 204)
        self.assertEqual(self.roster.items[BOB], Contact(BOB, "none", "none", "Bob", ("g",)))

    async def test_add_refuses_missing_and_invalid_jids(self) -> None:
        """A missing JID is 400 "Missing JID"; an invalid one, or the user's own, "Invalid JID: X" with X as given."""
        cases = [
            ({}, "Missing JID"),
            ({"jid": ""}, "Missing JID"),
            ({"jid": "not a jid@"}, "Invalid JID: not a jid@"),
            ({"jid": 7}, "Invalid JID: 7"),
            ({"jid": "alice@localhost"}, "Invalid JID: alice@localhost"),
            ({"jid": BOB, "name": 3}, "Invalid name"),
            ({"jid": BOB, "groups": "g"}, "Invalid groups"),
        ]
        for body, message in cases:
            self.assertAnswer(await self.request("POST", "/api/contacts", body), 400, message)
        self.assertEqual(self.roster.items, {})

    async def test_invite_and_accept_send_subscribe_and_subscribed(self) -> None:
        """PUT /api/contacts/{jid} with invite or accept answers 204 after sending subscribe or subscribed."""
        self.add(BOB, "none")
        self.assertAnswer(await self.request("PUT", f"/api/contacts/{BOB}", {"action": "invite"}), 204)
        self.assertAnswer(await self.request("PUT", f"/api/contacts/{BOB}", {"action": "accept"}), 204)
        self.assertEqual(self.roster.requests, [("subscribe", BOB), ("subscribed", BOB)])

    async def test_accept_the_server_does_not_confirm_is_404(self) -> None:
        """PUT accept answers 404 "Contact not found" when the server had no request to approve (answered elsewhere)."""
        self.add(BOB, "none")
        self.roster.unconfirmed.add(BOB)
        answer = await self.request("PUT", f"/api/contacts/{BOB}", {"action": "accept"})
        self.assertAnswer(answer, 404, "Contact not found")

    async def test_action_errors(self) -> None:
        """Missing or unknown actions are 400; a contact not in the roster is 404 "Contact not found"."""
        self.add(BOB)
        for body, message in (({}, "Missing action"), ({"action": "befriend"}, "Invalid action")):
            self.assertAnswer(await self.request("PUT", f"/api/contacts/{BOB}", body), 400, message)
        answer = await self.request("PUT", "/api/contacts/carol@localhost", {"action": "invite"})
        self.assertAnswer(answer, 404, "Contact not found")
        answer = await self.request("PUT", "/api/contacts/not%20a%20jid@", {"action": "invite"})
        self.assertAnswer(answer, 400, "Invalid JID: not a jid@")
        self.assertEqual(self.roster.requests, [])

    async def test_delete_one_is_204_or_404(self) -> None:
        """DELETE /api/contacts/{jid} answers 204 for a roster item and 404 "Contact not found" otherwise."""
        self.add(BOB)
        self.assertAnswer(await self.request("DELETE", f"/api/contacts/{BOB}"), 204)
        self.assertAnswer(await self.request("DELETE", f"/api/contacts/{BOB}"), 404, "Contact not found")
        self.assertAnswer(await self.request("DELETE", "/api/contacts/@"), 400, "Invalid JID: @")

    async def test_bulk_delete_names_what_was_not_deleted(self) -> None:
        """DELETE /api/contacts {to_delete} answers 200 {not_deleted} with the absent and invalid JIDs as given."""
        self.add(BOB)
        answer = await self.request("DELETE", "/api/contacts", {"to_delete": [BOB, "carol@localhost", "bad@"]})
        self.assertAnswer(answer, 200, {"not_deleted": ["carol@localhost", "bad@"]})
        self.assertEqual(self.roster.items, {})
        self.assertAnswer(await self.request("DELETE", "/api/contacts", {}), 400, "Missing to_delete")
        self.assertAnswer(await self.request("DELETE", "/api/contacts", {"to_delete": BOB}), 400, "Invalid to_delete")

    async def test_roster_errors_from_the_server_map_to_http(self) -> None:
        """A roster operation refused with forbidden is 403, item-not-found 404, and a timeout 504."""
        session = self.bridge.session()
        for failure, status in (
            (StanzaError("forbidden"), 403),
            (StanzaError("item-not-found"), 404),
            (ServerTimeout("no answer"), 504),
        ):
            session.failure = failure
            self.assertAnswer(await self.request("GET", "/api/contacts"), status)
            self.assertAnswer(await self.request("POST", "/api/contacts", {"jid": BOB}), status)

    async def test_unknown_methods_are_405(self) -> None:
        """PATCH on a contact is 405 with the route's methods in Allow."""
        response, body = await self.request("PATCH", f"/api/contacts/{BOB}", {"action": "invite"})
        self.assertEqual((response.code, body), (405, "Method not allowed"))
        self.assertEqual(response.headers.getRawHeaders("allow"), ["DELETE, GET, HEAD, PUT"])

    async def test_contact_jids_are_normalised(self) -> None:
        """A contact JID in the path is stringprepped before the roster sees it (Bob@LocalHost is bob@localhost)."""
        self.add(BOB)
        self.assertAnswer(await self.request("DELETE", "/api/contacts/Bob@LocalHost"), 204)
        self.assertNotIn(JID(BOB).userhost(), self.roster.items)
