"""Groupchat messages to MUC Light rooms: archived, then broadcast to the occupants.

The room keeps the sender's payloads (without stanza-level namespaces, and without any
``stanza-id`` but its own, XEP-0359), sends it as ``room@service/sender-bare-JID`` to
every available full JID of every occupant (RFC 6121 8.5.2.1.1: never to a bare JID),
stamped with the archive id.

A message whose id the room's archive already holds from the same sender is a client's
retry (DESIGN.md, "Idempotent retries"): it is not archived again, and not refused either,
so the sender's confirmation (``MucLightClient.send``'s IQ after the message) answers as it
did for the first attempt. Only a sender's own id counts: the room makes one up for a
message without one, which cannot match. It is not broadcast again either when this
process broadcast the first attempt; otherwise the first attempt may have been archived by
a component that died before broadcasting it (SIGKILL between the commit and the sends,
or a takeover), so the archived message goes out now, to the room's current occupants, if
it was archived in the last ``RETRY_WINDOW`` seconds. That copy carries the archive's time
as a XEP-0203 delay. Occupants that did get the first broadcast see the same stanza and
archive ids twice; the bridge's sessions drop the copy (``bridge.xmpp.events``).
"""

from __future__ import annotations

import uuid

from twisted.logger import Logger
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bridge.muclight.handlers.base import MucLightHandler
from bridge.muclight.handlers.state import not_occupant
from bridge.muclight.protocol import parse_element
from bridge.protocol.convert import format_timestamp
from bridge.protocol.jid import parse
from bridge.protocol.namespaces import NS_DELAY, NS_SID
from bridge.protocol.xml import to_xml
from bridge.store import NewArchiveItem, NotOccupant

log = Logger()

# Seconds after archiving within which a retry from another process's time may still have
# gone unbroadcast; an older id resent is only confirmed (no one replays history this way).
RETRY_WINDOW = 300

STANZA_NAMESPACES = ("jabber:component:accept", "jabber:client", "jabber:server")


def plain(element: domish.Element) -> domish.Element:
    """``element`` with stanza-level namespaces removed, so it serialises the same on any
    stream and in the archive (where it is parsed back as ``jabber:client``)."""
    if element.uri in STANZA_NAMESPACES:
        element.uri = None
    if element.defaultUri in STANZA_NAMESPACES:
        element.defaultUri = None
    for each in element.elements():
        plain(each)
    return element


class GroupchatHandler(MucLightHandler):
    """Takes messages to room JIDs; ``PresenceHandler`` takes bounces and messages to the
    service JID."""

    def connectionInitialized(self) -> None:
        self.xmlstream.addObserver("/message", self._on_message)

    def _on_message(self, message: domish.Element) -> None:
        to, sender = parse(message.getAttribute("to")), parse(message.getAttribute("from"))
        if message.getAttribute("type") == "error" or to is None or sender is None or to.user is None:
            return
        message.handled = True  # type: ignore[attr-defined]
        self.handle(message, self._to_room(message, to.user, sender))

    async def _to_room(self, message: domish.Element, room_id: str, sender: JID) -> None:
        if message.getAttribute("type") != "groupchat" or not sender.user:
            raise StanzaError("bad-request", text="Rooms take groupchat messages")
        user = sender.userhost()

        async def work() -> None:
            await self._broadcast(message, room_id, user)

        await self.state.in_room(room_id, work)

    def _settled(self, archived_at: int) -> bool:
        """Whether a message archived at ``archived_at`` (Unix ms) is past any client's retry."""
        return self.state.clock.seconds() * 1000 - archived_at > RETRY_WINDOW * 1000

    async def _broadcast(self, message: domish.Element, room_id: str, user: str) -> None:
        room_jid = self.state.room_jid(room_id)
        client_id = message.getAttribute("id")
        broadcast = domish.Element((None, "message"))
        stanza_id = client_id or uuid.uuid4().hex
        broadcast["from"], broadcast["type"], broadcast["id"] = f"{room_jid}/{user}", "groupchat", stanza_id
        for element in list(message.elements()):
            if element.uri == NS_SID and element.name == "stanza-id":
                continue  # only the room stamps its archive ids
            broadcast.addChild(plain(element))
        # Membership, the retry check and the archive entry in one store transaction (one
        # order per room across processes, bridge.store.sql); the occupants delivered to
        # are the room's as of that transaction.
        try:
            posted = await self.store.post_message(
                room_id, NewArchiveItem(stanza_id, "message", user, to_xml(broadcast)), dedupe=bool(client_id)
            )
        except NotOccupant:
            raise not_occupant() from None
        if posted is None:
            raise StanzaError("item-not-found")
        archive_id = posted.item.archive_id
        if posted.retry:
            if self.state.was_broadcast(room_id, archive_id) or self._settled(posted.item.timestamp):
                return  # taken and delivered already: only the answer was lost
            log.info("Room {room}: a retried message {archive_id} goes out again", room=room_id, archive_id=archive_id)
            # The first attempt as archived, marked as delivered late (XEP-0203) with its time.
            broadcast = plain(parse_element(posted.item.xml))
            delay = broadcast.addElement((NS_DELAY, "delay"))
            delay["from"], delay["stamp"] = room_jid, format_timestamp(posted.item.timestamp)
        sid = broadcast.addElement((NS_SID, "stanza-id"))
        sid["id"], sid["by"] = archive_id, room_jid
        for jid in posted.room.occupants:
            self.deliver(jid, broadcast)
        if self.xmlstream is not None:
            self.state.broadcast_done(room_id, archive_id)
        offline = [jid for jid in posted.room.occupants if jid != user and not self.available.resources(jid)]
        for hook in self.state.offline_hooks:
            hook(room_id, user, offline, broadcast)
