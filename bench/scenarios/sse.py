"""sse: K event streams; messages to random stream users at a fixed rate."""

from __future__ import annotations

import time
from typing import Any

from bench.measure import CpuMeter, fmt, has_route, now_us
from bench.model import Row, Run, Target
from bench.procs import BenchError, Bridge, Worker, open_files_limit, prosody_pid
from tests.servers.prosody import ProsodyServer


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
            if not has_route(bridge, "/api/sse"):
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
