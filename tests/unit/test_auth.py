"""Basic credentials parsing and failed-login throttling."""

from __future__ import annotations

from base64 import b64encode
from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial import unittest

from bridge.api.auth import Authenticator
from bridge.api.errors import ApiError
from bridge.config import ThrottleConfig
from bridge.http.request import BridgeRequest, parse_basic
from bridge.throttle import MAX_DOUBLINGS, BackoffThrottle, FailureThrottle, LoginThrottle
from bridge.xmpp.errors import AuthenticationFailed


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
        from bridge.protocol.jid import parse

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


class BackoffThrottleTests(unittest.TestCase):
    def test_closure_doubles_with_each_further_failure_up_to_the_cap(self) -> None:
        """`limit` failures close a key for a window; each failure after a closure doubles it, up to the cap."""
        clock = Clock()
        throttle = BackoffThrottle(clock, limit=3, window=60)
        for _ in range(2):
            throttle.record("k")
        self.assertEqual(throttle.retry_after("k"), 0)
        throttle.record("k")
        self.assertEqual(throttle.retry_after("k"), 60)
        waits = []
        for _ in range(MAX_DOUBLINGS + 2):
            clock.advance(throttle.retry_after("k"))
            self.assertEqual(throttle.retry_after("k"), 0)
            throttle.record("k")
            waits.append(throttle.retry_after("k"))
        self.assertEqual(waits, [120, 240, 480, 960, 960, 960])

    def test_quiet_key_is_forgotten(self) -> None:
        """Failures a window apart never add up, and a key quiet for a window after its closure starts afresh."""
        clock = Clock()
        throttle = BackoffThrottle(clock, limit=2, window=60)
        for _ in range(5):
            throttle.record("k")
            clock.advance(60)
        self.assertEqual(throttle.retry_after("k"), 0)
        throttle.record("k")
        throttle.record("k")
        clock.advance(120)
        throttle.record("k")
        self.assertEqual(throttle.retry_after("k"), 0)
        self.assertEqual(len(throttle._failures), 1)


class FakeSession:
    alive = True


class FakePool:
    """The session pool as the authenticator sees it; ``accounts`` plays the server's answer."""

    def __init__(self, accounts: dict[str, str]) -> None:
        self.accounts = accounts
        self.live: dict[str, tuple[FakeSession, str]] = {}
        self.logins: list[str] = []
        # When set, every login waits for this Deferred before the "server" answers.
        self.server_answers: defer.Deferred[None] | None = None

    def existing(self, jid: Any, password: str) -> FakeSession | None:
        current = self.live.get(jid.userhost())
        return current[0] if current is not None and current[1] == password else None

    async def session(self, jid: Any, password: str) -> FakeSession:
        bare = jid.userhost()
        self.logins.append(bare)
        if self.server_answers is not None:
            await self.server_answers
        if self.accounts.get(bare) != password:
            raise AuthenticationFailed("not-authorized")
        session = FakeSession()
        self.live[bare] = (session, password)
        return session


class FakeRequest(BridgeRequest):
    """The parts of a request the authenticator reads, with BridgeRequest's own state (no channel)."""

    def __init__(self, jid: str, password: str, address: str) -> None:
        self.headers = {b"authorization": header(f"{jid}:{password}")}
        self.address = address

    def getHeader(self, name: bytes) -> bytes | None:
        return self.headers.get(name)

    def getClientAddress(self) -> IPv4Address:
        return IPv4Address("TCP", self.address, 1234)


class AuthenticatorTests(unittest.TestCase):
    """The authenticator with the real throttle, on a fake clock and pool."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.pool = FakePool({"alice@localhost": "right"})
        self.throttle = LoginThrottle(self.clock, ThrottleConfig())
        self.auth = Authenticator(self.pool, ["localhost"], "realm", self.throttle)  # type: ignore[arg-type]

    def attempt(self, password: str, address: str, jid: str = "alice@localhost") -> tuple[int, str | None]:
        """(status, Retry-After) of one attempt: 200 for a session."""
        done = defer.Deferred.fromCoroutine(self.auth.session(FakeRequest(jid, password, address)))  # type: ignore[arg-type]
        failures: list[Any] = []
        done.addErrback(failures.append)
        if not failures:
            return 200, None
        error = failures[0].value
        assert isinstance(error, ApiError)
        return error.status, error.headers.get("Retry-After")

    def test_throttled_jid_gets_the_same_429_whatever_the_password(self) -> None:
        """Once a JID is throttled, the right password (with a live session) and a wrong one get the same 429."""
        self.assertEqual(self.attempt("right", "192.0.2.1")[0], 200)
        for address, tries in (("203.0.113.1", 3), ("203.0.113.2", 2)):
            for _ in range(tries):
                self.assertEqual(self.attempt("guess", address)[0], 401)
        logins = len(self.pool.logins)
        right, wrong = self.attempt("right", "198.51.100.9"), self.attempt("guess", "198.51.100.9")
        self.assertEqual(right, wrong)
        self.assertEqual(right[0], 429)
        self.assertEqual(self.attempt("right", "192.0.2.1"), right)
        self.assertEqual(len(self.pool.logins), logins)

    def test_throttled_pair_gets_429_whatever_the_password(self) -> None:
        """Once a (JID, address) pair is throttled, a live session's right password from it gets the wrong one's 429."""
        self.assertEqual(self.attempt("right", "192.0.2.1")[0], 200)
        for _ in range(3):
            self.assertEqual(self.attempt("guess", "203.0.113.1")[0], 401)
        right, wrong = self.attempt("right", "203.0.113.1"), self.attempt("guess", "203.0.113.1")
        self.assertEqual(right, wrong)
        self.assertEqual(right, (429, "60"))

    def test_live_session_is_not_locked_out_by_a_guesser_elsewhere(self) -> None:
        """A user with a live session keeps working from their address while one other address guesses on."""
        self.assertEqual(self.attempt("right", "192.0.2.1")[0], 200)
        for _ in range(20):
            self.attempt("guess", "203.0.113.1")
            self.clock.advance(30)
            self.assertEqual(self.attempt("right", "192.0.2.1")[0], 200)

    def test_user_without_a_session_logs_in_while_a_guesser_elsewhere_is_held(self) -> None:
        """By default one guessing address cannot throttle the JID: the user logs in from elsewhere."""
        for _ in range(10):
            self.attempt("guess", "203.0.113.1")
        self.assertEqual(self.attempt("right", "192.0.2.1")[0], 200)

    def test_wrong_password_against_a_live_session_counts_once_the_server_refused(self) -> None:
        """A wrong password for a user with a live session is asked of the server, and counted only as its refusal."""
        self.assertEqual(self.attempt("right", "192.0.2.1")[0], 200)
        self.assertEqual(self.attempt("guess", "192.0.2.1")[0], 401)
        self.assertEqual(self.pool.logins, ["alice@localhost", "alice@localhost"])
        # The password changed on the server: the new one logs in; the old one is now the server's no.
        self.pool.accounts["alice@localhost"] = "new"
        self.assertEqual(self.attempt("new", "192.0.2.1")[0], 200)
        for _ in range(3):
            self.assertEqual(self.attempt("right", "192.0.2.1")[0], 401)
        self.assertEqual(self.attempt("new", "192.0.2.1"), (429, "60"))

    def test_invented_jids_do_not_lock_out_known_users_of_the_address(self) -> None:
        """50 failures with invented JIDs hold new logins from that address, not users who logged in from it before."""
        self.pool.accounts["bob@localhost"] = "b"
        self.assertEqual(self.attempt("right", "198.51.100.7")[0], 200)
        for n in range(50):
            self.assertEqual(self.attempt("x", "198.51.100.7", f"nobody{n}@localhost")[0], 401)
        self.assertEqual(self.attempt("b", "198.51.100.7", "bob@localhost")[0], 429)
        self.pool.live.clear()  # no live session needed: the pair is known
        self.assertEqual(self.attempt("right", "198.51.100.7")[0], 200)
        self.assertEqual(self.attempt("b", "192.0.2.1", "bob@localhost")[0], 200)

    def test_many_logins_from_one_address_are_never_throttled(self) -> None:
        """Successful logins never count: 200 users logging in from one address are all served."""
        for n in range(200):
            self.pool.accounts[f"user{n}@localhost"] = "pw"
        results = {self.attempt("pw", "198.51.100.7", f"user{n}@localhost")[0] for n in range(200)}
        self.assertEqual(results, {200})

    def test_parallel_guesses_are_counted_as_if_sent_one_by_one(self) -> None:
        """Guesses sent at once reach the server one at a time: no more of them than the throttle allows."""
        self.pool.server_answers = defer.Deferred()
        attempts = [
            defer.Deferred.fromCoroutine(self.auth.session(FakeRequest("alice@localhost", f"g{n}", "203.0.113.1")))  # type: ignore[arg-type]
            for n in range(20)
        ]
        statuses: list[int] = []
        for attempt in attempts:
            attempt.addErrback(lambda failure: statuses.append(failure.value.status))
        self.assertEqual(len(self.pool.logins), 1)
        self.pool.server_answers.callback(None)
        self.assertEqual(len(self.pool.logins), 3)
        self.assertEqual(sorted(statuses), [401] * 3 + [429] * 17)
        self.assertEqual(self.auth._logins, {})

    def test_the_live_session_the_limits_found_is_used_without_a_second_look(self) -> None:
        """A live session the limits matched is served without asking the pool again; an ended one is not reused."""
        looked: list[str] = []
        original = self.pool.existing

        def counting(jid: Any, password: str) -> FakeSession | None:
            looked.append(jid.userhost())
            return original(jid, password)

        self.patch(self.pool, "existing", counting)
        found = FakeSession()
        request = FakeRequest("alice@localhost", "right", "192.0.2.1")
        request.live_session = found  # type: ignore[assignment]
        served = defer.Deferred.fromCoroutine(self.auth.session(request))
        self.assertIs(self.successResultOf(served), found)
        self.assertEqual(looked, [])
        ended = FakeSession()
        ended.alive = False
        request = FakeRequest("alice@localhost", "right", "192.0.2.1")
        request.live_session = ended  # type: ignore[assignment]
        served = defer.Deferred.fromCoroutine(self.auth.session(request))
        self.assertIsNot(self.successResultOf(served), ended)
        self.assertEqual(looked[0], "alice@localhost")

    def test_a_found_live_session_does_not_pass_the_throttle(self) -> None:
        """A throttled JID gets 429 even when its request carries a live session (the limits never set one then)."""
        for address, tries in (("203.0.113.1", 3), ("203.0.113.2", 2)):
            for _ in range(tries):
                self.assertEqual(self.attempt("guess", address)[0], 401)
        request = FakeRequest("alice@localhost", "right", "198.51.100.9")
        request.live_session = FakeSession()  # type: ignore[assignment]
        failure = self.failureResultOf(defer.Deferred.fromCoroutine(self.auth.session(request)), ApiError)
        self.assertEqual(failure.value.status, 429)

    def test_credentials_are_parsed_once_per_request(self) -> None:
        """The request limits and the authenticator share one parse of the Authorization header."""
        import bridge.http.request as request_module

        calls: list[object] = []
        original = request_module.parse_basic

        def counting(value: bytes | None) -> Any:
            calls.append(value)
            return original(value)

        self.patch(request_module, "parse_basic", counting)
        request = FakeRequest("alice@localhost", "right", "192.0.2.1")
        self.assertEqual(request.credentials[1], "right")  # type: ignore[index]
        self.assertEqual(self.auth.credentials(request)[1], "right")
        self.assertEqual(len(calls), 1)
