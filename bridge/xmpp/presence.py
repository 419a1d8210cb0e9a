"""RFC 6121 presence of a user session.

A session that only serves REST calls stays unavailable, so it never appears to the
user's contacts. A session that holds a live event stream goes available, once, so
messages to the bare JID reach it. Services that learn occupants' full JIDs from directed
presence (the MUC Light component, without XEP-0356) get it here too.
"""

from __future__ import annotations

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bridge.xmpp.session import Session


def presence(priority: int, to: JID | None = None, presence_type: str | None = None) -> domish.Element:
    element = domish.Element((None, "presence"))
    if to is not None:
        element["to"] = to.full()
    if presence_type is not None:
        element["type"] = presence_type
    else:
        element.addElement("priority", content=str(priority))
    return element


def go_available(session: Session, priority: int, services: list[JID]) -> None:
    """Announce ``session`` available (once) and tell ``services`` its full JID."""
    if session.available:
        return
    session.send(presence(priority))
    for service in services:
        session.send(presence(priority, to=service))
    session.available = True
