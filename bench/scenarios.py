"""The benchmark scenarios; each appends rows (figures) and targets (verdicts) to a Run.

Servers, deliberately configured per scenario (harness.prosody.ProsodyServer):
* ``archive="off"``: no mod_mam at all, so routing is all Prosody does (send, sse, cold);
* ``archive="sql"``: mod_mam with ``storage = { archive = "sql" }`` in SQLite (archive,
  and the send baselines "archive on").
Every timing is judged against a baseline from the same run, never an absolute figure.
"""

from __future__ import annotations

import http.client
import json
import resource
import secrets
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procs import (
    BenchError,
    Bridge,
    Floor,
    Profiler,
    Worker,
    cpu_seconds,
    open_files_limit,
    prosody_pid,
    start_prosody,
    wrk,
)
from bench.profile import summarise_profile
from harness.prosody import ProsodyServer


@dataclass(frozen=True)
class Sizes:
    seconds: int  # each measured wrk / plain-client run
    warmup: int
    connections: int  # concurrent REST clients (wrk -c) and plain senders at full load
    receivers: int  # XMPP accounts receiving the messages
    rounds: int  # light-load and archive runs alternate bridge and baseline this often
    light_seconds: int
    archive_messages: int
    sse_streams: tuple[int, ...]
    sse_rate: float
    sse_seconds: int
    room_members: int
    room_messages: int
    cold_users: int


FULL = Sizes(
    seconds=10,
    warmup=2,
    connections=20,
    receivers=4,
    rounds=2,
    light_seconds=5,
    archive_messages=1000,
    sse_streams=(1000, 5000),
    sse_rate=500,
    sse_seconds=10,
    room_members=100,
    room_messages=10,
    cold_users=20,
)
SMOKE = Sizes(
    seconds=1,
    warmup=1,
    connections=2,
    receivers=1,
    rounds=1,
    light_seconds=1,
    archive_messages=20,
    sse_streams=(5,),
    sse_rate=20,
    sse_seconds=1,
    room_members=3,
    room_messages=2,
    cold_users=2,
)


@dataclass
class Row:
    scenario: str
    variant: str
    load: str
    rate: float | None = None  # per second
    p50: float | None = None  # ms
    p99: float | None = None  # ms
    notes: str = ""


@dataclass
class Target:
    name: str
    goal: str
    measured: str
    met: bool | None  # None: not measured


@dataclass
class Run:
    workdir: Path
    sizes: Sizes
    profile_dir: Path | None = None
    send_archives: tuple[str, ...] = ("off", "sql")
    rows: list[Row] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    _servers: dict[str, ProsodyServer] = field(default_factory=dict)
    _users: int = 0

    def prosody(self, archive: str) -> ProsodyServer:
        if archive not in self._servers:
            self._servers[archive] = start_prosody(self.workdir / f"prosody-{archive}", archive)
        return self._servers[archive]

    def stop(self) -> None:
        for server in self._servers.values():
            server.stop()

    def accounts(self, server: ProsodyServer, role: str, count: int) -> list[tuple[str, str]]:
        result = []
        for _ in range(count):
            self._users += 1
            name, password = f"bench-{role}-{self._users}", "pw-" + secrets.token_hex(8)
            server.register(name, password)
            result.append((f"{name}@{server.domain}", password))
        return result

    def worker(self, server: ProsodyServer, name: str, accounts: list[tuple[str, str]], **spec: Any) -> Worker:
        full = {
            "domain": server.domain,
            "c2s_port": server.c2s_port,
            "ca_file": str(server.ca_file),
            "accounts": accounts,
            **spec,
        }
        return Worker(self.workdir, name, full, timeout=600)

    def profile(self, pid: int, name: str, seconds: int) -> Profiler | None:
        if self.profile_dir is None:
            return None
        return Profiler(pid, self.profile_dir / f"{name}.raw", seconds)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(
            f"  {row.scenario:8} {row.variant:40} {row.load:22} {fmt(row.rate, 0):>8} /s  "
            f"p50 {fmt(row.p50)} ms  p99 {fmt(row.p99)} ms  {row.notes}",
            flush=True,
        )


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def basic(user: tuple[str, str]) -> str:
    return "Basic " + b64encode(f"{user[0]}:{user[1]}".encode()).decode()


def now_us() -> int:
    return time.time_ns() // 1000


def call(base: str, method: str, path: str, user: tuple[str, str] | None = None, body: Any = None) -> tuple[int, Any]:
    """One HTTP request outside any measurement (set-up, probes)."""
    headers = {"Authorization": basic(user)} if user else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw) if raw else None
        except ValueError:
            return e.code, raw.decode(errors="replace")


class CpuMeter:
    """Share of one core each process used between start and stop (wrk via RUSAGE_CHILDREN)."""

    def __init__(self, pids: dict[str, int | None], children: str | None = None) -> None:
        self._pids = {name: pid for name, pid in pids.items() if pid}
        self._children = children
        self._start = {name: cpu_seconds(pid) for name, pid in self._pids.items()}
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        self._children_start = usage.ru_utime + usage.ru_stime
        self._wall = time.monotonic()
        # CPU seconds each used, once stopped.
        self.used: dict[str, float] = {}

    def stop(self) -> str:
        wall = time.monotonic() - self._wall
        for name, pid in self._pids.items():
            try:
                self.used[name] = cpu_seconds(pid) - self._start[name]
            except OSError:
                continue
        if self._children:
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            self.used[self._children] = usage.ru_utime + usage.ru_stime - self._children_start
        return "cpu " + " ".join(f"{name} {used / wall:.0%}" for name, used in self.used.items())

    def per_request(self, name: str, requests: int) -> float:
        """Milliseconds of CPU ``name`` spent per request: its cost whatever else ran."""
        return 1000 * self.used.get(name, 0.0) / max(requests, 1)


def lines_file(run: Run, name: str, lines: list[tuple[str, str]]) -> Path:
    path = run.workdir / f"{name}.tsv"
    path.write_text("".join(f"{a}\t{b}\n" for a, b in lines))
    return path


# send --------------------------------------------------------------------------------


def scenario_send(run: Run) -> None:
    """POST /api/messages at full and light load vs the Klein floor and plain clients."""
    sizes = run.sizes
    c = sizes.connections
    off = run.prosody("off")
    floor = Floor(run.workdir)
    try:
        floor_lines = lines_file(run, "floor", [(basic(("x@localhost", "x")), "y@localhost")])
        wrk(floor.url, "send", floor_lines, c, sizes.warmup)
        meter = CpuMeter({"floor": floor.process.pid}, children="wrk")
        floor_result = wrk(floor.url, "send", floor_lines, c, sizes.seconds)
        cpu = meter.stop()
        floor_result["cpu_ms"] = meter.per_request("floor", floor_result["requests"])
        run.add(
            Row(
                "send",
                "Klein floor (bench.floor)",
                f"wrk -t1 -c{c} {sizes.seconds}s",
                floor_result["rate"],
                floor_result["p50_ms"],
                floor_result["p99_ms"],
                f"errors {floor_result['errors']}; floor {floor_result['cpu_ms']:.3f} ms CPU/req; {cpu}",
            )
        )
    finally:
        floor.stop()

    full: dict[str, dict[str, Any]] = {}
    for archive in run.send_archives:
        server = run.prosody(archive)
        full[archive] = _send_full_load(run, server, archive)
    bridge = full["off"]["bridge"]
    ratio = bridge["rate"] / floor_result["rate"] if floor_result["rate"] else 0.0
    run.targets.append(
        Target(
            "send throughput (archive off)",
            ">= 0.75 x Klein floor",
            f"{ratio:.2f} x ({bridge['rate']:.0f} vs {floor_result['rate']:.0f} req/s); CPU per request "
            f"{bridge['cpu_ms']:.3f} vs {floor_result['cpu_ms']:.3f} ms, so one free core would serve "
            f"{floor_result['cpu_ms'] / bridge['cpu_ms']:.2f} x the floor's rate",
            ratio >= 0.75,
        )
    )
    _send_light_load(run, off)


def _send_full_load(run: Run, server: ProsodyServer, archive: str) -> dict[str, dict[str, Any]]:
    sizes = run.sizes
    c = sizes.connections
    receivers = run.accounts(server, "rx", sizes.receivers)
    targets = [jid for jid, _ in receivers]
    rx = run.worker(server, f"rx-{archive}", receivers, record=True, available=True)
    bridge = Bridge(server, run.workdir, f"bridge-send-{archive}")
    bridge.start()
    results: dict[str, dict[str, Any]] = {}
    try:
        senders = run.accounts(server, "tx", c)
        lines = lines_file(
            run, f"send-{archive}", [(basic(u), targets[i % len(targets)]) for i, u in enumerate(senders)]
        )
        wrk(bridge.url, "send", lines, c, sizes.warmup)  # logs every user in
        pids = {"bridge": bridge.pid, "prosody": prosody_pid(server), "receivers": rx.process.pid}
        meter = CpuMeter(pids, children="wrk")
        started = now_us()
        result = wrk(bridge.url, "send", lines, c, sizes.seconds)
        ended = now_us()
        cpu = meter.stop()
        result["cpu_ms"] = meter.per_request("bridge", result["requests"])
        time.sleep(1)
        delivered = rx.command("report", since=started, until=ended)
        result["delivered_rate"] = delivered["count"] / ((ended - started) / 1e6)
        run.add(
            Row(
                "send",
                f"bridge POST, archive {archive}",
                f"wrk -t1 -c{c} {sizes.seconds}s",
                result["rate"],
                delivered["p50_ms"],
                delivered["p99_ms"],
                f"delivered {result['delivered_rate']:.0f}/s; HTTP p50 {result['p50_ms']:.2f} ms; "
                f"errors {result['errors']}; bridge {result['cpu_ms']:.3f}, Prosody "
                f"{meter.per_request('prosody', result['requests']):.3f} ms CPU/req; {cpu}",
            )
        )
        results["bridge"] = result
        # A sampling profiler slows the process it samples: profile an extra, unreported run.
        profiler = run.profile(bridge.pid, f"send-{archive}", sizes.seconds) if archive == "off" else None
        if profiler is not None:
            wrk(bridge.url, "send", lines, c, sizes.seconds)
            _write_profile(run, profiler, "send")
    finally:
        bridge.stop()
    plain_accounts = run.accounts(server, "ptx", c)
    plain = run.worker(server, f"plain-{archive}", plain_accounts)
    try:
        plain.command("send", targets=targets, seconds=sizes.warmup)
        meter = CpuMeter({"prosody": prosody_pid(server), "senders": plain.process.pid, "receivers": rx.process.pid})
        started = now_us()
        sent = plain.command("send", targets=targets, seconds=sizes.seconds, timeout=sizes.seconds + 120)
        ended = now_us()
        cpu = meter.stop()
        time.sleep(1)
        delivered = rx.command("report", since=started, until=ended)
        run.add(
            Row(
                "send",
                f"plain XMPP send+ping, archive {archive}",
                f"{c} clients {sizes.seconds}s",
                sent["rate"],
                delivered["p50_ms"],
                delivered["p99_ms"],
                f"ack p50 {fmt(sent['p50_ms'])} ms; Prosody {meter.per_request('prosody', sent['count']):.3f} ms "
                f"CPU/msg; {cpu}",
            )
        )
        results["plain"] = sent
    finally:
        plain.close()
        rx.close()
    return results


def _send_light_load(run: Run, server: ProsodyServer) -> None:
    """One request at a time: how much latency the bridge adds to a plain client's."""
    sizes = run.sizes
    receiver = run.accounts(server, "rx1", 1)
    rx = run.worker(server, "rx-light", receiver, record=True, available=True)
    bridge = Bridge(server, run.workdir, "bridge-light")
    bridge.start()
    sender = run.accounts(server, "tx1", 1)
    plain = run.worker(server, "plain-light", run.accounts(server, "ptx1", 1))
    lines = lines_file(run, "send-light", [(basic(sender[0]), receiver[0][0])])
    best: dict[str, dict[str, Any]] = {}
    try:
        wrk(bridge.url, "send", lines, 1, sizes.warmup)
        plain.command("send", targets=[receiver[0][0]], seconds=sizes.warmup)
        for _ in range(sizes.rounds):
            for name in ("plain", "bridge"):
                started = now_us()
                if name == "bridge":
                    http_result = wrk(bridge.url, "send", lines, 1, sizes.light_seconds)
                else:
                    http_result = plain.command("send", targets=[receiver[0][0]], seconds=sizes.light_seconds)
                ended = now_us()
                time.sleep(0.5)
                delivered = rx.command("report", since=started, until=ended)
                delivered["rate"] = http_result["rate"]
                delivered["ack_p50_ms"] = http_result["p50_ms"]
                delivered["errors"] = http_result.get("errors", 0)
                if delivered["p50_ms"] is not None and (name not in best or delivered["p50_ms"] < best[name]["p50_ms"]):
                    best[name] = delivered
    finally:
        bridge.stop()
        plain.close()
        rx.close()
    for name, label in (("plain", "plain XMPP send+ping, 1 client"), ("bridge", "bridge POST, 1 client")):
        if name in best:
            result = best[name]
            run.add(
                Row(
                    "send",
                    label,
                    f"c=1 {sizes.light_seconds}s best of {sizes.rounds}",
                    result["rate"],
                    result["p50_ms"],
                    result["p99_ms"],
                    f"answer p50 {fmt(result['ack_p50_ms'])} ms; errors {result['errors']}",
                )
            )
    if "plain" in best and "bridge" in best:
        added = best["bridge"]["p50_ms"] - best["plain"]["p50_ms"]
        run.targets.append(
            Target(
                "send added p50 latency, light load",
                "< 2 ms",
                f"{added:.2f} ms ({best['bridge']['p50_ms']:.2f} vs {best['plain']['p50_ms']:.2f} ms)",
                added < 2.0,
            )
        )


# archive -----------------------------------------------------------------------------


def scenario_archive(run: Run) -> None:
    """GET /api/messages?limit=50 against 1,000 archived messages vs the same MAM query."""
    sizes = run.sizes
    server = run.prosody("sql")
    owner, peer = run.accounts(server, "archive", 2)
    plain = run.worker(server, "mam", [owner])
    bridge = Bridge(server, run.workdir, "bridge-archive")
    bridge.start()
    lines = lines_file(run, "archive", [(basic(owner), "/api/messages?limit=50")])
    best: dict[str, dict[str, Any]] = {}
    try:
        plain.command("flood", targets=[peer[0]], count=sizes.archive_messages, timeout=600)
        status, body = call(bridge.url, "GET", "/api/messages?limit=50", owner)
        if status != 200 or len(body) != min(50, sizes.archive_messages):
            raise BenchError(f"GET /api/messages answered {status} with {len(body or [])} messages")
        wrk(bridge.url, "get", lines, 1, sizes.warmup)
        plain.command("mam", limit=50, seconds=sizes.warmup)
        for _ in range(sizes.rounds):
            for name in ("plain", "bridge"):
                pids = {"bridge": bridge.pid, "prosody": prosody_pid(server), "client": plain.process.pid}
                meter = CpuMeter(pids, children="wrk" if name == "bridge" else None)
                if name == "bridge":
                    result = wrk(bridge.url, "get", lines, 1, sizes.seconds)
                else:
                    result = plain.command("mam", limit=50, seconds=sizes.seconds, timeout=sizes.seconds + 120)
                    if result["results"] != min(50, sizes.archive_messages):
                        raise BenchError(f"the MAM query returned {result['results']} results")
                result["cpu"] = meter.stop()
                queries = result["requests"] if name == "bridge" else result["count"]
                who = "bridge" if name == "bridge" else "client"
                result["cpu"] += (
                    f"; per query: {who} {meter.per_request(who, queries):.2f}, "
                    f"Prosody {meter.per_request('prosody', queries):.2f} ms CPU"
                )
                if name not in best or result["p50_ms"] < best[name]["p50_ms"]:
                    best[name] = result
        # A sampling profiler slows the process it samples: profile an extra, unreported run.
        profiler = run.profile(bridge.pid, "archive", sizes.seconds)
        if profiler is not None:
            wrk(bridge.url, "get", lines, 1, sizes.seconds)
            _write_profile(run, profiler, "archive")
    finally:
        bridge.stop()
        plain.close()
    load = f"sequential {sizes.seconds}s best of {sizes.rounds}"
    run.add(
        Row(
            "archive",
            "plain XMPP MAM query, max 50",
            load,
            best["plain"]["count"] / sizes.seconds,
            best["plain"]["p50_ms"],
            best["plain"]["p99_ms"],
            best["plain"]["cpu"],
        )
    )
    run.add(
        Row(
            "archive",
            "bridge GET /api/messages?limit=50",
            load,
            best["bridge"]["rate"],
            best["bridge"]["p50_ms"],
            best["bridge"]["p99_ms"],
            f"errors {best['bridge']['errors']}; {best['bridge']['cpu']}",
        )
    )
    ratio = best["bridge"]["p50_ms"] / best["plain"]["p50_ms"]
    run.targets.append(Target("archive p50 vs plain MAM", "<= 1.5 x", f"{ratio:.2f} x", ratio <= 1.5))


# cold path ---------------------------------------------------------------------------


def scenario_cold(run: Run) -> None:
    """A new user's first request (login included) and the idle daemon's memory."""
    sizes = run.sizes
    server = run.prosody("off")
    bridge = Bridge(server, run.workdir, "bridge-cold")
    bridge.start()
    sink = run.accounts(server, "sink", 1)[0][0]
    try:
        time.sleep(1)
        idle = bridge.rss_kb()
        latencies = []
        for user in run.accounts(server, "cold", sizes.cold_users):
            connection = http.client.HTTPConnection("127.0.0.1", bridge.port, timeout=30)
            body = json.dumps({"to": sink, "body": f"bench:{now_us()}:first"})
            started = time.perf_counter()
            connection.request(
                "POST", "/api/messages", body, {"Authorization": basic(user), "Content-Type": "application/json"}
            )
            response = connection.getresponse()
            response.read()
            latencies.append((time.perf_counter() - started) * 1000)
            connection.close()
            if response.status != 200:
                raise BenchError(f"a first POST /api/messages answered {response.status}")
        after = bridge.rss_kb()
    finally:
        bridge.stop()
    plain = run.worker(server, "login", [])
    try:
        logins = plain.command("login", accounts=run.accounts(server, "coldp", sizes.cold_users), target=sink)
    finally:
        plain.close()
    latencies.sort()
    p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
    run.add(
        Row(
            "cold",
            "plain XMPP login + send + ping",
            f"{sizes.cold_users} new users",
            None,
            logins["p50_ms"],
            logins["p99_ms"],
            f"max {fmt(logins['max_ms'])} ms",
        )
    )
    run.add(
        Row(
            "cold",
            "bridge first POST of a new user",
            f"{sizes.cold_users} new users",
            None,
            p50,
            p99,
            f"max {fmt(latencies[-1])} ms",
        )
    )
    run.add(
        Row(
            "cold",
            "bridge RSS",
            "idle / after",
            None,
            None,
            None,
            f"idle {idle / 1024:.1f} MB; after {sizes.cold_users} sessions {after / 1024:.1f} MB",
        )
    )
    run.targets.append(Target("idle RSS", "< 60 MB", f"{idle / 1024:.1f} MB", idle / 1024 < 60))
    run.targets.append(
        Target("first request of a new user", "< 50 ms", f"p50 {p50:.1f} ms, max {latencies[-1]:.1f} ms", p50 < 50)
    )


def _percentile(values: list[float], fraction: float) -> float:
    index = min(len(values) - 1, max(0, round(fraction * len(values) + 0.5) - 1))
    return values[index]


# sse ---------------------------------------------------------------------------------


def _has_route(bridge: Bridge, path: str) -> bool:
    """Whether the bridge serves ``path`` (401 without credentials) rather than 404."""
    status, _ = call(bridge.url, "GET", path)
    return status != 404


def scenario_sse(run: Run) -> None:
    """K event streams; messages to random stream users at a fixed rate."""
    sizes = run.sizes
    server = run.prosody("off")
    for streams in sizes.sse_streams:
        bridge = Bridge(server, run.workdir, f"bridge-sse-{streams}")
        bridge.start()
        readers: Worker | None = None
        senders: Worker | None = None
        try:
            if not _has_route(bridge, "/api/sse"):
                run.skipped.append("sse: the bridge has no /api/sse")
                run.targets.append(Target("sse 5,000 streams", "<= 40 KB/stream, p99 < 100 ms", "not run", None))
                return
            server_pid = prosody_pid(server)
            if server_pid is not None and open_files_limit(server_pid) < streams + 100:
                raise BenchError(f"Prosody may open only {open_files_limit(server_pid)} files, too few for {streams}")
            users = run.accounts(server, "sse", streams)
            senders = run.worker(server, f"sse-tx-{streams}", run.accounts(server, "ssetx", 2))
            plain = _sse_plain_baseline(run, server, senders, users)
            time.sleep(0.5)
            before = bridge.rss_kb()
            readers = run.worker(server, f"sse-{streams}", [])
            opened = readers.command("streams", port=bridge.port, accounts=users, timeout=1800)
            if opened["failed"]:
                raise BenchError(f"{opened['failed']} of {streams} streams failed: {opened['first_failure']}")
            time.sleep(2)
            after = bridge.rss_kb()
            per_stream = (after - before) / streams
            pids = {"bridge": bridge.pid, "prosody": prosody_pid(server), "readers": readers.process.pid}
            sent, delivered, cpu = _send_at_rate(run, senders, readers, users, pids)
        finally:
            if senders is not None:
                senders.close()
            if readers is not None:
                readers.close()
            bridge.stop()
        run.add(
            Row(
                "sse",
                f"plain XMPP, {streams} receiving clients",
                f"{sizes.sse_rate:.0f} msg/s {sizes.sse_seconds}s",
                plain["rate"],
                plain["p50_ms"],
                plain["p99_ms"],
                f"delivered {plain['count']}/{plain['sent']}; {plain['cpu']}",
            )
        )
        run.add(
            Row(
                "sse",
                f"{streams} streams, messages to random users",
                f"{sizes.sse_rate:.0f} msg/s {sizes.sse_seconds}s",
                sent["rate"],
                delivered["p50_ms"],
                delivered["p99_ms"],
                f"delivered {delivered['count']}/{sent['sent']}; RSS {per_stream:.1f} KB/stream "
                f"({before / 1024:.0f} -> {after / 1024:.0f} MB); opened in {opened['seconds']:.0f}s; {cpu}",
            )
        )
        if streams == max(sizes.sse_streams):
            p99 = delivered["p99_ms"]
            met = per_stream <= 40 and p99 is not None and p99 < 100 and delivered["count"] == sent["sent"]
            run.targets.append(
                Target(
                    f"sse {streams} streams at {sizes.sse_rate:.0f} msg/s",
                    "<= 40 KB/stream, p99 < 100 ms",
                    f"{per_stream:.1f} KB/stream, p99 {fmt(p99)} ms (plain XMPP clients on the same server: "
                    f"p99 {fmt(plain['p99_ms'])} ms)",
                    met,
                )
            )


def _send_at_rate(
    run: Run, senders: Worker, receivers: Worker, users: list[tuple[str, str]], pids: dict[str, int | None]
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Send to random ``users`` at the scenario's rate; what was sent, what arrived, CPU use."""
    sizes = run.sizes
    meter = CpuMeter(pids)
    started = now_us()
    sent = senders.command(
        "rate",
        targets=[jid for jid, _ in users],
        rate=sizes.sse_rate,
        seconds=sizes.sse_seconds,
        timeout=sizes.sse_seconds + 120,
    )
    ended = now_us()
    cpu = meter.stop()
    time.sleep(1)
    return sent, receivers.command("report", since=started, until=ended), cpu


def _sse_plain_baseline(
    run: Run, server: ProsodyServer, senders: Worker, users: list[tuple[str, str]]
) -> dict[str, Any]:
    """The same messages to the same users, received by plain XMPP clients instead of streams."""
    receivers = run.worker(server, f"sse-plain-{len(users)}", users, record=True, available=True, parallel=50)
    try:
        pids = {"prosody": prosody_pid(server), "receivers": receivers.process.pid}
        sent, delivered, cpu = _send_at_rate(run, senders, receivers, users, pids)
    finally:
        receivers.close()
    time.sleep(1)
    return {**delivered, "rate": sent["rate"], "sent": sent["sent"], "cpu": cpu}


# rooms -------------------------------------------------------------------------------


def scenario_rooms(run: Run) -> None:
    """One message to a room of M members, until every member's stream has it."""
    sizes = run.sizes
    server = run.prosody("off")
    bridge = Bridge(server, run.workdir, "bridge-rooms")
    bridge.start()
    readers: Worker | None = None
    try:
        missing = [path for path in ("/api/rooms", "/api/sse") if not _has_route(bridge, path)]
        if missing:
            run.skipped.append(f"rooms: the bridge has no {' or '.join(missing)}")
            return
        members = run.accounts(server, "member", sizes.room_members)
        owner = members[0]
        status, created = call(bridge.url, "POST", "/api/rooms", owner, {"name": "bench", "subject": "bench"})
        if status != 201:
            raise BenchError(f"POST /api/rooms answered {status} {created}")
        room = created["id"]
        for member in members[1:]:
            status, answer = call(bridge.url, "POST", f"/api/rooms/{room}/users", owner, {"user": member[0]})
            if status != 204:
                raise BenchError(f"POST /api/rooms/{room}/users answered {status} {answer}")
        readers = run.worker(server, "room-readers", [])
        opened = readers.command("streams", port=bridge.port, accounts=members, timeout=600)
        if opened["failed"]:
            raise BenchError(f"{opened['failed']} room streams failed: {opened['first_failure']}")
        time.sleep(1)
        fan_out: list[float] = []
        incomplete = 0
        for _ in range(sizes.room_messages):
            stamp = now_us()
            status, answer = call(
                bridge.url, "POST", f"/api/rooms/{room}/messages", owner, {"body": f"bench:{stamp}:room"}
            )
            if status != 200:
                raise BenchError(f"POST /api/rooms/{room}/messages answered {status} {answer}")
            deadline = time.monotonic() + 10
            while True:
                groups = readers.command("report", since=stamp, until=stamp + 1, group=True)["groups"]
                if groups and groups[0][0] >= len(members):
                    fan_out.append(groups[0][1])
                    break
                if time.monotonic() > deadline:
                    incomplete += 1
                    break
                time.sleep(0.01)
    finally:
        if readers is not None:
            readers.close()
        bridge.stop()
    fan_out.sort()
    run.add(
        Row(
            "rooms",
            f"room of {len(members)}, message to all streams",
            f"{sizes.room_messages} messages",
            None,
            _percentile(fan_out, 0.5) if fan_out else None,
            fan_out[-1] if fan_out else None,
            f"time until the last member's stream has it (p99 column: max); incomplete {incomplete}",
        )
    )


def _write_profile(run: Run, profiler: Profiler, name: str) -> None:
    path = profiler.wait()
    if path.exists():
        summary = summarise_profile(path)
        (path.with_suffix(".txt")).write_text(summary)
        print(f"  profile of the bridge during {name}: {path.with_suffix('.txt')}", flush=True)


SCENARIOS: dict[str, Callable[[Run], None]] = {
    "send": scenario_send,
    "archive": scenario_archive,
    "sse": scenario_sse,
    "rooms": scenario_rooms,
    "cold": scenario_cold,
}
