"""What a connection refuses before the API sees a request (RFC 9110 408, 413, 414, 431).

* Deadlines for receiving a request: Twisted's idle timeout restarts with every byte, so a
  client trickling one header byte every few seconds would hold its connection for ever.
  ``GuardedChannel`` gives the headers ``http.header_timeout`` seconds from their first
  byte and the body ``http.body_timeout`` seconds, then answers 408 and closes.
* Oversized requests: a request line longer than Twisted's 16 KiB line limit gets 414, a
  header line over it, or headers over 16 KiB in all, 431 (Twisted itself closes the
  connection without a word, or answers a bare 400); the connection is then closed.
* Oversized bodies: ``LimitedRequest`` answers 413 once the declared or received length
  passes ``http.max_body``, before the body is buffered, and closes the connection.

These answers have no request to answer; ``bridge.http.errors.raw_answer`` renders them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel

from bridge.http.errors import raw_answer
from bridge.http.request import BridgeRequest

if TYPE_CHECKING:
    from bridge.http.site import BridgeSite

log = Logger()

RESPONSE_408 = raw_answer(408, "Request timeout")
RESPONSE_413 = raw_answer(413, "Request body too large")
RESPONSE_414 = raw_answer(414, "Request URI too long")
RESPONSE_431 = raw_answer(431, "Request header too large")


class GuardedChannel(HTTPChannel):
    """An HTTP/1.1 channel with deadlines for receiving each request's headers and body.

    The header deadline starts with the connection, and again with the first byte of each
    further request on a kept-alive connection; it stops once the headers are in. The body
    deadline covers the rest of the request. Either one closes the connection, with 408
    when part of a request had arrived. The site's ``header_timeout`` and ``body_timeout``
    set them, and every open channel joins its ``channels`` (for the shutdown drain).
    """

    # Seconds a closing connection may take to flush before it is aborted.
    abortTimeout = 5
    site: BridgeSite  # set by Site.buildProtocol
    _deadline: IDelayedCall | None = None
    _partial = False

    def connectionMade(self) -> None:
        super().connectionMade()
        self.site.channels.add(self)
        self._arm("header")

    def dataReceived(self, data: bytes) -> None:
        if self.line_mode and not self._handlingRequest:
            self._partial = True
            if self._deadline is None:
                self._arm("header")
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        # HTTPChannel answers headers over totalHeadersSize with a bare 400; say what it was.
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            self._too_large(first_line=self._receivedHeaderSize == 0)
            return
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        # LineReceiver closes the connection without an answer; the line still being
        # received is the request line when nothing of this request has arrived before it.
        self._too_large(first_line=self._receivedHeaderSize == 0)

    def _too_large(self, first_line: bool) -> None:
        self._disarm()
        if self.transport is None:
            return
        log.info(
            "Refused a request from {peer}: its {part} is too long",
            peer=client_peer(self.transport),
            part="request line" if first_line else "header",
        )
        self.transport.write(RESPONSE_414 if first_line else RESPONSE_431)
        self._partial = False
        self.timeoutConnection()

    def allHeadersReceived(self) -> None:
        self._disarm()
        super().allHeadersReceived()
        if self.length != 0 and self.transport is not None and not getattr(self.transport, "disconnecting", False):
            self._arm("body")

    def allContentReceived(self) -> None:
        self._disarm()
        self._partial = False
        super().allContentReceived()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._disarm()
        self.site.channels.discard(self)
        super().connectionLost(reason)

    @property
    def idle(self) -> bool:
        """No request is being received or answered on this connection."""
        return not self.requests and not self._partial

    def _arm(self, phase: str) -> None:
        self._disarm()
        timeout = self.site.header_timeout if phase == "header" else self.site.body_timeout
        if timeout:
            self._deadline = self.callLater(timeout, lambda: self._expired(phase, timeout))

    def _disarm(self) -> None:
        if self._deadline is not None:
            if self._deadline.active():
                self._deadline.cancel()
            self._deadline = None

    def _expired(self, phase: str, timeout: float) -> None:
        self._deadline = None
        if self.transport is None:
            return
        if self.site.metrics is not None:
            self.site.metrics.timed_out(phase)
        if self._partial:
            log.info(
                "Closing a connection from {peer}: the request {phase} did not arrive within {timeout} s",
                peer=client_peer(self.transport),
                phase="headers" if phase == "header" else "body",
                timeout=timeout,
            )
            self.transport.write(RESPONSE_408)
        self.timeoutConnection()

    def timeoutConnection(self) -> None:
        # HTTPChannel's own version logs every idle keep-alive connection it closes.
        if self.abortTimeout is not None:
            self._abortingCall = self.callLater(self.abortTimeout, self.forceAbortClient)
        self.loseConnection()


class LimitedRequest(BridgeRequest):
    """A request that refuses bodies over the site's ``max_body`` before buffering them."""

    _received = 0
    _refused = False

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self._max_body():
            self._refuse()
            return
        self._received = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        self._received += len(data)
        if self._received > self._max_body():
            self._refuse()
            return
        super().handleContentChunk(data)

    def _max_body(self) -> int:
        channel: GuardedChannel = self.channel  # type: ignore[assignment]  # BridgeSite's protocol
        return channel.site.max_body

    def _refuse(self) -> None:
        transport = self.channel.transport
        if transport is None or self._refused:
            return
        self._refused = True
        transport.write(RESPONSE_413)
        transport.loseConnection()


def client_peer(transport: Any) -> str:
    peer = transport.getPeer()
    return getattr(peer, "host", None) or str(peer)
