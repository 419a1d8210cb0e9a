"""Message stanzas to JSON and back (bridge.protocol.convert)."""

from __future__ import annotations

from twisted.trial import unittest
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bridge.protocol.convert import build_message, format_timestamp, message_to_json, parse_timestamp
from bridge.protocol.events import incoming_event
from bridge.protocol.properties import properties_of
from bridge.protocol.xml import StanzaStream, is_xml_text, to_xml
from bridge.xmpp.archive import ArchiveClient


def parse(xml: str) -> domish.Element:
    """One element from XML text, as a stream would deliver it."""
    from twisted.words.xish.domish import elementStream

    stream = elementStream()
    found: list[domish.Element] = []
    stream.DocumentStartEvent = lambda root: None
    stream.ElementEvent = found.append
    stream.DocumentEndEvent = lambda: None
    stream.parse(b"<stream xmlns='jabber:client'>" + xml.encode() + b"</stream>")
    return found[0]


SEED = """<message xmlns='jabber:client' from='bob@localhost/phone' to='alice@localhost/rest-1' id='123' type='chat'>
  <body>Hi!</body>
  <thread parent='7edac'>e0ff</thread>
  <properties xmlns='http://www.jivesoftware.com/xmlns/xmpp/properties'>
    <property><name>some_number</name><value type='integer'>123</value></property>
    <property><name>some_string</name><value type='string'>abc</value></property>
  </properties>
</message>"""


class MessageToJsonTests(unittest.TestCase):
    def test_seed_example(self) -> None:
        """DESIGN.md's example stanza becomes DESIGN.md's JSON."""
        self.assertEqual(
            message_to_json(parse(SEED), 1531329049949),
            {
                "id": "123",
                "from": "bob@localhost",
                "to": "alice@localhost",
                "timestamp": 1531329049949,
                "body": "Hi!",
                "thread": "e0ff",
                "parent": "7edac",
                "properties": {"some_number": "123", "some_string": "abc"},
                "property_types": {"some_number": "integer", "some_string": "string"},
            },
        )

    def test_optional_fields_absent(self) -> None:
        """thread, parent and properties appear only when the stanza has them."""
        message = parse("<message xmlns='jabber:client' from='a@x' to='b@x' id='1'><body>x</body></message>")
        self.assertEqual(
            message_to_json(message, 5), {"id": "1", "from": "a@x", "to": "b@x", "timestamp": 5, "body": "x"}
        )

    def test_thread_without_parent(self) -> None:
        """A thread without parent gives no parent key."""
        message = parse("<message xmlns='jabber:client' id='1'><body>x</body><thread>t</thread></message>")
        result = message_to_json(message, 0)
        self.assertEqual(result["thread"], "t")
        self.assertNotIn("parent", result)

    def test_every_property_type_is_a_string(self) -> None:
        """Every jivesoftware value type Smack reads comes back as its text; java-object is skipped."""
        message = parse(
            "<message xmlns='jabber:client'><properties xmlns='http://www.jivesoftware.com/xmlns/xmpp/properties'>"
            "<property><name>i</name><value type='integer'>1</value></property>"
            "<property><name>l</name><value type='long'>9223372036854775807</value></property>"
            "<property><name>f</name><value type='float'>1.5</value></property>"
            "<property><name>d</name><value type='double'>2.5</value></property>"
            "<property><name>b</name><value type='boolean'>true</value></property>"
            "<property><name>o</name><value type='java-object'>rO0ABXQ=</value></property>"
            "</properties></message>"
        )
        self.assertEqual(
            properties_of(message),
            {"i": "1", "l": "9223372036854775807", "f": "1.5", "d": "2.5", "b": "true"},
        )

    def test_malformed_properties_are_skipped(self) -> None:
        """Properties without a name or value, or with an empty name, are dropped, not fatal."""
        message = parse(
            "<message xmlns='jabber:client'><properties xmlns='http://www.jivesoftware.com/xmlns/xmpp/properties'>"
            "<property><value>no name</value></property>"
            "<property><name>no value</name></property>"
            "<property><name> </name><value>blank</value></property>"
            "<property><name>ok</name><value>fine</value><junk/></property>"
            "<name>stray</name>"
            "</properties></message>"
        )
        self.assertEqual(properties_of(message), {"ok": "fine"})

    def test_chat_markers(self) -> None:
        """XEP-0333 markable and markers are exposed."""
        message = parse(
            "<message xmlns='jabber:client' id='9'><markable xmlns='urn:xmpp:chat-markers:0'/>"
            "<displayed xmlns='urn:xmpp:chat-markers:0' id='5'/></message>"
        )
        result = message_to_json(message, 0)
        self.assertIs(result["markable"], True)
        self.assertEqual(result["chat_marker"], {"type": "displayed", "id": "5"})

    def test_missing_id_uses_fallback(self) -> None:
        """A stanza without id gets the archive id."""
        message = parse("<message xmlns='jabber:client'><body>x</body></message>")
        self.assertEqual(message_to_json(message, 0, "archive-7")["id"], "archive-7")

    def test_malformed_from_is_null(self) -> None:
        """A from attribute that is not a JID becomes null instead of an error."""
        message = parse("<message xmlns='jabber:client' from='@@@' id='1'/>")
        self.assertIsNone(message_to_json(message, 0)["from"])


class BuildMessageTests(unittest.TestCase):
    def test_round_trip(self) -> None:
        """A built message converts back to the same fields."""
        message = build_message(JID("bob@localhost"), "<&>'\"", thread="t", parent="p", properties={"k": "v <x/>"})
        message["from"] = "alice@localhost/rest-1"
        again = parse(message.toXml())
        result = message_to_json(again, 1)
        self.assertEqual(result["body"], "<&>'\"")
        self.assertEqual((result["thread"], result["parent"]), ("t", "p"))
        self.assertEqual(result["properties"], {"k": "v <x/>"})
        self.assertEqual(again["type"], "chat")
        self.assertEqual(result["id"], message["id"])

    def test_ids_are_unique(self) -> None:
        """Each built message has its own unguessable id."""
        ids = {build_message(JID("b@x"), "x")["id"] for _ in range(100)}
        self.assertEqual(len(ids), 100)


class _ArchiveServer:
    """Stands for the session: answers MAM queries from ``pages`` (newest page first), as a server would."""

    jid = JID("alice@localhost/rest-1")

    def __init__(self, client: object, pages: list[list[tuple[str, str]]]) -> None:
        self.client = client
        self.pages = pages
        self.asked = 0

    async def iq(self, kind: str, query: domish.Element, to: object = None) -> domish.Element:
        page = self.pages[self.asked]
        self.asked += 1
        for archive_id, stanza_type in page:
            # "state": a chat message with an XEP-0085 chat state and nothing else.
            content = "<body>b</body>"
            if stanza_type == "state":
                stanza_type, content = "chat", "<composing xmlns='http://jabber.org/protocol/chatstates'/>"
            self.client._on_result(  # type: ignore[attr-defined]
                parse(
                    f"<message><result xmlns='urn:xmpp:mam:2' queryid='{query['queryid']}' id='{archive_id}'>"
                    "<forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='2026-01-01T00:00:00Z'/>"
                    f"<message type='{stanza_type}' from='bob@localhost' to='alice@localhost' id='{archive_id}'>"
                    f"{content}</message></forwarded></result></message>"
                )
            )
        complete = "true" if self.asked == len(self.pages) else "false"
        first = f"<first>{page[0][0]}</first>" if page else ""
        return parse(
            f"<iq type='result'><fin xmlns='urn:xmpp:mam:2' complete='{complete}'>"
            f"<set xmlns='http://jabber.org/protocol/rsm'>{first}</set></fin></iq>"
        )


class BounceTests(unittest.TestCase):
    async def test_archive_skips_bounces_and_keeps_paging(self) -> None:
        """Archived error messages (bounces) are left out, and a page of only bounces does not end the read early."""
        client = ArchiveClient()
        server = _ArchiveServer(
            client, [[("5", "error"), ("6", "chat")], [("3", "error"), ("4", "error")], [("2", "chat")]]
        )
        client.parent = server  # type: ignore[assignment]
        found = await client.query(None, None, 2)
        self.assertEqual([m.archive_id for m in found], ["2", "6"])
        self.assertEqual(server.asked, 3)

    async def test_archive_skips_chat_states_alone(self) -> None:
        """Archived chat-state-only messages are left out of the archive's JSON, and paging goes on past them."""
        client = ArchiveClient()
        server = _ArchiveServer(
            client, [[("5", "state"), ("6", "chat")], [("3", "state"), ("4", "state")], [("2", "chat")]]
        )
        client.parent = server  # type: ignore[assignment]
        found = await client.query(None, None, 2)
        self.assertEqual([m.archive_id for m in found], ["2", "6"])

    def test_live_bounces_are_no_events(self) -> None:
        """A received error message, or a carbon copy of one, is no SSE event."""
        own = "alice@localhost"
        bounce = (
            "<message type='error' from='x@nonexistent.invalid' to='alice@localhost/r' id='1'><body>b</body></message>"
        )
        self.assertIsNone(incoming_event(parse(bounce), own, "muclight.localhost", 0))
        carbon = parse(
            "<message from='alice@localhost' to='alice@localhost/r'><received xmlns='urn:xmpp:carbons:2'>"
            f"<forwarded xmlns='urn:xmpp:forward:0'>{bounce}</forwarded></received></message>"
        )
        self.assertIsNone(incoming_event(carbon, own, "muclight.localhost", 0))


WHITESPACE = "tab\there, CR LF\r\nlone CR\rLF\nend <&>'\""


class SerializationTests(unittest.TestCase):
    """What the bridge writes reads back exactly: XML normalisation must not touch CR, TAB or LF."""

    def message(self) -> domish.Element:
        return build_message(
            JID("bob@localhost"), WHITESPACE, thread=WHITESPACE, parent=WHITESPACE, properties={"k": WHITESPACE}
        )

    def test_whitespace_is_written_as_references(self) -> None:
        """CR in text, and TAB, LF and CR in attribute values, are character references; the rest is domish's."""
        xml = to_xml(self.message())
        self.assertIn("<body>tab\there, CR LF&#13;\nlone CR&#13;LF\nend &lt;&amp;&gt;'\"</body>", xml)
        self.assertIn("parent='tab&#9;here, CR LF&#13;&#10;lone CR&#13;LF&#10;end &lt;&amp;&gt;&apos;&quot;'", xml)
        self.assertNotIn("\r", xml)
        plain = build_message(JID("bob@localhost"), "hi", thread="t", parent="p")
        plain[("http://www.w3.org/XML/1998/namespace", "lang")] = "en"
        plain.addElement(("urn:xmpp:chat-markers:0", "markable"))
        self.assertEqual(to_xml(plain), plain.toXml())

    def test_round_trip_through_a_parser(self) -> None:
        """Parsed again (as the server parses it), body, thread, parent and properties are what was sent."""
        json = message_to_json(parse(to_xml(self.message())), 0)
        self.assertEqual(
            (json["body"], json["thread"], json["parent"], json["properties"]), (WHITESPACE,) * 3 + ({"k": WHITESPACE},)
        )

    def test_stream_writes_with_to_xml(self) -> None:
        """The bridge's XMPP streams write elements with to_xml, in the stream's default namespace."""
        from twisted.internet.testing import StringTransport
        from twisted.words.protocols.jabber import xmlstream

        stream = StanzaStream(xmlstream.ConnectAuthenticator("localhost"))
        transport = StringTransport()
        stream.makeConnection(transport)
        stream.namespace = "jabber:client"  # what the client authenticator sets
        transport.clear()
        message = self.message()
        stream.send(message)
        written = transport.value().decode()
        self.assertTrue(written.startswith("<message to="), written)
        self.assertIn("parent='tab&#9;here", written)
        self.assertEqual(message_to_json(parse(written), 0)["body"], WHITESPACE)


class UntrustedJidTests(unittest.TestCase):
    def test_final_dot_of_the_domain_is_dropped(self) -> None:
        """RFC 7622 3.2: "a@example.com." is "a@example.com" (the one normalisation, for comparison and routing)."""
        from bridge.protocol.jid import parse

        self.assertEqual(parse("A@Example.COM.").full(), "a@example.com")  # type: ignore[union-attr]
        self.assertEqual(parse("a@b./r").full(), "a@b/r")  # type: ignore[union-attr]
        self.assertEqual(parse("b.").full(), "b")  # type: ignore[union-attr]
        for bad in ("a@.", ".", "a@b..", "a@b..c", "a@.b"):
            self.assertIsNone(parse(bad), bad)


class TextAndTimeTests(unittest.TestCase):
    def test_xml_text(self) -> None:
        """Control characters and lone surrogates cannot go into a stream; the rest can."""
        self.assertTrue(is_xml_text("héllo \t\n\r 😀 <&>"))
        for bad in ("\x00", "a\x01b", "\x1f", "\ud800", "\ufffe"):
            self.assertFalse(is_xml_text(bad), repr(bad))

    def test_timestamps(self) -> None:
        """XEP-0082 stamps with and without fractions convert to Unix milliseconds and back."""
        self.assertEqual(parse_timestamp("2018-07-11T17:10:49.949Z"), 1531329049949)
        self.assertEqual(parse_timestamp("2018-07-11T17:10:49Z"), 1531329049000)
        self.assertEqual(parse_timestamp("2018-07-11T19:10:49.949123+02:00"), 1531329049949)
        self.assertIsNone(parse_timestamp("yesterday"))
        self.assertEqual(format_timestamp(1531329049949), "2018-07-11T17:10:49.949Z")
