"""``NameIndexedDispatch`` calls exactly the observers xish's ``EventDispatcher`` calls, in its order."""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest
from twisted.words.xish import domish, utility

from bridge.protocol.dispatch import NameIndexedDispatch
from bridge.protocol.xml import StanzaStream

QUERIES = [
    ("/iq[@type='result']", 0),
    ("/iq[@type='error']", 0),
    ("/iq[@type='set']/query[@xmlns='jabber:iq:roster']", 0),
    ("/iq[@type='get']", -1),
    ("/message", 0),
    ("/message[@type='error']", 0),
    ("/message/result[@xmlns='urn:xmpp:mam:2']", 0),
    ("/message", 5),
    ("/presence", 0),
    ("/presence[@type='error']", 0),
    ("/*", 0),
    ("//body", 0),
]


def elements() -> list[domish.Element]:
    def make(name: str, stanza_type: str | None = None, *children: str) -> domish.Element:
        element = domish.Element((None, name))
        if stanza_type is not None:
            element["type"] = stanza_type
        for each in children:
            element.addElement(each)
        return element

    result = make("message", "chat")
    result.addElement(("urn:xmpp:mam:2", "result"))
    return [
        make("iq", "result"),
        make("iq", "error"),
        make("iq", "get", "ping"),
        make("message", "chat", "body"),
        make("message", "error"),
        result,
        make("presence"),
        make("presence", "error"),
        make("features"),
        make("success"),
    ]


def calls(dispatcher: utility.EventDispatcher, register: Any = None) -> list[tuple[str, str, Any]]:
    """The (query, element name, type) of each observer call, over every element."""
    seen: list[tuple[str, str, Any]] = []
    for query, priority in QUERIES:
        dispatcher.addObserver(
            query, lambda element, q=query: seen.append((q, element.name, element.getAttribute("type"))), priority
        )
    if register is not None:
        register(dispatcher, seen)
    for element in elements():
        dispatcher.dispatch(element)
    return seen


class SameCallsTests(unittest.TestCase):
    def test_same_observers_in_the_same_order(self) -> None:
        self.assertEqual(calls(NameIndexedDispatch()), calls(utility.EventDispatcher()))

    def test_one_time_observers_run_once(self) -> None:
        def once(dispatcher: utility.EventDispatcher, seen: list[Any]) -> None:
            dispatcher.addOnetimeObserver("/message", lambda element: seen.append(("once", element.name, None)), 9)

        ours = calls(NameIndexedDispatch(), once)
        self.assertEqual(ours, calls(utility.EventDispatcher(), once))
        self.assertEqual(1, ours.count(("once", "message", None)))

    def test_changes_made_while_dispatching_wait_until_it_ends(self) -> None:
        def add_on_first_iq(dispatcher: utility.EventDispatcher, seen: list[Any]) -> None:
            def added(element: domish.Element) -> None:
                seen.append(("added", element.name, None))

            def first(element: domish.Element) -> None:
                dispatcher.addObserver("/iq", added)
                dispatcher.removeObserver("/presence", first_presence)

            def first_presence(element: domish.Element) -> None:
                seen.append(("presence observer", element.name, None))

            dispatcher.addOnetimeObserver("/iq", first)
            dispatcher.addObserver("/presence", first_presence)

        ours = calls(NameIndexedDispatch(), add_on_first_iq)
        self.assertEqual(ours, calls(utility.EventDispatcher(), add_on_first_iq))
        self.assertEqual(2, ours.count(("added", "iq", None)))  # not for the iq that added it
        self.assertNotIn(("presence observer", "presence", None), ours)

    def test_removed_observers_are_not_called(self) -> None:
        def remove(dispatcher: utility.EventDispatcher, seen: list[Any]) -> None:
            def observer(element: domish.Element) -> None:
                seen.append(("removed", element.name, None))

            dispatcher.addObserver("/message", observer)
            dispatcher.removeObserver("/message", observer)

        ours = calls(NameIndexedDispatch(), remove)
        self.assertEqual(ours, calls(utility.EventDispatcher(), remove))
        self.assertFalse([call for call in ours if call[0] == "removed"])

    def test_found_says_whether_any_observer_matched(self) -> None:
        dispatcher = NameIndexedDispatch()
        dispatcher.addObserver("/message", lambda element: None)
        self.assertTrue(dispatcher.dispatch(domish.Element((None, "message"))))
        self.assertFalse(dispatcher.dispatch(domish.Element((None, "iq"))))

    def test_named_events_are_xishs(self) -> None:
        dispatcher = NameIndexedDispatch()
        seen: list[object] = []
        dispatcher.addObserver("//event/stream/end", seen.append)
        dispatcher.dispatch("reason", "//event/stream/end")
        self.assertEqual(["reason"], seen)

    def test_dispatchers_with_the_same_observers_share_one_index(self) -> None:
        first, second = NameIndexedDispatch(), NameIndexedDispatch()
        for dispatcher in (first, second):
            dispatcher.addObserver("/message", lambda element: None)
            dispatcher.addObserver("/iq[@type='result']", lambda element: None)
            dispatcher.dispatch(domish.Element((None, "message")))
        self.assertIs(first._by_name, second._by_name)

    def test_streams_use_it(self) -> None:
        self.assertTrue(issubclass(StanzaStream, NameIndexedDispatch))
