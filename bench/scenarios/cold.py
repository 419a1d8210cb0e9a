"""cold: a new user's first request (login included) and the idle daemon's memory."""

from __future__ import annotations

import http.client
import json
import time

from bench.measure import basic, fmt, now_us, percentile
from bench.model import Row, Run, Target
from bench.procs import BenchError, Bridge


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
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
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
    run.targets.append(Target("idle RSS", "< 50 MB", f"{idle / 1024:.1f} MB", idle / 1024 < 50))
    run.targets.append(
        Target("first request of a new user", "< 50 ms", f"p50 {p50:.1f} ms, max {latencies[-1]:.1f} ms", p50 < 50)
    )
