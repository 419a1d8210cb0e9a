"""Message stanzas to the REST API's JSON, and JSON to stanzas.

Covers RFC 6121 chat messages with XEP-0201 threads (``parent``), Smack's jivesoftware
``<properties/>`` (every value type becomes its text), XEP-0333 chat markers, the
XEP-0203 ``<delay/>`` timestamps that XEP-0313 archives carry, MUC Light room messages and
affiliation notices, and which received stanzas are live events (XEP-0280 carbon copies
unwrapped and checked). Hostile or malformed input from either side is skipped or rejected
here, never passed on: a property without a name is dropped, a forged carbon is no event,
text XML cannot carry is refused before it reaches a stream (``bridge.protocol.xml``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from twisted.logger import Logger
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bridge.protocol.jid import bare, parse
from bridge.protocol.namespaces import (
    NS_AFFILIATIONS,
    NS_CARBONS,
    NS_CHAT_MARKERS,
    NS_CLIENT,
    NS_DELAY,
    NS_FORWARD,
    NS_MAM,
    NS_PROPERTIES,
)
from bridge.protocol.xml import child

CHAT_MARKERS = ("received", "displayed", "acknowledged")

# The names of the live events received stanzas become (DESIGN.md, Live events).
MESSAGE = "message"
ROOM_MESSAGE = "room.message"

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


def properties_of(message: domish.Element) -> dict[str, str] | None:
    """Smack's ``<properties/>`` as name -> value text; None when the stanza has none."""
    properties = child(message, "properties", NS_PROPERTIES)
    if properties is None:
        return None
    return _property_map(properties)


def _property_map(properties: domish.Element) -> dict[str, str]:
    result: dict[str, str] = {}
    for prop in properties.elements(NS_PROPERTIES, "property"):
        name = child(prop, "name", NS_PROPERTIES)
        value = child(prop, "value", NS_PROPERTIES)
        if name is None or value is None or not str(name).strip():
            continue
        result[str(name)] = str(value)
    return result


def chat_marker_of(message: domish.Element) -> dict[str, str] | None:
    """An XEP-0333 marker (received / displayed / acknowledged) as ``{type, id}``."""
    for element in message.elements(NS_CHAT_MARKERS):
        if element.name in CHAT_MARKERS and element.getAttribute("id"):
            return {"type": element.name, "id": element["id"]}
    return None


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
    body = thread = properties = None
    marker: dict[str, str] | None = None
    markable = False
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
    if body is not None:
        result["body"] = str(body)
    if thread is not None and str(thread):
        result["thread"] = str(thread)
        if thread.getAttribute("parent"):
            result["parent"] = thread["parent"]
    if properties is not None:
        result["properties"] = _property_map(properties)
    if markable:
        result["markable"] = True
    if marker is not None:
        result["chat_marker"] = marker
    return result


def build_message(
    to: JID,
    body: str | None,
    message_type: str = "chat",
    thread: str | None = None,
    parent: str | None = None,
    properties: dict[str, str] | None = None,
    markable: bool = False,
    chat_marker: dict[str, str] | None = None,
) -> domish.Element:
    """A message stanza with a fresh id; callers have validated every string already."""
    message = domish.Element((NS_CLIENT, "message"))
    message["to"] = to.full()
    message["type"] = message_type
    message["id"] = uuid.uuid4().hex
    if body is not None:
        message.addElement("body", content=body)
    if thread is not None:
        element = message.addElement("thread", content=thread)
        if parent is not None:
            element["parent"] = parent
    if properties:
        container = message.addElement((NS_PROPERTIES, "properties"))
        for name, value in properties.items():
            prop = container.addElement("property")
            prop.addElement("name", content=name)
            prop.addElement("value", content=value)["type"] = "string"
    if markable:
        message.addElement((NS_CHAT_MARKERS, "markable"))
    if chat_marker is not None:
        message.addElement((NS_CHAT_MARKERS, chat_marker["type"]))["id"] = chat_marker["id"]
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
    return result


# --- Received stanzas as live events ---


def _has_content(message: domish.Element) -> bool:
    """Whether the API has something to say about ``message``: a body or a chat marker.

    Chat states alone, receipts, server notices such as XEP-0356's ``<privilege/>`` and the
    like are not events of this API.
    """
    body = child(message, "body", NS_CLIENT)
    return (body is not None and bool(str(body))) or chat_marker_of(message) is not None


def chat_message_json(message: domish.Element, now: int) -> dict[str, Any] | None:
    """The ``message`` event of a one-to-one (chat or normal) message, or None."""
    if message.getAttribute("type", "normal") not in ("normal", "chat"):
        return None
    if child(message, "result", NS_MAM) is not None or not _has_content(message):
        return None
    return message_to_json(message, delay_timestamp(message) or now)


def room_message_json(message: domish.Element, room_service: str, now: int) -> dict[str, Any] | None:
    """The ``room.message`` event of a groupchat stanza from a MUC Light room, or None.

    The JSON is the room archive's (``room_message_to_json``) plus ``room``: the bare room
    id, as MongooseIM's SSE had it (``from`` still carries the JID). Only rooms of the
    configured service count: a room broadcast comes from ``room@service/occupant``, an
    affiliation notice (``urn:xmpp:muclight:0#affiliations``) from the room's bare JID.
    """
    sender = parse(message.getAttribute("from"))
    if sender is None or not sender.user or sender.host != room_service:
        return None
    notice = child(message, "x", NS_AFFILIATIONS)
    if notice is not None and sender.resource is None:
        user = child(notice, "user", NS_AFFILIATIONS)
        if user is None or bare(str(user)) is None:
            return None
    elif sender.resource is None or not _has_content(message):
        return None
    result = room_message_to_json(message, delay_timestamp(message) or now)
    result["room"] = sender.user
    return result


def _carbon(message: domish.Element) -> tuple[str, domish.Element] | None:
    for direction in ("received", "sent"):
        found = child(message, direction, NS_CARBONS)
        if found is not None:
            return direction, found
    return None


def unwrap_carbon(message: domish.Element, own: str) -> tuple[str, domish.Element, int | None] | None:
    """(direction, forwarded message, its delay stamp) of a genuine carbon copy, else None.

    Only the user's own account may send carbons (its bare JID, no resource); the copy of
    a received message must be addressed to the user and that of a sent one come from them.
    """
    found = _carbon(message)
    if found is None:
        return None
    direction, carbon = found
    sender = parse(message.getAttribute("from"))
    if sender is None or sender.resource is not None or sender.userhost() != own:
        return None
    forwarded = child(carbon, "forwarded", NS_FORWARD)
    inner = child(forwarded, "message", NS_CLIENT) if forwarded is not None else None
    if inner is None:
        return None
    party = inner.getAttribute("to") if direction == "received" else inner.getAttribute("from")
    if bare(party) != own:
        return None
    return direction, inner, delay_timestamp(forwarded) if forwarded is not None else None


def incoming_event(message: domish.Element, own: str, room_service: str, now: int) -> tuple[str, dict[str, Any]] | None:
    """The (event name, JSON) a message received by ``own``'s session stands for, or None."""
    if message.getAttribute("type") == "error":
        return None
    if _carbon(message) is not None:
        unwrapped = unwrap_carbon(message, own)
        if unwrapped is None:
            log.warn("Dropped a forged or malformed carbon copy for {jid}", jid=own)
            return None
        direction, inner, stamp = unwrapped
        data = chat_message_json(inner, stamp or now)
        if data is None:
            return None
        data["carbon"] = direction
        return MESSAGE, data
    if message.getAttribute("type") == "groupchat":
        room = room_message_json(message, room_service, now)
        return (ROOM_MESSAGE, room) if room is not None else None
    data = chat_message_json(message, now)
    return (MESSAGE, data) if data is not None else None


def in_microseconds(data: dict[str, Any], now_ms: int, now_us: int) -> None:
    """Restate an event's ``timestamp`` (Unix ms) in microseconds, as MongooseIM's SSE did.

    A stamp that is the arrival time (``now_ms``) gets the clock's own microseconds; one
    from a ``<delay/>`` only has milliseconds, so it is scaled.
    """
    stamp = data.get("timestamp")
    if isinstance(stamp, int) and not isinstance(stamp, bool):
        data["timestamp"] = now_us if stamp == now_ms else stamp * 1000
