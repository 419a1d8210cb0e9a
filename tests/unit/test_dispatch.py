"""``StreamDispatch`` calls exactly the observers xish's ``EventDispatcher`` calls, in its order."""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

from twisted.trial import unittest
from twisted.words.xish import domish, utility

from bridge.protocol.dispatch import StreamDispatch
from bridge.protocol.xml import StanzaStream

STREAM_EVENTS = [
    ("//event/stream/connected", 0),
    ("//event/stream/authd", 0),
    ("//event/stream/end", 0),
    ("//event/xmpp/initfailed", 0),
    ("//event/stream/error", 0),
]
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
    def same_calls(self, register: Any) -> list[tuple[str, str, Any]]:
        """``calls`` of a ``StreamDispatch``, once checked against xish's for the same ``register``."""
        ours = calls(StreamDispatch(), register)
        self.assertEqual(ours, calls(utility.EventDispatcher(), register))
        return ours

    def test_same_observers_in_the_same_order(self) -> None:
        self.assertEqual(calls(StreamDispatch()), calls(utility.EventDispatcher()))

    def test_one_time_observers_run_once(self) -> None:
        def once(dispatcher: utility.EventDispatcher, seen: list[Any]) -> None:
            dispatcher.addOnetimeObserver("/message", lambda element: seen.append(("once", element.name, None)), 9)

        ours = self.same_calls(once)
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

        ours = self.same_calls(add_on_first_iq)
        self.assertEqual(2, ours.count(("added", "iq", None)))  # not for the iq that added it
        self.assertNotIn(("presence observer", "presence", None), ours)

    def test_removed_observers_are_not_called(self) -> None:
        def remove(dispatcher: utility.EventDispatcher, seen: list[Any]) -> None:
            def observer(element: domish.Element) -> None:
                seen.append(("removed", element.name, None))

            dispatcher.addObserver("/message", observer)
            dispatcher.removeObserver("/message", observer)

        ours = self.same_calls(remove)
        self.assertFalse([call for call in ours if call[0] == "removed"])

    def test_found_says_whether_any_observer_matched(self) -> None:
        dispatcher = StreamDispatch()
        dispatcher.addObserver("/message", lambda element: None)
        self.assertTrue(dispatcher.dispatch(domish.Element((None, "message"))))
        self.assertFalse(dispatcher.dispatch(domish.Element((None, "iq"))))

    def test_named_events_are_xishs(self) -> None:
        dispatcher = StreamDispatch()
        seen: list[object] = []
        dispatcher.addObserver("//event/stream/end", seen.append)
        dispatcher.dispatch("reason", "//event/stream/end")
        self.assertEqual(["reason"], seen)

    def test_dispatchers_with_the_same_observers_share_one_index(self) -> None:
        first, second = StreamDispatch(), StreamDispatch()
        for dispatcher in (first, second):
            dispatcher.addObserver("/message", lambda element: None)
            dispatcher.addObserver("/iq[@type='result']", lambda element: None)
            dispatcher.dispatch(domish.Element((None, "message")))
        self.assertIs(first._by_name, second._by_name)

    def test_observers_get_their_own_arguments_first(self) -> None:
        def with_arguments(dispatcher: utility.EventDispatcher, seen: list[Any]) -> None:
            def observer(first: str, element: domish.Element, flag: int = 0) -> None:
                seen.append((first, element.name, flag))

            dispatcher.addObserver("/presence", observer, 0, "own", flag=7)

        ours = self.same_calls(with_arguments)
        self.assertIn(("own", "presence", 7), ours)

    def test_a_callable_added_twice_runs_once(self) -> None:
        def twice(dispatcher: utility.EventDispatcher, seen: list[Any]) -> None:
            def observer(element: domish.Element) -> None:
                seen.append(("twice", element.name, None))

            dispatcher.addObserver("/iq", observer)
            dispatcher.addObserver("/iq", observer)

        ours = self.same_calls(twice)
        self.assertEqual(3, ours.count(("twice", "iq", None)))

    def test_a_callable_that_raises_is_logged_and_the_others_run(self) -> None:
        def raising(dispatcher: utility.EventDispatcher, seen: list[Any]) -> None:
            def observer(element: domish.Element) -> None:
                raise ValueError("observer")

            dispatcher.addObserver("/message", observer, 5)

        self.same_calls(raising)
        self.assertEqual(2 * 3, len(self.flushLoggedErrors(ValueError)))

    def test_named_events_follow_priorities(self) -> None:
        def order(dispatcher: utility.EventDispatcher) -> list[str]:
            seen: list[str] = []
            dispatcher.addObserver("//event/stream/end", lambda reason: seen.append("low"), -1)
            dispatcher.addOnetimeObserver("//event/stream/end", lambda reason: seen.append("high"), 3)
            dispatcher.addObserver("//event/stream/end", lambda reason: seen.append("zero"))
            dispatcher.dispatch(None, "//event/stream/end")
            dispatcher.dispatch(None, "//event/stream/end")
            return seen

        self.assertEqual(["high", "zero", "low", "zero", "low"], order(StreamDispatch()))
        self.assertEqual(order(StreamDispatch()), order(utility.EventDispatcher()))

    def test_a_sessions_observers_take_half_of_xishs_memory(self) -> None:
        class Handler:
            def observe(self, element: domish.Element) -> None:
                pass

        def size(make: Any) -> int:
            handler = Handler()
            make().addObserver("/warm-up", handler.observe)
            gc.collect()
            tracemalloc.start()
            try:
                started = tracemalloc.get_traced_memory()[0]
                kept = []
                for _ in range(50):
                    dispatcher = make()
                    for query, priority in QUERIES + STREAM_EVENTS:
                        dispatcher.addObserver(query, handler.observe, priority)
                    kept.append(dispatcher)
                return (tracemalloc.get_traced_memory()[0] - started) // 50
            finally:
                tracemalloc.stop()

        ours, xishs = size(StreamDispatch), size(utility.EventDispatcher)
        self.assertLess(ours * 2, xishs, (ours, xishs))  # 5.8 KB against 11.6 KB

    def test_streams_use_it(self) -> None:
        self.assertTrue(issubclass(StanzaStream, StreamDispatch))
