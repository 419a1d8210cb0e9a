"""The bridge's request class: what the HTTP edge learns about a request, in typed fields.

Twisted's ``Request`` carries the request itself; ``BridgeRequest`` adds what the layers
around the routes find out and hand on: the Basic credentials (RFC 7617), parsed once for
the request limits and the authenticator alike; the live session the limits matched them
to, so the password's keyed hash is computed once; the user, the start time and the
status for the access line; the limit that refused the request and whether it is an event
stream, for the metrics and the shutdown drain. ``BridgeSite`` makes every request one
(``bridge.http.site``); the layers narrow Twisted's type with ``bridge_request``.
"""

from __future__ import annotations

import binascii
import time
from base64 import b64decode
from typing import TYPE_CHECKING

from twisted.python.failure import Failure
from twisted.web.server import Request
from twisted.words.protocols.jabber.jid import JID

from bridge.protocol.jid import parse

if TYPE_CHECKING:
    from bridge.xmpp.session import Session

# Longer Authorization headers are not credentials anyone uses.
MAX_HEADER = 4096
# The status an access line shows for a client that left before any answer (nginx's 499).
CLIENT_GONE = 499

Credentials = tuple[JID, str]


def parse_basic(header: bytes | None) -> Credentials | None:
    """(bare JID, password) from a Basic ``Authorization`` header; None if it is not one."""
    if not header or len(header) > MAX_HEADER:
        return None
    scheme, _, encoded = header.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        decoded = b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(":")
    if not colon or not password or "\x00" in decoded:
        return None
    jid = parse(user)
    if jid is None or not jid.user or jid.resource:
        return None
    return jid, password


class _Unparsed:
    """The credentials of a request whose Authorization header nobody has asked for yet."""


_UNPARSED = _Unparsed()


class BridgeRequest(Request):
    """A request with the state the HTTP edge and the routes share, declared here.

    The defaults are class attributes, so a request has them from the start.
    """

    # time.monotonic() when the request was complete and began to be processed.
    started: float | None = None
    # The authenticated user's bare JID (Basic or a stream token), for the access line.
    user_jid: str | None = None
    # The status the access line shows instead of ``code`` (CLIENT_GONE).
    access_status: int | None = None
    # The limit that refused the request (``address``, ``streams``, ...), for the metrics.
    refusal: str | None = None
    # Set by the event-stream route: the answer does not end by itself.
    is_event_stream: bool = False
    # The user's live session the request limits found for these very credentials.
    live_session: Session | None = None
    _credentials: Credentials | _Unparsed | None = _UNPARSED

    @property
    def credentials(self) -> Credentials | None:
        """``parse_basic`` of the ``Authorization`` header, decoded and stringprepped once."""
        credentials = self._credentials
        if isinstance(credentials, _Unparsed):
            credentials = self._credentials = parse_basic(self.getHeader(b"authorization"))
        return credentials

    def process(self) -> None:
        self.started = time.monotonic()
        super().process()

    def connectionLost(self, reason: Failure) -> None:
        # A request whose client went away before its answer ended (an event stream the
        # client closed, a request it gave up on) still gets its access line.
        if not self.finished and self.started is not None:
            if not self.startedWriting:
                self.access_status = CLIENT_GONE
            if self.site is not None:
                self.site.log(self)
        super().connectionLost(reason)


def bridge_request(request: Request) -> BridgeRequest:
    """``request`` as the ``BridgeRequest`` that ``BridgeSite`` made it.

    A request from any other site (a plain ``Site`` around the API's resource) has none
    of the edge's state, and is a mistake in the wiring: TypeError.
    """
    if not isinstance(request, BridgeRequest):
        raise TypeError(f"expected a BridgeRequest (served by BridgeSite), got {type(request).__name__}")
    return request


def client_address(request: Request) -> str:
    """The client's IP address (or the address's text for other transports)."""
    address = request.getClientAddress()
    return getattr(address, "host", None) or str(address)
