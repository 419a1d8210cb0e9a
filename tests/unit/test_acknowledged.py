"""Acknowledged sends on an in-memory session: one ping per reactor turn, one write per batch."""

from __future__ import annotations

import re

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.words.protocols.jabber import xmlstream
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bridge.protocol.xml import StanzaStream
from bridge.xmpp.errors import ServerTimeout, ServerUnavailable
from bridge.xmpp.messages import send_acknowledged
from bridge.xmpp.session import Session

OWN = "alice@localhost/rest-1"
HEADER = (
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
    b" from='localhost' id='s1' version='1.0'>"
)
PING = re.compile(r"<iq type='get' id='([^']+)' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")


class WritesTransport(StringTransport):
    """A transport that counts its writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        super().write(data)


def message(body: str) -> domish.Element:
    element = domish.Element((None, "message"))
    element["to"] = "bob@localhost"
    element["type"] = "chat"
    element.addElement("body", content=body)
    return element


class SessionWire(unittest.TestCase):
    """A bound session on a StanzaStream whose server side is the test."""

    def setUp(self) -> None:
        self.clock = Clock()
        authenticator = xmlstream.ConnectAuthenticator("localhost")
        authenticator.jid = JID(OWN)
        factory = xmlstream.XmlStreamFactory(authenticator)
        factory.protocol = StanzaStream
        self.session = Session(factory, self.clock, timeout=5, jid=JID(OWN))
        self.xs = factory.buildProtocol(None)
        self.transport = WritesTransport()
        self.xs.makeConnection(self.transport)
        self.xs.dataReceived(HEADER)
        self.xs.dispatch(self.xs, xmlstream.STREAM_AUTHD_EVENT)
        self.transport.clear()
        self.transport.writes = 0

    def written(self) -> str:
        return self.transport.value().decode("utf-8")

    def answer(self, ping_id: str, kind: str = "result") -> None:
        self.xs.dataReceived(f"<iq type='{kind}' id='{ping_id}' from='localhost' to='{OWN}'/>".encode())


class AcknowledgedSendTests(SessionWire):
    def test_two_messages_in_one_turn_share_one_ping(self) -> None:
        """Two messages sent in one reactor turn go out with one ping in one write, and its answer acknowledges both."""
        first = defer.Deferred.fromCoroutine(send_acknowledged(self.session, message("one")))
        second = defer.Deferred.fromCoroutine(send_acknowledged(self.session, message("two")))
        self.assertEqual(self.transport.writes, 0)  # nothing before the turn ends
        self.clock.advance(0)
        text = self.written()
        self.assertEqual(self.transport.writes, 1)
        self.assertEqual(len(PING.findall(text)), 1)
        self.assertLess(text.index("one"), text.index("two"))
        self.assertLess(text.index("two"), text.index("<iq"))
        self.assertNoResult(first)
        self.assertNoResult(second)
        self.answer(PING.findall(text)[0])
        self.assertIsNone(self.successResultOf(first))
        self.assertIsNone(self.successResultOf(second))

    def test_stream_end_fails_the_whole_batch(self) -> None:
        """A stream that ends before the ping's answer fails every message waiting on it with ServerUnavailable."""
        first = defer.Deferred.fromCoroutine(send_acknowledged(self.session, message("one")))
        second = defer.Deferred.fromCoroutine(send_acknowledged(self.session, message("two")))
        self.clock.advance(0)
        self.xs.connectionLost(Failure(ConnectionError("gone")))
        self.failureResultOf(first, ServerUnavailable)
        self.failureResultOf(second, ServerUnavailable)

    def test_stream_end_before_the_turn_ends(self) -> None:
        """Messages queued when the stream ends before their ping was written fail; nothing is acknowledged."""
        first = defer.Deferred.fromCoroutine(send_acknowledged(self.session, message("one")))
        self.xs.connectionLost(Failure(ConnectionError("gone")))
        self.clock.advance(0)
        self.failureResultOf(first, ServerUnavailable)

    def test_silent_server_times_out(self) -> None:
        """A ping nobody answers fails the batch with ServerTimeout after the session's timeout."""
        sent = defer.Deferred.fromCoroutine(send_acknowledged(self.session, message("one")))
        self.clock.advance(0)
        self.clock.advance(5)
        self.failureResultOf(sent, ServerTimeout)

    def test_error_answer_acknowledges(self) -> None:
        """An error answer to the ping acknowledges too: the server processed the stream up to it."""
        sent = defer.Deferred.fromCoroutine(send_acknowledged(self.session, message("one")))
        self.clock.advance(0)
        self.answer(PING.findall(self.written())[0], kind="error")
        self.assertIsNone(self.successResultOf(sent))

    def test_next_turn_gets_its_own_ping(self) -> None:
        """A message sent after the batch's ping was written waits for a ping of its own."""
        first = defer.Deferred.fromCoroutine(send_acknowledged(self.session, message("one")))
        self.clock.advance(0)
        first_ping = PING.findall(self.written())[0]
        self.transport.clear()
        second = defer.Deferred.fromCoroutine(send_acknowledged(self.session, message("two")))
        self.clock.advance(0)
        second_ping = PING.findall(self.written())[0]
        self.assertNotEqual(first_ping, second_ping)
        self.answer(first_ping)
        self.successResultOf(first)
        self.assertNoResult(second)
        self.answer(second_ping)
        self.successResultOf(second)

    def test_other_stanzas_keep_their_order(self) -> None:
        """A stanza sent directly while messages wait for their turn's ping is written after them, in one write."""
        defer.Deferred.fromCoroutine(send_acknowledged(self.session, message("one")))
        self.session.send(message("direct"))
        self.assertEqual(self.transport.writes, 1)
        text = self.written()
        self.assertLess(text.index("one"), text.index("direct"))

    def test_cancelled_request_leaves_the_others(self) -> None:
        """A request whose client went away is cancelled alone; the others of its batch are still acknowledged."""
        first = defer.Deferred.fromCoroutine(send_acknowledged(self.session, message("one")))
        second = defer.Deferred.fromCoroutine(send_acknowledged(self.session, message("two")))
        self.clock.advance(0)
        first.cancel()
        self.failureResultOf(first, defer.CancelledError)
        self.answer(PING.findall(self.written())[0])
        self.successResultOf(second)


class PingAnswerTests(SessionWire):
    """The answers to pings: taken without the parser when a chunk is only that, never from anyone else."""

    def ping(self) -> tuple[defer.Deferred[None], str]:
        sent = defer.Deferred.fromCoroutine(send_acknowledged(self.session, message("one")))
        self.clock.advance(0)
        ping_id = PING.findall(self.written())[0]
        self.transport.clear()
        return sent, ping_id

    def test_bare_answer_skips_the_parser(self) -> None:
        """A chunk that is only the ping's answer acknowledges without reaching the XML parser."""
        seen: list[domish.Element] = []
        self.xs.addObserver("/iq", seen.append)
        sent, ping_id = self.ping()
        self.answer(ping_id)
        self.successResultOf(sent)
        self.assertEqual(seen, [])

    def test_parser_state_survives(self) -> None:
        """After an answer taken without the parser, the next stanza is parsed as usual."""
        seen: list[domish.Element] = []
        self.xs.addObserver("/message", seen.append)
        sent, ping_id = self.ping()
        self.xs.dataReceived(f'  <iq id="{ping_id}" type="result" from="localhost" xml:lang="en"/> '.encode())
        self.successResultOf(sent)
        self.xs.dataReceived(b"<message from='bob@localhost'><body>hi</body></message>")
        self.assertEqual([str(m.body) for m in seen], ["hi"])

    def test_answer_inside_other_stanzas(self) -> None:
        """An answer that arrives in one chunk with a message goes through the parser and still acknowledges."""
        seen: list[domish.Element] = []
        self.xs.addObserver("/message", seen.append)
        sent, ping_id = self.ping()
        self.xs.dataReceived(
            b"<message from='bob@localhost'><body>hi</body></message>"
            + f"<iq type='result' id='{ping_id}' from='localhost'/>".encode()
        )
        self.successResultOf(sent)
        self.assertEqual(len(seen), 1)

    def test_answer_split_over_chunks(self) -> None:
        """An answer split over two chunks is parsed and acknowledges."""
        sent, ping_id = self.ping()
        self.xs.dataReceived(f"<iq type='result' id='{ping_id}'".encode())
        self.assertNoResult(sent)
        self.xs.dataReceived(b" from='localhost'/>")
        self.successResultOf(sent)

    def test_answer_from_a_contact_does_not_acknowledge(self) -> None:
        """A result with the ping's id from anyone but the user's server acknowledges nothing, parsed or not."""
        sent, ping_id = self.ping()
        self.xs.dataReceived(f"<iq type='result' id='{ping_id}' from='mallory@localhost/x'/>".encode())
        self.xs.dataReceived(
            f"<message from='m@localhost'/><iq type='result' id='{ping_id}' from='mallory@localhost/x'/>".encode()
        )
        self.assertNoResult(sent)
        self.answer(ping_id)
        self.successResultOf(sent)

    def test_element_inside_a_stanza_is_not_an_answer(self) -> None:
        """A chunk that looks like an answer but continues an open stanza is left to the parser."""
        seen: list[domish.Element] = []
        self.xs.addObserver("/message", seen.append)
        sent, ping_id = self.ping()
        self.xs.dataReceived(b"<message from='bob@localhost'><x xmlns='urn:example'>")
        self.xs.dataReceived(f"<iq type='result' id='{ping_id}' from='localhost'/>".encode())
        self.assertNoResult(sent)
        self.xs.dataReceived(b"</x></message>")
        self.assertEqual(len(seen), 1)
        self.assertNoResult(sent)
