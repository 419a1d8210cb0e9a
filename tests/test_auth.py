"""Basic credentials parsing and failed-login throttling."""

from __future__ import annotations

from base64 import b64encode

from twisted.internet.task import Clock
from twisted.trial import unittest

from bridge.api.auth import parse_basic
from bridge.throttle import FailureThrottle


def header(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return b"Basic " + b64encode(raw)


class ParseBasicTests(unittest.TestCase):
    def test_valid(self) -> None:
        """user@domain:password gives the normalised bare JID and the password."""
        jid, password = parse_basic(header("Alice@LocalHost:se:cr et"))  # type: ignore[misc]
        self.assertEqual(jid.full(), "alice@localhost")
        self.assertEqual(password, "se:cr et")

    def test_scheme_is_case_insensitive(self) -> None:
        """'basic' works like 'Basic' (RFC 7617)."""
        self.assertIsNotNone(parse_basic(b"basic " + b64encode(b"a@x:p")))

    def test_unicode_credentials(self) -> None:
        """UTF-8 user names and passwords are accepted and stringprepped."""
        parsed = parse_basic(header("ÄLICE@localhost:pässword"))
        assert parsed is not None
        self.assertEqual(parsed[0].user, "älice")
        self.assertEqual(parsed[1], "pässword")

    def test_malformed_headers(self) -> None:
        """Anything that is not Basic user@domain:password is refused."""
        for bad in (
            None,
            b"",
            b"Basic",
            b"Bearer abc",
            b"Basic !!!notbase64",
            b"Basic " + b64encode(b"\xff\xfe:pw"),
            header("alice@localhost"),  # no colon
            header("alice@localhost:"),  # empty password
            header("localhost:pw"),  # no user part
            header("alice@localhost/res:pw"),  # a resource
            header("al ice@localhost:pw"),  # not a valid node
            header("alice@:pw"),
            header("a\x00@localhost:pw"),
            header("alice@localhost:p\x00w"),
            b"Basic " + b"A" * 5000,
        ):
            self.assertIsNone(parse_basic(bad), bad)


class ThrottleTests(unittest.TestCase):
    def test_limit_then_window(self) -> None:
        """After `limit` failures within the window the key waits until the oldest expires."""
        clock = Clock()
        throttle = FailureThrottle(clock, limit=3, window=60)
        for _ in range(2):
            throttle.record("k")
            clock.advance(10)
        self.assertEqual(throttle.retry_after("k"), 0)
        throttle.record("k")
        self.assertEqual(throttle.retry_after("k"), 40)
        clock.advance(40)
        self.assertEqual(throttle.retry_after("k"), 0)

    def test_keys_are_independent(self) -> None:
        """One key's failures do not throttle another."""
        throttle = FailureThrottle(Clock(), limit=1, window=60)
        throttle.record("a")
        self.assertGreater(throttle.retry_after("a"), 0)
        self.assertEqual(throttle.retry_after("b"), 0)

    def test_clear(self) -> None:
        """A successful login clears the JID's failures."""
        throttle = FailureThrottle(Clock(), limit=1, window=60)
        throttle.record("a")
        throttle.clear("a")
        self.assertEqual(throttle.retry_after("a"), 0)

    def test_memory_is_bounded(self) -> None:
        """Expired keys are dropped once many keys accumulate."""
        clock = Clock()
        throttle = FailureThrottle(clock, limit=1, window=1)
        for n in range(10_050):
            throttle.record(f"k{n}")
        clock.advance(2)
        throttle.record("last")
        self.assertEqual(len(throttle._failures), 1)


class JidParseTests(unittest.TestCase):
    def test_hostile_jids(self) -> None:
        """Malformed JIDs, including ones Twisted itself trips over, are refused without exceptions."""
        from bridge.jid import parse

        for bad in (
            "",
            "a@b..c",
            "a@.b",
            "@b",
            "a@",
            "a@b/",
            "a" * 1024 + "@b",
            "a@b/" + "r" * 1024,
            "a b@c",
            5,
            None,
            "a@" + "b" * 1024,
        ):
            self.assertIsNone(parse(bad), repr(bad)[:40])
        self.assertEqual(parse("A@B/R").full(), "a@b/R")  # type: ignore[union-attr]
        self.assertEqual(parse("a" * 1023 + "@b").user, "a" * 1023)  # type: ignore[union-attr]
