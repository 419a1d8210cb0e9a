"""streams and memory: how fast event streams open (login included), what one costs in memory.

* Open rate: ``open_streams`` new users each open ``GET /api/sse`` (Basic: so a login,
  TLS and SASL included), ``open_parallel`` at a time, beside plain XMPP clients logging
  the same number of new users in at the same parallelism on the same server.
* Memory per stream: a bridge started under ``bench.memhook`` (tracemalloc on) opens
  ``memory_streams`` streams; the growth of its RSS and anonymous memory
  (``/proc/PID/smaps_rollup``) is split by a tracemalloc snapshot diff into where the
  Python allocations were made (``classify``), and the part tracemalloc does not see
  (OpenSSL's own allocations, malloc's overhead and fragmentation) is reported as
  ``native``. Tracing slows the bridge: this bridge is never timed.
"""

from __future__ import annotations

import time
from typing import Any

from bench.measure import CpuMeter
from bench.model import Row, Run, Target
from bench.procs import BenchError, Bridge, prosody_pid, smaps_kb

# Where an allocation was made, judged by its innermost frame that is not generic
# machinery (Deferreds, logging, the standard library): (category, path fragments).
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("TLS", ("/OpenSSL/", "twisted/protocols/tls.py", "twisted/internet/_sslverify.py", "twisted/internet/_newtls.py")),
    ("XML parser", ("twisted/words/xish/domish.py", "twisted/words/xish/xmlstream.py")),
    ("replay buffer", ("bridge/events.py",)),
    ("stream (SSE, HTTP)", ("bridge/api/sse.py", "bridge/api/", "bridge/http/", "twisted/web/", "klein/")),
    ("session (XMPP)", ("bridge/xmpp/", "bridge/protocol/", "wokkel/", "twisted/words/")),
    ("reactor and sockets", ("twisted/internet/",)),
)
GENERIC = ("twisted/internet/defer.py", "twisted/python/", "twisted/logger/", "zope/", "tracemalloc")


def classify(filenames: list[str]) -> str:
    """The category of an allocation whose traceback has ``filenames``, innermost first."""
    for filename in filenames:
        name = filename.replace("\\", "/")
        if any(g in name for g in GENERIC):
            continue
        if "-packages/" not in name and "/bridge/" not in name and "/lib/python3" in name:
            continue  # the standard library: look further out
        for category, fragments in CATEGORIES:
            if any(f in name for f in fragments):
                return category
    return "other"


def breakdown(before: Any, after: Any, count: int = 1, show: int = 12) -> dict[str, int]:
    """Bytes allocated between two tracemalloc snapshots, by category (``classify``).

    Prints the ``show`` largest allocation sites (per stream, with their category).
    """
    totals: dict[str, int] = {}
    diffs = after.compare_to(before, "traceback")
    for diff in diffs:
        frames = [frame.filename for frame in reversed(diff.traceback)]
        category = classify(frames)
        totals[category] = totals.get(category, 0) + diff.size_diff
    for diff in diffs[:show]:
        frames = list(reversed(diff.traceback))
        where = " < ".join(f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno}" for f in frames[:3])
        category = classify([f.filename for f in frames])
        print(f"    {diff.size_diff / count:8.0f} B/stream  {category:20} {where}", flush=True)
    return totals


def scenario_streams(run: Run) -> None:
    """Stream-open rate at each parallelism, beside plain XMPP logins."""
    sizes = run.sizes
    server = run.prosody("off")
    count = sizes.open_streams
    for parallel in sizes.open_parallel:
        bridge = Bridge(server, run.workdir, f"bridge-open-{parallel}")
        bridge.start()
        readers = None
        try:
            readers = run.worker(server, f"open-{parallel}", [])
            meter = CpuMeter({"bridge": bridge.pid, "prosody": prosody_pid(server)})
            opened = readers.command(
                "streams",
                port=bridge.port,
                accounts=run.accounts(server, "open", count),
                parallel=parallel,
                timeout=1800,
            )
            meter.stop()
            if opened["failed"]:
                raise BenchError(f"{opened['failed']} of {count} streams failed: {opened['first_failure']}")
            plain_meter = CpuMeter({"prosody": prosody_pid(server)})
            plain = readers.command(
                "logins", accounts=run.accounts(server, "openp", count), parallel=parallel, timeout=1800
            )
            plain_meter.stop()
        finally:
            if readers is not None:
                readers.close()
            bridge.stop()
        rate, plain_rate = count / opened["seconds"], count / plain["seconds"]
        run.add(
            Row(
                "streams",
                "plain XMPP logins",
                f"{count} new users, {parallel} at a time",
                plain_rate,
                notes=f"{plain['seconds']:.1f} s; Prosody {plain_meter.per_request('prosody', count):.2f} ms CPU each",
            )
        )
        run.add(
            Row(
                "streams",
                "bridge GET /api/sse opened (login included)",
                f"{count} new users, {parallel} at a time",
                rate,
                notes=(
                    f"{opened['seconds']:.1f} s; {rate / plain_rate:.2f} x plain logins; "
                    f"bridge {meter.per_request('bridge', count):.2f}, "
                    f"Prosody {meter.per_request('prosody', count):.2f} ms CPU a stream"
                ),
            )
        )
        if parallel == sizes.open_parallel[0]:
            run.targets.append(
                Target(
                    f"streams opened, {parallel} at a time",
                    ">= 250/s (5,000 in <= 20 s)",
                    f"{rate:.0f}/s ({5000 / rate:.0f} s for 5,000; plain XMPP logins {plain_rate:.0f}/s)",
                    rate >= 250,
                )
            )


def _open_and_measure(
    run: Run, server: Any, name: str, count: int, trace: bool
) -> tuple[dict[str, int], dict[str, int], Any, Any]:
    """A bridge opens ``count`` streams after a warm-up; smaps_rollup (and snapshots) around them."""
    bridge = Bridge(server, run.workdir, name, trace_memory=trace)
    bridge.start()
    readers = None
    try:
        users = run.accounts(server, "mem", count)
        # First logins import and build what every later one shares: open some before measuring.
        readers = run.worker(server, name, [])
        warm = readers.command("streams", port=bridge.port, accounts=run.accounts(server, "memw", max(2, count // 20)))
        if warm["failed"]:
            raise BenchError(f"{warm['failed']} warm-up streams failed: {warm['first_failure']}")
        time.sleep(1)
        smaps_before, snap_before = smaps_kb(bridge.pid), bridge.snapshot() if trace else None
        opened = readers.command("streams", port=bridge.port, accounts=users, parallel=50, timeout=1800)
        if opened["failed"]:
            raise BenchError(f"{opened['failed']} of {count} streams failed: {opened['first_failure']}")
        time.sleep(2)
        smaps_after, snap_after = smaps_kb(bridge.pid), bridge.snapshot() if trace else None
    finally:
        if readers is not None:
            readers.close()
        bridge.stop()
    return smaps_before, smaps_after, snap_before, snap_after


def scenario_memory(run: Run) -> None:
    """The memory of an event stream, by part: smaps_rollup of a plain bridge, tracemalloc of another.

    tracemalloc's own bookkeeping grows with every traced block, so the traced bridge's RSS
    says nothing: its snapshots give the Python allocations by part, and a second, untraced
    bridge opening as many streams gives the real growth (smaps_rollup ``Rss`` and
    ``Anonymous``). What the snapshots do not explain is ``native``: OpenSSL's own
    allocations (connection state, record buffers) and malloc's overhead.
    """
    sizes = run.sizes
    server = run.prosody("off")
    count = sizes.memory_streams
    before, after, _, _ = _open_and_measure(run, server, "bridge-memory", count, trace=False)
    _, _, snap_before, snap_after = _open_and_measure(run, server, "bridge-traced", count, trace=True)
    parts = breakdown(snap_before, snap_after, count)
    rss = (after["Rss"] - before["Rss"]) * 1024 / count
    anonymous = (after["Anonymous"] - before["Anonymous"]) * 1024 / count
    traced = sum(parts.values()) / count
    shown = sorted(parts.items(), key=lambda item: -item[1])
    notes = "; ".join(f"{name} {size / count / 1024:.1f}" for name, size in shown)
    run.add(
        Row(
            "streams",
            "memory per stream, by part (KB)",
            f"{count} streams",
            None,
            notes=f"RSS {rss / 1024:.1f}, anonymous {anonymous / 1024:.1f} = Python (tracemalloc) "
            f"{traced / 1024:.1f}: {notes}; native (OpenSSL, malloc) {(anonymous - traced) / 1024:.1f}",
        )
    )
