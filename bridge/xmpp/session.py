"""One user's client connection to the XMPP server (RFC 6120 / RFC 6121).

A ``Session`` is the user's hands: every REST call of that user becomes stanzas on it. It
is a wokkel ``StreamManager`` so protocol handlers (archive, roster, live events, ...)
attach to it, wokkel style, instead of subclassing it: each is built with what it needs and
attached once (``attach``), by the code that opens sessions (``bridge.tap``) or, for live
events, by the event hub; callers look them up by type (``get``). Every round trip has a timeout and
fails at once when the stream ends, so no HTTP request waits on a dead connection.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from typing import Any, TypeVar

from OpenSSL import SSL
from twisted.internet import defer, error, ssl
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import sasl, xmlstream
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel import generic
from wokkel.subprotocols import StreamManager, XMPPHandler

from bridge.protocol.namespaces import NS_PING
from bridge.protocol.xml import StanzaStream, escape_xml
from bridge.xmpp.errors import AuthenticationFailed, ServerTimeout, ServerUnavailable
from bridge.xmpp.login import PlaintextRefused, SessionAuthenticator

log = Logger()

HandlerT = TypeVar("HandlerT", bound=XMPPHandler)

# Ids of the pings ``round_trip`` writes as text; wokkel's own ids are ``H_<n>``.
_ping_ids = itertools.count(1)


@dataclass(frozen=True)
class ConnectSettings:
    """Where and how user sessions connect; built once from ``[xmpp]``."""

    host: str
    port: int
    tls_mode: str
    trust_root: Any  # an IOpenSSLTrustRoot (ca_file or the platform's trust)
    timeout: float
    # One TLS client configuration (an OpenSSL context) per domain, shared by its sessions:
    # a context per session cost 16 KB of memory per session and a CA load per login.
    _tls: dict[str, IOpenSSLClientConnectionCreator] = field(default_factory=dict, compare=False, repr=False)

    def tls_options(self, domain: str) -> IOpenSSLClientConnectionCreator:
        options = self._tls.get(domain)
        if options is None:
            options = self._tls[domain] = ssl.optionsForClientTLS(domain, trustRoot=self.trust_root)
        return options


class IqRequest(generic.Request):
    """An IQ get/set carrying one prepared payload element."""

    def __init__(self, stanza_type: str, recipient: JID | None, payload: domish.Element, timeout: float):
        super().__init__(recipient=recipient, stanzaType=stanza_type)
        self.payload = payload
        self.timeout = timeout

    def toElement(self) -> domish.Element:
        element = super().toElement()
        element.addChild(self.payload)
        return element


class Session(StreamManager):
    """An authenticated, bound client stream of one user."""

    def __init__(self, factory: xmlstream.XmlStreamFactory, reactor: IReactorTime, timeout: float, jid: JID) -> None:
        super().__init__(factory, reactor=reactor)
        self.timeout = timeout
        # The full JID asked for at login; the one the server bound once authenticated.
        self.jid = jid
        # The user's server, which answers the pings of round_trip (parsed once, not per ping).
        self.server_jid = JID(tuple=(None, jid.host, None))
        self._ping_to = escape_xml(self.server_jid.full(), 1)
        # Requests of ``send_acknowledged`` waiting for the ping of this reactor turn, or None.
        self._batch: list[defer.Deferred[None]] | None = None
        self.ended: defer.Deferred[None] = defer.Deferred()
        # Kept by the pool: when a request last used the session, and how many streams hold it.
        self.last_used = 0.0
        self.holds = 0
        # Whether initial presence was sent (see bridge.xmpp.presence).
        self.available = False

    def attach(self, handler: HandlerT) -> HandlerT:
        """Attach ``handler``, this session's only one of its type, and return it."""
        if self.find(type(handler)) is not None:
            raise ValueError(f"the session already has a {type(handler).__name__}")
        handler.setHandlerParent(self)
        return handler

    def find(self, cls: type[HandlerT]) -> HandlerT | None:
        """This session's handler of type ``cls``, or None when none is attached."""
        for each in self:
            if type(each) is cls:
                return each
        return None

    def get(self, cls: type[HandlerT]) -> HandlerT:
        """This session's handler of type ``cls``; the handlers of every session are attached
        when it opens, so a missing one is a wiring error."""
        found = self.find(cls)
        if found is None:
            raise LookupError(f"the session has no {cls.__name__}")
        return found

    @property
    def alive(self) -> bool:
        return self._initialized and self.xmlstream is not None

    def _authd(self, xs: xmlstream.XmlStream) -> None:
        self.jid = xs.authenticator.jid
        self.server_jid = JID(tuple=(None, self.jid.host, None))
        self._ping_to = escape_xml(self.server_jid.full(), 1)
        if isinstance(xs, StanzaStream):
            xs.take_bare_results = self._take_ping_answers
        # The password is not needed once the stream is authenticated; do not keep it.
        xs.authenticator.password = None
        super()._authd(xs)

    def _disconnected(self, reason: Failure) -> None:
        super()._disconnected(Failure(ServerUnavailable("the XMPP stream ended")))
        if not self.ended.called:
            self.ended.callback(None)

    def send(self, obj: domish.Element | str) -> None:
        """Send a stanza now; a session whose stream has ended refuses instead of queueing."""
        if not self.alive:
            raise ServerUnavailable("the XMPP stream has ended")
        super().send(obj)

    async def iq(
        self, stanza_type: str, payload: domish.Element, to: JID | None = None, timeout: float | None = None
    ) -> domish.Element:
        """Send an IQ and wait for its result; errors come back as wokkel ``StanzaError``."""
        if not self.alive:
            raise ServerUnavailable("the XMPP stream has ended")
        request = IqRequest(stanza_type, to, payload, self.timeout if timeout is None else timeout)
        try:
            return await self.request(request)
        except xmlstream.TimeoutError:
            raise ServerTimeout("the XMPP server did not answer in time") from None

    async def round_trip(self) -> None:
        """Ping the server; once it answers, it has processed everything sent before.

        Any answer counts, an error too: the server handles a stream's stanzas in order.
        """
        if not self.alive:
            raise ServerUnavailable("the XMPP stream has ended")
        try:
            await self._ping()
        except StanzaError:
            pass
        except xmlstream.TimeoutError:
            raise ServerTimeout("the XMPP server did not answer in time") from None

    def _ping(self) -> defer.Deferred[object]:
        """An XEP-0199 ping written as text, tracked like wokkel's IQ requests.

        The same stanza as ``iq("get", <ping/>)`` without building and serialising a DOM
        for it: the acknowledgement of every message costs one. The answer comes back
        through wokkel's IQ response observer; a stream that ends fails it with the
        session's ``ServerUnavailable``, a silent server with ``TimeoutError``.
        """
        ping_id = f"bp{next(_ping_ids)}"
        answer: defer.Deferred[object] = defer.Deferred()
        self._iqDeferreds[ping_id] = answer

        def timed_out() -> None:
            if self._iqDeferreds.pop(ping_id, None) is answer:
                answer.errback(xmlstream.TimeoutError("IQ timed out"))

        timer = self._reactor.callLater(self.timeout, timed_out)

        def stop_timer(result: object) -> object:
            if timer.active():
                timer.cancel()
            return result

        answer.addBoth(stop_timer)
        self.send(f"<iq type='get' id='{ping_id}' to='{self._ping_to}'><ping xmlns='{NS_PING}'/></iq>")
        return answer

    def _answers_ping(self, ping_id: str, sender: str | None) -> bool:
        """Whether an IQ answer is the server's answer to one of this session's pings.

        Ping ids are a counter: an answer from anyone but the user's server (a contact
        that guessed an id) must not acknowledge anything.
        """
        return ping_id.startswith("bp") and ping_id in self._iqDeferreds and sender in (None, self.server_jid.host)

    def _take_ping_answers(self, answers: list[tuple[str, str | None]]) -> bool:
        """StanzaStream's hook: fire the pings of a chunk of bare results, if they all are ours."""
        if not all(self._answers_ping(ping_id, sender) for ping_id, sender in answers):
            return False
        for ping_id, _ in answers:
            self._iqDeferreds.pop(ping_id).callback(None)
        return True

    def _onIQResponse(self, iq: domish.Element) -> None:
        if iq.getAttribute("id", "").startswith("bp") and not self._answers_ping(iq["id"], iq.getAttribute("from")):
            return  # not the server's answer to our ping: leave the ping waiting
        super()._onIQResponse(iq)

    def send_acknowledged(self, stanza: domish.Element) -> defer.Deferred[None]:
        """Send ``stanza``; the result fires once the server has processed it.

        Stanzas sent in one reactor turn share one ping, written with them in one write
        after the turn (``_acknowledge_batch``): the server handles the stream in order,
        so its answer acknowledges every stanza before it. Until the answer, nothing is
        acknowledged; a stream that ends, or a server that does not answer in time, fails
        every request of the batch.
        """
        if not self.alive:
            raise ServerUnavailable("the XMPP stream has ended")
        queue = getattr(self.xmlstream, "queue", None)
        if queue is not None:
            queue(stanza)  # written with the next send: the batch's ping, or anything before it
        else:
            self.send(stanza)  # a plain XmlStream (tests): no queue, nothing to coalesce
        waiter: defer.Deferred[None] = defer.Deferred()
        if self._batch is None:
            self._batch = []
            self._reactor.callLater(0, self._acknowledge_batch)
        self._batch.append(waiter)
        return waiter

    def _acknowledge_batch(self) -> None:
        waiters, self._batch = self._batch or [], None
        answered = defer.Deferred.fromCoroutine(self.round_trip())

        def done(result: object) -> None:
            for waiter in waiters:
                if waiter.called:  # its request was cancelled (the client went away)
                    continue
                if isinstance(result, Failure):
                    waiter.errback(result)
                else:
                    waiter.callback(None)

        answered.addBoth(done)

    def close(self) -> None:
        """End the stream politely; handlers see connectionLost as usual."""
        if self.xmlstream is not None:
            self.xmlstream.sendFooter()
            self.xmlstream.transport.loseConnection()


def _login_failure(reason: Failure) -> Exception:
    """Turn whatever ended a login into one of the bridge's errors."""
    if isinstance(reason.value, sasl.SASLAuthError):
        return AuthenticationFailed(f"SASL failure: {reason.value.condition}")
    if reason.check(PlaintextRefused, sasl.SASLNoAcceptableMechanism):
        log.error("Cannot log in: {why}", why=reason.getErrorMessage() or "no acceptable SASL mechanism")
        return ServerUnavailable("no safe SASL mechanism")
    if reason.check(xmlstream.TLSRequired, xmlstream.TLSNotSupported, xmlstream.FeatureNotAdvertized):
        log.error("Cannot log in: the server's TLS offer does not match xmpp.tls ({why!r})", why=reason.value)
        return ServerUnavailable("TLS negotiation impossible")
    if reason.check(SSL.Error):
        log.error("TLS handshake with the XMPP server failed: {why}", why=reason.getErrorMessage())
        return ServerUnavailable("TLS handshake failed")
    if isinstance(reason.value, (ServerUnavailable, ServerTimeout, AuthenticationFailed)):
        return reason.value
    if reason.check(defer.TimeoutError, defer.CancelledError):
        return ServerTimeout("logging in to the XMPP server took too long")
    if reason.check(error.ConnectError, error.ConnectionClosed):
        return ServerUnavailable(f"cannot reach the XMPP server: {reason.getErrorMessage()}")
    log.failure("Unexpected login failure", reason)
    return ServerUnavailable("login failed")


def client_endpoint(reactor: Any, host: str, port: int, timeout: float) -> IStreamClientEndpoint:
    """Where sessions connect: a TCP endpoint for an address, ``HostnameEndpoint`` for a name.

    ``HostnameEndpoint`` looks up even an address (in the thread pool), and defines a class
    on every connect, whose interface order zope.interface then works out: 170-223 us a
    connect against 54-57 us, for ``xmpp.host = "127.0.0.1"``. A name still gets its lookup and
    Happy Eyeballs (RFC 8305) each time, so a changed DNS record is followed.
    """
    if isIPAddress(host):
        return TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    if isIPv6Address(host):
        return TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
    return HostnameEndpoint(reactor, host, port, timeout=timeout)


async def open_session(reactor: Any, settings: ConnectSettings, jid: JID, password: str) -> Session:
    """Connect, secure, authenticate and bind a new session for ``jid`` (a bare JID).

    Gives up after ``settings.timeout`` seconds so that a slow or silent server turns
    into a prompt 504 instead of a hanging request.
    """
    full = JID(tuple=(jid.user, jid.host, f"rest-{secrets.token_hex(6)}"))
    tls = settings.tls_options(jid.host) if settings.tls_mode != "disabled" else None
    authenticator = SessionAuthenticator(full, password, settings.tls_mode, tls)
    factory = xmlstream.XmlStreamFactory(authenticator)
    factory.protocol = StanzaStream  # whitespace-preserving serialisation (bridge.protocol.xml.to_xml)
    factory.noisy = False
    session = Session(factory, reactor, settings.timeout, full)
    ready: defer.Deferred[None] = defer.Deferred()
    streams: list[xmlstream.XmlStream] = []

    def failed(reason: Failure) -> None:
        if not ready.called:
            ready.errback(reason)

    factory.addBootstrap(xmlstream.STREAM_CONNECTED_EVENT, streams.append)

    def authenticated(_: object) -> None:
        if not ready.called:
            ready.callback(None)

    factory.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, authenticated)
    factory.addBootstrap(xmlstream.INIT_FAILED_EVENT, failed)
    factory.addBootstrap(
        xmlstream.STREAM_END_EVENT,
        lambda reason: failed(
            reason
            if isinstance(reason, Failure) and reason.check(SSL.Error)
            else Failure(ServerUnavailable("the server closed the stream during login"))
        ),
    )
    connecting = client_endpoint(reactor, settings.host, settings.port, settings.timeout).connect(factory)
    connecting.addErrback(failed)
    ready.addTimeout(settings.timeout, reactor)
    try:
        await ready
    except Exception:
        connecting.cancel()
        for xs in streams:
            if xs.transport is not None:
                xs.transport.abortConnection()  # type: ignore[attr-defined]  # a TCP transport
        raise _login_failure(Failure()) from None
    return session
