"""A cluster as an admin would run it: PostgreSQL, N ``twistd bridge`` processes with their
own ``[cluster] node``, and HAProxy in front with the shipped ``etc/haproxy.cfg``.

Everything runs as real processes on free loopback ports, so that a test can SIGKILL a
bridge and watch the others take over. The XMPP server is a dedicated one per cluster:
Prosody *without* XEP-0356 privileges (so a component that takes over must know who is
online from the store, not from the server), or ejabberd (``BRIDGE_TEST_SERVER``), whose
component listener would balance stanzas over every connected component.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers.fixture import XmppServer, daemon_config, server_class
from tests.servers.postgres import fresh_database, postgres_url
from tests.servers.server import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def cluster_server() -> XmppServer:
    """A fresh XMPP server of the kind ``BRIDGE_TEST_SERVER`` names, started."""
    kind = server_class()
    server: XmppServer = kind(privileges=False)
    server.start()
    return server


def haproxy_config(listen: int, backends: list[int], source: Path = ROOT / "etc" / "haproxy.cfg") -> str:
    """The shipped ``etc/haproxy.cfg`` with its listen port and servers replaced, nothing else."""
    text = source.read_text()
    text, binds = re.subn(r"(?m)^(\s*bind\s+)127\.0\.0\.1:\d+", rf"\g<1>127.0.0.1:{listen}", text)
    lines = [f"    server bridge{n} 127.0.0.1:{port}" for n, port in enumerate(backends, start=1)]
    text, servers = re.subn(r"(?m)^\s*server\s+bridge\d+\s+\S+\n?", "", text)
    if binds != 1 or servers == 0:
        raise RuntimeError("etc/haproxy.cfg no longer has one bind line and bridgeN server lines")
    return text.rstrip("\n") + "\n" + "\n".join(lines) + "\n"


@dataclass
class Node:
    """One bridge process of the cluster."""

    name: str
    port: int
    config: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None
    killed_at: float | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class Cluster:
    """PostgreSQL + ``size`` bridges + HAProxy in front of ``server``, under ``workdir``."""

    server: XmppServer
    workdir: Path
    size: int = 3
    nodes: list[Node] = field(default_factory=list)
    proxy_port: int = 0
    proxy: subprocess.Popen[bytes] | None = None
    storage_url: str = ""
    # All load of a test comes from one address; the per-user rate stays on.
    limits: str = "[limits]\naddress_rate = 0\n"

    def start(self) -> None:
        base = postgres_url()
        if base is None:
            raise RuntimeError("no PostgreSQL for the cluster (Debian's postgresql package)")
        self.storage_url = fresh_database(base, "cluster_" + secrets.token_hex(4))
        self.workdir.mkdir(parents=True, exist_ok=True)
        for number in range(1, self.size + 1):
            name = f"bridge{number}"
            node = Node(name, free_port(), self.workdir / f"{name}.toml", self.workdir / f"{name}.log")
            node.config.write_text(self._bridge_config(node))
            self.nodes.append(node)
            self.start_node(node)
        for node in self.nodes:
            wait_for_port(node.port, timeout=30)
        self.proxy_port = free_port()
        proxy_config = self.workdir / "haproxy.cfg"
        proxy_config.write_text(haproxy_config(self.proxy_port, [node.port for node in self.nodes]))
        with open(self.workdir / "haproxy.log", "wb") as log:
            self.proxy = subprocess.Popen(["haproxy", "-db", "-f", str(proxy_config)], stdout=log, stderr=log)
        wait_for_port(self.proxy_port, timeout=10)

    def _bridge_config(self, node: Node) -> str:
        return daemon_config(
            self.server,
            node.port,
            self.storage_url,
            http="shutdown_timeout = 2.0\n",
            sections=f'[cluster]\nnode = "{node.name}"\n[sse]\nkeepalive = 5.0\n' + self.limits,
        )

    def start_node(self, node: Node) -> None:
        environment = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "BRIDGE_MUCLIGHT_SECRET": self.server.component_secret,
        }
        node.process = subprocess.Popen(
            [*TWISTD, "-n", "--pidfile=", f"--logfile={node.log}", "bridge", "--config", str(node.config)],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        node.killed_at = None

    def kill(self, node: Node) -> float:
        """SIGKILL ``node``; returns when it is gone, with the time of the kill."""
        assert node.process is not None
        node.killed_at = time.monotonic()
        node.process.send_signal(signal.SIGKILL)
        node.process.wait(timeout=10)
        return node.killed_at

    def stop(self) -> None:
        for process in [self.proxy, *(node.process for node in self.nodes)]:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in [self.proxy, *(node.process for node in self.nodes)]:
            if process is None:
                continue
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    def logs(self) -> str:
        """The tail of every bridge's log, for a failing test's message."""
        parts = []
        for node in self.nodes:
            text = node.log.read_text(errors="replace") if node.log.exists() else ""
            parts.append(f"--- {node.name}\n" + "\n".join(text.splitlines()[-40:]))
        return "\n".join(parts)
