"""The login policy on in-memory streams: TLS modes and when SASL PLAIN may be sent."""

from __future__ import annotations

from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.words.protocols.jabber import xmlstream
from twisted.words.protocols.jabber.jid import JID

from bridge.xmpp.login import PlaintextRefused, SessionAuthenticator
from bridge.xmpp.session import client_endpoint

HEADER = (
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
    b"from='localhost' id='s1' version='1.0'>"
)
STARTTLS = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
STARTTLS_REQUIRED = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"


def mechanisms(*names: str) -> bytes:
    inner = b"".join(b"<mechanism>%s</mechanism>" % n.encode() for n in names)
    return b"<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + inner + b"</mechanisms>"


class LoginPolicyTests(unittest.TestCase):
    def connect(self, tls_mode: str, features: bytes) -> tuple[StringTransport, list[Failure]]:
        """A stream under ``tls_mode`` that has received ``features``; returns what it sent."""
        authenticator = SessionAuthenticator(JID("alice@localhost/rest-1"), "s3cret", tls_mode, None)
        stream = xmlstream.XmlStream(authenticator)
        failures: list[Failure] = []
        stream.addObserver(xmlstream.INIT_FAILED_EVENT, failures.append)
        transport = StringTransport()
        stream.makeConnection(transport)
        stream.dataReceived(HEADER + b"<stream:features>" + features + b"</stream:features>")
        return transport, failures

    def test_optional_without_starttls_refuses_plain(self) -> None:
        """tls=optional on a server without STARTTLS never sends the password in PLAIN."""
        transport, failures = self.connect("optional", mechanisms("PLAIN"))
        self.assertNotIn(b"<auth", transport.value())
        self.assertNotIn(b"s3cret", transport.value())
        self.assertTrue(failures[0].check(PlaintextRefused))

    def test_required_without_starttls_fails(self) -> None:
        """tls=required fails when the server offers no STARTTLS, before any SASL."""
        transport, failures = self.connect("required", mechanisms("PLAIN"))
        self.assertNotIn(b"<auth", transport.value())
        self.assertTrue(failures[0].check(xmlstream.FeatureNotAdvertized))

    def test_required_sends_starttls(self) -> None:
        """tls=required starts TLS when offered."""
        transport, failures = self.connect("required", STARTTLS + mechanisms("PLAIN"))
        self.assertIn(b"<starttls", transport.value())
        self.assertNotIn(b"<auth", transport.value())
        self.assertEqual(failures, [])

    def test_optional_sends_starttls_when_offered(self) -> None:
        """tls=optional still uses STARTTLS when the server offers it."""
        transport, _ = self.connect("optional", STARTTLS + mechanisms("PLAIN"))
        self.assertIn(b"<starttls", transport.value())

    def test_disabled_sends_plain(self) -> None:
        """tls=disabled, the admin's explicit choice, sends PLAIN without TLS."""
        transport, failures = self.connect("disabled", STARTTLS + mechanisms("PLAIN"))
        self.assertNotIn(b"<starttls", transport.value())
        self.assertIn(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>", transport.value())
        self.assertEqual(failures, [])

    def test_disabled_against_server_requiring_tls(self) -> None:
        """tls=disabled against a server that requires TLS fails cleanly."""
        transport, failures = self.connect("disabled", STARTTLS_REQUIRED + mechanisms("PLAIN"))
        self.assertNotIn(b"<auth", transport.value())
        self.assertTrue(failures[0].check(xmlstream.TLSRequired))


class SessionEstablishmentTests(unittest.TestCase):
    def initializer(self, session_feature: bytes) -> tuple[StringTransport, object]:
        """The session initializer of a stream whose features after binding are ``session_feature``."""
        from bridge.xmpp.login import _SessionInitializer

        stream = xmlstream.XmlStream(xmlstream.ConnectAuthenticator("localhost"))
        transport = StringTransport()
        stream.makeConnection(transport)
        stream.dataReceived(HEADER)
        features: list[object] = []
        stream.addObserver("/features", features.append)
        stream.dataReceived(b"<stream:features>" + session_feature + b"</stream:features>")
        stream.features = {(e.uri, e.name): e for e in features[0].elements()}  # type: ignore[attr-defined]
        transport.clear()
        return transport, _SessionInitializer(stream, required=False).initialize()

    def test_optional_session_is_skipped(self) -> None:
        """A session feature marked optional costs no round trip: nothing is sent."""
        transport, result = self.initializer(
            b"<session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session>"
        )
        self.assertIsNone(result)
        self.assertEqual(transport.value(), b"")

    def test_mandatory_session_is_established(self) -> None:
        """A session feature without optional (an RFC 3921 server) is still established."""
        transport, _ = self.initializer(b"<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/>")
        self.assertIn(b"urn:ietf:params:xml:ns:xmpp-session", transport.value())


class EndpointTests(unittest.TestCase):
    """Sessions connect to an address without a name lookup, and to a name with one."""

    def test_addresses_get_a_tcp_endpoint_and_names_a_hostname_endpoint(self) -> None:
        reactor = MemoryReactorClock()
        self.assertIsInstance(client_endpoint(reactor, "127.0.0.1", 5222, 5.0), TCP4ClientEndpoint)
        self.assertIsInstance(client_endpoint(reactor, "::1", 5222, 5.0), TCP6ClientEndpoint)
        self.assertIsInstance(client_endpoint(reactor, "xmpp.example", 5222, 5.0), HostnameEndpoint)

    def test_an_address_is_connected_to_with_the_timeout(self) -> None:
        reactor = MemoryReactorClock()
        client_endpoint(reactor, "127.0.0.1", 5222, 7.5).connect(Factory.forProtocol(Protocol))
        host, port, _, timeout, _ = reactor.tcpClients[0]
        self.assertEqual((host, port, timeout), ("127.0.0.1", 5222, 7.5))
