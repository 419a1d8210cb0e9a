"""Which received stanzas are live events (DESIGN.md, Live events), and their JSON.

One-to-one messages and chat states, MUC Light room messages and affiliation notices of the
configured service, and XEP-0280 carbon copies, unwrapped and accepted only from the user's
own bare JID (XEP-0280 section 11: anything else is a forgery).
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.words.xish import domish

from bridge.protocol.convert import (
    chat_marker_of,
    chat_state_of,
    delay_timestamp,
    message_to_json,
    room_message_to_json,
)
from bridge.protocol.jid import bare, parse
from bridge.protocol.namespaces import NS_AFFILIATIONS, NS_CARBONS, NS_CLIENT, NS_FORWARD, NS_MAM
from bridge.protocol.xml import child

# The names of the live events received stanzas become.
MESSAGE = "message"
ROOM_MESSAGE = "room.message"
CHAT_STATE = "chat_state"

log = Logger()


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
