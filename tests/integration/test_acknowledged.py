"""Acknowledged sends against the real server: batched pings, answers taken without the parser."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from tests.integration.base import BridgeTestCase


def chat(to: str, body: str) -> domish.Element:
    message = domish.Element((None, "message"))
    message["to"], message["type"] = to, "chat"
    message.addElement("body", content=body)
    return message


class AcknowledgedTests(BridgeTestCase):
    async def test_one_turn_shares_one_ping_and_one_write(self) -> None:
        """Three messages of one turn go out with one ping in one write; the server's bare answer acknowledges all."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        phone = await self.client(bob)
        phone.available()
        first = await self.call("POST", "/api/messages", alice, {"to": bob[0], "body": "warm-up"})
        self.assertEqual(first.code, 200, first)
        await phone.next_message()
        session = self.bridge.parts.pool.existing(JID(alice[0]), alice[1])
        assert session is not None
        writes: list[bytes] = []
        taken: list[Any] = []
        xs = session.xmlstream
        write, take = xs.transport.write, xs.take_bare_results
        xs.transport.write = lambda data: (writes.append(data), write(data))[1]
        xs.take_bare_results = lambda answers: (taken.append(answers), take(answers))[1]
        sent = [session.send_acknowledged(chat(bob[0], f"m{n}")) for n in range(3)]
        await defer.gatherResults(sent)
        self.assertEqual(len(writes), 1)  # three messages and one ping: one TLS write
        self.assertEqual(len(taken), 1)  # Prosody's answer is a bare result, taken without the parser
        self.assertEqual(len(taken[0]), 1)
        bodies = [str((await phone.next_message()).body) for _ in range(3)]
        self.assertEqual(bodies, ["m0", "m1", "m2"])
