"""``bridge.protocol.xml.ElementStream`` builds exactly the elements Twisted's expat stream
builds (it only does less work), keeps its limits, and is what the bridge's streams parse
with. Compared field by field, so a Twisted whose ``Element`` gains a field fails here."""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

from twisted.trial import unittest
from twisted.words.protocols.jabber import xmlstream
from twisted.words.xish import domish

from bridge.protocol.xml import ElementStream, StanzaStream

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' from='localhost' id='s1' version='1.0' xml:lang='en'>"
)
STANZAS = [
    b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>",
    b"<message from='bob@localhost/pc' to='alice@localhost' type='chat' id='m1' xml:lang='de'>"
    b"<body>hi &amp; &lt;bye&gt; &#x1F600; \n two lines</body><thread parent='t0'>t1</thread>"
    b"<markable xmlns='urn:xmpp:chat-markers:0'/></message>",
    b"<message to='alice@localhost'><result xmlns='urn:xmpp:mam:2' queryid='q' id='a1'>"
    b"<forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='2026-01-01T00:00:00Z'/>"
    b"<message xmlns='jabber:client' from='alice@localhost' type='chat'><body>x</body></message>"
    b"</forwarded></result></message>",
    b"<iq type='result' id='i1'><query xmlns='jabber:iq:roster' ver='1'>"
    b"<item jid='bob@localhost' subscription='both' name='Bob'><group>Friends</group></item></query></iq>",
    b"<presence from='bob@localhost/pc'><x:y xmlns:x='urn:example:x' x:attr='1' plain='2'>"
    b"<x:z>text</x:z><w xmlns='urn:example:w' xmlns:v='urn:example:v' v:a='3'/></x:y></presence>",
    b"<message><properties xmlns='http://www.jivesoftware.com/xmlns/xmpp/properties'>"
    b"<property><name>n</name><value type='string'>v</value></property></properties><body/></message>",
    # Longer than a slice (ElementStream.parse): multi-byte characters and tags across the cuts.
    b"<message id='long'><body>"
    + "\u00e9\u20ac\U0001f600 ".encode() * 900
    + b"</body>"
    + b"<x xmlns='urn:example:x' a='"
    + b"v" * 3000
    + b"'/></message>",
]


def parse(stream: domish.ExpatElementStream, chunks: list[bytes]) -> tuple[Any, list[domish.Element]]:
    started: list[domish.Element] = []
    found: list[domish.Element] = []
    stream.DocumentStartEvent = started.append
    stream.ElementEvent = found.append
    stream.DocumentEndEvent = lambda: None
    for chunk in chunks:
        stream.parse(chunk)
    return started[0], found


def shape(element: Any) -> Any:
    """Every field of ``element`` and of its children, parents as their names."""
    if not isinstance(element, domish.Element):
        return element
    fields = {key: value for key, value in vars(element).items() if key not in ("children", "parent")}
    parent = element.parent
    fields["parent"] = None if parent is None else (parent.uri, parent.name)
    fields["children"] = [shape(each) for each in element.children]
    return fields


class ElementStreamTests(unittest.TestCase):
    def test_same_elements_as_twisted(self) -> None:
        """Names, namespaces, prefixes, namespaced attributes, text and nesting come out as Twisted's
        stream gives them, whole or fed a byte at a time."""
        data = HEADER + b"".join(STANZAS)
        for chunks in ([data], [data[i : i + 1] for i in range(len(data))]):
            ours = parse(ElementStream(), chunks)
            theirs = parse(domish.ExpatElementStream(), chunks)
            self.assertEqual(shape(ours[0]), shape(theirs[0]))
            self.assertEqual([shape(e) for e in ours[1]], [shape(e) for e in theirs[1]])
            self.assertEqual(len(ours[1]), len(STANZAS))
            self.assertEqual([e.toXml() for e in ours[1]], [e.toXml() for e in theirs[1]])

    def test_the_parser_stays_small_after_a_big_chunk(self) -> None:
        """After a 28 KB chunk (a page of archive, in one read) the parser holds what it held after the
        header plus a little, where Twisted's holds more than the chunk; names are not interned."""
        page = b"".join(STANZAS[2] for _ in range(100))

        def held(make: Any) -> int:
            tracemalloc.start()
            try:
                before = tracemalloc.take_snapshot()
                kept = [make() for _ in range(20)]
                for stream in kept:
                    stream.DocumentStartEvent = stream.ElementEvent = lambda element: None
                    stream.parse(HEADER)
                    stream.parse(page)
                gc.collect()  # the stanzas (parent and children refer to each other)
                after = tracemalloc.take_snapshot()
            finally:
                tracemalloc.stop()
            return sum(diff.size_diff for diff in after.compare_to(before, "filename")) // len(kept)

        self.assertLess(held(ElementStream), 20_000)
        self.assertGreater(held(domish.ExpatElementStream), len(page))

    def test_limits_and_errors_stay(self) -> None:
        """Twisted's per-stanza element cap and malformed XML still end in ParserError."""
        stream = ElementStream()
        stream.maxElementCount = 3
        parse(stream, [HEADER, b"<message><a/><b/></message>"])
        with self.assertRaises(domish.ParserError):
            stream.parse(b"<message><a/><b/><c/></message>")
        with self.assertRaises(domish.ParserError):
            parse(ElementStream(), [HEADER, b"<message><a></b></message>"])

    def test_the_bridges_streams_parse_with_it(self) -> None:
        """StanzaStream (sessions and the component) uses ElementStream, again after a stream restart."""
        stream = StanzaStream(xmlstream.ConnectAuthenticator("localhost"))
        stream._initializeStream()
        self.assertIsInstance(stream.stream, ElementStream)
        stream.reset()
        self.assertIsInstance(stream.stream, ElementStream)
