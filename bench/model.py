"""What the scenarios share: the sizes of a run, its figures, its verdicts, its servers.

A Run owns the Prosody servers (one per archive setting, started on first use) and the
accounts registered on them; scenarios append Rows (figures) and Targets (verdicts) to it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.measure import fmt
from bench.procs import Profiler, Worker, start_prosody
from tests.servers.prosody import ProsodyServer


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
    open_streams: int = 1000  # streams (new users: login included) opened per open-rate run
    open_parallel: tuple[int, ...] = (50, 200)  # opened this many at a time
    memory_streams: int = 1000  # streams of the memory breakdown (tracemalloc, smaps)
    rest_connections: int = 20  # wrk -c for the mod_rest peer and the bridge beside it


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
    open_streams=6,
    open_parallel=(2, 4),
    memory_streams=5,
    rest_connections=2,
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
