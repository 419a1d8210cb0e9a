"""A load-generating process: plain XMPP clients and SSE readers on a reactor of their own.

The orchestrator (``bench.procs.Worker``) writes one JSON spec line on stdin, waits for
``{"event": "ready"}``, then sends JSON commands, one per line; each command is answered
by one JSON line with the same ``event`` name (or ``error``).

Clients log in with Twisted's own XMPP stack (``tests.servers.xmpp_client``, none of the
bridge's code) and then read the decrypted stream as bytes instead of parsing it: a
benchmark client that builds a DOM for every stanza would measure itself, not the server.
Each message body carries its send time (``bench:<Unix microseconds>:``), so whichever
process receives it knows its delivery latency; every process is on the same clock.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import itertools
import json
import os
import random
import re
import resource
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, protocol, reactor, ssl, stdio, task
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint
from twisted.protocols.basic import LineReceiver
from twisted.words.protocols.jabber import client, xmlstream
from twisted.words.protocols.jabber.jid import JID

from bridge.xmpp.archive import build_query
from tests.servers.xmpp_client import PlainClient

STAMP = re.compile(rb"bench:(\d+):")
ACK = re.compile(rb"<iq\b[^>]*?\sid=['\"](b\d+)['\"]")
RESULT = re.compile(rb"<result\b")
BODY_TEXT = "hello from the benchmark"
_ids = itertools.count(1)


def now_us() -> int:
    return time.time_ns() // 1000


def stamped_body(stamp: int) -> str:
    return f"bench:{stamp}:{BODY_TEXT}"


def raise_open_files_limit() -> int:
    """Thousands of streams need thousands of sockets: take the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def summarise(latencies_us: list[int]) -> dict[str, Any]:
    values = sorted(v / 1000 for v in latencies_us)
    return {
        "count": len(values),
        "p50_ms": percentile(values, 0.50),
        "p90_ms": percentile(values, 0.90),
        "p99_ms": percentile(values, 0.99),
        "max_ms": values[-1] if values else None,
    }


def acknowledge_promptly(xs: xmlstream.XmlStream) -> None:
    """No TCP stalls of our own: TCP_NODELAY, and TCP_QUICKACK after every read from STARTTLS on.

    Prosody leaves Nagle's algorithm on, so a client that delays its ACKs (Linux does,
    for 40 ms, on a connection that just sent) stalls the server's next small write; and
    a sender with Nagle on holds each message until the server ACKs the one before. The
    load generator must not add such stalls to what it measures.
    """
    xs.transport.setTcpNoDelay(True)

    def started(_: object) -> None:
        transport = xs.transport
        sock, tls = getattr(transport, "socket", None), getattr(transport, "protocol", None)
        if sock is None or tls is None or not hasattr(socket, "TCP_QUICKACK"):
            return
        received = tls.dataReceived

        def data_received(data: bytes) -> None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            received(data)

        tls.dataReceived = data_received

    # After the TLS initializer's own observer has called startTLS.
    xs.addOnetimeObserver("/proceed", started, priority=-1)


async def connect_client(host: str, port: int, jid: str, password: str, ca_file: str, resource: str) -> PlainClient:
    """tests.servers.xmpp_client.connect_client, with prompt ACKs."""
    full = JID(f"{jid}/{resource}")
    trust = ssl.Certificate.loadPEM(_read(ca_file))
    factory = client.XMPPClientFactory(full, password, ssl.optionsForClientTLS(full.host, trust))
    factory.maxRetries = 0
    ready: defer.Deferred[xmlstream.XmlStream] = defer.Deferred()
    factory.addBootstrap(xmlstream.STREAM_CONNECTED_EVENT, acknowledge_promptly)
    factory.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, ready.callback)
    factory.addBootstrap(xmlstream.INIT_FAILED_EVENT, ready.errback)
    await HostnameEndpoint(reactor, host, port).connect(factory)
    xs = await ready.addTimeout(30, reactor)
    return PlainClient(xs, xs.authenticator.jid)


_files: dict[str, bytes] = {}


def _read(path: str) -> bytes:
    if path not in _files:
        with open(path, "rb") as f:
            _files[path] = f.read()
    return _files[path]


class Scanner:
    """Cuts a byte stream that arrives in arbitrary pieces at a boundary byte.

    The patterns looked for never contain the boundary, so each occurrence is seen once,
    whole, in exactly one of the returned pieces.
    """

    def __init__(self, boundary: bytes) -> None:
        self._boundary = boundary
        self._tail = b""

    def feed(self, data: bytes) -> bytes:
        buffer = self._tail + data if self._tail else data
        cut = buffer.rfind(self._boundary)
        if cut < 0:
            self._tail = buffer[-65536:]
            return b""
        self._tail = buffer[cut + 1 :]
        return buffer[: cut + 1]


class Recorder:
    """(send stamp, arrival) pairs of every stamped message a process received."""

    def __init__(self) -> None:
        self.stamps: list[int] = []
        self.arrivals: list[int] = []

    def feed(self, chunk: bytes, arrival: int) -> None:
        for match in STAMP.finditer(chunk):
            self.stamps.append(int(match[1]))
            self.arrivals.append(arrival)

    def report(self, since: int = 0, until: int = 2**62, group: bool = False, timeline: bool = False) -> dict[str, Any]:
        latencies = [a - s for s, a in zip(self.stamps, self.arrivals, strict=True) if since <= s < until]
        result = summarise(latencies)
        result["total"] = len(self.stamps)
        if timeline:
            # The worst latency of the messages sent in each 100 ms: pauses show as runs.
            worst: dict[int, int] = {}
            for s, a in zip(self.stamps, self.arrivals, strict=True):
                if since <= s < until:
                    slot = (s - since) // 100_000
                    worst[slot] = max(worst.get(slot, 0), a - s)
            result["timeline"] = [[slot / 10, worst[slot] / 1000] for slot in sorted(worst)]
        if group:
            # For fan-out: per sent message, how many copies arrived and when the last did.
            copies: dict[int, list[int]] = {}
            for s, a in zip(self.stamps, self.arrivals, strict=True):
                if since <= s < until:
                    copies.setdefault(s, []).append(a - s)
            result["groups"] = [[len(v), max(v) / 1000] for _, v in sorted(copies.items())]
        return result

    def clear(self) -> None:
        self.stamps.clear()
        self.arrivals.clear()


class RawXmpp:
    """A logged-in client whose incoming stream is scanned as bytes, not parsed."""

    def __init__(self, client: PlainClient, recorder: Recorder | None) -> None:
        self.client = client
        xs = client.xmlstream
        self._write = xs.transport.write
        self._scanner = Scanner(b">")
        self._recorder = recorder
        self._waiting: dict[bytes, tuple[defer.Deferred[int], int]] = {}
        self.results = 0
        # The TLS layer hands decrypted bytes to the stream's dataReceived: take them here.
        xs.dataReceived = self._received

    def _received(self, data: bytes) -> None:
        arrival = now_us()
        chunk = self._scanner.feed(data)
        if not chunk:
            return
        if self._recorder is not None:
            self._recorder.feed(chunk, arrival)
        if self._waiting:
            position = 0
            for match in ACK.finditer(chunk):
                self.results += len(RESULT.findall(chunk, position, match.start()))
                position = match.start()
                waiting = self._waiting.pop(match[1], None)
                if waiting is not None:
                    waiting[0].callback(self.results - waiting[1])
            self.results += len(RESULT.findall(chunk, position))

    def send(self, stanza: str) -> None:
        self._write(stanza.encode())

    def request(self, stanzas: str, ack_id: str) -> defer.Deferred[int]:
        """Send ``stanzas``, the last an IQ with ``ack_id``; fires on its answer with the
        number of MAM results that came before it."""
        answered: defer.Deferred[int] = defer.Deferred()
        self._waiting[ack_id.encode()] = (answered, self.results)
        self._write(stanzas.encode())
        return answered


def message_stanza(to: str, stamp: int) -> str:
    return f"<message to='{to}' type='chat' id='m{next(_ids)}'><body>{stamped_body(stamp)}</body></message>"


def ping_stanza(ack_id: str, domain: str) -> str:
    return f"<iq type='get' id='{ack_id}' to='{domain}'><ping xmlns='urn:xmpp:ping'/></iq>"


class SseReader(protocol.Protocol):
    """One ``GET /api/sse`` stream, scanned for stamped message bodies."""

    def __init__(self, authorization: str, recorder: Recorder) -> None:
        self._authorization = authorization
        self._recorder = recorder
        self._head = b""
        self._scanner = Scanner(b"\n")
        self.opened: defer.Deferred[None] = defer.Deferred()
        self.closed = False

    def connectionMade(self) -> None:
        self.transport.write(
            b"GET /api/sse HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
            b"Authorization: " + self._authorization.encode() + b"\r\n\r\n"
        )

    def dataReceived(self, data: bytes) -> None:
        if not self.opened.called:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            status = self._head.split(b"\r\n", 1)[0]
            data = self._head[end + 4 :]
            if b" 200 " not in status + b" ":
                self.opened.errback(RuntimeError(f"GET /api/sse answered {status.decode(errors='replace')}"))
                self.transport.loseConnection()
                return
            self.opened.callback(None)
        chunk = self._scanner.feed(data)
        if chunk:
            self._recorder.feed(chunk, now_us())

    def connectionLost(self, reason: Any = None) -> None:
        self.closed = True
        if not self.opened.called:
            self.opened.errback(RuntimeError("the SSE connection closed before its headers"))


def basic(jid: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{jid}:{password}".encode()).decode()


class Worker:
    """Holds the clients of one process and runs the orchestrator's commands."""

    def __init__(self, spec: dict[str, Any], output: Callable[[dict[str, Any]], None]) -> None:
        self.spec = spec
        self.output = output
        self.recorder = Recorder()
        self.xmpp: list[RawXmpp] = []
        self.streams: list[SseReader] = []
        self.domain: str = spec["domain"]

    async def login(self, jid: str, password: str, resource: str = "bench") -> PlainClient:
        spec = self.spec
        return await connect_client(
            "127.0.0.1", spec["c2s_port"], jid, password, spec["ca_file"], f"{resource}-{next(_ids)}"
        )

    async def setup(self) -> dict[str, Any]:
        """Log every account in (receivers go available so that messages reach them)."""
        files = raise_open_files_limit()
        limit = defer.DeferredSemaphore(self.spec.get("parallel", 20))
        record = self.spec.get("record", False)
        available = self.spec.get("available", False)

        async def one(jid: str, password: str) -> None:
            client = await self.login(jid, password)
            if available:
                client.available()
            self.xmpp.append(RawXmpp(client, self.recorder if record else None))

        await defer.gatherResults(
            [limit.run(lambda j=j, p=p: defer.Deferred.fromCoroutine(one(j, p))) for j, p in self.spec["accounts"]],
            consumeErrors=True,
        )
        if available and self.xmpp:
            # Presence is processed in order: once a ping comes back, each is available.
            await defer.gatherResults([self._ping(conn) for conn in self.xmpp])
        return {"connections": len(self.xmpp), "open_files": files}

    def _ping(self, conn: RawXmpp) -> defer.Deferred[int]:
        ack = f"b{next(_ids)}"
        return conn.request(ping_stanza(ack, self.domain), ack)

    # Commands ------------------------------------------------------------------------

    async def cmd_report(
        self, since: int = 0, until: int = 2**62, group: bool = False, timeline: bool = False
    ) -> dict[str, Any]:
        return self.recorder.report(since, until, group, timeline)

    async def cmd_clear(self) -> dict[str, Any]:
        self.recorder.clear()
        return {}

    async def cmd_send(self, targets: list[str], seconds: float) -> dict[str, Any]:
        """Closed loop per connection: a message and a ping, then wait for the ping's answer.

        This is what the bridge does for each ``POST /api/messages``, so the two compare.
        """
        until = now_us() + int(seconds * 1_000_000)
        acks: list[int] = []
        started = now_us()

        async def loop(conn: RawXmpp, offset: int) -> None:
            for i in itertools.count(offset):
                stamp = now_us()
                if stamp >= until:
                    return
                ack = f"b{next(_ids)}"
                await conn.request(
                    message_stanza(targets[i % len(targets)], stamp) + ping_stanza(ack, self.domain), ack
                )
                acks.append(now_us() - stamp)

        await defer.gatherResults(
            [defer.Deferred.fromCoroutine(loop(conn, i)) for i, conn in enumerate(self.xmpp)], consumeErrors=True
        )
        elapsed = (now_us() - started) / 1_000_000
        result = summarise(acks)
        result["rate"] = len(acks) / elapsed if elapsed else 0.0
        return result

    async def cmd_flood(self, targets: list[str], count: int) -> dict[str, Any]:
        """Send ``count`` messages as fast as the stream takes them (archive filling)."""
        conn = self.xmpp[0]
        for i in range(count):
            conn.send(message_stanza(targets[i % len(targets)], now_us()))
            if i % 200 == 199:
                await self._ping(conn)
        await self._ping(conn)
        return {"sent": count}

    async def cmd_mam(self, limit: int, seconds: float, max_queries: int = 10**9) -> dict[str, Any]:
        """Sequential MAM queries for the last ``limit`` messages, as the bridge sends them."""
        conn = self.xmpp[0]
        until = now_us() + int(seconds * 1_000_000)
        latencies: list[int] = []
        results = 0
        while now_us() < until and len(latencies) < max_queries:
            ack = f"b{next(_ids)}"
            query = build_query(f"q{next(_ids)}", None, None, limit)
            stanza = f"<iq type='set' id='{ack}'>{query.toXml()}</iq>"
            started = now_us()
            results = await conn.request(stanza, ack)
            latencies.append(now_us() - started)
        result = summarise(latencies)
        result["results"] = results
        return result

    async def cmd_login(self, accounts: list[list[str]], target: str) -> dict[str, Any]:
        """A new user's first message with a plain client: connect, TLS, SASL, bind, send, ack."""
        latencies: list[int] = []
        for jid, password in accounts:
            started = now_us()
            client = await self.login(jid, password)
            conn = RawXmpp(client, None)
            ack = f"b{next(_ids)}"
            await conn.request(message_stanza(target, started) + ping_stanza(ack, self.domain), ack)
            latencies.append(now_us() - started)
            await client.close()
        return summarise(latencies)

    async def cmd_logins(self, accounts: list[list[str]], parallel: int) -> dict[str, Any]:
        """Log ``accounts`` in, ``parallel`` at a time (connect, TLS, SASL, bind), then out again."""
        raise_open_files_limit()
        limit = defer.DeferredSemaphore(parallel)
        clients: list[PlainClient] = []

        async def one(jid: str, password: str) -> None:
            clients.append(await self.login(jid, password))

        started = now_us()
        await defer.gatherResults(
            [limit.run(lambda j=j, p=p: defer.Deferred.fromCoroutine(one(j, p))) for j, p in accounts]
        )
        seconds = (now_us() - started) / 1_000_000
        await defer.DeferredList([client.close() for client in clients])
        return {"open": len(clients), "seconds": seconds}

    async def cmd_rate(self, targets: list[str], rate: float, seconds: float) -> dict[str, Any]:
        """Open loop: ``rate`` messages per second to random ``targets``, spread over the
        connections, for ``seconds``."""
        tick = 0.01
        owed = 0.0
        sent = 0
        started = time.monotonic()
        conns = itertools.cycle(self.xmpp)
        pick = random.Random(7).choice

        def send_due() -> None:
            nonlocal owed, sent
            due = rate * (time.monotonic() - started) - sent
            owed = due
            while owed >= 1:
                next(conns).send(message_stanza(pick(targets), now_us()))
                sent += 1
                owed -= 1

        loop = task.LoopingCall(send_due)
        done = loop.start(tick)
        await task.deferLater(reactor, seconds, lambda: None)
        loop.stop()
        await done
        await defer.gatherResults([self._ping(conn) for conn in self.xmpp])
        return {"sent": sent, "rate": sent / (time.monotonic() - started)}

    async def cmd_streams(self, port: int, accounts: list[list[str]], parallel: int = 50) -> dict[str, Any]:
        """Open one ``GET /api/sse`` stream per account on the bridge at ``port``."""
        raise_open_files_limit()
        limit = defer.DeferredSemaphore(parallel)
        failures: list[str] = []

        async def one(jid: str, password: str) -> None:
            reader = SseReader(basic(jid, password), self.recorder)
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=30)
            try:
                await endpoint.connect(protocol.Factory.forProtocol(lambda: reader))
                await reader.opened.addTimeout(60, reactor)
                self.streams.append(reader)
            except Exception as e:
                failures.append(str(e))

        started = now_us()
        await defer.gatherResults(
            [limit.run(lambda j=j, p=p: defer.Deferred.fromCoroutine(one(j, p))) for j, p in accounts]
        )
        return {
            "open": len(self.streams),
            "failed": len(failures),
            "first_failure": failures[0] if failures else None,
            "seconds": (now_us() - started) / 1_000_000,
        }

    async def cmd_quit(self) -> dict[str, Any]:
        for reader in self.streams:
            if reader.transport is not None:
                reader.transport.abortConnection()
        closing = [conn.client.close() for conn in self.xmpp]
        if closing:
            waiting = defer.DeferredList(closing)
            waiting.addTimeout(5, reactor)
            with contextlib.suppress(defer.TimeoutError):
                await waiting
        return {}


class Commands(LineReceiver):
    """stdin/stdout of the worker: the spec, then commands, each answered by one line."""

    delimiter = b"\n"
    MAX_LENGTH = 64 * 1024 * 1024

    def __init__(self) -> None:
        self.worker: Worker | None = None
        self.busy: defer.Deferred[None] = defer.succeed(None)

    def emit(self, message: dict[str, Any]) -> None:
        self.transport.write(json.dumps(message).encode() + b"\n")

    def lineReceived(self, line: bytes) -> None:
        message = json.loads(line)
        # Commands run one after another, in the order they came.
        self.busy.addCallback(lambda _: defer.Deferred.fromCoroutine(self._run(message)))

    async def _run(self, message: dict[str, Any]) -> None:
        try:
            if self.worker is None:
                self.worker = Worker(message, self.emit)
                self.emit({"event": "ready", **await self.worker.setup()})
                return
            name = message.pop("cmd")
            result = await getattr(self.worker, f"cmd_{name}")(**message)
            self.emit({"event": name, **result})
            if name == "quit":
                reactor.callLater(0, reactor.stop)
        except Exception as e:
            self.emit({"event": "error", "message": f"{type(e).__name__}: {e}"})

    def connectionLost(self, reason: Any = None) -> None:
        # The orchestrator went away: nothing left to report to.
        if reactor.running:
            reactor.stop()


def main() -> None:
    if os.environ.get("BENCH_WORKER_NO_GC"):
        gc.disable()
    stdio.StandardIO(Commands())
    reactor.run()


if __name__ == "__main__":
    sys.exit(main())
