"""cluster: POST /api/messages through HAProxy to 1, 2 and 3 bridge processes.

The processes share one PostgreSQL and HAProxy hashes on the user (``etc/haproxy.cfg``, as
``tests/cluster`` runs it), so each sender's requests go to one process. Every figure is a
ratio to one process behind the same HAProxy in the same run: on a machine of two cores
the processes, Prosody, HAProxy and wrk share them, which bounds what more processes buy.
"""

from __future__ import annotations

import time
import urllib.request

from bench.measure import CpuMeter, basic, lines_file, now_us
from bench.model import Row, Run
from bench.procs import prosody_pid, wrk
from tests.cluster.cluster import Cluster
from tests.servers.postgres import postgres_url

SIZES = (1, 2, 3)
NO_LIMITS = "[limits]\nuser_rate = 0.0\naddress_rate = 0.0\n"


def _wait_ready(cluster: Cluster, timeout: float = 30.0) -> None:
    """Until every node answers /readyz 200 and HAProxy has seen them up."""
    deadline = time.monotonic() + timeout
    for node in cluster.nodes:
        while True:
            try:
                with urllib.request.urlopen(node.base + "/readyz", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node.name} not ready:\n{cluster.logs()}")
            time.sleep(0.2)
    time.sleep(2.5)  # HAProxy's health check (inter 1s, rise 2)


def scenario_cluster(run: Run) -> None:
    """Send throughput with 1, 2 and 3 bridges behind HAProxy, as a ratio to one."""
    if postgres_url() is None:
        run.skipped.append("cluster: no PostgreSQL (Debian's postgresql package)")
        return
    sizes = run.sizes
    c = sizes.connections
    server = run.prosody("off")
    receivers = run.accounts(server, "crx", sizes.receivers)
    targets = [jid for jid, _ in receivers]
    rx = run.worker(server, "rx-cluster", receivers, record=True, available=True)
    senders = run.accounts(server, "ctx", c)
    lines = lines_file(run, "cluster", [(basic(u), targets[i % len(targets)]) for i, u in enumerate(senders)])
    rates: dict[int, float] = {}
    try:
        for size in SIZES:
            cluster = Cluster(server, run.workdir / f"cluster-{size}", size=size, limits=NO_LIMITS)
            try:
                cluster.start()
                _wait_ready(cluster)
                wrk(cluster.base, "send", lines, c, sizes.warmup)  # logs every user in
                pids = {node.name: node.process.pid for node in cluster.nodes if node.process is not None}
                meter = CpuMeter({**pids, "prosody": prosody_pid(server)}, children="wrk")
                started = now_us()
                result = wrk(cluster.base, "send", lines, c, sizes.seconds)
                ended = now_us()
                cpu = meter.stop()
                time.sleep(1)
                delivered = rx.command("report", since=started, until=ended)
                rates[size] = result["rate"]
                ratio = result["rate"] / rates[1] if rates.get(1) else 0.0
                run.add(
                    Row(
                        "cluster",
                        f"{size} bridge process{'es' if size > 1 else ''} behind HAProxy",
                        f"wrk -t1 -c{c} {sizes.seconds}s",
                        result["rate"],
                        delivered["p50_ms"],
                        delivered["p99_ms"],
                        f"{ratio:.2f} x 1 process; delivered {delivered['count']}; errors {result['errors']}; {cpu}",
                    )
                )
            finally:
                cluster.stop()
    finally:
        rx.close()
