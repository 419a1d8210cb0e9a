"""Message stanzas to the REST API's JSON, and JSON to stanzas.

Covers RFC 6121 chat messages with XEP-0201 threads (``parent``), XEP-0333 chat markers,
XEP-0085 chat states, XEP-0066 out-of-band URLs (attachments), the XEP-0203 ``<delay/>``
timestamps that XEP-0313 archives carry,
and MUC Light room messages and affiliation notices; Smack's properties are
``bridge.protocol.properties``', which received stanzas are live events
``bridge.protocol.events``'. Hostile or malformed input from either side is skipped or
rejected here, never passed on: text XML cannot carry is refused before it reaches a
stream (``bridge.protocol.xml``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from twisted.logger import Logger
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bridge.protocol.jid import bare
from bridge.protocol.namespaces import (
    NS_AFFILIATIONS,
    NS_CHAT_MARKERS,
    NS_CHAT_STATES,
    NS_CLIENT,
    NS_DELAY,
    NS_HINTS,
    NS_OOB,
    NS_PROPERTIES,
)
from bridge.protocol.properties import PropertyValue, add_properties, smack_property
from bridge.protocol.upload import valid_http_url
from bridge.protocol.xml import child

CHAT_MARKERS = ("received", "displayed", "acknowledged")
CHAT_STATES = ("active", "composing", "paused", "inactive", "gone")

log = Logger()


def parse_timestamp(stamp: str) -> int | None:
    """An XEP-0082 date-time as Unix milliseconds, or None if it is not one."""
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def format_timestamp(milliseconds: int) -> str:
    """Unix milliseconds as an XEP-0082 date-time in UTC."""
    moment = datetime.fromtimestamp(milliseconds / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def delay_timestamp(element: domish.Element) -> int | None:
    """The XEP-0203 ``<delay stamp>`` directly inside ``element``, in Unix milliseconds."""
    delay = child(element, "delay", NS_DELAY)
    if delay is None or not delay.getAttribute("stamp"):
        return None
    return parse_timestamp(delay["stamp"])


def chat_marker_of(message: domish.Element) -> dict[str, str] | None:
    """An XEP-0333 marker (received / displayed / acknowledged) as ``{type, id}``."""
    for element in message.elements(NS_CHAT_MARKERS):
        if element.name in CHAT_MARKERS and element.getAttribute("id"):
            return {"type": element.name, "id": element["id"]}
    return None


def chat_state_of(message: domish.Element) -> str | None:
    """The XEP-0085 chat state (active / composing / paused / inactive / gone) of ``message``."""
    for element in message.elements(NS_CHAT_STATES):
        if element.name in CHAT_STATES:
            return str(element.name)
    return None


def oob_url_of(oob: domish.Element) -> str | None:
    """The ``<url/>`` of an XEP-0066 ``<x xmlns='jabber:x:oob'/>``, if it is an http(s) URL.

    Clients show the URL as a link or fetch it: a ``javascript:`` or ``file:`` URL from a
    hostile sender is not passed on.
    """
    url = child(oob, "url", NS_OOB)
    text = str(url).strip() if url is not None else ""
    return text if valid_http_url(text) else None


def message_to_json(message: domish.Element, timestamp: int, fallback_id: str = "") -> dict[str, Any]:
    """A message stanza as the API's received-message JSON (DESIGN.md, RecvMessage)."""
    result: dict[str, Any] = {
        "id": message.getAttribute("id") or fallback_id,
        "from": bare(message.getAttribute("from")),
        "to": bare(message.getAttribute("to")),
        "timestamp": timestamp,
    }
    # One pass over the children (this runs for each of the up to 500 messages of an archive
    # page); the first element of each kind counts, as with ``child`` and ``chat_marker_of``.
    body = thread = properties = oob = None
    marker: dict[str, str] | None = None
    markable = False
    state: str | None = None
    for element in message.children:
        if not isinstance(element, domish.Element):
            continue
        uri, name = element.uri, element.name
        if uri == NS_CLIENT:
            if name == "body" and body is None:
                body = element
            elif name == "thread" and thread is None:
                thread = element
        elif uri == NS_CHAT_MARKERS:
            if name == "markable":
                markable = True
            elif marker is None and name in CHAT_MARKERS and element.getAttribute("id"):
                marker = {"type": name, "id": element["id"]}
        elif uri == NS_PROPERTIES and name == "properties" and properties is None:
            properties = element
        elif uri == NS_CHAT_STATES and state is None and name in CHAT_STATES:
            state = name
        elif uri == NS_OOB and name == "x" and oob is None:
            oob = element
    if body is not None:
        result["body"] = str(body)
    if thread is not None and str(thread):
        result["thread"] = str(thread)
        if thread.getAttribute("parent"):
            result["parent"] = thread["parent"]
    if properties is not None:
        add_properties(result, properties)
    if markable:
        result["markable"] = True
    if marker is not None:
        result["chat_marker"] = marker
    if state is not None:
        result["chat_state"] = state
    url = oob_url_of(oob) if oob is not None else None
    if url is not None:
        result["oob_url"] = url
    return result


def build_message(
    to: JID,
    body: str | None,
    message_type: str = "chat",
    thread: str | None = None,
    parent: str | None = None,
    properties: dict[str, PropertyValue] | None = None,
    markable: bool = False,
    chat_marker: dict[str, str] | None = None,
    chat_state: str | None = None,
    oob_url: str | None = None,
    message_id: str | None = None,
) -> domish.Element:
    """A message stanza with ``message_id`` (a client's id) or a fresh one; callers have
    validated every value already.

    A chat state with neither body nor marker carries XEP-0334 ``<no-store/>``: typing
    notifications are no messages of anyone's archive. A one-to-one marker without a body
    carries ``<store/>``, as servers differ (ejabberd 23.01 archives no bodiless message
    unless told; Prosody 0.12 keeps markers anyway) and the API reads markers back.
    ``oob_url`` is an XEP-0066 attachment (``<x xmlns='jabber:x:oob'><url/></x>``); the
    caller sets the body to the URL when there is no other, as Conversations does, so
    that clients without XEP-0066 show the link.
    """
    message = domish.Element((NS_CLIENT, "message"))
    message["to"] = to.full()
    message["type"] = message_type
    message["id"] = message_id or uuid.uuid4().hex
    if body is not None:
        message.addElement("body", content=body)
    if thread is not None:
        element = message.addElement("thread", content=thread)
        if parent is not None:
            element["parent"] = parent
    if properties:
        container = message.addElement((NS_PROPERTIES, "properties"))
        for name, value in properties.items():
            kind, value_text = smack_property(value)
            prop = container.addElement("property")
            prop.addElement("name", content=name)
            prop.addElement("value", content=value_text)["type"] = kind
    if markable:
        message.addElement((NS_CHAT_MARKERS, "markable"))
    if chat_marker is not None:
        message.addElement((NS_CHAT_MARKERS, chat_marker["type"]))["id"] = chat_marker["id"]
        if body is None and message_type != "groupchat":
            message.addElement((NS_HINTS, "store"))
    if chat_state is not None:
        message.addElement((NS_CHAT_STATES, chat_state))
        if body is None and chat_marker is None:
            message.addElement((NS_HINTS, "no-store"))
    if oob_url is not None:
        message.addElement((NS_OOB, "x")).addElement("url", content=oob_url)
    return message


# --- MUC Light room messages (the room archive's JSON, and SSE ``room.message`` events) ---


def room_message_to_json(message: domish.Element, timestamp: int, fallback_id: str = "") -> dict[str, Any]:
    """A message from a MUC Light room as MongooseIM's API showed it.

    A groupchat message comes from ``room@service/occupant-bare-jid``: ``type`` "message",
    ``from`` the occupant, with ``body``, ``markable`` and ``chat_marker`` when present. An
    affiliation notice (``urn:xmpp:muclight:0#affiliations``, from the room's bare JID):
    ``type`` "affiliation", ``from`` the room, and its first ``user`` and ``affiliation``.
    """
    sender = message.getAttribute("from", "")
    room, _, occupant = sender.partition("/")
    result: dict[str, Any] = {"id": message.getAttribute("id") or fallback_id, "timestamp": timestamp}
    notice = child(message, "x", NS_AFFILIATIONS)
    user = child(notice, "user", NS_AFFILIATIONS) if notice is not None else None
    if user is not None:
        result.update(
            type="affiliation",
            **{"from": bare(room) or room},
            affiliation=user.getAttribute("affiliation", ""),
            user=bare(str(user)) or str(user),
        )
        return result
    result.update(type="message", **{"from": bare(occupant) or occupant or bare(room) or room})
    body = next((each for each in message.elements() if each.name == "body" and each.uri in (None, NS_CLIENT)), None)
    if body is not None:
        result["body"] = str(body)
    if child(message, "markable", NS_CHAT_MARKERS) is not None:
        result["markable"] = True
    marker = chat_marker_of(message)
    if marker is not None:
        result["chat_marker"] = marker
    properties = child(message, "properties", NS_PROPERTIES)
    if properties is not None:
        add_properties(result, properties)
    return result
