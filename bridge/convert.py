"""Message stanzas to the REST API's JSON, and JSON to stanzas.

Covers RFC 6121 chat messages with XEP-0201 threads (``parent``), Smack's jivesoftware
``<properties/>`` (every value type becomes its text), XEP-0333 chat markers and the
XEP-0203 ``<delay/>`` timestamps that XEP-0313 archives carry. Hostile or malformed input
from either side is skipped or rejected here, never passed on: a property without a name
is dropped, text XML cannot carry is refused before it reaches a stream.
"""

from __future__ import annotations

import re
import types
import uuid
from datetime import UTC, datetime
from typing import Any

from twisted.words.protocols.jabber import xmlstream
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from twisted.words.xish import xmlstream as xish_xmlstream

from bridge.jid import parse

NS_CLIENT = "jabber:client"
NS_PROPERTIES = "http://www.jivesoftware.com/xmlns/xmpp/properties"
NS_CHAT_MARKERS = "urn:xmpp:chat-markers:0"
NS_DELAY = "urn:xmpp:delay"
CHAT_MARKERS = ("received", "displayed", "acknowledged")

# Characters XML 1.0 cannot carry (RFC 6120 forbids them in stanzas).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def is_xml_text(text: str) -> bool:
    """Whether ``text`` can be sent inside an XML stream as it is."""
    return _NOT_XML.search(text) is None


# --- Writing stanzas: whitespace must survive the reader's XML normalisation ---

# XML parsers turn every CR (and CR LF) in text into LF (XML 1.0 2.11), and TAB, CR and LF
# in attribute values into spaces (3.3.3); only character references survive both. domish
# escapes none of them, so a body with "\r\n" arrived as "\n" and a parent with a TAB as
# a space. Every stanza the bridge writes (user sessions, the component, the room archive)
# is serialised with ``to_xml``, which writes them as references.
_twisted_escape = domish.escapeToXml
_ATTRIBUTE_WHITESPACE = str.maketrans({"\t": "&#9;", "\n": "&#10;", "\r": "&#13;"})


def escape_xml(text: str, isattrib: int = 0) -> str:
    """domish's escaping, plus CR in text and TAB, LF and CR in attribute values as references."""
    text = _twisted_escape(text, isattrib)
    if isattrib:
        return text.translate(_ATTRIBUTE_WHITESPACE)
    return text.replace("\r", "&#13;")


class _Serializer(domish._ListSerializer):  # type: ignore[misc]  # Twisted's, untyped
    """domish's serialiser (namespaces, prefixes: unchanged) with ``escape_xml`` for text
    and attributes: its ``serialize`` looks ``escapeToXml`` up in its globals, so this is
    the same code with that one name bound to ``escape_xml``."""

    serialize = types.FunctionType(
        domish._ListSerializer.serialize.__code__,
        {**vars(domish), "escapeToXml": escape_xml},
        "serialize",
        domish._ListSerializer.serialize.__defaults__,
    )


def to_xml(
    element: domish.Element,
    prefixes: dict[str, str] | None = None,
    default_uri: str = "",
    prefixes_in_scope: list[str] | None = None,
) -> str:
    """``element.toXml()``, with whitespace written so that a reader gets it back exactly."""
    serializer = _Serializer(prefixes=prefixes, prefixesInScope=prefixes_in_scope)
    serializer.serialize(element, defaultUri=default_uri)
    return str(serializer.getValue())


class StanzaStream(xmlstream.XmlStream):
    """The bridge's XMPP streams (user sessions and the component): Twisted's, with ``to_xml``.

    Every writer on a stream (wokkel's IQ tracking, handlers' ``xmlstream.send``, the
    session's ``send``) ends in ``send``, so this is the one place stanzas are serialised.
    """

    def send(self, obj: domish.Element | str | bytes) -> None:
        if domish.IElement.providedBy(obj):
            obj = to_xml(
                obj,  # type: ignore[arg-type]
                prefixes=self.prefixes,
                default_uri=self.namespace,
                prefixes_in_scope=list(self.prefixes.values()),
            )
        xish_xmlstream.XmlStream.send(self, obj)


def bare(jid_text: str | None) -> str | None:
    """The bare form of a JID attribute, or None when it is absent or not a JID."""
    jid = parse(jid_text)
    return None if jid is None else jid.userhost()


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


def child(element: domish.Element, name: str, uri: str | None = None) -> domish.Element | None:
    """The first child element called ``name`` (in namespace ``uri``, or in any when None)."""
    for child in element.elements():
        if child.name == name and (uri is None or child.uri == uri):
            return child
    return None


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
    for child in message.elements(NS_CHAT_MARKERS):
        if child.name in CHAT_MARKERS and child.getAttribute("id"):
            return {"type": child.name, "id": child["id"]}
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

NS_MUCLIGHT_AFFILIATIONS = "urn:xmpp:muclight:0#affiliations"


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
    notice = child(message, "x", NS_MUCLIGHT_AFFILIATIONS)
    user = child(notice, "user", NS_MUCLIGHT_AFFILIATIONS) if notice is not None else None
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
