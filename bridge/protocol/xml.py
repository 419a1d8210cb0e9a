"""XML text and serialisation for every stream the bridge writes (RFC 6120 section 11).

``is_xml_text`` refuses what XML 1.0 cannot carry before it reaches a stream; ``to_xml``
(and ``StanzaStream``, the bridge's ``XmlStream``) write whitespace as character references
so that a reader gets text and attributes back exactly; ``child`` is the element lookup
the protocol code shares.
"""

from __future__ import annotations

import pyexpat
import re
import types
from collections.abc import Callable
from typing import Any

from twisted.words.protocols.jabber import xmlstream
from twisted.words.xish import domish
from twisted.words.xish import xmlstream as xish_xmlstream

from bridge.protocol.dispatch import StreamDispatch

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


# A chunk of the stream that is nothing but IQ answers without content, as servers write the
# answer to a ping (``<iq type='result' id='...' from='...' to='...'/>``), and their attributes.
_BARE_IQS = re.compile(rb"(?:\s*<iq(?:\s+[A-Za-z:]+\s*=\s*(?:'[^'<&]*'|\"[^\"<&]*\"))*\s*/>)+\s*")
_BARE_IQ = re.compile(rb"<iq\s[^>]*/>")
_ATTRIBUTE = re.compile(rb"([A-Za-z:]+)\s*=\s*(?:'([^'<&]*)'|\"([^\"<&]*)\")")
# Longer chunks are never a few bare answers: not worth a look.
_BARE_IQS_MAX = 2048

# (id, from) of each bare IQ result of a chunk -> True when they were all taken (see below).
BareResults = Callable[[list[tuple[str, str | None]]], bool]


def bare_results(data: bytes) -> list[tuple[str, str | None]] | None:
    """(id, from) of every IQ in ``data`` when it is nothing but bare ``result`` IQs, else None."""
    if len(data) > _BARE_IQS_MAX or _BARE_IQS.fullmatch(data) is None:
        return None
    answers = []
    for iq in _BARE_IQ.findall(data):
        attributes = {m[1]: m[2] or m[3] for m in _ATTRIBUTE.finditer(iq)}
        iq_id = attributes.get(b"id")
        if attributes.get(b"type") != b"result" or not iq_id:
            return None
        sender = attributes.get(b"from")
        try:
            answers.append((iq_id.decode("utf-8"), sender.decode("utf-8") if sender is not None else None))
        except UnicodeDecodeError:
            return None
    return answers


# The largest piece of a chunk the parser is given at once (ElementStream.parse).
SLICE = 2048
# The expat handlers Twisted's element stream sets.
_HANDLERS = (
    "StartElementHandler",
    "EndElementHandler",
    "CharacterDataHandler",
    "StartNamespaceDeclHandler",
    "EndNamespaceDeclHandler",
)


class ElementStream(domish.ExpatElementStream):
    """Twisted's expat element stream, building the same elements with less work.

    Building an element is half of parsing a stanza (``_onStartElement``; a page of 50
    archived messages took 2.4 ms to parse). The parser always knows the default
    namespace in scope, so of ``Element.__init__``'s choices only one applies; the element
    is filled in directly, and attributes are renamed only when one has a namespace.
    Everything else (limits, events, namespaces) is Twisted's.

    It also keeps the parser small for the life of the stream (a session's stream lives as
    long as the session). Expat copies every chunk it is given into a buffer that never
    shrinks: after one 16 KB TLS record (a roster, a page of archive) a parser held 39 KB,
    fed the same in ``SLICE`` pieces 13 KB. And the parser does not intern names: the
    element's names are split into new strings anyway, while the intern table would keep
    every name the stream ever carried (5.6 KB after a login and a few stanzas).
    """

    def __init__(self) -> None:
        super().__init__()
        parser = pyexpat.ParserCreate("UTF-8", " ", intern=None)
        for name in _HANDLERS:
            setattr(parser, name, getattr(self.parser, name))
        self.parser = parser

    def parse(self, buffer: bytes) -> None:
        if len(buffer) <= SLICE:
            super().parse(buffer)
            return
        view = memoryview(buffer)
        for start in range(0, len(buffer), SLICE):
            super().parse(view[start : start + SLICE])  # type: ignore[arg-type]  # expat takes any buffer

    def _onStartElement(self, name: str, attrs: dict[Any, str]) -> None:
        for key in [key for key in attrs if " " in key]:
            uri, _, local = key.rpartition(" ")
            attrs[(uri, local)] = attrs.pop(key)
        element = domish.Element.__new__(domish.Element)
        element.uri, _, element.name = name.rpartition(" ")
        element.defaultUri = self.defaultNsStack[-1]
        element.localPrefixes = self.localPrefixes
        element.attributes = attrs
        element.children = []
        element.parent = None
        self.localPrefixes = {}
        if not self.documentStarted:
            self.documentStarted = 1
            self.DocumentStartEvent(element)  # type: ignore[misc]  # set by the XmlStream
            return
        self.elementCount += 1
        if self.elementCount > self.maxElementCount:
            raise domish.ParserError("Maximum element count exceeded")
        current = self.currElem
        if current is not None:
            current.children.append(element)
            element.parent = current
        self.currElem = element


class StanzaStream(StreamDispatch, xmlstream.XmlStream):
    """The bridge's XMPP streams (user sessions and the component): Twisted's, with ``to_xml``
    and compact observers, asked by element name (``bridge.protocol.dispatch``).

    Every writer on a stream (wokkel's IQ tracking, handlers' ``xmlstream.send``, the
    session's ``send``) ends in ``send``, so this is the one place stanzas are serialised.
    ``queue`` holds stanzas back (serialised at once, so they are what they were when
    queued) until the next ``send`` or ``flush``, which writes them and what it sends in
    one write: one TLS record and one system call for a batch instead of one each, and the
    stream's order is the order of the calls whatever goes through ``queue`` or ``send``.
    """

    _queued: list[str] | None = None
    # Set by a session: takes the answers of a chunk that holds only bare IQ results (its
    # pings'), or refuses them all (False) and the chunk goes to the parser as usual.
    take_bare_results: BareResults | None = None

    def _initializeStream(self) -> None:
        # xish's, with the leaner element stream.
        stream = ElementStream()
        stream.DocumentStartEvent = self.onDocumentStart
        stream.ElementEvent = self.onElement
        stream.DocumentEndEvent = self.onDocumentEnd
        self.stream = stream

    def dataReceived(self, data: bytes) -> None:
        """Answers to the session's own pings skip the parser and the DOM; the rest is parsed.

        Only between stanzas (no element open, so the parser holds no partial stanza that
        the chunk would continue) and only when the whole chunk is bare IQ results that the
        session takes: the parser never sees an element that is not complete and at the
        top level, so skipping it leaves the parser's state as it was.
        """
        take = self.take_bare_results
        stream = self.stream
        if (
            take is not None
            and stream is not None
            and stream.documentStarted
            and stream.currElem is None
            and self.rawDataInFn is None
        ):
            answers = bare_results(data)
            if answers and take(answers):
                return
        super().dataReceived(data)

    def _serialise(self, obj: domish.Element | str | bytes) -> str | bytes:
        if domish.IElement.providedBy(obj):
            return to_xml(
                obj,  # type: ignore[arg-type]
                prefixes=self.prefixes,
                default_uri=self.namespace,
                prefixes_in_scope=list(self.prefixes.values()),
            )
        return obj  # type: ignore[return-value]  # str or bytes, written as they are

    def queue(self, obj: domish.Element | str) -> None:
        """Serialise ``obj`` now and write it with the next ``send`` or ``flush``."""
        text = self._serialise(obj)
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        if self._queued is None:
            self._queued = [text]
        else:
            self._queued.append(text)

    def flush(self) -> None:
        """Write what ``queue`` holds, if anything."""
        if self._queued is not None:
            queued, self._queued = self._queued, None
            xish_xmlstream.XmlStream.send(self, "".join(queued))

    def send(self, obj: domish.Element | str | bytes) -> None:
        data = self._serialise(obj)
        if self._queued is not None:
            queued, self._queued = self._queued, None
            if isinstance(data, bytes):
                data = data.decode("utf-8")
            queued.append(data)
            data = "".join(queued)
        xish_xmlstream.XmlStream.send(self, data)


# --- Reading elements ---


def child(element: domish.Element, name: str, uri: str | None = None) -> domish.Element | None:
    """The first child element called ``name`` (in namespace ``uri``, or in any when None).

    Children are elements or text; telling them apart with ``isinstance`` instead of
    ``elements()``'s interface check per child made the lookups of an archive page 3x cheaper.
    """
    for each in element.children:
        if not isinstance(each, str) and each.name == name and (uri is None or each.uri == uri):
            return each
    return None
