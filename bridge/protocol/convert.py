"""Message stanzas to the REST API's JSON, and JSON to stanzas.

Covers RFC 6121 chat messages with XEP-0201 threads (``parent``), Smack's jivesoftware
``<properties/>`` (typed as Smack types them; every value is read back as its text, with
the types beside), XEP-0333 chat markers, XEP-0085 chat states, the
XEP-0203 ``<delay/>`` timestamps that XEP-0313 archives carry, MUC Light room messages and
affiliation notices, and which received stanzas are live events (XEP-0280 carbon copies
unwrapped and checked). Hostile or malformed input from either side is skipped or rejected
here, never passed on: a property without a name is dropped, a forged carbon is no event,
text XML cannot carry is refused before it reaches a stream (``bridge.protocol.xml``).
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from twisted.logger import Logger
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bridge.protocol.jid import bare, parse
from bridge.protocol.namespaces import (
    NS_AFFILIATIONS,
    NS_CARBONS,
    NS_CHAT_MARKERS,
    NS_CHAT_STATES,
    NS_CLIENT,
    NS_DELAY,
    NS_FORWARD,
    NS_HINTS,
    NS_MAM,
    NS_PROPERTIES,
)
from bridge.protocol.xml import child

CHAT_MARKERS = ("received", "displayed", "acknowledged")
CHAT_STATES = ("active", "composing", "paused", "inactive", "gone")

# The names of the live events received stanzas become (DESIGN.md, Live events).
MESSAGE = "message"
ROOM_MESSAGE = "room.message"
CHAT_STATE = "chat_state"

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


# --- Smack's jivesoftware properties ---

# A property value as the API takes it (JSON string, integer, float or boolean).
PropertyValue = str | int | float | bool

# The Java ranges of Smack's ``integer`` and ``long``.
INTEGER_RANGE = (-(2**31), 2**31 - 1)
LONG_RANGE = (-(2**63), 2**63 - 1)
# What ``Integer.valueOf`` / ``Long.valueOf`` read (ASCII digits only: Java also takes other
# Unicode digits, which no Smack writes), and what ``Double.valueOf`` / ``Float.valueOf``
# read once Java's ``trim`` has removed the characters up to U+0020: NaN and Infinity,
# decimals and hexadecimal floats, the last two with an optional type suffix.
_JAVA_INTEGER = re.compile(r"[+-]?[0-9]+\Z")
_JAVA_FLOATING = re.compile(
    r"[+-]?(?:NaN|Infinity"
    r"|(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
    r"|0[xX](?:[0-9a-fA-F]+\.?|[0-9a-fA-F]*\.[0-9a-fA-F]+)[pP][+-]?[0-9]+)[fFdD]?)\Z"
)
_JAVA_WHITESPACE = "".join(chr(code) for code in range(0x21))


def smack_reads(kind: str, text: str) -> bool:
    """Whether Smack's ``JivePropertiesExtensionProvider`` reads ``text`` as a ``kind`` value.

    Where it would fail (``Integer.valueOf`` of "1.5", an unknown type, a serialised
    ``java-object``, which the bridge never passes on) the property is skipped.
    """
    if kind in ("string", "boolean"):  # Boolean.valueOf reads any text ("true" or not)
        return True
    if kind in ("integer", "long"):
        low, high = INTEGER_RANGE if kind == "integer" else LONG_RANGE
        return _JAVA_INTEGER.match(text) is not None and low <= int(text) <= high
    if kind in ("double", "float"):
        return _JAVA_FLOATING.match(text.strip(_JAVA_WHITESPACE)) is not None
    return False


def java_double(value: float) -> str:
    """``value`` as Java's ``Double.toString`` writes it ("100.0", "1.0E7", "1.5E-4")."""
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign, digit_tuple, exponent = Decimal(repr(value)).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    assert isinstance(exponent, int)  # a finite value
    exponent += len("".join(map(str, digit_tuple))) - len(digits)
    scientific = len(digits) + exponent - 1  # the power of ten of the first digit
    prefix = "-" if sign else ""
    if 1e-3 <= abs(value) < 1e7:
        if scientific < 0:
            return f"{prefix}0.{'0' * (-scientific - 1)}{digits}"
        whole = digits[: scientific + 1].ljust(scientific + 1, "0")
        return f"{prefix}{whole}.{digits[scientific + 1 :] or '0'}"
    return f"{prefix}{digits[0]}.{digits[1:] or '0'}E{scientific}"


def smack_property(value: object) -> tuple[str, str]:
    """(Smack type, value text) of an API property value; ValueError if Smack has no type for it.

    Integers are ``integer`` when they fit Java's int, else ``long``; floats are ``double``
    (finite only: JSON has no NaN, however lenient parsers read it).
    """
    if isinstance(value, bool):
        return "boolean", "true" if value else "false"
    if isinstance(value, int):
        if INTEGER_RANGE[0] <= value <= INTEGER_RANGE[1]:
            return "integer", str(value)
        if LONG_RANGE[0] <= value <= LONG_RANGE[1]:
            return "long", str(value)
        raise ValueError("out of the range of a Java long")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        return "double", java_double(value)
    if isinstance(value, str):
        return "string", value
    raise ValueError("not a string, number or boolean")


def properties_of(message: domish.Element) -> dict[str, str] | None:
    """Smack's ``<properties/>`` as name -> value text; None when the stanza has none."""
    properties = child(message, "properties", NS_PROPERTIES)
    if properties is None:
        return None
    return _property_map(properties)[0]


def _property_map(properties: domish.Element) -> tuple[dict[str, str], dict[str, str]]:
    """(name -> value text, name -> Smack type) of the properties Smack would read.

    A value without a ``type`` is a string (MongooseIM and older clients wrote them so).
    """
    values: dict[str, str] = {}
    types: dict[str, str] = {}
    for prop in properties.elements(NS_PROPERTIES, "property"):
        name = child(prop, "name", NS_PROPERTIES)
        value = child(prop, "value", NS_PROPERTIES)
        if name is None or value is None or not str(name).strip():
            continue
        kind = value.getAttribute("type") or "string"
        if not smack_reads(kind, str(value)):
            continue
        values[str(name)] = str(value)
        types[str(name)] = kind
    return values, types


def _add_properties(result: dict[str, Any], properties: domish.Element) -> None:
    """``properties``, and ``property_types`` when any is not a string, into ``result``."""
    values, types = _property_map(properties)
    result["properties"] = values
    if any(kind != "string" for kind in types.values()):
        result["property_types"] = types


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
    if body is not None:
        result["body"] = str(body)
    if thread is not None and str(thread):
        result["thread"] = str(thread)
        if thread.getAttribute("parent"):
            result["parent"] = thread["parent"]
    if properties is not None:
        _add_properties(result, properties)
    if markable:
        result["markable"] = True
    if marker is not None:
        result["chat_marker"] = marker
    if state is not None:
        result["chat_state"] = state
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
) -> domish.Element:
    """A message stanza with a fresh id; callers have validated every value already.

    A chat state with neither body nor marker carries XEP-0334 ``<no-store/>``: typing
    notifications are no messages of anyone's archive. A one-to-one marker without a body
    carries ``<store/>``, as servers differ (ejabberd 23.01 archives no bodiless message
    unless told; Prosody 0.12 keeps markers anyway) and the API reads markers back.
    """
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
        _add_properties(result, properties)
    return result


# --- Received stanzas as live events ---


def _has_content(message: domish.Element) -> bool:
    """Whether the API has something to say about ``message``: a body or a chat marker.

    Receipts, server notices such as XEP-0356's ``<privilege/>`` and the like are not
    events of this API; chat states alone are events of their own (``chat_event``).
    """
    body = child(message, "body", NS_CLIENT)
    return (body is not None and bool(str(body))) or chat_marker_of(message) is not None


def is_chat_state_only(message: domish.Element) -> bool:
    """Whether ``message`` is a bare XEP-0085 notification: a chat state, no body, no marker.

    Such stanzas are typing notices, never messages of the archive's JSON, even where a
    server archived one.
    """
    return chat_state_of(message) is not None and not _has_content(message)


def chat_event(message: domish.Element, now: int) -> tuple[str, dict[str, Any]] | None:
    """The event of a one-to-one (chat or normal) message, or None.

    A message with a body or a marker is a ``message`` event (with its ``chat_state``, if
    any); a chat state alone is a ``chat_state`` event ``{from, to, state}``.
    """
    if message.getAttribute("type", "normal") not in ("normal", "chat"):
        return None
    if child(message, "result", NS_MAM) is not None:
        return None
    if _has_content(message):
        return MESSAGE, message_to_json(message, delay_timestamp(message) or now)
    state = chat_state_of(message)
    sender, recipient = bare(message.getAttribute("from")), bare(message.getAttribute("to"))
    if state is None or sender is None:
        return None
    return CHAT_STATE, {"from": sender, "to": recipient, "state": state}


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
        event = chat_event(inner, stamp or now)
        if event is None:
            return None
        event[1]["carbon"] = direction
        return event
    if message.getAttribute("type") == "groupchat":
        room = room_message_json(message, room_service, now)
        return (ROOM_MESSAGE, room) if room is not None else None
    return chat_event(message, now)


def in_microseconds(data: dict[str, Any], now_ms: int, now_us: int) -> None:
    """Restate an event's ``timestamp`` (Unix ms) in microseconds, as MongooseIM's SSE did.

    A stamp that is the arrival time (``now_ms``) gets the clock's own microseconds; one
    from a ``<delay/>`` only has milliseconds, so it is scaled.
    """
    stamp = data.get("timestamp")
    if isinstance(stamp, int) and not isinstance(stamp, bool):
        data["timestamp"] = now_us if stamp == now_ms else stamp * 1000
