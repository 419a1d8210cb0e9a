"""archive: GET /api/messages?limit=50 against archived messages vs the same MAM query."""

from __future__ import annotations

from typing import Any

from bench.measure import CpuMeter, basic, call, lines_file, write_profile
from bench.model import Row, Run, Target
from bench.procs import BenchError, Bridge, prosody_pid, wrk


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
            write_profile(run, profiler, "archive")
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
    run.targets.append(Target("archive p50 vs plain MAM", "<= 1.3 x", f"{ratio:.2f} x", ratio <= 1.3))
