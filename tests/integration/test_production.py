"""Production concerns against real Prosody: logs, limits, metrics, shutdown and readiness."""

from __future__ import annotations

import json
import re
import secrets
import signal
import socket
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path
from typing import Any

from treq.client import HTTPClient
from twisted.internet import defer, error, protocol, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.logger import eventAsText, globalLogPublisher
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool

from bridge.logs import event_record
from tests.integration.base import BridgeTestCase, basic
from tests.servers.fixture import RunningBridge, bridge_config, daemon_config, new_user, xmpp_server
from tests.servers.server import free_port, wait_for_port
from tests.system.test_twistd import twistd


class RawClient(protocol.Protocol):
    """A TCP client that sends bytes as told and keeps everything it receives."""

    def __init__(self) -> None:
        self.received = b""
        self.closed: defer.Deferred[bytes] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any) -> None:
        self.closed.callback(self.received)

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def until(self, marker: bytes, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self.received:
            if self.closed.called or time.monotonic() > deadline:
                raise AssertionError(f"{marker!r} not received; got {self.received[-500:]!r}")
            await task.deferLater(reactor, 0.02)
        return self.received

    def close(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()


async def raw_connect(port: int) -> RawClient:
    return await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), RawClient())


def port_of(running: RunningBridge) -> int:
    return int(running.base.rsplit(":", 1)[1])


async def sleep(seconds: float) -> None:
    await task.deferLater(reactor, seconds)


def request_head(method: str, path: str, user: tuple[str, str] | None = None, length: int | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: bridge.test"]
    if user is not None:
        lines.append(f"Authorization: {basic(*user)}")
    if length is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {length}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def secrets_of(*users: tuple[str, str]) -> list[str]:
    """Each password, and each Authorization header value that carries one."""
    found = []
    for jid, password in users:
        found += [password, b64encode(f"{jid}:{password}".encode()).decode()]
    return found


# ---------------------------------------------------------------------------------------
# Logs
# ---------------------------------------------------------------------------------------


class LogTests(BridgeTestCase):
    bridge_sections = {"throttle": {"failures_per_jid": 2}}

    def capture(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        return events

    async def test_full_run_logs_access_lines_and_never_a_secret(self) -> None:
        """Login, send, read, failed logins, a throttled login and a stream token: access lines, no secret."""
        events = self.capture()
        alice, bob = self.new_user("alice"), self.new_user("bob")
        body = "private-body-" + secrets.token_hex(8)
        self.assertEqual((await self.call("POST", "/api/messages", alice, {"to": bob[0], "body": body})).code, 200)
        self.assertEqual((await self.call("GET", f"/api/messages/{bob[0]}?limit=5", alice)).code, 200)
        wrong = (bob[0], "wrong-" + secrets.token_hex(8))
        for expected in (401, 401, 429):
            self.assertEqual((await self.call("GET", "/api/contacts", wrong)).code, expected)
        issued = await self.call("POST", "/api/sse/token", alice)
        self.assertEqual(issued.code, 201, issued)
        token = issued.json["token"]
        stream = await raw_connect(port_of(self.bridge))
        stream.send(request_head("GET", f"/api/sse?token={token}&last_event_id=0"))
        await stream.until(b"200 OK")
        stream.close()
        await stream.closed
        bogus = "bogus-" + secrets.token_hex(8)
        self.assertEqual((await self.call("GET", f"/api/sse?token={bogus}")).code, 401)
        await sleep(0.1)

        text = "\n".join(eventAsText(event) for event in events)
        records = [event_record(event) for event in events]
        as_json = "\n".join(json.dumps(record, ensure_ascii=False) for record in records)
        forbidden = [*secrets_of(alice, bob, wrong), token, bogus, body, self.bridge.config.muclight.secret]
        for secret in forbidden:
            self.assertNotIn(secret, text)
            self.assertNotIn(secret, as_json)
        self.assertNotIn("token=", text)
        self.assertRegex(text, rf"POST /api/messages 200 [0-9.]+ms user={re.escape(alice[0])}")
        self.assertRegex(text, rf"GET /api/messages/{re.escape(bob[0])} 200 [0-9.]+ms user={re.escape(alice[0])}")
        self.assertIn("GET /api/contacts 429", text)
        self.assertRegex(text, r"GET /api/sse 200 [0-9.]+ms user=" + re.escape(alice[0]))
        self.assertIn(f"Session opened for {alice[0]}", text)
        (access,) = [r for r in records if r.get("method") == "POST" and r.get("path") == "/api/messages"]
        self.assertEqual((access["status"], access["user"], access["level"]), (200, alice[0], "info"))
        self.assertIsInstance(access["duration"], float)
        self.assertRegex(access["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class AccessLogOffTests(BridgeTestCase):
    bridge_sections = {"http": {"access_log": False}}

    async def test_no_access_lines_when_switched_off(self) -> None:
        """With [http] access_log = false requests, answered or refused, log no access line; the rest of
        the log (sessions) stays."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        alice, bob = self.new_user("alice"), self.new_user("bob")
        self.assertEqual((await self.call("POST", "/api/messages", alice, {"to": bob[0], "body": "hi"})).code, 200)
        self.assertEqual((await self.call("GET", "/api/nowhere", alice)).code, 404)
        text = "\n".join(eventAsText(event) or "" for event in events)
        self.assertNotRegex(text, r"(POST|GET) /api/")
        self.assertIn(f"Session opened for {alice[0]}", text)


class DaemonTests(unittest.TestCase):
    """The real daemon (twistd) with JSON logs, metrics and SIGTERM; no other bridge runs beside it."""

    timeout = 90

    def write_config(self, text: str) -> str:
        path = Path(self.mktemp() + ".toml").resolve()
        path.write_text(text)
        return str(path)

    def test_twistd_json_logs_metrics_and_graceful_sigterm(self) -> None:
        """twistd --logger=bridge.logs.json_observer: JSON lines without secrets; SIGTERM finishes a request."""
        server = xmpp_server()
        alice, bob = new_user("alice"), new_user("bob")
        port, metrics_port = free_port(), free_port()
        config = self.write_config(
            daemon_config(
                server,
                port,
                f"sqlite://{Path(self.mktemp()).resolve()}.sqlite3",
                http="shutdown_timeout = 10.0\n",
                sections=f'[metrics]\nendpoint = "tcp:{metrics_port}:interface=127.0.0.1"\n',
            )
        )
        process = twistd(
            "--logger=bridge.logs.json_observer",
            "bridge",
            "--config",
            config,
            env={"BRIDGE_MUCLIGHT_SECRET": server.component_secret},
        )
        body = "daemon-body-" + secrets.token_hex(8)
        wrong = (bob[0], "wrong-" + secrets.token_hex(8))
        try:
            wait_for_port(port)
            wait_for_port(metrics_port)
            base = f"http://127.0.0.1:{port}"

            def call(method: str, path: str, user: tuple[str, str] | None, data: Any = None) -> int:
                headers = {"Authorization": basic(*user)} if user else {}
                payload = None
                if data is not None:
                    payload = json.dumps(data).encode()
                    headers["Content-Type"] = "application/json"
                request = urllib.request.Request(base + path, method=method, data=payload, headers=headers)
                try:
                    with urllib.request.urlopen(request, timeout=10) as response:
                        return response.status
                except urllib.error.HTTPError as e:
                    return e.code

            self.assertEqual(call("POST", "/api/messages", alice, {"to": bob[0], "body": body}), 200)
            self.assertEqual(call("GET", "/api/contacts", wrong), 401)
            self.assertEqual(call("GET", "/readyz", None), 200)
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
                scraped = response.read().decode()
            self.assertIn('bridge_http_requests_total{method="POST",route="/api/messages",status="200"} 1.0', scraped)
            self.assertIn("bridge_login_failures_total 1.0", scraped)
            self.assertRegex(scraped, r"(?m)^bridge_xmpp_sessions 1\.0$")

            # A request in flight when SIGTERM arrives is finished, on a connection then closed.
            payload = json.dumps({"to": bob[0], "body": "during shutdown"}).encode()
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                raw.sendall(request_head("POST", "/api/messages", alice, len(payload)) + payload[:10])
                time.sleep(0.3)
                process.send_signal(signal.SIGTERM)
                time.sleep(0.5)
                self.assertIsNone(process.poll())
                with self.assertRaises(OSError):
                    socket.create_connection(("127.0.0.1", port), timeout=2).close()
                raw.sendall(payload[10:])
                answer = b""
                while chunk := raw.recv(4096):
                    answer += chunk
            self.assertTrue(answer.startswith(b"HTTP/1.1 200 "), answer)
            self.assertIn(b"connection: close", answer.lower())
            output, _ = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        self.assertIn(process.returncode, (0, -15))
        lines = output.decode().splitlines()
        records = [json.loads(line) for line in lines]  # every line is one JSON object
        self.assertTrue(all({"time", "level", "namespace", "message"} <= set(r) for r in records))
        statuses = {(r["method"], r["path"], r["status"]) for r in records if "method" in r}
        self.assertIn(("POST", "/api/messages", 200), statuses)
        self.assertIn(("GET", "/api/contacts", 401), statuses)
        self.assertTrue(any("Server Shut Down." in r["message"] for r in records), lines[-10:])
        log = output.decode()
        for secret in [*secrets_of(alice, bob, wrong), body, "during shutdown", server.component_secret]:
            self.assertNotIn(secret, log)


# ---------------------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------------------


class RateLimitTests(BridgeTestCase):
    bridge_sections = {"limits": {"user_rate": 1.0, "user_burst": 2}}

    async def test_user_over_rate_gets_429_with_retry_after_and_cors(self) -> None:
        """A logged-in user past the burst gets 429 with Retry-After (readable cross-origin); others are served."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        self.assertEqual((await self.call("GET", "/api/contacts", alice)).code, 200)  # logs in
        self.assertEqual((await self.call("GET", "/api/contacts", bob)).code, 200)
        replies = [
            await self.call("GET", "/api/contacts", alice, headers={"Origin": "https://app.example"}) for _ in range(3)
        ]
        self.assertEqual([reply.code for reply in replies[:2]], [200, 200])
        throttled = replies[2]
        self.assertEqual((throttled.code, throttled.json), (429, "Too many requests"))
        self.assertEqual(throttled.header("Retry-After"), "1")
        self.assertEqual(throttled.header("Access-Control-Allow-Origin"), "https://app.example")
        self.assertIn("Retry-After", throttled.header("Access-Control-Expose-Headers") or "")
        self.assertEqual((await self.call("GET", "/api/contacts", bob)).code, 200)
        await sleep(1.1)
        self.assertEqual((await self.call("GET", "/api/contacts", alice)).code, 200)


class AddressLimitTests(BridgeTestCase):
    bridge_sections = {"limits": {"address_rate": 1.0, "address_burst": 3}}

    async def test_address_over_rate_gets_429(self) -> None:
        """Past the address burst even unauthenticated requests get 429 with Retry-After."""
        codes = [(await self.call("GET", "/healthz")).code for _ in range(4)]
        self.assertEqual(codes, [200, 200, 200, 429])
        reply = await self.call("GET", "/healthz")
        self.assertEqual(reply.json, "Too many requests")
        self.assertTrue(reply.header("Retry-After"))


class CapTests(BridgeTestCase):
    bridge_sections = {"limits": {"max_sessions": 1, "max_streams": 1}}

    async def test_session_cap_refuses_new_users_only(self) -> None:
        """At limits.max_sessions a new user's login gets 503 with Retry-After; the user already in is served."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        self.assertEqual((await self.call("GET", "/api/contacts", alice)).code, 200)
        refused = await self.call("GET", "/api/contacts", bob)
        self.assertEqual((refused.code, refused.json), (503, "Too many sessions"))
        self.assertTrue(refused.header("Retry-After"))
        self.assertEqual((await self.call("GET", "/api/contacts", alice)).code, 200)

    async def test_stream_cap(self) -> None:
        """At limits.max_streams a further event stream gets 503 until one closes."""
        alice = self.new_user("alice")
        first = await raw_connect(port_of(self.bridge))
        first.send(request_head("GET", "/api/sse", alice))
        await first.until(b"200 OK")
        refused = await self.call("GET", "/api/sse", alice)
        self.assertEqual((refused.code, refused.json), (503, "Too many event streams"))
        first.close()
        await first.closed
        await sleep(0.1)
        second = await raw_connect(port_of(self.bridge))
        self.addCleanup(second.close)
        second.send(request_head("GET", "/api/sse", alice))
        await second.until(b"200 OK")


class NormalUseTests(BridgeTestCase):
    """The default limits never hit normal use (DESIGN.md, Guarantees)."""

    timeout = 180

    async def test_200_users_logging_in_at_once_from_one_address(self) -> None:
        """200 users' first requests, all at once from 127.0.0.1, are all served (no 429, no 503).

        On ejabberd this needs ``backlog: 1024`` on the c2s listener: with ejabberd's default
        of 5, simultaneous connections are dropped and some logins time out (504).
        """
        users = [self.new_user("crowd") for _ in range(200)]
        pool = HTTPConnectionPool(reactor, persistent=False)
        http = HTTPClient(Agent(reactor, pool=pool))

        async def first(user: tuple[str, str]) -> int:
            response = await http.get(self.bridge.url("/api/contacts"), headers={"Authorization": [basic(*user)]})
            await response.content()
            return response.code

        codes = await defer.gatherResults([defer.Deferred.fromCoroutine(first(user)) for user in users])
        self.assertEqual({code: codes.count(code) for code in set(codes)}, {200: 200})
        self.assertEqual(len(self.bridge.parts.pool), 200)

    async def test_5_messages_a_second_per_user(self) -> None:
        """Ten users each sending 5 messages a second for 3 s from one address get 200 every time."""
        users = [self.new_user("chatty") for _ in range(10)]
        peer = self.new_user("peer")
        codes: list[int] = []

        async def chat(user: tuple[str, str]) -> None:
            for i in range(15):
                started = time.monotonic()
                reply = await self.call("POST", "/api/messages", user, {"to": peer[0], "body": f"m{i}"})
                codes.append(reply.code)
                await sleep(max(0.0, 0.2 - (time.monotonic() - started)))

        await defer.gatherResults([defer.Deferred.fromCoroutine(chat(user)) for user in users])
        self.assertEqual({code: codes.count(code) for code in set(codes)}, {200: 150})


class DeadlineTests(BridgeTestCase):
    bridge_sections = {"http": {"header_timeout": 1.0, "body_timeout": 2.0, "idle_timeout": 60.0}}

    async def test_slow_loris_is_cut_off_while_others_are_served(self) -> None:
        """A client trickling header bytes is answered 408 and closed at http.header_timeout; others are served."""
        slow = await raw_connect(port_of(self.bridge))
        started = time.monotonic()
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa":
            if slow.closed.called:
                break
            slow.send(bytes([byte]))
            self.assertEqual((await self.call("GET", "/healthz")).code, 200)
            await sleep(0.25)
        received = await slow.closed
        self.assertLess(time.monotonic() - started, 3.0)
        self.assertTrue(received.startswith(b"HTTP/1.1 408 "), received)

    async def test_trickled_body_is_cut_off(self) -> None:
        """A body trickled a byte at a time is cut off at http.body_timeout, not the 60 s idle timeout."""
        user = self.new_user("alice")
        slow = await raw_connect(port_of(self.bridge))
        slow.send(request_head("POST", "/api/messages", user, 200))
        started = time.monotonic()
        while not slow.closed.called and time.monotonic() - started < 10:
            slow.send(b" ")
            await sleep(0.25)
        self.assertIn(b"408 Request Timeout", await slow.closed)
        self.assertLess(time.monotonic() - started, 4.0)


# ---------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------


class MetricsTests(BridgeTestCase):
    bridge_sections = {"metrics": {"endpoint": "tcp:0:interface=127.0.0.1"}, "throttle": {"failures_per_jid": 1}}

    async def scrape(self) -> str:
        listener = self.bridge.parts.metrics_http
        assert listener is not None
        port = (await listener._waitingForPort).getHost().port
        response = await self.bridge.http.get(f"http://127.0.0.1:{port}/metrics")
        self.assertEqual(response.code, 200)
        self.assertTrue(response.headers.getRawHeaders("content-type")[0].startswith("text/plain"))
        return (await response.content()).decode()

    def value(self, scraped: str, series: str) -> float:
        match = re.search(rf"(?m)^{re.escape(series)} ([0-9.e+-]+)$", scraped)
        if match is None:
            raise AssertionError(f"{series} not in:\n{scraped}")
        return float(match.group(1))

    async def test_requests_latency_sessions_streams_failures_throttling(self) -> None:
        """/metrics counts requests by route and status, latency, sessions, streams, login failures, throttling."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        self.assertEqual((await self.call("POST", "/api/messages", alice, {"to": bob[0], "body": "x"})).code, 200)
        self.assertEqual((await self.call("GET", f"/api/messages/{bob[0]}", alice)).code, 200)
        component = self.bridge.parts.component
        assert component is not None
        await component.connected
        wrong = (bob[0], "wrong")
        self.assertEqual([(await self.call("GET", "/api/contacts", wrong)).code for _ in range(2)], [401, 429])
        stream = await raw_connect(port_of(self.bridge))
        stream.send(request_head("GET", "/api/sse", alice))
        await stream.until(b"200 OK")

        scraped = await self.scrape()
        requests = 'bridge_http_requests_total{method="%s",route="%s",status="%s"}'
        self.assertEqual(self.value(scraped, requests % ("POST", "/api/messages", "200")), 1)
        self.assertEqual(self.value(scraped, requests % ("GET", "/api/messages/{with}", "200")), 1)
        self.assertEqual(self.value(scraped, requests % ("GET", "/api/contacts", "401")), 1)
        self.assertEqual(self.value(scraped, 'bridge_throttled_requests_total{limit="login"}'), 1)
        self.assertEqual(self.value(scraped, "bridge_login_failures_total"), 1)
        latency = 'bridge_http_request_duration_seconds_count{method="POST",route="/api/messages"}'
        self.assertEqual(self.value(scraped, latency), 1)
        self.assertIn(
            'bridge_http_request_duration_seconds_bucket{le="0.05",method="POST",route="/api/messages"}', scraped
        )
        self.assertEqual(self.value(scraped, "bridge_sse_streams"), 1)
        self.assertEqual(self.value(scraped, "bridge_xmpp_sessions"), 1)
        self.assertEqual(self.value(scraped, "bridge_component_connected"), 1)
        self.assertGreater(self.value(scraped, "process_open_fds"), 0)

        stream.close()
        await stream.closed
        await sleep(0.1)
        scraped = await self.scrape()
        self.assertEqual(self.value(scraped, "bridge_sse_streams"), 0)
        self.assertEqual(self.value(scraped, requests % ("GET", "/api/sse", "200")), 1)

    async def test_metrics_are_not_on_the_api_port(self) -> None:
        """The API's own port does not serve /metrics."""
        self.assertEqual((await self.call("GET", "/metrics")).code, 404)


# ---------------------------------------------------------------------------------------
# Shutdown and readiness
# ---------------------------------------------------------------------------------------


class ShutdownTests(unittest.TestCase):
    """Each test stops its own bridge (only one runs, so its component is the one connected)."""

    timeout = 60

    def new_user(self, prefix: str) -> tuple[str, str]:
        return new_user(prefix)

    async def own_bridge(self, **sections: Any) -> RunningBridge:
        running = RunningBridge(reactor, bridge_config(self.mktemp(), **sections))
        await running.start()
        self.addCleanup(lambda: None if not running.root.running else defer.maybeDeferred(running.root.stopService))
        return running

    async def test_in_flight_request_finishes_and_new_connections_are_refused(self) -> None:
        """On stop the listener closes at once, and a request already arriving is still answered (Connection: close)."""
        running = await self.own_bridge()
        alice, bob = self.new_user("alice"), self.new_user("bob")
        client = await raw_connect(port_of(running))
        body = json.dumps({"to": bob[0], "body": "in flight"}).encode()
        client.send(request_head("POST", "/api/messages", alice, len(body)) + body[:5])
        await sleep(0.2)
        stopping = defer.maybeDeferred(running.root.stopService)
        await sleep(0.3)
        self.assertFalse(stopping.called)
        with self.assertRaises(error.ConnectionRefusedError):
            await raw_connect(port_of(running))
        client.send(body[5:])
        answer = await client.closed
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 "), answer)
        self.assertIn(b"connection: close", answer.lower())
        await stopping
        self.assertEqual(len(running.parts.pool), 0)

    async def test_event_streams_end_with_a_final_event_and_sessions_close(self) -> None:
        """Stopping ends an open event stream with a final 'close' event at once, then closes the XMPP session."""
        running = await self.own_bridge(http={"shutdown_timeout": 30.0})
        alice = self.new_user("alice")
        stream = await raw_connect(port_of(running))
        stream.send(request_head("GET", "/api/sse", alice))
        await stream.until(b"200 OK")
        session = next(iter(running.parts.pool._sessions.values()))[0]
        started = time.monotonic()
        await running.root.stopService()
        self.assertLess(time.monotonic() - started, 10, "the drain waited for the event stream")
        received = await stream.closed
        self.assertIn(b"event: close", received)
        self.assertIn(b"shutdown", received)
        self.assertTrue(session.ended.called)
        self.assertTrue(running.parts.site.draining)

    async def test_requests_past_the_deadline_are_cut_off(self) -> None:
        """A request still incomplete at http.shutdown_timeout is cut off and the shutdown goes on."""
        running = await self.own_bridge(http={"shutdown_timeout": 1.0, "body_timeout": 60.0})
        alice = self.new_user("alice")
        client = await raw_connect(port_of(running))
        client.send(request_head("POST", "/api/messages", alice, 100) + b'{"to"')
        await sleep(0.2)
        started = time.monotonic()
        stopping = defer.maybeDeferred(running.root.stopService)
        await client.closed
        self.assertLess(time.monotonic() - started, 3)
        await stopping

    async def test_readiness_turns_off_when_the_drain_starts(self) -> None:
        """/readyz answers 503 "shutting down" from the moment the drain begins."""
        running = await self.own_bridge(http={"shutdown_timeout": 5.0})
        alice, bob = self.new_user("alice"), self.new_user("bob")
        client = await raw_connect(port_of(running))
        body = json.dumps({"to": bob[0], "body": "x"}).encode()
        client.send(request_head("POST", "/api/messages", alice, len(body)) + body[:5])
        await sleep(0.2)
        stopping = defer.maybeDeferred(running.root.stopService)
        await sleep(0.2)
        assert running.parts.readiness is not None
        status, answer = await running.parts.readiness.status()
        self.assertEqual((status, answer["status"]), (503, "shutting down"))
        client.send(body[5:])
        await client.closed
        await stopping


class ReadinessTests(BridgeTestCase):
    async def test_ready_without_credentials(self) -> None:
        """/readyz answers 200 and names its checks (XMPP server, store, component), without credentials."""
        component = self.bridge.parts.component
        assert component is not None
        await component.connected
        reply = await self.call("GET", "/readyz")
        self.assertEqual(reply.code, 200, reply)
        self.assertEqual(reply.json, {"status": "ready", "checks": {"xmpp": "ok", "store": "ok", "component": "ok"}})
        self.assertEqual((await self.call("GET", "/healthz")).code, 200)

    async def test_probes_are_answered_while_sessions_are_live(self) -> None:
        """Concurrent and repeated probes with live sessions are answered 200 (a fuzzing find: it gave 500)."""
        alice = self.new_user("alice")
        self.assertEqual((await self.call("GET", "/api/contacts", alice)).code, 200)
        replies = await defer.gatherResults(
            [defer.Deferred.fromCoroutine(self.call("GET", "/readyz")) for _ in range(5)]
        )
        self.assertEqual([reply.code for reply in replies], [200] * 5)
        self.assertEqual((await self.call("GET", "/readyz")).code, 200)


class UnreachableServerReadinessTests(BridgeTestCase):
    bridge_sections = {"xmpp": {"port": free_port(), "timeout": 1.0}}

    async def test_not_ready_when_the_xmpp_server_is_unreachable(self) -> None:
        """Nothing on the c2s port: /readyz answers 503 naming the failed check; /healthz still 200."""
        reply = await self.call("GET", "/readyz")
        self.assertEqual(reply.code, 503, reply)
        self.assertEqual(reply.json["status"], "not ready")
        self.assertEqual(reply.json["checks"]["xmpp"], "failed")
        self.assertEqual((await self.call("GET", "/healthz")).code, 200)


# ---------------------------------------------------------------------------------------
# What the fuzzing run found (tests/integration/test_fuzz.py)
# ---------------------------------------------------------------------------------------


class FuzzRegressionTests(BridgeTestCase):
    async def test_before_zero_is_an_empty_page_not_a_timeout(self) -> None:
        """GET /api/messages?before=0 answers [] at once (Prosody 0.12 never answers a pre-1970 MAM 'end')."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        for path in ("/api/messages?before=0", f"/api/messages/{bob[0]}?before=0&limit=5"):
            started = time.monotonic()
            reply = await self.call("GET", path, alice)
            self.assertEqual((reply.code, reply.json), (200, []), path)
            self.assertLess(time.monotonic() - started, 2)
        self.assertEqual((await self.call("GET", "/api/messages?before=1", alice)).code, 200)


# ---------------------------------------------------------------------------------------
# Failed-login throttle, per-user stream cap, oversized requests, listen backlog
# ---------------------------------------------------------------------------------------


async def raw_request(port: int, data: bytes, source: str = "127.0.0.1") -> bytes:
    """Send ``data`` on a new connection from ``source``; the first answer's head and (de-chunked) body."""
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, bindAddress=(source, 0))
    client = await connectProtocol(endpoint, RawClient())
    client.send(data)
    try:
        head, _, body = (await client.until(b"\r\n\r\n")).partition(b"\r\n\r\n")
        length = re.search(rb"(?i)\r\ncontent-length: (\d+)", head)
        chunked = re.search(rb"(?i)\r\ntransfer-encoding: chunked", head) is not None
        deadline = time.monotonic() + 10.0
        while not client.closed.called and time.monotonic() < deadline:
            body = client.received.partition(b"\r\n\r\n")[2]
            if (chunked and body.endswith(b"0\r\n\r\n")) or (length and len(body) >= int(length.group(1))):
                break
            await sleep(0.02)
        if chunked:
            body = dechunk(body)
        return head + b"\r\n\r\n" + body
    finally:
        client.close()


def dechunk(data: bytes) -> bytes:
    body = b""
    while data:
        size, _, rest = data.partition(b"\r\n")
        count = int(size, 16)
        if count == 0:
            break
        body, data = body + rest[:count], rest[count + 2 :]
    return body


class LoginAttempts(BridgeTestCase):
    """Clients on several loopback addresses (127.0.0.x); no tests of its own."""

    async def attempt(self, user: tuple[str, str], source: str) -> tuple[bytes, bytes]:
        """(status line, body) of GET /api/contacts with ``user``'s credentials from ``source``."""
        answer = await raw_request(port_of(self.bridge), request_head("GET", "/api/contacts", user), source)
        head, _, body = answer.partition(b"\r\n\r\n")
        return head.split(b"\r\n", 1)[0], body


class ThrottleTests(LoginAttempts):
    """The default throttle against real Prosody."""

    async def test_throttled_jid_gets_the_same_429_with_or_without_the_password(self) -> None:
        """A guesser elsewhere does not lock a live user out; a throttled JID gets one 429 for any password."""
        alice = self.new_user("alice")
        wrong = (alice[0], "wrong-" + secrets.token_hex(4))
        self.assertEqual((await self.attempt(alice, "127.0.0.1"))[0], b"HTTP/1.1 200 OK")
        for _ in range(3):
            self.assertEqual((await self.attempt(wrong, "127.0.0.2"))[0], b"HTTP/1.1 401 Unauthorized")
        self.assertEqual((await self.attempt(wrong, "127.0.0.2"))[0], b"HTTP/1.1 429 Too Many Requests")
        self.assertEqual((await self.attempt(alice, "127.0.0.2"))[0], b"HTTP/1.1 429 Too Many Requests")
        self.assertEqual((await self.attempt(alice, "127.0.0.1"))[0], b"HTTP/1.1 200 OK")
        for _ in range(2):
            self.assertEqual((await self.attempt(wrong, "127.0.0.3"))[0], b"HTTP/1.1 401 Unauthorized")
        # Five failures in all: the JID is throttled everywhere, live session or not.
        right, guess = await self.attempt(alice, "127.0.0.1"), await self.attempt(wrong, "127.0.0.1")
        self.assertEqual(right, guess)
        self.assertEqual(right, (b"HTTP/1.1 429 Too Many Requests", b'"Too many failed login attempts"'))


class AddressThrottleTests(LoginAttempts):
    # Sessions close after 1 s idle, so a known user's next login has to go to the server.
    bridge_sections = {"xmpp": {"idle_timeout": 1.0}}

    async def test_invented_jids_do_not_lock_out_known_users(self) -> None:
        """50 failed logins with invented JIDs hold new logins from that address, not a user who logged in from it."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        self.assertEqual((await self.call("GET", "/api/contacts", alice)).code, 200)
        for _ in range(100):
            if not len(self.bridge.parts.pool):
                break
            await sleep(0.1)
        self.assertEqual(len(self.bridge.parts.pool), 0)
        for n in range(50):
            self.assertEqual((await self.call("GET", "/api/contacts", (f"nobody{n}x@localhost", "x"))).code, 401)
        self.assertEqual((await self.call("GET", "/api/contacts", bob)).code, 429)
        self.assertEqual((await self.call("GET", "/api/contacts", alice)).code, 200)
        self.assertEqual((await self.attempt(bob, "127.0.0.2"))[0], b"HTTP/1.1 200 OK")


class StreamsPerUserTests(BridgeTestCase):
    bridge_sections = {"limits": {"max_streams_per_user": 1}}

    async def test_a_user_past_the_cap_gets_429_with_basic_or_token(self) -> None:
        """Past max_streams_per_user a user's stream (Basic or token) gets 429 with Retry-After; others stream."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        first = await raw_connect(port_of(self.bridge))
        first.send(request_head("GET", "/api/sse", alice))
        await first.until(b"200 OK")
        refused = await self.call("GET", "/api/sse", alice)
        self.assertEqual((refused.code, refused.json), (429, "Too many event streams for this user"))
        self.assertEqual(refused.header("Retry-After"), "10")
        issued = await self.call("POST", "/api/sse/token", alice)
        self.assertEqual(issued.code, 201)
        token_path = f"/api/sse?token={issued.json['token']}"
        answer = await raw_request(port_of(self.bridge), request_head("GET", token_path))
        self.assertTrue(answer.startswith(b"HTTP/1.1 429 Too Many Requests\r\n"), answer[:100])
        self.assertIn(b"Retry-After: 10", answer)
        self.assertTrue(answer.endswith(b'"Too many event streams for this user"'), answer[-100:])
        other = await raw_connect(port_of(self.bridge))
        self.addCleanup(other.close)
        other.send(request_head("GET", "/api/sse", bob))
        await other.until(b"200 OK")
        first.close()
        await first.closed
        await sleep(0.1)
        again = await raw_connect(port_of(self.bridge))
        self.addCleanup(again.close)
        again.send(request_head("GET", token_path))
        await again.until(b"200 OK")


class OversizedRequestTests(BridgeTestCase):
    async def test_long_header_gets_431_and_long_path_414(self) -> None:
        """A 17 KB header line gets 431, a 20 KB path 414, each with a JSON reason and a closed connection."""
        port = port_of(self.bridge)
        header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 17_000 + b"\r\n\r\n"
        answer = await raw_request(port, header)
        self.assertTrue(answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), answer[:100])
        self.assertTrue(answer.endswith(b'\r\n\r\n"Request header too large"'), answer[-100:])
        answer = await raw_request(port, b"GET /" + b"p" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 414 URI Too Long\r\n"), answer[:100])
        self.assertTrue(answer.endswith(b'\r\n\r\n"Request URI too long"'), answer[-100:])
        self.assertEqual((await self.call("GET", "/healthz")).code, 200)


class BacklogTests(BridgeTestCase):
    async def test_listener_has_the_configured_backlog(self) -> None:
        """The HTTP listener's kernel backlog is http.backlog (1024), not Twisted's 50."""
        import subprocess

        listing = subprocess.run(
            ["ss", "-ltnH", f"sport = :{port_of(self.bridge)}"], capture_output=True, text=True, check=True
        ).stdout.split()
        self.assertEqual(listing[2], str(min(1024, int(Path("/proc/sys/net/core/somaxconn").read_text()))))
