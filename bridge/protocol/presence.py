"""RFC 6121 presence (section 4) as the REST API shows it: pure functions, no session.

What a contact's ``<presence/>`` says becomes a ``PresenceInfo`` (``show``, ``status``,
``priority``); ``GET /api/presence`` lists them per resource and the ``presence`` live event
carries them with the sender's full JID. The user's own presence (``PUT /api/presence``) is
built here too, from values the REST layer has validated.

Which received presence counts: ``available`` (no ``type``) and ``unavailable`` from another
user's JID. Subscription requests and answers (``subscribe``, ``subscribed``, ...) are roster
business (``bridge.xmpp.roster``), probes are the server's, errors are no state; presence
from the user's own other resources is left out (the API is about *contacts*, and every
other bridge process or device of the user would show up as one), and so is XEP-0045 room
occupancy (``muc#user``), which is a room's business. What a contact sends is untrusted: a
``show`` outside RFC 6121's four values is read as plain available, a priority outside
-128..127 (or not a number) as 0, and a status is cut to ``MAX_STATUS`` characters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bridge.protocol.jid import parse
from bridge.protocol.namespaces import NS_CLIENT
from bridge.protocol.xml import is_xml_text

SHOWS = ("chat", "away", "xa", "dnd")
MAX_STATUS = 1023
MIN_PRIORITY, MAX_PRIORITY = -128, 127
AVAILABLE, UNAVAILABLE = "available", "unavailable"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
XML_NS = "http://www.w3.org/XML/1998/namespace"


@dataclass(frozen=True)
class PresenceInfo:
    """What one resource's presence says."""

    show: str | None = None
    status: str | None = None
    priority: int = 0


@dataclass(frozen=True)
class ReceivedPresence:
    """A contact's presence that changes what the API reports.

    ``jid`` is the sender as sent: a full JID, or a bare one for an ``unavailable`` that
    ends every resource of the contact (servers send that when a subscription ends).
    """

    jid: JID
    type: str  # AVAILABLE or UNAVAILABLE
    info: PresenceInfo


def _text_of(stanza: domish.Element, name: str) -> str | None:
    """The text of the first ``name`` child in the client namespace (or none), if any."""
    for element in stanza.elements():
        if element.name == name and element.uri in (None, NS_CLIENT):
            return str(element)
    return None


def _status_of(stanza: domish.Element) -> str | None:
    """The status text: the one without ``xml:lang`` if several, cut to ``MAX_STATUS``."""
    statuses = [e for e in stanza.elements() if e.name == "status" and e.uri in (None, NS_CLIENT)]
    if not statuses:
        return None
    plain = [e for e in statuses if not e.hasAttribute((XML_NS, "lang"))]
    text = str((plain or statuses)[0])[:MAX_STATUS]
    return text or None


def _priority_of(stanza: domish.Element) -> int:
    text = (_text_of(stanza, "priority") or "").strip()
    body = text[1:] if text[:1] in "+-" else text
    if not text or not body.isascii() or not body.isdigit() or len(body) > 4:
        return 0
    value = int(text)
    return value if MIN_PRIORITY <= value <= MAX_PRIORITY else 0


def presence_info(stanza: domish.Element) -> PresenceInfo:
    """``show``, ``status`` and ``priority`` of an available presence, leniently read."""
    show = (_text_of(stanza, "show") or "").strip()
    return PresenceInfo(show if show in SHOWS else None, _status_of(stanza), _priority_of(stanza))


def received_presence(stanza: domish.Element, own: str) -> ReceivedPresence | None:
    """The contact presence ``stanza`` is, or None when it is none (see the module docstring).

    ``own`` is the user's bare JID.
    """
    presence_type = stanza.getAttribute("type") or AVAILABLE
    if presence_type not in (AVAILABLE, UNAVAILABLE):
        return None
    sender = parse(stanza.getAttribute("from"))
    if sender is None or not sender.user or sender.userhost() == own:
        return None
    if any(e.name == "x" and e.uri == NS_MUC_USER for e in stanza.elements()):
        return None
    if presence_type == AVAILABLE:
        if not sender.resource:
            return None  # a contact's client always has a resource; nothing to list it under
        return ReceivedPresence(sender, AVAILABLE, presence_info(stanza))
    return ReceivedPresence(sender, UNAVAILABLE, PresenceInfo(status=_status_of(stanza)))


def resource_json(resource: str, info: PresenceInfo) -> dict[str, Any]:
    """One resource of ``GET /api/presence``."""
    result: dict[str, Any] = {"resource": resource}
    if info.show is not None:
        result["show"] = info.show
    if info.status is not None:
        result["status"] = info.status
    result["priority"] = info.priority
    return result


def contacts_json(available: dict[str, dict[str, PresenceInfo]]) -> list[dict[str, Any]]:
    """``GET /api/presence``: each contact (by bare JID) with its resources, both sorted."""
    return [
        {"jid": jid, "resources": [resource_json(name, available[jid][name]) for name in sorted(available[jid])]}
        for jid in sorted(available)
        if available[jid]
    ]


def event_json(received: ReceivedPresence) -> dict[str, Any]:
    """The data of a ``presence`` live event."""
    info = received.info
    result: dict[str, Any] = {"from": received.jid.full(), "type": received.type}
    if info.show is not None:
        result["show"] = info.show
    if info.status is not None:
        result["status"] = info.status
    if received.type == AVAILABLE:
        result["priority"] = info.priority
    return result


def build_presence(info: PresenceInfo, to: JID | None = None) -> domish.Element:
    """The user's available presence (broadcast, or directed ``to``); values already checked."""
    element = domish.Element((None, "presence"))
    if to is not None:
        element["to"] = to.full()
    if info.show is not None:
        element.addElement("show", content=info.show)
    if info.status is not None:
        element.addElement("status", content=info.status)
    element.addElement("priority", content=str(info.priority))
    return element


def valid_status(value: str) -> bool:
    """Whether ``value`` can be a status the user sets: XML text of at most ``MAX_STATUS`` characters."""
    return len(value) <= MAX_STATUS and is_xml_text(value)
