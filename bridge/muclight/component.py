"""The XEP-0114 external component connection, wokkel style: a ``StreamManager`` that the
MUC Light service handler attaches to, and that reconnects on its own.

A server restart, a refused handshake or a refused connection all end in a retry with
exponential backoff (with jitter) capped at ``MAX_DELAY`` seconds, so the rooms are back
within that long of the server. The backoff starts afresh only once a handshake succeeds:
a server that accepts connections but refuses the handshake (Prosody with another
component connected for the name) is not hammered. Why a handshake failed is logged (the stream error's condition, e.g.
``not-authorized`` for a wrong secret), once per change of reason; the secret never is.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IConnector
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import component, xmlstream
from twisted.words.xish import domish
from twisted.words.xish import xmlstream as xish_xmlstream
from wokkel.subprotocols import StreamManager

from bridge.protocol.xml import StanzaStream

log = Logger()

MAX_DELAY = 5

_HINTS = {
    "not-authorized": "the secret does not match the server's component_secret",
    "host-unknown": "the server does not declare this component",
    "conflict": "another component is connected for this name",
    "improper-addressing": "the server does not declare this component",
}


class _Factory(xmlstream.XmlStreamFactory):
    """Reconnecting stream factory: backoff capped at ``MAX_DELAY``, quiet, clock injected."""

    protocol = StanzaStream  # whitespace-preserving serialisation (bridge.protocol.xml.to_xml)
    noisy = False
    maxDelay = MAX_DELAY
    initialDelay = 0.5  # type: ignore[assignment]
    factor = 2.0

    def __init__(self, authenticator: Any, owner: ComponentConnection) -> None:
        super().__init__(authenticator)
        self._owner = owner

    def buildProtocol(self, addr: Any) -> xmlstream.XmlStream:
        # Twisted's XmlStreamFactory resets the delay on every TCP connect, which kept a
        # refused handshake retrying every initialDelay; ComponentConnection._authd resets it.
        return xish_xmlstream.XmlStreamFactoryMixin.buildProtocol(self, addr)

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        self._owner._problem(f"cannot connect: {reason.getErrorMessage()}")
        super().clientConnectionFailed(connector, reason)

    def clientConnectionLost(self, connector: IConnector, reason: Failure) -> None:
        if self.continueTrying:
            self._owner._lost()
        super().clientConnectionLost(connector, reason)


class ComponentConnection(StreamManager, Service):
    """The component's stream to ``host:port`` as ``jid``, reconnected until stopped."""

    def __init__(self, reactor: Any, host: str, port: int, jid: str, secret: str) -> None:
        self._reactor = reactor
        self.host, self.port, self.jid = host, port, jid
        factory = _Factory(component.ConnectComponentAuthenticator(jid, secret), self)
        factory.clock = reactor
        super().__init__(factory, reactor=reactor)
        factory.addBootstrap(xmlstream.STREAM_ERROR_EVENT, self._stream_error)
        factory.addBootstrap(xmlstream.INIT_FAILED_EVENT, self._init_failed)
        self._connector: IConnector | None = None
        self._last_problem: str | None = None
        self.connected: defer.Deferred[None] = defer.Deferred()

    @property
    def alive(self) -> bool:
        return self._initialized and self.xmlstream is not None

    def _authd(self, xs: xmlstream.XmlStream) -> None:
        super()._authd(xs)
        if self._last_problem is not None:
            log.info("MUC Light component {jid} connected again", jid=self.jid)
        else:
            log.info(
                "MUC Light component {jid} connected to {host}:{port}", jid=self.jid, host=self.host, port=self.port
            )
        self._last_problem = None
        self.factory.resetDelay()
        if not self.connected.called:
            self.connected.callback(None)

    def _stream_error(self, reason: Failure) -> None:
        condition = getattr(reason.value, "condition", None) or reason.getErrorMessage()
        hint = _HINTS.get(condition, "")
        self._problem(f"the server refused the component handshake: {condition}" + (f" ({hint})" if hint else ""))

    def _init_failed(self, reason: Failure) -> None:
        self._problem(f"component stream set-up failed: {reason.getErrorMessage()}")
        if self.xmlstream is not None and self.xmlstream.transport is not None:
            self.xmlstream.transport.loseConnection()

    def _lost(self) -> None:
        if self._last_problem is None:
            log.warn("MUC Light component {jid} lost its connection; reconnecting", jid=self.jid)
            self._last_problem = "connection lost"

    def _problem(self, why: str) -> None:
        if why != self._last_problem:
            log.error("MUC Light component {jid}: {why}; retrying", jid=self.jid, why=why)
        self._last_problem = why

    def send(self, obj: domish.Element | str) -> None:
        """Send now, or drop: a component never queues stanzas for a stream that is gone."""
        if self.alive:
            super().send(obj)

    def startService(self) -> None:
        super().startService()
        self.start()

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()
        return self.stop()

    def start(self) -> None:
        """Connect, and keep reconnecting until ``stop``; may follow a ``stop`` (the
        leader, ``bridge.muclight.leader``, starts and stops the component at will).

        Only once the stopped stream is gone: wokkel's ``StreamManager`` forgets its
        stream on any disconnect. The leader restarts seconds after an abort, which
        closes at once."""
        if self.factory.continueTrying and self._connector is not None:
            return  # running already
        # Connects now; the retry backoff carries on (only a handshake resets it).
        self.factory.continueTrying = True
        self._last_problem = None
        self._connector = self._reactor.connectTCP(self.host, self.port, self.factory, timeout=5)

    def stop(self, abort: bool = False) -> defer.Deferred[None] | None:
        """Stop reconnecting and end the stream: with a closing tag, or at once when
        ``abort`` (fencing: nothing more may be read or sent on it)."""
        self.factory.stopTrying()
        connector, self._connector = self._connector, None
        if self.xmlstream is not None and self.xmlstream.transport is not None:
            transport = self.xmlstream.transport
            if abort:
                transport.abortConnection()
                return None
            ended: defer.Deferred[None] = defer.Deferred()

            def end(_: object) -> None:
                if not ended.called:
                    ended.callback(None)

            # An observer on this stream: a bootstrap would only reach streams built later.
            self.xmlstream.addObserver(xmlstream.STREAM_END_EVENT, end)
            self.xmlstream.sendFooter()
            transport.loseConnection()
            ended.addTimeout(5, self._reactor)
            ended.addErrback(lambda _: None)
            return ended
        if connector is not None:
            connector.disconnect()
        return None
