"""send: POST /api/messages at full and light load vs the Klein floor and plain clients."""

from __future__ import annotations

import time
from typing import Any

from bench.measure import CpuMeter, basic, fmt, lines_file, now_us, write_profile
from bench.model import Row, Run, Target
from bench.procs import Bridge, Floor, prosody_pid, wrk
from tests.servers.prosody import ProsodyServer


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
    run.targets.append(
        Target(
            "bridge CPU per acknowledged message (archive off)",
            "<= 0.35 ms",
            f"{bridge['cpu_ms']:.3f} ms (the Klein floor alone: {floor_result['cpu_ms']:.3f} ms per request)",
            bridge["cpu_ms"] <= 0.35,
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
            write_profile(run, profiler, "send")
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
