"""MongooseIM's MUC Light protocol (``urn:xmpp:muclight:0``) as the component in this
package speaks it: item lists, versions, stored elements. Its namespaces and ``bare_jid``
are the protocol layer's (``bridge.protocol``), which the REST client side
(``bridge.xmpp.muclight_client``) imports without this package.

Configuration travels as plain child elements (``<roomname>``, ``<subject>``) rather than a
data form; occupants as ``<user affiliation='owner|member|none'>bare JID</user>``.
"""

from __future__ import annotations

from twisted.words.xish import domish

from bridge.protocol.muclight import bare_jid

# The configuration fields this service knows, and their defaults (MongooseIM's schema).
CONFIG_FIELDS = {"roomname": "Untitled", "subject": ""}
AFFILIATIONS = ("owner", "member", "none")


def user_items(container: domish.Element, ns: str) -> list[tuple[str, str]] | None:
    """The ``<user affiliation>`` items of ``container`` as (bare JID, affiliation).

    None when any item is malformed: an unknown child, an unknown affiliation, a JID that
    is not a bare user JID, or the same JID twice (the protocol calls all bad requests).
    """
    items: list[tuple[str, str]] = []
    seen: set[str] = set()
    for element in container.elements():
        if element.uri != ns or element.name != "user":
            return None
        affiliation = element.getAttribute("affiliation")
        jid = bare_jid(str(element))
        if affiliation not in AFFILIATIONS or jid is None or jid in seen:
            return None
        seen.add(jid)
        items.append((jid, affiliation))
    return items


def add_users(container: domish.Element, items: list[tuple[str, str]]) -> None:
    for jid, affiliation in items:
        container.addElement("user", content=jid)["affiliation"] = affiliation


def version_of(query: domish.Element) -> str | None:
    for element in query.elements(query.uri, "version"):
        return str(element)
    return None


def parse_element(xml: str) -> domish.Element:
    """Parse one serialised element (from the store: XML this component wrote itself)."""
    found: list[domish.Element] = []
    stream = domish.elementStream()
    stream.DocumentStartEvent = lambda root: None
    stream.ElementEvent = found.append
    stream.DocumentEndEvent = lambda: None
    stream.parse(b"<wrapper xmlns='jabber:client'>" + xml.encode("utf-8") + b"</wrapper>")
    if len(found) != 1:
        raise ValueError("expected exactly one element")
    return found[0]
