"""RFC 6121 presence of a user session, and what its contacts' presence says.

A session that only serves REST calls stays unavailable, so it never appears to the
user's contacts. A session that holds a live event stream goes available, once, so
messages to the bare JID reach it. Services that learn occupants' full JIDs from directed
presence (the MUC Light component, without XEP-0356) get it here too.

``PUT /api/presence`` makes a session available with the user's own ``show``, ``status`` and
``priority`` (``set_presence``); a stream opened later keeps that presence instead of
announcing ``sse.priority``, and a ``PUT`` on a stream's session replaces the stream's
presence. The session keeps it while it lives: the idle timeout (``xmpp.idle_timeout``,
unless a stream holds the session) closes it, and the server then tells the contacts the
user's resource went unavailable.

A service can bounce that directed presence: its component is down, or moving to another
bridge process (DESIGN.md, "Several processes"); Prosody answers ``remote-server-timeout``,
ejabberd ``remote-server-not-found``. The component that comes up would then never learn
the session, and its streams would miss live room messages. ``ServicePresence`` sends a
bounced presence again after 1, 2 and 4 s, then every 5 s, for ``RETRY_FOR`` seconds of one
outage: long enough for a takeover (10 s) and a server restart (rooms back within 20 s).

``PresenceTracker`` keeps the contacts' current presence as the session received it, for
``GET /api/presence``: a session only receives it once it is available (a ``PUT``, a stream,
or the roster's hidden presence, ``bridge.xmpp.roster``). It is bounded: past
``MAX_TRACKED`` resources the one updated longest ago is forgotten.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel.subprotocols import XMPPHandler

from bridge.protocol.presence import (
    AVAILABLE,
    PresenceInfo,
    build_presence,
    contacts_json,
    received_presence,
)
from bridge.xmpp.session import Session

log = Logger()

# Contact resources one session keeps (a roster of thousands, a few devices each).
MAX_TRACKED = 5000

# Seconds before each new attempt at a bounced directed presence (the last one repeats), and
# how long one outage is retried; a bounce after a quiet spell longer than FRESH_AFTER
# begins a new outage.
RETRY_DELAYS = (1.0, 2.0, 4.0, 5.0)
RETRY_FOR = 60.0
FRESH_AFTER = 15.0


def presence(priority: int, to: JID | None = None, presence_type: str | None = None) -> domish.Element:
    element = domish.Element((None, "presence"))
    if to is not None:
        element["to"] = to.full()
    if presence_type is not None:
        element["type"] = presence_type
    else:
        element.addElement("priority", content=str(priority))
    return element


def tell_service(session: Session, stanza: domish.Element) -> None:
    """Send a directed presence to a service, to be sent again if the service bounces it."""
    announcer = session.find(ServicePresence)
    if announcer is not None:
        announcer.sent(stanza)
    session.send(stanza)


def go_available(session: Session, priority: int, services: list[JID]) -> None:
    """Announce ``session`` available (once) and tell ``services`` its full JID."""
    if session.available:
        return
    session.send(presence(priority))
    for service in services:
        tell_service(session, presence(priority, to=service))
    session.available = True


async def set_presence(session: Session, info: PresenceInfo, services: list[JID]) -> None:
    """Broadcast the user's presence ``info``; the first time, tell ``services`` the full JID too.

    Returns once the server has processed it (a round trip), so the contacts' presence that
    the server sends a newly available resource (local contacts at least) is in by then.
    """
    first = not session.available
    session.send(build_presence(info))
    if first:
        for service in services:
            tell_service(session, build_presence(info, to=service))
    session.available = True
    await session.round_trip()


class ServicePresence(XMPPHandler):
    """Sends a service's bounced directed presence again (see the module docstring)."""

    parent: Session

    def __init__(self) -> None:
        super().__init__()
        self._sent: dict[str, domish.Element] = {}  # service JID -> the last presence it was sent
        # service JID -> (first bounce of this outage, last bounce, attempts, the pending re-send)
        self._outages: dict[str, tuple[float, float, int, IDelayedCall | None]] = {}

    def sent(self, stanza: domish.Element) -> None:
        self._sent[stanza["to"]] = stanza

    def connectionInitialized(self) -> None:
        self.xmlstream.addObserver("/presence[@type='error']", self._bounced)

    def connectionLost(self, reason: object) -> None:
        for _, _, _, pending in self._outages.values():
            if pending is not None and pending.active():
                pending.cancel()
        self._outages.clear()
        super().connectionLost(reason)

    def _bounced(self, stanza: domish.Element) -> None:
        service = stanza.getAttribute("from")
        if service not in self._sent or not self.parent.available:
            return
        clock = self.parent._reactor
        now = clock.seconds()
        first, last, attempts, pending = self._outages.get(service, (now, now, 0, None))
        if pending is not None and pending.active():
            return
        if now - last > FRESH_AFTER:
            first, attempts = now, 0
        if now - first > RETRY_FOR:
            return
        delay = RETRY_DELAYS[min(attempts, len(RETRY_DELAYS) - 1)]
        pending = clock.callLater(delay, self._again, service)
        self._outages[service] = (first, now, attempts + 1, pending)

    def _again(self, service: str) -> None:
        if self.parent.alive and self.parent.available:
            self.parent.send(self._sent[service])


class PresenceTracker(XMPPHandler):
    """The available resources of the user's contacts, from the presence the session received."""

    parent: Session

    def __init__(self, limit: int = MAX_TRACKED) -> None:
        super().__init__()
        self._limit = limit
        # full JID -> (bare JID, resource, presence), least recently updated first.
        self._resources: OrderedDict[str, tuple[str, str, PresenceInfo]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._resources)

    def connectionInitialized(self) -> None:
        self.xmlstream.addObserver("/presence", self._received)

    def _received(self, stanza: domish.Element) -> None:
        try:
            self.observe(stanza)
        except Exception:
            # A stanza anyone can send must not break the session's stream.
            log.failure("Could not read a received presence")

    def observe(self, stanza: domish.Element) -> None:
        """Update the table from one received presence stanza."""
        found = received_presence(stanza, self.parent.jid.userhost())
        if found is None:
            return
        jid = found.jid
        if found.type == AVAILABLE:
            full = jid.full()
            self._resources.pop(full, None)
            self._resources[full] = (jid.userhost(), jid.resource or "", found.info)
            while len(self._resources) > self._limit:
                self._resources.popitem(last=False)
        elif jid.resource:
            self._resources.pop(jid.full(), None)
        else:
            bare = jid.userhost()
            for full in [key for key, (owner, _, _) in self._resources.items() if owner == bare]:
                del self._resources[full]

    def available(self) -> dict[str, dict[str, PresenceInfo]]:
        """Bare JID -> resource -> presence, of every contact resource currently available."""
        table: dict[str, dict[str, PresenceInfo]] = {}
        for bare, resource, info in self._resources.values():
            table.setdefault(bare, {})[resource] = info
        return table

    def as_json(self) -> list[dict[str, Any]]:
        return contacts_json(self.available())
