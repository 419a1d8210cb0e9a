"""Request limits on a fake clock: token buckets, caps, and the header/body deadlines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial import unittest
from twisted.web.resource import Resource

from bridge.api.errors import ApiError, write_json
from bridge.config import ConfigError, LimitsConfig, ThrottleConfig, parse_config
from bridge.http.limits import EventStreams, RequestLimits, TokenBuckets
from bridge.http.request import BridgeRequest
from bridge.http.site import BridgeSite
from bridge.tap import build
from bridge.throttle import LoginThrottle
from tests.integration.base import basic


class TokenBucketTests(unittest.TestCase):
    def test_burst_then_rate(self) -> None:
        """A key gets its burst at once, then one request per 1/rate seconds, with the wait announced."""
        clock = Clock()
        buckets = TokenBuckets(clock, rate=2.0, burst=3)
        self.assertEqual([buckets.take("a") for _ in range(3)], [0.0, 0.0, 0.0])
        self.assertAlmostEqual(buckets.take("a"), 0.5)
        self.assertEqual(buckets.take("b"), 0.0)
        clock.advance(0.5)
        self.assertEqual(buckets.take("a"), 0.0)
        self.assertGreater(buckets.take("a"), 0.0)

    def test_zero_rate_is_off(self) -> None:
        """A rate of 0 never refuses."""
        buckets = TokenBuckets(Clock(), rate=0.0, burst=1)
        self.assertEqual(sum(buckets.take("a") for _ in range(1000)), 0.0)

    def test_memory_is_bounded(self) -> None:
        """Keys whose bucket has refilled are dropped once there are many."""
        clock = Clock()
        buckets = TokenBuckets(clock, rate=10.0, burst=5)
        for i in range(10_050):
            buckets.take(f"k{i}")
        clock.advance(1)
        buckets.take("new")
        self.assertLess(len(buckets), 100)


class FakePool:
    """The two things RequestLimits asks the session pool: a live session, and how many."""

    def __init__(self, live: set[tuple[str, str]]) -> None:
        self.live = live

    def existing(self, jid: Any, password: str) -> object | None:
        return object() if (jid.userhost(), password) in self.live else None

    def has_session(self, bare: str) -> bool:
        return any(user == bare for user, _ in self.live)

    def __len__(self) -> int:
        return len(self.live)


class FakeRequest(BridgeRequest):
    """The parts of a request the limits read, with BridgeRequest's own state (no channel)."""

    def __init__(self, user: tuple[str, str] | None = None, address: str = "192.0.2.1", path: bytes = b"/api/messages"):
        self.headers = {b"authorization": basic(*user).encode()} if user else {}
        self.address = address
        self.method = b"GET"
        self.path = path
        self.finished: list[Any] = []

    def getHeader(self, name: bytes) -> bytes | None:
        return self.headers.get(name)

    def getClientAddress(self) -> IPv4Address:
        return IPv4Address("TCP", self.address, 1234)

    def notifyFinish(self) -> Any:
        from twisted.internet.defer import Deferred

        finished: Deferred[None] = Deferred()
        self.finished.append(finished)
        return finished

    def finish(self) -> None:
        for each in self.finished:
            each.callback(None)


class RequestLimitsTests(unittest.TestCase):
    def limits(self, live: set[tuple[str, str]] | None = None, **changes: Any) -> tuple[Clock, RequestLimits]:
        clock = Clock()
        return clock, RequestLimits(clock, LimitsConfig(**changes), FakePool(live or set()))  # type: ignore[arg-type]

    def test_defaults_serve_200_users_logging_in_at_once_from_one_address(self) -> None:
        """With the default limits, 200 users' first requests from one address all go through."""
        _, limits = self.limits()
        users = [(f"user{i}@localhost", "pw") for i in range(200)]
        refusals = [limits.check(FakeRequest(user, "198.51.100.7")) for user in users]
        self.assertEqual([r for r in refusals if r is not None], [])

    def test_defaults_serve_5_messages_a_second_per_user(self) -> None:
        """With the default limits, 200 users behind one address sending 5 requests/s each for a minute pass."""
        users = {(f"user{i}@localhost", "pw") for i in range(200)}
        clock, limits = self.limits(users)
        refused = 0
        for _ in range(60 * 5):
            for user in users:
                refused += limits.check(FakeRequest(user, "198.51.100.7")) is not None
            clock.advance(0.2)
        self.assertEqual(refused, 0)

    def test_one_user_flooding_gets_429_with_retry_after(self) -> None:
        """Past its burst, a user's requests get 429 and a Retry-After of whole seconds; other users are served."""
        alice, bob = ("alice@localhost", "a"), ("bob@localhost", "b")
        clock, limits = self.limits({alice, bob}, user_rate=1.0, user_burst=3)
        for _ in range(3):
            self.assertIsNone(limits.check(FakeRequest(alice)))
        refusal = limits.check(FakeRequest(alice))
        assert refusal is not None
        self.assertEqual(
            (refusal.status, refusal.message, refusal.retry_after, refusal.limit),
            (429, "Too many requests", "1", "user"),
        )
        self.assertIsNone(limits.check(FakeRequest(bob)))
        clock.advance(1)
        self.assertIsNone(limits.check(FakeRequest(alice)))

    def test_wrong_passwords_do_not_spend_a_users_allowance(self) -> None:
        """Requests under a user's JID with a wrong password never count against that user."""
        alice = ("alice@localhost", "right")
        _, limits = self.limits({alice}, user_rate=1.0, user_burst=2)
        for _ in range(50):
            limits.check(FakeRequest(("alice@localhost", "wrong"), address="203.0.113.9"))
        self.assertIsNone(limits.check(FakeRequest(alice)))

    def test_one_address_flooding_gets_429(self) -> None:
        """Past its burst, an address gets 429 whoever it claims to be; other addresses are served."""
        _, limits = self.limits(address_rate=10.0, address_burst=5)
        results = [limits.check(FakeRequest(address="203.0.113.9")) for _ in range(6)]
        self.assertEqual(results[:5], [None] * 5)
        assert results[5] is not None
        self.assertEqual((results[5].status, results[5].limit), (429, "address"))
        self.assertIsNone(limits.check(FakeRequest(address="203.0.113.10")))

    def test_session_cap_refuses_new_logins_only(self) -> None:
        """At max_sessions, a new user's login gets 503 while users with a session are served."""
        alice = ("alice@localhost", "a")
        _, limits = self.limits({alice}, max_sessions=2)
        pending = FakeRequest(("bob@localhost", "b"))
        self.assertIsNone(limits.check(pending))
        refusal = limits.check(FakeRequest(("carol@localhost", "c")))
        assert refusal is not None
        self.assertEqual((refusal.status, refusal.message, refusal.limit), (503, "Too many sessions", "sessions"))
        self.assertIsNone(limits.check(FakeRequest(alice)))
        self.assertIsNone(limits.check(FakeRequest(("bob@localhost", "b"))))
        pending.finish()

    def test_session_cap_is_no_password_oracle(self) -> None:
        """At max_sessions, a wrong password for a user with a session goes on to the server, as the right one does."""
        alice = ("alice@localhost", "a")
        _, limits = self.limits({alice}, max_sessions=1)
        self.assertIsNone(limits.check(FakeRequest(("alice@localhost", "guess"))))
        self.assertIsNone(limits.check(FakeRequest(alice)))

    def test_throttled_credentials_get_through_whatever_the_password(self) -> None:
        """A throttled JID's requests are not judged here by password: right and wrong ones both reach the 429."""
        alice = ("alice@localhost", "a")
        clock = Clock()
        throttle = LoginThrottle(clock, ThrottleConfig())
        limits = RequestLimits(clock, LimitsConfig(user_rate=1.0, user_burst=1), FakePool({alice}), throttle)  # type: ignore[arg-type]
        self.assertIsNone(limits.check(FakeRequest(alice)))
        self.assertIsNotNone(limits.check(FakeRequest(alice)))  # her burst is spent
        for address in ("203.0.113.1", "203.0.113.1", "203.0.113.1", "203.0.113.2", "203.0.113.2"):
            throttle.failed("alice@localhost", address)
        right = limits.check(FakeRequest(alice))
        wrong = limits.check(FakeRequest(("alice@localhost", "guess")))
        self.assertEqual((right, wrong), (None, None))

    def test_credentials_are_kept_on_the_request(self) -> None:
        """check() leaves its parse of the Authorization header on the request for the authenticator."""
        _, limits = self.limits()
        request = FakeRequest(("alice@localhost", "a"))
        limits.check(request)
        assert request.credentials is not None
        jid, password = request.credentials
        self.assertEqual((jid.full(), password), ("alice@localhost", "a"))

    def test_live_session_is_kept_on_the_request(self) -> None:
        """check() leaves the session it matched to the credentials on the request, and None for a wrong password."""
        _, limits = self.limits({("alice@localhost", "a")})
        right, wrong = FakeRequest(("alice@localhost", "a")), FakeRequest(("alice@localhost", "b"))
        for request in (right, wrong):
            self.assertIsNone(limits.check(request))
        self.assertIsNotNone(right.live_session)
        self.assertIsNone(wrong.live_session)


class EventStreamsTests(unittest.TestCase):
    def test_stream_cap(self) -> None:
        """At max_streams, a new event stream gets 503 with Retry-After until one closes."""
        streams = EventStreams(max_streams=1)
        first = FakeRequest(("alice@localhost", "a"), path=b"/api/sse")
        streams.begin(first)
        self.assertTrue(first.is_event_stream)
        self.assertEqual(streams.open_streams, 1)
        refused = FakeRequest(("alice@localhost", "a"), path=b"/api/sse/")
        with self.assertRaises(ApiError) as caught:
            streams.begin(refused)
        error = caught.exception
        self.assertEqual(
            (error.status, error.message, error.headers), (503, "Too many event streams", {"Retry-After": "10"})
        )
        self.assertEqual((refused.is_event_stream, refused.refusal), (True, "streams"))
        first.finish()
        self.assertEqual(streams.open_streams, 0)
        streams.begin(FakeRequest(("alice@localhost", "a"), path=b"/api/sse"))

    def test_the_limits_before_routing_mark_no_stream(self) -> None:
        """Only the event-stream route marks a request as a stream; the checks before routing leave it unmarked."""
        clock = Clock()
        limits = RequestLimits(clock, LimitsConfig(max_streams=1), FakePool(set()))  # type: ignore[arg-type]
        for _ in range(3):
            request = FakeRequest(("alice@localhost", "a"), path=b"/api/sse")
            self.assertIsNone(limits.check(request))
            self.assertFalse(request.is_event_stream)

    def test_cap_per_user(self) -> None:
        """Past max_streams_per_user a user's new stream gets 429 with Retry-After; other users are served."""
        streams = EventStreams(max_per_user=2)
        request = FakeRequest()
        streams.open(request, "alice@localhost")
        streams.open(request, "alice@localhost")
        with self.assertRaises(ApiError) as caught:
            streams.open(request, "alice@localhost")
        error = caught.exception
        self.assertEqual((error.status, error.message), (429, "Too many event streams for this user"))
        self.assertEqual(error.headers["Retry-After"], "10")
        self.assertEqual(request.refusal, "user_streams")
        streams.open(request, "bob@localhost")
        streams.close("alice@localhost")
        streams.open(request, "alice@localhost")
        self.assertEqual((streams["alice@localhost"], streams["bob@localhost"]), (2, 1))
        for _ in range(3):
            streams.close("alice@localhost")
        self.assertEqual(streams._open, {"bob@localhost": 1})

    def test_zero_is_no_cap(self) -> None:
        """max_streams_per_user = 0 never refuses."""
        streams = EventStreams()
        for _ in range(1000):
            streams.open(FakeRequest(), "alice@localhost")


class Hello(Resource):
    isLeaf = True

    def render(self, request: Any) -> bytes:
        if request.path == b"/busy":
            return write_json(request, 429, "Too many requests")
        return b"hello"


class DeadlineTests(unittest.TestCase):
    """GuardedChannel on an in-memory transport: the idle timeout alone never fires on a trickle."""

    def connect(self, header_timeout: float = 10.0, body_timeout: float = 30.0) -> tuple[Clock, Any, StringTransport]:
        clock = Clock()
        site = BridgeSite(Hello(), max_body=1000, idle_timeout=60.0, clock=clock)
        site.header_timeout, site.body_timeout = header_timeout, body_timeout
        channel = site.buildProtocol(IPv4Address("TCP", "192.0.2.1", 1234))
        transport = StringTransport()
        channel.makeConnection(transport)
        return clock, channel, transport

    def test_slow_loris_headers_are_cut_off(self) -> None:
        """One header byte every 5 s (each resets the idle timeout) is cut off with 408 at the header deadline."""
        clock, channel, transport = self.connect(header_timeout=10.0)
        sent = 0
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
            if transport.disconnecting:
                break
            channel.dataReceived(bytes([byte]))
            sent += 1
            clock.advance(5)
        self.assertTrue(transport.disconnecting)
        self.assertLessEqual(sent, 3)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408 "))

    def test_trickled_headers_are_cut_off_at_the_deadline(self) -> None:
        """Headers arriving a byte every 2 s are refused with 408 after header_timeout, not the idle timeout."""
        clock, channel, transport = self.connect(header_timeout=10.0)
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaa":
            if transport.disconnecting:
                break
            channel.dataReceived(bytes([byte]))
            clock.advance(2)
        self.assertTrue(transport.disconnecting)
        self.assertAlmostEqual(clock.seconds(), 10.0, delta=2.0)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408 Request Timeout"))

    def test_trickled_body_is_cut_off_at_the_deadline(self) -> None:
        """A body that arrives a byte every 2 s is refused after body_timeout."""
        clock, channel, transport = self.connect(body_timeout=30.0)
        channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n")
        for _ in range(100):
            if transport.disconnecting:
                break
            channel.dataReceived(b"a")
            clock.advance(2)
        self.assertTrue(transport.disconnecting)
        self.assertAlmostEqual(clock.seconds(), 30.0, delta=2.0)
        self.assertIn(b"408 Request Timeout", transport.value())

    def test_prompt_requests_on_a_kept_alive_connection_are_served(self) -> None:
        """Requests that arrive in time are answered, and each one on a kept-alive connection gets a fresh deadline."""
        clock, channel, transport = self.connect(header_timeout=10.0)
        for _ in range(3):
            clock.advance(9)  # idle between requests: only the idle timeout (60 s) applies
            channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertFalse(transport.disconnecting)
        self.assertEqual(transport.value().count(b"200 OK"), 3)
        self.assertNotIn(b"408", transport.value())

    def test_a_connection_that_sends_nothing_is_closed_without_an_answer(self) -> None:
        """A connection that never sends a byte is closed at the header deadline, without a 408."""
        clock, _, transport = self.connect(header_timeout=10.0)
        clock.advance(10)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"")

    def test_429_has_its_reason_phrase(self) -> None:
        """A 429 answer's status line says "Too Many Requests", not "Unknown Status"."""
        _, channel, transport = self.connect()
        channel.dataReceived(b"GET /busy HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 429 Too Many Requests\r\n"), transport.value()[:80])

    def assertRefused(self, transport: StringTransport, status: bytes, body: bytes) -> None:
        head, _, answer = transport.value().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 " + status + b"\r\n"), head[:80])
        self.assertIn(b"Content-Type: application/json", head)
        self.assertIn(b"Connection: close", head)
        self.assertEqual(answer, body)
        self.assertTrue(transport.disconnecting)

    def test_header_line_over_16k_gets_431(self) -> None:
        """A header line over 16 KiB gets 431 with a JSON reason, and the connection is closed."""
        _, channel, transport = self.connect()
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 17_000 + b"\r\n\r\n")
        self.assertRefused(transport, b"431 Request Header Fields Too Large", b'"Request header too large"')

    def test_header_line_over_16k_arriving_in_pieces_gets_431(self) -> None:
        """A header line still growing past 16 KiB (no line end yet) gets 431 too."""
        _, channel, transport = self.connect()
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
        for _ in range(20):
            if transport.disconnecting:
                break
            channel.dataReceived(b"a" * 1000)
        self.assertRefused(transport, b"431 Request Header Fields Too Large", b'"Request header too large"')

    def test_headers_over_16k_in_all_get_431(self) -> None:
        """Many header lines adding up to more than 16 KiB get 431, not a bare 400."""
        _, channel, transport = self.connect()
        lines = b"".join(b"X-H%d: %s\r\n" % (n, b"a" * 1000) for n in range(20))
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n")
        self.assertRefused(transport, b"431 Request Header Fields Too Large", b'"Request header too large"')

    def test_request_path_of_20k_gets_414(self) -> None:
        """A 20 KB request path gets 414 with a JSON reason, and the connection is closed."""
        _, channel, transport = self.connect()
        channel.dataReceived(b"GET /" + b"p" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertRefused(transport, b"414 URI Too Long", b'"Request URI too long"')

    def test_long_path_on_a_kept_alive_connection_gets_414(self) -> None:
        """The second request on a connection is judged afresh: its over-long path gets 414."""
        _, channel, transport = self.connect()
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b"200 OK", transport.value())
        transport.clear()
        channel.dataReceived(b"GET /" + b"p" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertRefused(transport, b"414 URI Too Long", b'"Request URI too long"')

    def test_body_over_max_body_gets_413_before_it_is_read(self) -> None:
        """A declared body over max_body gets 413 with a JSON reason at once, and the connection is closed."""
        _, channel, transport = self.connect()
        channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        self.assertRefused(transport, b"413 Payload Too Large", b'"Request body too large"')

    def test_raw_answers_and_request_answers_have_one_form(self) -> None:
        """An answer written to the transport carries the same JSON Content-Type as one written to a request."""
        _, channel, transport = self.connect()
        channel.dataReceived(b"GET /busy HTTP/1.1\r\nHost: x\r\n\r\n")
        answered = transport.value().partition(b"\r\n\r\n")[0].split(b"\r\n")
        transport.clear()
        channel.dataReceived(b"GET /" + b"p" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = transport.value().partition(b"\r\n\r\n")[0].split(b"\r\n")

        def content_type(head: list[bytes]) -> list[bytes]:
            return [line.split(b":", 1)[1].strip() for line in head if line.lower().startswith(b"content-type:")]

        self.assertEqual(content_type(raw), content_type(answered))
        self.assertEqual(content_type(raw), [b"application/json; charset=utf-8"])


class ConfigTests(unittest.TestCase):
    def test_new_keys_have_defaults_and_are_in_the_example_file(self) -> None:
        """[limits], [metrics] and the new [http] deadlines have defaults, and etc/bridge.toml shows each key."""
        config = parse_config("", {})
        self.assertEqual((config.http.header_timeout, config.http.body_timeout), (10.0, 30.0))
        self.assertEqual(config.http.shutdown_timeout, 10.0)
        self.assertEqual(config.metrics.endpoint, "")
        self.assertEqual((config.limits.max_sessions, config.limits.max_streams), (10000, 10000))
        self.assertEqual(config.limits.max_streams_per_user, 10)
        text = (Path(__file__).parents[2] / "etc" / "bridge.toml").read_text()
        for section, keys in (
            ("limits", LimitsConfig.__dataclass_fields__),
            ("metrics", ("endpoint",)),
            ("http", ("header_timeout", "body_timeout", "shutdown_timeout")),
        ):
            self.assertIn(f"[{section}]", text)
            for key in keys:
                self.assertRegex(text, rf"(?m)^{key} = ", f"{section}.{key}")

    def test_bad_values_name_the_key(self) -> None:
        """Negative, infinite or wrongly typed limits and deadlines are refused, naming the key."""
        cases = {
            "[limits]\nuser_rate = -1": "limits.user_rate: expected a finite number, 0 or more",
            "[limits]\naddress_rate = inf": "limits.address_rate: expected a finite number, 0 or more",
            "[limits]\nuser_burst = 0": "limits.user_burst: must be greater than 0",
            "[limits]\nmax_streams = -5": "limits.max_streams: expected a finite number, 0 or more",
            "[limits]\nmax_streams_per_user = -1": "limits.max_streams_per_user: expected a finite number, 0 or more",
            '[limits]\nmax_sessions = "many"': "limits.max_sessions: expected an integer",
            "[http]\nheader_timeout = 0": "http.header_timeout: must be greater than 0",
            "[http]\nshutdown_timeout = nan": "http.shutdown_timeout: expected a finite number, 0 or more",
            "[metrics]\nendpoint = 9090": "metrics.endpoint: expected a string",
        }
        for text, message in cases.items():
            with self.assertRaises(ConfigError) as caught:
                parse_config(text, {})
            self.assertEqual(str(caught.exception), message, text)

    def test_bad_metrics_endpoint_is_named_at_build(self) -> None:
        """A metrics.endpoint Twisted cannot parse stops start-up naming the key."""
        with self.assertRaises(ConfigError) as caught:
            build(parse_config('[metrics]\nendpoint = "bogus:1"', {}), Clock())
        self.assertTrue(str(caught.exception).startswith("metrics.endpoint: not a valid endpoint description"))
