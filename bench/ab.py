"""Before/after: ``python3 -m bench.ab OTHER_CHECKOUT [--scenario send|light|archive]``.

Runs the bridge of another checkout (say, a copy of the tree before a change) beside this
checkout's bridge, against one Prosody, and alternates short identical wrk runs between
the two (A B B A A B ...), so that both meet the same machine load. Reports, per side, the
median over rounds of: requests/s, the bridge's CPU milliseconds per request (its cost,
whatever else runs), that CPU over Prosody's per request in the same run (``cpu_vs_prosody``:
Prosody does the same work per request for either side, so the ratio cancels the moments
this shared machine runs slower, which move ``cpu_ms`` by 15 % from one round to the next),
and latency. The machine's load moves the absolute figures; the comparison between the two
sides is what to read. ``--http`` adds ``[http]`` lines to this side's config only:
``python3 -m bench.ab . --http 'access_log = false'`` prices a setting.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.measure import CpuMeter, basic, lines_file, now_us
from bench.model import FULL, Run
from bench.procs import ROOT, Bridge, Worker, prosody_pid, wrk


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def compare(
    run: Run, other: Path, scenario: str, rounds: int, seconds: int, http: str = ""
) -> dict[str, dict[str, Any]]:
    archive = "sql" if scenario == "archive" else "off"
    server = run.prosody(archive)
    connections = {"send": 20, "light": 1, "archive": 1}[scenario]
    sides = {
        "other": Bridge(server, run.workdir, "bridge-other", root=other),
        "this": Bridge(server, run.workdir, http=http),
    }
    workers: list[Worker] = []
    try:
        for bridge in sides.values():
            bridge.start()
        lines: dict[str, Path] = {}
        rx: Worker | None = None
        if scenario == "archive":
            owner, peer = run.accounts(server, "archive", 2)
            filler = run.worker(server, "fill", [owner])
            workers.append(filler)
            filler.command("flood", targets=[peer[0]], count=1000, timeout=600)
            for name in sides:
                lines[name] = lines_file(run, f"ab-{name}", [(basic(owner), "/api/messages?limit=50")])
            mode = "get"
        else:
            receivers = run.accounts(server, "rx", 4)
            rx = run.worker(server, "rx", receivers, record=True, available=True)
            workers.append(rx)
            for name in sides:
                users = run.accounts(server, f"tx{name}", connections)
                lines[name] = lines_file(
                    run, f"ab-{name}", [(basic(u), receivers[i % 4][0]) for i, u in enumerate(users)]
                )
            mode = "send"
        for name, bridge in sides.items():
            wrk(bridge.url, mode, lines[name], connections, 2)
        samples: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
        order = list(sides)
        for round_number in range(rounds):
            for name in order if round_number % 2 == 0 else reversed(order):
                bridge = sides[name]
                meter = CpuMeter({"bridge": bridge.pid, "prosody": prosody_pid(server)})
                started = now_us()
                result = wrk(bridge.url, mode, lines[name], connections, seconds)
                ended = now_us()
                meter.stop()
                cpu_ms = meter.per_request("bridge", result["requests"])
                prosody_cpu_ms = meter.per_request("prosody", result["requests"])
                sample = {
                    "rate": result["rate"],
                    "cpu_ms": cpu_ms,
                    "prosody_cpu_ms": prosody_cpu_ms,
                    "cpu_vs_prosody": cpu_ms / prosody_cpu_ms if prosody_cpu_ms else None,
                    "p50": result["p50_ms"],
                    "p99": result["p99_ms"],
                    "errors": result["errors"],
                }
                if rx is not None:
                    time.sleep(0.5)
                    delivered = rx.command("report", since=started, until=ended)
                    sample["delivery_p50"] = delivered["p50_ms"]
                    sample["delivery_p99"] = delivered["p99_ms"]
                samples[name].append(sample)
                print(
                    f"  {name:5} round {round_number + 1}: "
                    + ", ".join(f"{k} {v:.3f}" for k, v in sample.items() if v is not None),
                    flush=True,
                )
        return {
            name: {key: _median([s.get(key) for s in values]) for key in values[0]} for name, values in samples.items()
        }
    finally:
        for worker in workers:
            worker.close()
        for bridge in sides.values():
            bridge.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.ab", description=__doc__.splitlines()[0])
    parser.add_argument("other", help="another checkout of the project (e.g. a copy from before a change)")
    parser.add_argument("--scenario", choices=("send", "light", "archive"), default="send")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument(
        "--http", default="", help="[http] lines for this side only, e.g. 'access_log = false' (OTHER may be .)"
    )
    args = parser.parse_args(argv)
    other = Path(args.other).resolve()
    if not (other / "bridge" / "tap.py").exists():
        parser.error(f"{other} is not a checkout of the bridge")
    workdir = Path(tempfile.mkdtemp(prefix="bridge-ab-"))
    workdir.chmod(0o755)
    run = Run(workdir, FULL)
    load_before = "{:.2f} {:.2f} {:.2f}".format(*__import__("os").getloadavg())
    try:
        medians = compare(run, other, args.scenario, args.rounds, args.seconds, args.http.replace("\\n", "\n"))
    finally:
        run.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    load_after = "{:.2f} {:.2f} {:.2f}".format(*__import__("os").getloadavg())
    print(
        f"\n{args.scenario}: medians of {args.rounds} alternating {args.seconds} s runs; other = {other}, "
        f"this = {ROOT}{' with [http] ' + args.http if args.http else ''}; load average {load_before} -> {load_after}"
    )
    keys = list(medians["this"])
    print("| side | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name in ("other", "this"):
        cells = [("-" if medians[name][k] is None else f"{medians[name][k]:.3f}") for k in keys]
        print(f"| {name} | " + " | ".join(cells) + " |")
    ratios = [
        f"{k} {medians['this'][k] / medians['other'][k]:.2f}"
        for k in keys
        if medians["this"][k] and medians["other"][k]
    ]
    print("this / other: " + ", ".join(ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())
