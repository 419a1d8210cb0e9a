"""Measuring helpers for the scenarios: clocks, CPU meters, percentiles, probes, profiles."""

from __future__ import annotations

import json
import resource
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.procs import Bridge, Profiler, cpu_seconds
from bench.profile import summarise_profile

if TYPE_CHECKING:
    from bench.model import Run


def fmt(value: float | None, digits: int = 2) -> str:
    """A figure for the table, ``-`` when it was not measured."""
    return "-" if value is None else f"{value:.{digits}f}"


def basic(user: tuple[str, str]) -> str:
    """The ``Authorization`` header of ``(jid, password)``."""
    return "Basic " + b64encode(f"{user[0]}:{user[1]}".encode()).decode()


def now_us() -> int:
    """Unix microseconds: the clock wrk's script stamps into message bodies."""
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
    """The tab-separated ``Authorization, recipient or path`` lines bench/wrk.lua rotates over."""
    path = run.workdir / f"{name}.tsv"
    path.write_text("".join(f"{a}\t{b}\n" for a, b in lines))
    return path


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of sorted ``values`` (``fraction`` 0.5 for p50)."""
    index = min(len(values) - 1, max(0, round(fraction * len(values) + 0.5) - 1))
    return values[index]


def has_route(bridge: Bridge, path: str) -> bool:
    """Whether the bridge serves ``path`` (401 without credentials) rather than 404."""
    status, _ = call(bridge.url, "GET", path)
    return status != 404


def write_profile(run: Run, profiler: Profiler, name: str) -> None:
    """Wait for py-spy and write its summary beside the raw stacks (``NAME.txt``)."""
    path = profiler.wait()
    if path.exists():
        summary = summarise_profile(path)
        (path.with_suffix(".txt")).write_text(summary)
        print(f"  profile of the bridge during {name}: {path.with_suffix('.txt')}", flush=True)
