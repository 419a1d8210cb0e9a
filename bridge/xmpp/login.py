"""Stream set-up for a user session: RFC 6120 STARTTLS, SASL and resource binding.

Twisted's ``XMPPAuthenticator`` always requires TLS and happily sends SASL PLAIN on any
stream. The bridge needs the admin's ``xmpp.tls`` policy instead, and must never put a
user's password on an unencrypted stream unless the admin chose ``tls = "disabled"``.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.words.protocols.jabber import client, sasl, sasl_mechanisms, xmlstream
from twisted.words.protocols.jabber.jid import JID


class PlaintextRefused(sasl.SASLError):
    """The stream is not encrypted and the only mechanism offered would send the password."""


def acknowledge_promptly(transport: Any) -> None:
    """Acknowledge every TCP segment from the server at once instead of up to 40 ms later.

    Servers that leave Nagle's algorithm on (Prosody's default) hold a small write back
    until their previous one is acknowledged, and Linux delays acknowledgements on a
    connection that just sent something. With TLS 1.3 the server's session tickets are
    such a previous write: the stream features after STARTTLS arrived 40 ms late, and so
    could any answer that follows another stanza. TCP_QUICKACK is not sticky, so it is set
    again after each read (which also sends an acknowledgement still pending).
    """
    sock = getattr(transport, "socket", None)
    protocol = getattr(transport, "protocol", None)
    if sock is None or protocol is None or not hasattr(socket, "TCP_QUICKACK"):
        return
    received = protocol.dataReceived

    def data_received(data: bytes) -> None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        received(data)

    protocol.dataReceived = data_received


class _TLSInitializer(xmlstream.TLSInitiatingInitializer):
    """STARTTLS that records on the authenticator whether the stream is now encrypted."""

    def onProceed(self, obj: object) -> None:
        super().onProceed(obj)
        self.xmlstream.authenticator.encrypted = True
        # startTLS put the TLS protocol between the socket and the stream.
        acknowledge_promptly(self.xmlstream.transport)


class _SASLInitializer(sasl.SASLInitiatingInitializer):
    """SASL that only sends PLAIN over TLS, or when TLS was switched off deliberately."""

    def setMechanism(self) -> None:
        authenticator = self.xmlstream.authenticator
        mechanisms = sasl.get_mechanisms(self.xmlstream)
        jid, password = authenticator.jid, authenticator.password
        plain_allowed = authenticator.encrypted or authenticator.tls_mode == "disabled"
        mechanism: sasl_mechanisms.ISASLMechanism
        if "PLAIN" in mechanisms and plain_allowed:
            mechanism = sasl_mechanisms.Plain(None, jid.user, password)
        elif "DIGEST-MD5" in mechanisms:
            mechanism = sasl_mechanisms.DigestMD5("xmpp", jid.host, None, jid.user, password)
        elif "PLAIN" in mechanisms:
            raise PlaintextRefused("the stream is not encrypted; refusing to send the password")
        else:
            raise sasl.SASLNoAcceptableMechanism()
        self.mechanism = mechanism  # type: ignore[assignment]  # Twisted's attribute is inferred as DigestMD5


class _SessionInitializer(client.SessionInitializer):
    """RFC 3921 session establishment only where the server still needs it.

    RFC 6121 dropped it; servers that still advertise it mark it ``<optional/>`` (RFC 3921
    errata, draft-cridland-xmpp-session), as Prosody and ejabberd do: then the round trip
    it costs every login is skipped.
    """

    def start(self) -> Any:
        feature = self.xmlstream.features.get(self.feature)
        if feature is not None and any(child.name == "optional" for child in feature.elements()):
            return None
        return super().start()


class SessionAuthenticator(client.XMPPAuthenticator):
    """Client stream initialisation under the bridge's TLS policy.

    ``tls_mode`` is ``required`` (STARTTLS or fail), ``optional`` (STARTTLS when offered)
    or ``disabled`` (never STARTTLS).
    """

    encrypted = False

    def __init__(
        self,
        jid: JID,
        password: str,
        tls_mode: str,
        tls_options: IOpenSSLClientConnectionCreator | None,
    ) -> None:
        super().__init__(jid, password, configurationForTLS=tls_options)
        self.tls_mode = tls_mode

    def associateWithStream(self, xs: xmlstream.XmlStream) -> None:
        xmlstream.ConnectAuthenticator.associateWithStream(self, xs)
        tls = _TLSInitializer(xs, required=self.tls_mode == "required", configurationForTLS=self._configurationForTLS)
        tls.wanted = self.tls_mode != "disabled"
        xs.initializers = [
            client.CheckVersionInitializer(xs),
            tls,
            _SASLInitializer(xs, required=True),
            client.BindInitializer(xs, required=True),
            _SessionInitializer(xs, required=False),
        ]
