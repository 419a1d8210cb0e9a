"""RFC 6121 roster items and subscription stanzas, and MongooseIM's view of them.

Pure builders and parsers for ``bridge.xmpp.roster`` (which explains why the bridge reads
pending requests the way it does) and the REST API's ``Contact``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bridge.protocol.jid import bare
from bridge.protocol.namespaces import NS_ROSTER

SUBSCRIPTIONS = ("none", "to", "from", "both")


@dataclass(frozen=True)
class RosterItem:
    """One RFC 6121 roster item, as the server last reported it."""

    jid: str  # bare, normalised
    subscription: str = "none"
    ask_out: bool = False
    name: str | None = None
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Contact:
    """A contact as the REST API shows it: a roster item, or only a pending request."""

    jid: str
    subscription: str
    ask: str
    name: str | None = None
    groups: tuple[str, ...] = ()


def ask_state(outgoing: bool, incoming: bool) -> str:
    """MongooseIM's ``ask``: which subscription requests are waiting for an answer."""
    if outgoing and incoming:
        return "both"
    if outgoing:
        return "out"
    if incoming:
        return "in"
    return "none"


def contact_view(item: RosterItem | None, jid: str, incoming: bool) -> Contact:
    """Combine a roster item (or none) with whether ``jid`` asked to subscribe."""
    if item is None:
        return Contact(jid, "none", ask_state(False, incoming))
    # A contact that already has the user's presence cannot be waiting for it.
    incoming = incoming and item.subscription in ("none", "to")
    return Contact(jid, item.subscription, ask_state(item.ask_out, incoming), item.name, item.groups)


def parse_item(element: domish.Element) -> RosterItem | None:
    """A roster item, or None for ``subscription='remove'`` and items without a usable JID."""
    jid = bare(element.getAttribute("jid"))
    subscription = element.getAttribute("subscription") or "none"
    if jid is None or subscription == "remove":
        return None
    if subscription not in SUBSCRIPTIONS:
        subscription = "none"
    # A set in RFC 6121 (and on the server): sorted, so every listing shows the same order.
    groups = sorted({str(group) for group in element.elements(NS_ROSTER, "group")} - {""})
    return RosterItem(
        jid=jid,
        subscription=subscription,
        ask_out=element.getAttribute("ask") == "subscribe",
        name=element.getAttribute("name") or None,
        groups=tuple(groups),
    )


def parse_roster(result: domish.Element) -> dict[str, RosterItem]:
    """The items of a roster get result, by bare JID."""
    items: dict[str, RosterItem] = {}
    for query in result.elements(NS_ROSTER, "query"):
        for element in query.elements(NS_ROSTER, "item"):
            item = parse_item(element)
            if item is not None:
                items[item.jid] = item
    return items


def roster_query() -> domish.Element:
    return domish.Element((NS_ROSTER, "query"))


def roster_set(jid: JID, name: str | None, groups: Iterable[str]) -> domish.Element:
    """A roster set payload that adds or updates one item; callers validated every string."""
    query = roster_query()
    item = query.addElement("item")
    item["jid"] = jid.userhost()
    if name:
        item["name"] = name
    for group in groups:
        item.addElement("group", content=group)
    return query


def roster_remove(jid: JID) -> domish.Element:
    """A roster set payload that removes one item, cancelling both subscriptions (2.5)."""
    query = roster_query()
    item = query.addElement("item")
    item["jid"] = jid.userhost()
    item["subscription"] = "remove"
    return query


def subscription_presence(to: JID, presence_type: str) -> domish.Element:
    """``subscribe``, ``subscribed``, ``unsubscribe`` or ``unsubscribed`` to a bare JID."""
    element = domish.Element((None, "presence"))
    element["to"] = to.userhost()
    element["type"] = presence_type
    return element
