"""Typed Smack properties, 1:1 chat markers and chat states: JSON to stanzas and back."""

from __future__ import annotations

import json
from typing import Any

from twisted.trial import unittest
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bridge.api.errors import BadRequest
from bridge.api.input import chat_marker, chat_state, message_properties
from bridge.api.messages import message_content
from bridge.protocol.convert import build_message, message_to_json, room_message_to_json
from bridge.protocol.events import incoming_event, is_chat_state_only
from bridge.protocol.properties import java_double, smack_property, smack_reads
from bridge.protocol.xml import to_xml
from tests.unit.test_convert import parse

NS_PROPERTIES = "http://www.jivesoftware.com/xmlns/xmpp/properties"
NS_STATES = "http://jabber.org/protocol/chatstates"
OWN = "alice@localhost"


def reparse(element: domish.Element) -> domish.Element:
    """``element`` as the server reads it: serialised and parsed again."""
    return parse(to_xml(element))


def with_properties(*rows: tuple[str, str | None, str]) -> domish.Element:
    props = "".join(
        f"<property><name>{name}</name><value{'' if kind is None else f' type={kind!r}'}>{value}</value></property>"
        for name, kind, value in rows
    )
    return parse(
        f"<message xmlns='jabber:client' from='bob@localhost/p' to='{OWN}' type='chat' id='1'><body>b</body>"
        f"<properties xmlns='{NS_PROPERTIES}'>{props}</properties></message>"
    )


def sent_properties(element: domish.Element) -> list[tuple[str, str, str]]:
    container = next(element.elements(NS_PROPERTIES, "properties"))
    rows = []
    for prop in container.elements(NS_PROPERTIES, "property"):
        value = next(prop.elements(NS_PROPERTIES, "value"))
        rows.append((str(next(prop.elements(NS_PROPERTIES, "name"))), value["type"], str(value)))
    return rows


class SmackTypesOutTests(unittest.TestCase):
    def test_json_values_get_smacks_types(self) -> None:
        """Strings, 32-bit ints, wider ints, floats and booleans go out as string, integer, long, double and boolean."""
        message = build_message(
            JID("bob@localhost"),
            "x",
            properties={
                "s": "abc",
                "i": 2**31 - 1,
                "n": -(2**31),
                "l": 2**31,
                "m": -(2**63),
                "d": 1.5,
                "t": True,
                "f": False,
            },
        )
        self.assertEqual(
            sent_properties(reparse(message)),
            [
                ("s", "string", "abc"),
                ("i", "integer", "2147483647"),
                ("n", "integer", "-2147483648"),
                ("l", "long", "2147483648"),
                ("m", "long", "-9223372036854775808"),
                ("d", "double", "1.5"),
                ("t", "boolean", "true"),
                ("f", "boolean", "false"),
            ],
        )

    def test_doubles_are_written_as_java_writes_them(self) -> None:
        """Floats are written as Java's Double.toString: a point always, E notation outside [1e-3, 1e7)."""
        cases = [(1.0, "1.0"), (100.0, "100.0"), (0.001, "0.001"), (1e7, "1.0E7"), (1.5e-4, "1.5E-4")]
        cases += [(-2.5, "-2.5"), (123456789.0, "1.23456789E8"), (1e300, "1.0E300"), (9999999.5, "9999999.5")]
        cases += [(-0.0, "-0.0"), (0.0, "0.0")]
        for value, text in cases:
            self.assertEqual(java_double(value), text, value)
            self.assertTrue(smack_reads("double", text))
            self.assertEqual(float(text), value)

    def test_values_without_a_smack_type_are_refused(self) -> None:
        """Ints past Java's long, NaN, infinities, null, lists and objects have no Smack type."""
        for value in (2**63, -(2**63) - 1, float("nan"), float("inf"), float("-inf"), None, [1], {"a": 1}):
            with self.assertRaises(ValueError, msg=repr(value)):
                smack_property(value)

    def test_api_refuses_invalid_properties(self) -> None:
        """Nested, null, non-finite, too wide, too many or too long properties are 400 "Invalid properties"."""
        for properties in (
            ["a"],
            {"a": None},
            {"a": {"b": "c"}},
            {"a": [1]},
            {"a": float("nan")},
            {"a": float("inf")},
            {"a": 2**63},
            {"": "v"},
            {"x" * 257: "v"},
            {"a": "v" * 8193},
            {"a": "\x00"},
            {f"p{n}": 1 for n in range(65)},
        ):
            with self.assertRaises(BadRequest) as caught:
                message_properties({"properties": properties})
            self.assertEqual(caught.exception.message, "Invalid properties", properties)
        self.assertEqual(message_properties({"properties": {"a": 1, "b": 2.5}}), {"a": 1, "b": 2.5})

    def test_nan_from_the_json_parser_is_refused(self) -> None:
        """Python's JSON parser reads NaN and Infinity; as property values they are refused."""
        for literal in ("NaN", "Infinity", "-Infinity", "1e400"):
            body = json.loads('{"properties": {"n": ' + literal + "}}")
            with self.assertRaises(BadRequest):
                message_properties(body)


class SmackTypesInTests(unittest.TestCase):
    def test_typed_properties_come_back_with_their_types(self) -> None:
        """Received properties stay strings, with property_types naming each Smack type."""
        message = with_properties(
            ("i", "integer", "-12"),
            ("l", "long", "9223372036854775807"),
            ("d", "double", "1.0E7"),
            ("f", "float", "1.5f"),
            ("b", "boolean", "true"),
            ("s", "string", "abc"),
            ("u", None, "untyped"),
        )
        result = message_to_json(message, 0)
        self.assertEqual(
            result["properties"],
            {
                "i": "-12",
                "l": "9223372036854775807",
                "d": "1.0E7",
                "f": "1.5f",
                "b": "true",
                "s": "abc",
                "u": "untyped",
            },
        )
        self.assertEqual(
            result["property_types"],
            {"i": "integer", "l": "long", "d": "double", "f": "float", "b": "boolean", "s": "string", "u": "string"},
        )

    def test_only_strings_add_no_property_types(self) -> None:
        """property_types is there only when some property is not a string."""
        result = message_to_json(with_properties(("s", "string", "abc"), ("u", None, "x")), 0)
        self.assertEqual(result["properties"], {"s": "abc", "u": "x"})
        self.assertNotIn("property_types", result)

    def test_values_smack_cannot_read_are_skipped(self) -> None:
        """java-object, unknown types and texts Integer/Long/Double.valueOf refuse are skipped."""
        message = with_properties(
            ("o", "java-object", "rO0ABXQ="),
            ("x", "xml", "<a/>"),
            ("i1", "integer", "1.5"),
            ("i2", "integer", "2147483648"),
            ("i3", "integer", ""),
            ("i4", "integer", " 1"),
            ("l1", "long", "9223372036854775808"),
            ("d1", "double", "1.2.3"),
            ("d2", "double", "NaNf"),
            ("ok", "integer", "+7"),
            ("d3", "double", " -Infinity "),
            ("d4", "double", "0x1.8p1"),
            ("b", "boolean", "yes"),
        )
        result = message_to_json(message, 0)
        self.assertEqual(result["properties"], {"ok": "+7", "d3": " -Infinity ", "d4": "0x1.8p1", "b": "yes"})
        self.assertEqual(result["property_types"], {"ok": "integer", "d3": "double", "d4": "double", "b": "boolean"})

    def test_room_messages_carry_typed_properties(self) -> None:
        """A room message's archive JSON has its properties and their types too."""
        sent = build_message(JID("r@muclight.localhost"), "hi", "groupchat", properties={"n": 5, "s": "x"})
        sent["from"] = f"r@muclight.localhost/{OWN}"
        result = room_message_to_json(reparse(sent), 0)
        self.assertEqual(
            (result["properties"], result["property_types"]), ({"n": "5", "s": "x"}, {"n": "integer", "s": "string"})
        )
        found = incoming_event(reparse(sent), OWN, "muclight.localhost", 0)
        assert found is not None
        self.assertEqual((found[0], found[1]["property_types"]), ("room.message", {"n": "integer", "s": "string"}))


class MarkerAndStateTests(unittest.TestCase):
    def test_marker_without_body_round_trips(self) -> None:
        """A 1:1 chat marker without a body is sent, and read back, as XEP-0333's element."""
        content = message_content({"chat_marker": {"type": "displayed", "id": "m7"}})
        self.assertEqual(content, (None, False, {"type": "displayed", "id": "m7"}, None))
        message = build_message(JID("bob@localhost"), None, chat_marker=content[2])
        self.assertIsNone(message.body)
        result = message_to_json(reparse(message), 0)
        self.assertEqual(result["chat_marker"], {"type": "displayed", "id": "m7"})
        self.assertNotIn("body", result)

    def test_markable_body_round_trips(self) -> None:
        """markable with a body becomes <markable/>, and markable: true in the JSON."""
        body, is_markable, _, _ = message_content({"body": "x", "markable": True})
        result = message_to_json(reparse(build_message(JID("bob@localhost"), body, markable=is_markable)), 0)
        self.assertEqual((result["body"], result["markable"]), ("x", True))

    def test_nothing_at_all_is_a_missing_body(self) -> None:
        """No body, marker or state is 400 "Missing message body"; bad ones name their field."""
        for body, error in (
            ({}, "Missing message body"),
            ({"body": ""}, "Missing message body"),
            ({"markable": True}, "Missing message body"),
            ({"chat_state": "typing"}, "Invalid chat_state"),
            ({"chat_state": 1}, "Invalid chat_state"),
            ({"chat_state": ["active"]}, "Invalid chat_state"),
            ({"chat_marker": {"type": "read", "id": "1"}}, "Invalid chat marker"),
            ({"chat_marker": {"type": "displayed", "id": ""}}, "Invalid chat marker"),
            ({"chat_marker": {"type": "displayed", "id": 5}}, "Invalid chat marker"),
            ({"chat_marker": "displayed"}, "Invalid chat marker"),
            ({"body": "x", "markable": "yes"}, "Invalid markable"),
            ({"body": 5, "chat_state": "active"}, "Invalid message body"),
        ):
            with self.assertRaises(BadRequest) as caught:
                message_content(body)
            self.assertEqual(caught.exception.message, error, body)

    def test_state_alone_is_not_stored(self) -> None:
        """A chat state alone carries <no-store/>; with a body it does not."""
        alone = reparse(build_message(JID("bob@localhost"), None, chat_state="composing"))
        self.assertIsNotNone(next(alone.elements(NS_STATES, "composing"), None))
        self.assertIsNotNone(next(alone.elements("urn:xmpp:hints", "no-store"), None))
        self.assertTrue(is_chat_state_only(alone))
        with_body = reparse(build_message(JID("bob@localhost"), "x", chat_state="active"))
        self.assertIsNone(next(with_body.elements("urn:xmpp:hints", "no-store"), None))
        self.assertFalse(is_chat_state_only(with_body))
        self.assertEqual(message_to_json(with_body, 0)["chat_state"], "active")

    def test_state_validation(self) -> None:
        """Each XEP-0085 state is accepted; anything else is 400 "Invalid chat_state"."""
        for state in ("active", "composing", "paused", "inactive", "gone"):
            self.assertEqual(chat_state({"chat_state": state}), state)
        self.assertIsNone(chat_state({}))
        self.assertIsNone(chat_marker({}))

    def event(self, xml: str) -> tuple[str, dict[str, Any]] | None:
        return incoming_event(parse(xml), OWN, "muclight.localhost", 5)

    def test_state_alone_is_a_chat_state_event(self) -> None:
        """A received chat state alone is a chat_state event {from, to, state} with bare JIDs."""
        found = self.event(
            f"<message xmlns='jabber:client' from='bob@localhost/p' to='{OWN}/r' type='chat'>"
            f"<paused xmlns='{NS_STATES}'/></message>"
        )
        self.assertEqual(found, ("chat_state", {"from": "bob@localhost", "to": OWN, "state": "paused"}))

    def test_state_with_body_is_one_message_event(self) -> None:
        """A body with a chat state is one message event with a chat_state field."""
        found = self.event(
            f"<message xmlns='jabber:client' from='bob@localhost/p' to='{OWN}' type='chat' id='9'>"
            f"<body>hi</body><active xmlns='{NS_STATES}'/></message>"
        )
        assert found is not None
        self.assertEqual((found[0], found[1]["body"], found[1]["chat_state"]), ("message", "hi", "active"))

    def test_carbon_of_a_state_is_marked(self) -> None:
        """A carbon copy of a chat state the user's other device sent is a chat_state event with carbon: sent."""
        found = self.event(
            f"<message xmlns='jabber:client' from='{OWN}' to='{OWN}/r'><sent xmlns='urn:xmpp:carbons:2'>"
            "<forwarded xmlns='urn:xmpp:forward:0'>"
            f"<message xmlns='jabber:client' from='{OWN}/phone' to='bob@localhost' type='chat'>"
            f"<gone xmlns='{NS_STATES}'/></message></forwarded></sent></message>"
        )
        self.assertEqual(found, ("chat_state", {"from": OWN, "to": "bob@localhost", "state": "gone", "carbon": "sent"}))

    def test_unknown_state_elements_are_no_event(self) -> None:
        """An element in the chat-states namespace that is no state is no event."""
        self.assertIsNone(
            self.event(
                f"<message xmlns='jabber:client' from='bob@localhost/p' to='{OWN}' type='chat'>"
                f"<typing xmlns='{NS_STATES}'/></message>"
            )
        )
