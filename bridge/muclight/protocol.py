"""MongooseIM's MUC Light protocol (``urn:xmpp:muclight:0``): namespaces and the stanza
pieces both sides share (the component in this package and the REST client in
``bridge.xmpp.muclight_client``).

Configuration travels as plain child elements (``<roomname>``, ``<subject>``) rather than a
data form; occupants as ``<user affiliation='owner|member|none'>bare JID</user>``.
"""

from __future__ import annotations

from twisted.words.xish import domish

from bridge.convert import is_xml_text
from bridge.jid import parse

NS_MUCLIGHT = "urn:xmpp:muclight:0"
NS_CREATE = NS_MUCLIGHT + "#create"
NS_INFO = NS_MUCLIGHT + "#info"
NS_CONFIGURATION = NS_MUCLIGHT + "#configuration"
NS_AFFILIATIONS = NS_MUCLIGHT + "#affiliations"
NS_DESTROY = NS_MUCLIGHT + "#destroy"
NS_BLOCKING = NS_MUCLIGHT + "#blocking"
# The bridge's own application-specific error condition (RFC 6120 8.3.4): the room exists
# but the sender does not occupy it. The protocol answers item-not-found either way; the
# condition lets the REST API tell 403 from 404 without a second request.
NS_BRIDGE_ERRORS = "urn:xmpp-rest-bridge:muclight:0"
NOT_OCCUPANT = "not-occupant"

NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_PING = "urn:xmpp:ping"
NS_MAM = "urn:xmpp:mam:2"
NS_MAM_1 = "urn:xmpp:mam:1"
NS_FORWARD = "urn:xmpp:forward:0"
NS_DELAY = "urn:xmpp:delay"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_DATA = "jabber:x:data"
NS_SID = "urn:xmpp:sid:0"
NS_PRIVILEGE = "urn:xmpp:privilege:2"

# The configuration fields this service knows, and their defaults (MongooseIM's schema).
CONFIG_FIELDS = {"roomname": "Untitled", "subject": ""}
AFFILIATIONS = ("owner", "member", "none")


def bare_jid(text: str | None) -> str | None:
    """``text`` as a normalised bare JID with a user part, or None if it is not one."""
    if not text or not is_xml_text(text):
        return None
    jid = parse(text.strip())
    if jid is None or not jid.user or jid.resource:
        return None
    return jid.userhost()


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
