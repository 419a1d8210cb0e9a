"""Client message ids (DESIGN.md, "Idempotent retries"): what ``bridge.api.input.client_id``
accepts, and that ``build_message`` sends it as the stanza id."""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest
from twisted.words.protocols.jabber.jid import JID

from bridge.api.errors import BadRequest
from bridge.api.input import client_id
from bridge.protocol.convert import build_message


class ClientIdTests(unittest.TestCase):
    def test_valid_ids_are_returned_as_given(self) -> None:
        """Any 1-64 characters of [A-Za-z0-9_.:-] are the id, unchanged; no id is None."""
        for value in ("a", "Z9", "retry:2024-01-01T10.00_x", "-", ".", ":", "_", "x" * 64):
            self.assertEqual(client_id({"id": value}), value)
        self.assertIsNone(client_id({}))
        self.assertIsNone(client_id({"id": None}))

    def test_invalid_ids_are_400_invalid_id(self) -> None:
        """Wrong types, empty, over 64 characters or any other character is 400 "Invalid id"."""
        bad: list[Any] = [1, 1.5, True, False, [], ["a"], {}, "", "x" * 65, "a b", "a/b", "a@b", "a+b"]
        bad += ["a\x00", "a\n", "\ud800", "<a>", "a'b", "a%20", "\u0661", "\u00e9", "\uff21"]
        for value in bad:
            with self.assertRaises(BadRequest) as caught:
                client_id({"id": value})
            self.assertEqual((caught.exception.status, caught.exception.message), (400, "Invalid id"), value)

    def test_build_message_uses_the_client_id(self) -> None:
        """build_message sends message_id as the stanza id, and a fresh id without one."""
        self.assertEqual(build_message(JID("bob@localhost"), "hi", message_id="retry-1")["id"], "retry-1")
        first, second = (build_message(JID("bob@localhost"), "hi")["id"] for _ in range(2))
        self.assertNotEqual(first, second)
