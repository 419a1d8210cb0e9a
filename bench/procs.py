"""The processes of a benchmark run: Prosody, the bridge, the Klein floor, wrk, workers.

Each runs on its own (the bridge under ``twistd -n bridge`` with ``PYTHONPATH`` set to
the checkout, as ``tests/system/test_twistd.py`` starts it), so no load generator
shares the bridge's reactor or CPU time slice.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.servers.prosody import ProsodyServer
from tests.servers.server import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
WRK_SCRIPT = Path(__file__).resolve().parent / "wrk.lua"
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


class BenchError(RuntimeError):
    """A benchmark could not run (a process failed); the message says which and why."""


def environment(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def rss_kb(pid: int) -> int:
    """Resident set size of a process, from /proc/<pid>/status (VmRSS, in KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for process {pid}")


def smaps_kb(pid: int) -> dict[str, int]:
    """The memory totals of a process from /proc/<pid>/smaps_rollup (Rss, Anonymous, ...; KiB)."""
    totals: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            totals[name.strip()] = int(fields[0])
    return totals


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def session_pids(session_id: int) -> list[int]:
    """Every process in a session (Prosody runs under runuser, a child of our child)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == session_id:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


PROSODY_WRAPPER = """#!/bin/sh
# Written by bench.procs: runuser resets the open-files limit to 1,024; take the hard limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null
exec prosody "$@"
"""


def start_prosody(workdir: Path, archive: str) -> ProsodyServer:
    """Prosody from tests.servers.prosody with ``archive`` "off" (no mod_mam) or "sql" (SQLite).

    Thousands of sessions need more than the 1,024 files runuser leaves Prosody (and
    prlimit on another user's process needs CAP_SYS_RESOURCE), so Prosody starts through
    a wrapper that raises its own soft limit to the hard one.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    wrapper = workdir / "prosody-wrapper.sh"
    wrapper.write_text(PROSODY_WRAPPER)
    wrapper.chmod(0o755)
    server = ProsodyServer(archive=archive, workdir=workdir, launcher=str(wrapper))
    server.start()
    return server


def open_files_limit(pid: int) -> int:
    """The soft open-files limit of a process, from /proc/<pid>/limits."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    return 0


def prosody_pid(server: ProsodyServer) -> int | None:
    """The pid of the Lua process itself (for its CPU time), not runuser's."""
    assert server.process is not None
    for pid in session_pids(server.process.pid):
        try:
            if "lua" in Path(f"/proc/{pid}/comm").read_text() or "prosody" in Path(f"/proc/{pid}/comm").read_text():
                return pid
        except OSError:
            continue
    return None


def _no_rate_limits(root: Path) -> str:
    """A benchmark measures capacity: switch request-rate limits off where the bridge has them.

    All load comes from 127.0.0.1 and a few users, which ``limits.address_rate`` and
    ``limits.user_rate`` would (rightly) answer with 429.
    """
    if "class LimitsConfig" not in (root / "bridge" / "config.py").read_text():
        return ""
    return "[limits]\nuser_rate = 0.0\naddress_rate = 0.0\n"


class Bridge:
    """``twistd -n bridge`` in front of ``server``, on a free port, logging to a file."""

    def __init__(
        self,
        server: ProsodyServer,
        workdir: Path,
        name: str = "bridge",
        root: Path = ROOT,
        trace_memory: bool = False,
        http: str = "",
    ) -> None:
        """``http``: more ``[http]`` lines for this bridge's config (``bench.ab --http``)."""
        self.server = server
        # Start under bench.memhook: tracemalloc on, a snapshot file per SIGUSR2 (snapshot()).
        self.trace_memory = trace_memory
        self.snapshots = workdir / f"{name}-snapshots"
        self.workdir = workdir
        self.name = name
        # The checkout whose bridge runs (bench.ab runs another one beside this one).
        self.root = root
        self.port = free_port()
        self.log_file = workdir / f"{name}.log"
        self.config_file = workdir / f"{name}.toml"
        self.config_file.write_text(
            f'[http]\nendpoint = "tcp:{self.port}:interface=127.0.0.1"\n{http.strip()}\n'
            f'[xmpp]\nport = {server.c2s_port}\ndomains = ["{server.domain}"]\nca_file = "{server.ca_file}"\n'
            f'[muclight]\nservice = "{server.component}"\nport = {server.component_port}\n'
            f'[storage]\nurl = "sqlite://{workdir}/{name}.sqlite3"\n' + _no_rate_limits(root)
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        launcher = TWISTD
        env = {**environment(BRIDGE_MUCLIGHT_SECRET=self.server.component_secret), "PYTHONPATH": str(self.root)}
        if self.trace_memory:
            self.snapshots.mkdir(parents=True, exist_ok=True)
            launcher = [sys.executable, "-m", "bench.memhook"]
            env["PYTHONPATH"] = f"{self.root}{os.pathsep}{ROOT}"
            env["BENCH_TRACEMALLOC_DIR"] = str(self.snapshots)
        self.process = subprocess.Popen(
            [*launcher, "-n", "--pidfile=", f"--logfile={self.log_file}", "bridge", "--config", str(self.config_file)],
            cwd=self.root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / f"{self.name}.stderr", "ab"),  # noqa: SIM115
            start_new_session=True,
        )
        try:
            # Under tracemalloc every import is slower: a traced bridge takes a while to start.
            wait_for_port(self.port, timeout=180 if self.trace_memory else 30)
            with urllib.request.urlopen(self.url + "/healthz", timeout=10) as response:
                response.read()
        except Exception as e:
            self.stop()
            raise BenchError(f"the bridge did not start ({e}):\n{self.tail()}") from None

    def tail(self) -> str:
        parts = []
        for path in (self.workdir / f"{self.name}.stderr", self.log_file):
            if path.exists():
                parts.append(path.read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    def rss_kb(self) -> int:
        return rss_kb(self.pid)

    def snapshot(self, timeout: float = 300) -> Any:
        """A tracemalloc snapshot of the running bridge (needs ``trace_memory``)."""
        import pickle

        assert self.trace_memory, "the bridge was not started under bench.memhook"
        seen = set(self.snapshots.glob("snapshot-*.pickle"))
        os.kill(self.pid, signal.SIGUSR2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = set(self.snapshots.glob("snapshot-*.pickle")) - seen
            if new:
                path = new.pop()
                with path.open("rb") as data:
                    snapshot = pickle.load(data)
                path.unlink()
                return snapshot
            time.sleep(0.2)
        raise BenchError(f"the bridge wrote no tracemalloc snapshot within {timeout:.0f} s")

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None


class Floor:
    """The minimal Klein endpoint (bench.floor) in its own process."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.floor", str(self.port)],
            cwd=ROOT,
            env=environment(),
            stdout=subprocess.DEVNULL,
            stderr=open(workdir / "floor.stderr", "ab"),  # noqa: SIM115
            start_new_session=True,
        )
        wait_for_port(self.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen[Any] | None) -> None:
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class Worker:
    """A ``bench.worker`` process: send it a spec, then commands; each gets one answer."""

    def __init__(self, workdir: Path, name: str, spec: dict[str, Any], timeout: float = 120) -> None:
        self.name = name
        self._stderr = workdir / f"{name}.stderr"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.worker"],
            cwd=ROOT,
            env=environment(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(self._stderr, "ab"),  # noqa: SIM115
            start_new_session=True,
        )
        self._buffer = b""
        self._send(spec)
        self.ready = self._expect("ready", timeout)

    def _send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        self.process.stdin.flush()

    def _expect(self, event: str, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            line, newline, rest = self._buffer.partition(b"\n")
            if newline:
                self._buffer = rest
                message = json.loads(line)
                if message.get("event") == "error":
                    raise BenchError(f"worker {self.name}: {message['message']}")
                if message.get("event") == event:
                    return message
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"worker {self.name}: no '{event}' answer within {timeout:.0f} s")
            readable, _, _ = select.select([fd], [], [], left)
            if readable:
                data = os.read(fd, 1 << 20)
                if not data:
                    raise BenchError(f"worker {self.name} exited:\n{self._stderr.read_text(errors='replace')[-3000:]}")
                self._buffer += data

    def command(self, cmd: str, timeout: float = 120, **arguments: Any) -> dict[str, Any]:
        self._send({"cmd": cmd, **arguments})
        return self._expect(cmd, timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(BenchError):
                self.command("quit", timeout=15)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)
        stop_process(self.process)


def wrk(url: str, mode: str, lines_file: Path, connections: int, seconds: int, threads: int = 1) -> dict[str, Any]:
    """Run Debian's wrk with bench/wrk.lua; its summary with requests/s and latency in ms."""
    binary = shutil.which("wrk")
    if binary is None:
        raise BenchError("wrk is not installed (apt-get install wrk)")
    threads = max(1, min(threads, connections))
    command = [
        binary,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(WRK_SCRIPT),
        url,
        "--",
        mode,
        str(lines_file),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH "):
            result: dict[str, Any] = json.loads(line[6:])
            break
    else:
        raise BenchError(f"wrk printed no summary:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    result["errors"] = sum(result[k] for k in result if k.endswith("_errors")) + result["timeouts"]
    # Only answers with a 2xx or 3xx status count: a 429 or 503 is cheap and fast.
    result["rate"] = (result["requests"] - result["status_errors"]) / (result["duration_us"] / 1e6)
    for key in ("p50", "p99", "max", "mean"):
        result[f"{key}_ms"] = result[f"{key}_us"] / 1000
    return result


class Profiler:
    """py-spy sampling one process for the length of a measurement (``--profile``)."""

    def __init__(self, pid: int, output: Path, seconds: int) -> None:
        binary = shutil.which("py-spy")
        if binary is None:
            raise BenchError("--profile needs py-spy (pip install py-spy)")
        self.output = output
        self.process = subprocess.Popen(
            [binary, "record", "-p", str(pid), "-d", str(seconds), "-r", "200", "-f", "raw", "-o", str(output)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait(self) -> Path:
        self.process.wait(120)
        return self.output
