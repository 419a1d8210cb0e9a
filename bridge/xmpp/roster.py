"""RFC 6121 roster management (section 2) and presence subscriptions (section 3).

``RosterClient`` is the user's contact list as their session sees it: fetched once with a
roster get, then kept current by the server's roster pushes (each acknowledged, and
accepted only from the user's own bare JID or without ``from``, as RFC 6121 2.1.6
requires). Nothing outlives the session: a new session fetches the roster again.

MongooseIM's REST API reported ``ask`` as none/out/in/both. ``out`` is the roster item's
``ask='subscribe'``. ``in`` is a contact's subscription request still waiting for an
answer, which RFC 6121 does not put in the roster: the server only delivers it as a
``<presence type='subscribe'/>``, live to *available* resources, and stored ones again
when a resource sends *initial presence* (RFC 6121 3.1.3). A session that only serves
REST calls stays unavailable (``bridge.xmpp.presence``), so it would never learn them.

What was tried on Prosody 0.12 (the harness server), and why this module does what it does:

* A roster get, or presence addressed to the user's domain or a contact, reports nothing
  pending. Presence addressed to the user's own bare JID is treated as presence without
  ``to``: it *is* initial presence, with everything that follows.
* Initial presence with a negative priority makes the server re-send every stored request,
  and later requests arrive live. A negative priority keeps the server from routing
  bare-JID messages to the session (RFC 6121 8.5.2.1.1) and, on Prosody, from flushing
  the user's offline messages to it: the user's phone still gets them.
* There is no way to learn pending requests without initial presence, and no core way on
  Prosody to make that presence invisible (XEP-0016 privacy lists, which could, are not in
  Prosody 0.12's core; XEP-0186 is not implemented by it either). Contacts who see the
  user's presence (subscription ``from``/``both``) see a resource ``rest-...`` with
  priority -1 come online.
* Going available and at once unavailable again for each request would show that to
  every such contact twice per request, and would miss requests arriving in between.

So the least visible correct approach is: the session goes available with priority -1
once, on the first contacts request that needs incoming requests (listing, accepting or
removing a contact), and stays so until it closes (its contacts see one available and one
unavailable presence per session, not per request). Sessions that never touch contacts
stay invisible. A session that is already available (a live event stream) is not
announced again. The handler is attached when a session opens (``bridge.tap``), before any
presence is sent, so it also sees the requests re-sent when another part of the bridge
makes the session available.

Accepting (``PUT /api/contacts/{jid}`` ``accept``) is confirmed by the server, not assumed:
``approve`` sends ``subscribed`` and, after a round trip, requires the roster push that
RFC 6121 3.1.5 makes the server send when it approves a pending request (subscription
``from`` or ``both``). Without it there was no request to approve (declined or withdrawn
elsewhere, for instance through another bridge process whose session of the same user
answered it): the answer is False (the REST API's 404 "Contact not found", as for a
contact that is not there), the session forgets the request, and the ``subscribed`` is
taken back with ``unsubscribed``, since Prosody 0.12 records it as a pre-approval (RFC
6121 3.4; it even creates a roster item for it, which is removed again). ejabberd 23.01
ignores a ``subscribed`` with nothing pending.

Several bridge processes (DESIGN.md, "Several processes") each hold their own session of
a user, and each session learns pending requests for itself. An approval reaches every
session as a roster push; a decline does not (Prosody sends no push for ``unsubscribed``
when there is no subscription). So a session that declines a request (removing the
contact) or finds it gone (an accept the server did not confirm) tells the user's other
*bridge* sessions: a ``headline`` message carrying ``<answered jid='contact'/>`` (namespace
``NS_ANSWERED``) to each available resource of the user whose name starts with ``rest-``
(they see each other's presence, since a session that lists requests is available). It
is accepted only from the user's own bare JID, which the server stamps; it has no body,
so it is neither archived nor shown by other clients. It relays what a session of the
same account did, authenticated by the server, so no store is needed (nor shared by the
processes); for approvals the server's own roster pushes stay the only evidence.

Limits: if another of the user's *XMPP clients* (not a bridge session) declines a request,
Prosody sends no roster push, so this session keeps reporting ``ask: in`` for it until the
session ends or an accept finds it gone. A bridge session that was not available when
another declined (it had never listed contacts) learns requests afresh from the server
later, so it is not misled. A notice sent while the other session's stream is ending is
lost with it; its next session learns the pending requests afresh. Declining here (removing the contact) sends
``unsubscribed`` first, so the server drops the stored request too (Prosody would keep it
across a roster remove).

ejabberd 23.01 differs: it re-sends stored requests only on initial presence with a
priority of 0 or more, which would also hand the session the user's offline messages, so
the bridge does not do that. There, ``ask: in`` shows the requests that arrive while a
session is available (after its first contacts request), not older ones, and a contact
withdrawing its request (``unsubscribe``) is not told to the session.
"""

from __future__ import annotations

from collections.abc import Iterable

from twisted.logger import Logger
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel.subprotocols import XMPPHandler

from bridge.protocol.jid import bare, parse
from bridge.protocol.namespaces import NS_ROSTER
from bridge.protocol.roster import (
    Contact,
    RosterItem,
    contact_view,
    parse_item,
    parse_roster,
    roster_query,
    roster_remove,
    roster_set,
    subscription_presence,
)
from bridge.protocol.xml import child
from bridge.xmpp.presence import presence
from bridge.xmpp.session import Session

ROSTER_PUSH = f"/iq[@type='set']/query[@xmlns='{NS_ROSTER}']"
SUBSCRIBE = "/presence[@type='subscribe']"
UNSUBSCRIBE = "/presence[@type='unsubscribe']"
PRESENCE = "/presence"
# A bridge session telling the user's other bridge sessions that a request was answered.
NS_ANSWERED = "urn:xmpp-rest-bridge:roster-answered:0"
ANSWERED = f"/message/answered[@xmlns='{NS_ANSWERED}']"
# Resources of the bridge's own sessions (bridge.xmpp.session).
BRIDGE_RESOURCE_PREFIX = "rest-"

# The priority of a REST session that had to become available: never a target of
# bare-JID messages, never handed the user's offline messages.
HIDDEN_PRIORITY = -1

log = Logger()


class RosterClient(XMPPHandler):
    """The user's roster and pending subscription requests on one session."""

    parent: Session

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[str, RosterItem] = {}
        self.incoming: set[str] = set()
        self.loaded = False
        # Whether this handler has seen every presence since before the session's initial
        # presence (see the module docstring), and whether that presence was sent.
        self.watching = False
        self.revealed = False
        # The user's other bridge sessions that are available (full JIDs): told of declines.
        self.peers: set[str] = set()

    def connectionInitialized(self) -> None:
        self.watching = self.watching or not self.parent.available
        self.xmlstream.addObserver(ROSTER_PUSH, self._on_push)
        self.xmlstream.addObserver(SUBSCRIBE, self._on_subscribe)
        self.xmlstream.addObserver(UNSUBSCRIBE, self._on_unsubscribe)
        self.xmlstream.addObserver(PRESENCE, self._on_own_presence)
        self.xmlstream.addObserver(ANSWERED, self._on_answered)

    # Stanzas from the server.

    def _own_bare(self) -> str:
        return self.parent.jid.userhost()

    def _on_push(self, iq: domish.Element) -> None:
        iq.handled = True  # type: ignore[attr-defined]  # xish's convention
        sender = iq.getAttribute("from")
        if sender and bare(sender) != self._own_bare():
            # RFC 6121 2.1.6: a push from anyone else is an attack; answer, change nothing.
            self._reply(iq, StanzaError("service-unavailable"))
            return
        query = child(iq, "query", NS_ROSTER)
        items = [] if query is None else list(query.elements(NS_ROSTER, "item"))
        if len(items) != 1:
            self._reply(iq, StanzaError("bad-request"))
            return
        jid = bare(items[0].getAttribute("jid"))
        if jid is not None:
            item = parse_item(items[0])
            if item is None:
                self.items.pop(jid, None)
            else:
                self.items[jid] = item
                if item.subscription in ("from", "both"):
                    self.incoming.discard(jid)
        self._reply(iq, None)

    def _reply(self, iq: domish.Element, error: StanzaError | None) -> None:
        if error is not None:
            response = error.toResponse(iq)
            response.attributes.pop("from", None)  # our own full JID: the server stamps it
        else:
            response = domish.Element((None, "iq"))
            response["type"] = "result"
            if iq.getAttribute("id"):
                response["id"] = iq["id"]
        if iq.getAttribute("from"):
            response["to"] = iq["from"]
        self.xmlstream.send(response)

    def _contact_sender(self, stanza: domish.Element) -> str | None:
        sender = bare(stanza.getAttribute("from"))
        return None if sender is None or sender == self._own_bare() else sender

    def _on_subscribe(self, stanza: domish.Element) -> None:
        sender = self._contact_sender(stanza)
        if sender is not None:
            self.incoming.add(sender)

    def _on_unsubscribe(self, stanza: domish.Element) -> None:
        # The contact withdrew its request (or its subscription); the server forgot it.
        sender = self._contact_sender(stanza)
        if sender is not None:
            self.incoming.discard(sender)

    def _on_own_presence(self, stanza: domish.Element) -> None:
        """Track the user's other available bridge sessions (RFC 6121 4.2.2 tells them apart)."""
        sender = parse(stanza.getAttribute("from"))
        if sender is None or sender.userhost() != self._own_bare() or sender == self.parent.jid:
            return
        if not (sender.resource or "").startswith(BRIDGE_RESOURCE_PREFIX):
            return
        kind = stanza.getAttribute("type")
        if kind is None:
            self.peers.add(sender.full())
        elif kind in ("unavailable", "error"):
            self.peers.discard(sender.full())

    def _on_answered(self, stanza: domish.Element) -> None:
        """Another bridge session of the user answered a request: it is no longer pending."""
        stanza.handled = True  # type: ignore[attr-defined]  # xish's convention
        sender = parse(stanza.getAttribute("from"))
        if sender is None or sender.userhost() != self._own_bare():
            return  # only the user's own sessions may say so; the server stamps ``from``
        answered = child(stanza, "answered", NS_ANSWERED)
        jid = bare(answered.getAttribute("jid")) if answered is not None else None
        if jid is not None:
            self.incoming.discard(jid)

    def _tell_peers(self, jid: str) -> None:
        """Tell the user's other bridge sessions that ``jid``'s request is answered."""
        for peer in sorted(self.peers):
            message = domish.Element((None, "message"))
            message["to"], message["type"] = peer, "headline"
            message.addElement((NS_ANSWERED, "answered"))["jid"] = jid
            self.parent.send(message)

    # Operations for the REST API.

    async def refresh(self, incoming: bool = True) -> None:
        """Bring the view up to date with everything the server processed before now.

        The first call fetches the roster (which also subscribes this session to roster
        pushes); later calls only wait for one round trip, after which every push the
        server sent before it has been applied. With ``incoming``, the session also learns
        pending subscription requests (see the module docstring) the first time.
        """
        fetched = False
        if not self.loaded:
            result = await self.parent.iq("get", roster_query())
            self.items = parse_roster(result)
            self.loaded = fetched = True
        if incoming and not self.revealed:
            self.revealed = True
            if not self.parent.available:
                self.parent.send(presence(HIDDEN_PRIORITY))
                fetched = False  # the re-sent requests arrive before the next round trip
            elif not self.watching:
                log.warn("Session went available before its roster handler: earlier subscription requests unknown")
        if not fetched:
            await self.parent.round_trip()

    def contact(self, jid: JID) -> Contact | None:
        """The contact ``jid`` as last refreshed; None when neither in the roster nor asking."""
        bare = jid.userhost()
        item = self.items.get(bare)
        if item is None and bare not in self.incoming:
            return None
        return contact_view(item, bare, bare in self.incoming)

    async def contacts(self) -> list[Contact]:
        """Every roster item and every contact waiting for an answer, by JID."""
        await self.refresh()
        jids = sorted(set(self.items) | self.incoming)
        return [contact_view(self.items.get(jid), jid, jid in self.incoming) for jid in jids]

    async def find(self, jid: JID) -> Contact | None:
        await self.refresh()
        return self.contact(jid)

    async def set_item(self, jid: JID, name: str | None, groups: list[str] | None) -> None:
        """Add ``jid`` or update it; a ``None`` name or groups keeps the current ones."""
        await self.refresh(incoming=False)
        current = self.items.get(jid.userhost())
        if name is None:
            name = current.name if current else None
        if groups is None:
            groups = list(current.groups) if current else []
        await self.parent.iq("set", roster_set(jid, name, groups))

    async def subscribe(self, jid: JID) -> None:
        """Ask ``jid`` for its presence (RFC 6121 3.1); the server pushes ``ask='subscribe'``."""
        self.parent.send(subscription_presence(jid, "subscribe"))
        await self.parent.round_trip()

    async def approve(self, jid: JID) -> bool:
        """Approve ``jid``'s pending request (RFC 6121 3.1.4); False when the server had none.

        True once the server confirms with a roster push of subscription ``from`` or
        ``both`` (or ``jid`` had it already). Otherwise the ``subscribed`` is taken back
        (see the module docstring), and the user's other bridge sessions are told.
        """
        bare = jid.userhost()
        before = self.items.get(bare)
        if before is not None and before.subscription in ("from", "both"):
            self.incoming.discard(bare)
            return True
        self.parent.send(subscription_presence(jid, "subscribed"))
        await self.parent.round_trip()
        self.incoming.discard(bare)
        after = self.items.get(bare)
        if after is not None and after.subscription in ("from", "both"):
            return True
        # Nothing was pending: cancel the pre-approval a server may have recorded (3.4).
        self.parent.send(subscription_presence(jid, "unsubscribed"))
        if before is None and after is not None:
            await self._remove_item(jid)
        else:
            await self.parent.round_trip()
        self._tell_peers(bare)
        return False

    async def _remove_item(self, jid: JID) -> None:
        try:
            await self.parent.iq("set", roster_remove(jid))
        except StanzaError as e:
            log.info("Could not remove a pre-approved contact: {condition}", condition=e.condition)

    async def remove(self, jid: JID, refreshed: bool = False) -> bool:
        """Remove ``jid`` and decline its request; False when it was neither.

        ``refreshed``: the caller has just called ``refresh`` (one for many removals).
        """
        if not refreshed:
            await self.refresh()
        bare = jid.userhost()
        declined = bare in self.incoming
        if declined:
            # Prosody keeps a stored request across a roster remove; decline it first.
            self.parent.send(subscription_presence(jid, "unsubscribed"))
            self.incoming.discard(bare)
            self._tell_peers(bare)
        if bare not in self.items:
            # Not every server says item-not-found here (ejabberd answers a result).
            if declined:
                await self.parent.round_trip()
            return declined
        try:
            await self.parent.iq("set", roster_remove(jid))
        except StanzaError as e:
            if e.condition == "item-not-found":
                return declined
            raise
        return True

    async def remove_all(self, jids: Iterable[JID]) -> set[str]:
        """Remove each contact that is there; the bare JIDs removed.

        One at a time: a stanza error about one contact leaves it in place, not the rest.
        """
        await self.refresh()
        removed: set[str] = set()
        for jid in {jid.userhost(): jid for jid in jids}.values():
            try:
                if await self.remove(jid, refreshed=True):
                    removed.add(jid.userhost())
            except StanzaError as e:
                log.info("Could not remove a contact: {condition}", condition=e.condition)
        return removed
