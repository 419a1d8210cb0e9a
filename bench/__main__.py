"""``python3 -m bench [--smoke] [--only send,archive,...] [--profile DIR] [--json FILE]``.

Runs every scenario (bench.scenarios) against Prosody servers started by the harness and
bridges started with ``twistd -n bridge``, then prints the machine, a table of figures and
the issue's targets with a verdict each. Exits non-zero only when a scenario could not
run; an unmet target is a finding, not a failure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.measure import fmt
from bench.model import FULL, SMOKE, Run
from bench.procs import BenchError
from bench.scenarios import SCENARIOS


def machine() -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    versions = {}
    for package in ("prosody", "wrk"):
        done = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
        versions[package] = done.stdout.strip() or "?"
    import twisted

    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gb": round(int(memory) / 1024 / 1024, 1),
        "python": platform.python_version(),
        "twisted": twisted.__version__,
        **versions,
    }


def load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def table(run: Run) -> str:
    header = ("scenario", "variant", "load", "rate/s", "p50 ms", "p99 ms", "notes")
    rows = [header] + [
        (r.scenario, r.variant, r.load, fmt(r.rate, 0), fmt(r.p50), fmt(r.p99), r.notes) for r in run.rows
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]

    def line(row: tuple[str, ...]) -> str:
        cells = [cell.ljust(widths[i]) if i < 3 else cell.rjust(widths[i]) for i, cell in enumerate(row[:-1])]
        return "| " + " | ".join(cells) + " | " + row[-1]

    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|---"]
    out += [line(row) for row in rows[1:]]
    return "\n".join(out)


def targets(run: Run) -> str:
    out = []
    for target in run.targets:
        verdict = {True: "met", False: "NOT met", None: "not measured"}[target.met]
        out.append(f"- {target.name}: goal {target.goal}; measured {target.measured}: {verdict}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that every scenario runs")
    parser.add_argument("--only", default="", help=f"comma-separated scenarios among {', '.join(SCENARIOS)}")
    parser.add_argument("--profile", metavar="DIR", help="py-spy the bridge during send and archive into DIR")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--sse-streams", default="", help="stream counts for sse, e.g. 1000,5000")
    parser.add_argument("--send-archives", default="off,sql", help="servers for send at full load: off,sql")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    args = parser.parse_args(argv)

    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    sizes = SMOKE if args.smoke else FULL
    if args.sse_streams:
        from dataclasses import replace

        sizes = replace(sizes, sse_streams=tuple(int(n) for n in args.sse_streams.split(",")))
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2

    # Servers and bridges run in sessions of their own: on SIGTERM, unwind so that the
    # finally clauses stop them instead of leaving them behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="bridge-bench-"))
    workdir.chmod(0o755)  # Prosody runs as its own user below it
    profile_dir = Path(args.profile).resolve() if args.profile else None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
    run = Run(workdir, sizes, profile_dir, tuple(a for a in args.send_archives.split(",") if a))
    info = machine()
    load_before = load()
    print(f"bench: {'smoke' if args.smoke else 'full'} run of {', '.join(names)}; work directory {workdir}", flush=True)
    failed = []
    started = time.monotonic()
    try:
        for name in names:
            print(f"== {name}", flush=True)
            try:
                SCENARIOS[name](run)
            except (BenchError, Exception) as e:
                failed.append(name)
                print(f"bench: scenario {name} failed: {e}", flush=True)
                traceback.print_exc()
    finally:
        run.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    load_after = load()
    print()
    print(
        f"Machine: {info['nproc']} cores ({info['cpu']}), {info['memory_gb']} GB; Python {info['python']}, "
        f"Twisted {info['twisted']}, Prosody {info['prosody']}, wrk {info['wrk']}"
    )
    print(
        f"Load average (1/5/15 min): before {load_before}, after {load_after}; "
        f"{time.monotonic() - started:.0f} s; {'smoke sizes' if args.smoke else 'full sizes'}"
    )
    print("Load generators: wrk -t1 (HTTP, LuaJIT script bench/wrk.lua); bench.worker processes (XMPP, SSE)")
    print()
    print(table(run))
    print()
    print("Targets (issue 5):")
    print(targets(run))
    for skipped in run.skipped:
        print(f"- skipped: {skipped}")
    if failed:
        print(f"- FAILED scenarios: {', '.join(failed)}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "machine": info,
                    "load_before": load_before,
                    "load_after": load_after,
                    "rows": [asdict(r) for r in run.rows],
                    "targets": [asdict(t) for t in run.targets],
                    "skipped": run.skipped,
                    "failed": failed,
                },
                indent=1,
            )
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
