"""MongooseIM's MUC Light protocol (``urn:xmpp:muclight:0``) as a client speaks it: the IQ
payloads a user's session sends to a MUC Light service, what it reads from the answers, and
the REST API's JSON of rooms.

Configuration travels as plain child elements (``<roomname>``, ``<subject>``) rather than a
data form; occupants as ``<user affiliation='owner|member|none'>bare JID</user>``. What a
service answers is untrusted text like anything else from a stream: JIDs that do not parse
as bare user JIDs are skipped, never raised. The component (``bridge.muclight``) shares
``bare_jid`` and ``NOT_OCCUPANT``; the room messages' JSON is ``bridge.protocol.convert``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bridge.protocol.jid import parse
from bridge.protocol.namespaces import NS_AFFILIATIONS, NS_CONFIGURATION, NS_CREATE, NS_DESTROY, NS_INFO
from bridge.protocol.xml import child, is_xml_text

# The bridge's application-specific error condition (in ``NS_BRIDGE_ERRORS``): the room
# exists but the sender does not occupy it. The protocol answers item-not-found either way;
# the condition lets the REST API tell 403 from 404 without a second request.
NOT_OCCUPANT = "not-occupant"


@dataclass(frozen=True)
class RoomSummary:
    """A room of the user's room list."""

    id: str
    name: str
    subject: str


@dataclass(frozen=True)
class RoomInfo:
    """What ``#info`` tells about a room: its configuration and its occupants."""

    name: str
    subject: str
    participants: list[tuple[str, str]]


def bare_jid(text: str | None) -> str | None:
    """``text`` as a normalised bare JID with a user part, or None if it is not one."""
    if not text or not is_xml_text(text):
        return None
    jid = parse(text.strip())
    if jid is None or not jid.user or jid.resource:
        return None
    return jid.userhost()


# --- Requests ---


def create_query(name: str, subject: str) -> domish.Element:
    """A ``#create`` payload with the room's configuration; callers validated the strings."""
    query = domish.Element((NS_CREATE, "query"))
    configuration = query.addElement("configuration")
    configuration.addElement("roomname", content=name)
    configuration.addElement("subject", content=subject)
    return query


def configuration_query(name: str | None = None, subject: str | None = None) -> domish.Element:
    """A ``#configuration`` payload: empty to read the configuration, with both values to set it."""
    query = domish.Element((NS_CONFIGURATION, "query"))
    if name is not None and subject is not None:
        query.addElement("roomname", content=name)
        query.addElement("subject", content=subject)
    return query


def info_query() -> domish.Element:
    return domish.Element((NS_INFO, "query"))


def affiliation_query(user: str, affiliation: str) -> domish.Element:
    """An ``#affiliations`` payload that gives one bare JID ``owner``, ``member`` or ``none``."""
    query = domish.Element((NS_AFFILIATIONS, "query"))
    query.addElement("user", content=user)["affiliation"] = affiliation
    return query


def destroy_query() -> domish.Element:
    """A ``#destroy`` payload: MongooseIM's ``<query xmlns='urn:xmpp:muclight:0#destroy'/>``,
    sent as an IQ set to the room JID (the owner's right)."""
    return domish.Element((NS_DESTROY, "query"))


# --- Answers ---


def parse_configuration(query: domish.Element | None) -> tuple[str, str]:
    """(name, subject) of a configuration element; empty strings for what is missing."""
    if query is None:
        return "", ""
    name = next((str(e) for e in query.elements() if e.name == "roomname"), "")
    subject = next((str(e) for e in query.elements() if e.name == "subject"), "")
    return name, subject


def parse_occupants(container: domish.Element | None) -> list[tuple[str, str]]:
    """The (bare JID, affiliation) of each well-formed ``<user>`` of ``container``."""
    if container is None:
        return []
    users = []
    for element in container.elements():
        jid = bare_jid(str(element))
        if element.name == "user" and jid is not None:
            users.append((jid, element.getAttribute("affiliation", "member")))
    return users


def parse_info(result: domish.Element) -> RoomInfo:
    """The room an ``#info`` result describes."""
    query = result.query
    configuration = child(query, "configuration") if query is not None else None
    occupants = child(query, "occupants") if query is not None else None
    name, subject = parse_configuration(configuration)
    return RoomInfo(name, subject, parse_occupants(occupants))


def room_jids(items: domish.Element, service: JID) -> list[JID]:
    """The rooms of ``service`` a disco#items result lists (other items are skipped)."""
    rooms = []
    for item in items.query.elements() if items.query is not None else []:
        jid = parse(item.getAttribute("jid"))
        if item.name == "item" and jid is not None and jid.user and jid.host == service.host:
            rooms.append(jid)
    return rooms


def created_room_id(result: domish.Element, service: JID) -> str | None:
    """The id of the room a ``#create`` result comes from, or None if it names none of ``service``."""
    origin = parse(result.getAttribute("from", service.full()))
    if origin is None or not origin.user or origin.host != service.host:
        return None
    return origin.user


# --- The REST API's JSON ---


def room_summary_json(room: RoomSummary) -> dict[str, str]:
    """One entry of ``GET /api/rooms``."""
    return {"id": room.id, "name": room.name, "subject": room.subject}


def room_info_json(info: RoomInfo) -> dict[str, Any]:
    """``GET /api/rooms/{id}``: configuration and participants, as MongooseIM showed them."""
    return {
        "name": info.name,
        "subject": info.subject,
        "participants": [{"user": user, "role": role} for user, role in info.participants],
    }
