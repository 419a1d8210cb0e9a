"""The occupants' available resources, learnt from what the server sends the component
(``bridge.muclight.presence`` says from which sources), and XEP-0356 privileges.

Presence of any kind updates the table (and, through it, the store); a message error from a full JID (a delivery that
bounced) removes that resource; a ``<privilege xmlns='urn:xmpp:privilege:2'>`` message
from the server is logged, so an admin can see what was granted.
"""

from __future__ import annotations

from twisted.logger import Logger
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bridge.muclight.handlers.base import MucLightHandler
from bridge.protocol.jid import parse
from bridge.protocol.namespaces import NS_PRIVILEGE

log = Logger()


class PresenceHandler(MucLightHandler):
    def connectionInitialized(self) -> None:
        self.xmlstream.addObserver("/presence", self._on_presence)
        self.xmlstream.addObserver("/message", self._on_message)
        # Who was online before this stream (another process's, or this one's before a
        # restart): kept in the store, merged with what the server sends from now on.
        self.available.restore()

    def _on_presence(self, presence: domish.Element) -> None:
        presence.handled = True  # type: ignore[attr-defined]
        self.available.observe(presence)

    def _on_message(self, message: domish.Element) -> None:
        to, sender = parse(message.getAttribute("to")), parse(message.getAttribute("from"))
        if message.getAttribute("type") == "error":
            message.handled = True  # type: ignore[attr-defined]
            if sender is not None and sender.resource:
                self.available.remove(sender.full())
        elif to is not None and sender is not None and to.user is None:
            message.handled = True  # type: ignore[attr-defined]
            self._privileges(message, sender)

    def _privileges(self, message: domish.Element, sender: JID) -> None:
        privilege = next(message.elements(NS_PRIVILEGE, "privilege"), None)
        if privilege is not None and not sender.user and sender.resource is None:
            granted = {perm.getAttribute("access"): perm.getAttribute("type") for perm in privilege.elements()}
            log.info("XEP-0356 privileges from {server}: {granted}", server=sender.full(), granted=granted)
