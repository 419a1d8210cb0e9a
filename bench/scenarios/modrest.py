"""modrest: the bridge beside Prosody's own HTTP API (mod_rest) on the same server.

mod_rest (prosody-modules) sends a message with ``POST /rest/message/chat/JID``, Basic
auth with the user's localpart, a text/plain body. It answers once the stanza is routed
inside Prosody, with no round trip to a client connection, so it is the server's own
floor for "send a message over HTTP". Rounds alternate between the two (mod_rest, bridge,
bridge, mod_rest, ...), each at ``rest_connections`` wrk connections, to the same
receivers. Debian 12's prosody-modules (0.0~hg20230223) does not ship mod_rest: then the
row is skipped with a message naming what is missing (set ``BENCH_MOD_REST_DIR`` to a
directory holding a ``mod_rest.lua`` that this Prosody can load to run it: the copy in
Prosody 13's package, ``/opt/prosody13/usr/lib/prosody/modules/mod_rest`` here, loads on
0.12.3). Prosody checks the Basic password with ``authentication = "internal_plain"``, so
each of its requests costs a string comparison, not a password hash.
"""

from __future__ import annotations

import os
import time
from base64 import b64encode
from pathlib import Path
from typing import Any

from bench.measure import CpuMeter, basic, fmt, lines_file, now_us
from bench.model import Row, Run, Target
from bench.procs import PROSODY_WRAPPER, Bridge, prosody_pid, wrk
from tests.servers.prosody import ProsodyServer

MODULE_DIRS = ("/usr/lib/prosody/modules", "/usr/lib/prosody/modules/mod_rest", "/usr/share/prosody-modules/mod_rest")


def find_mod_rest() -> Path | None:
    """The directory holding a ``mod_rest.lua`` that Prosody would load, or None."""
    candidates = [os.environ["BENCH_MOD_REST_DIR"]] if os.environ.get("BENCH_MOD_REST_DIR") else []
    for directory in [*candidates, *MODULE_DIRS]:
        if (Path(directory) / "mod_rest.lua").exists():
            return Path(directory)
    return None


class RestProsody(ProsodyServer):
    """The bench's Prosody (archive off) with mod_rest on the user domain."""

    def __init__(self, module_dir: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.module_dir = module_dir

    def config(self) -> str:
        text = super().config()
        text = text.replace("plugin_paths = { ", f'plugin_paths = {{ "{self.module_dir}", ', 1)
        return text.replace(
            f'VirtualHost "{self.domain}"', f'VirtualHost "{self.domain}"\n  modules_enabled = {{ "rest" }}', 1
        )


def scenario_modrest(run: Run) -> None:
    """POST /rest/message/chat/JID (mod_rest) vs POST /api/messages, rounds alternating."""
    module_dir = find_mod_rest()
    if module_dir is None:
        run.skipped.append(
            "modrest: Prosody's mod_rest.lua is not installed (looked in "
            + ", ".join(MODULE_DIRS)
            + "; Debian 12's prosody-modules 0.0~hg20230223 does not ship it; BENCH_MOD_REST_DIR names another)"
        )
        run.targets.append(Target("send vs Prosody's mod_rest", ">= 8 x mod_rest", "not run: no mod_rest", None))
        return
    sizes = run.sizes
    workdir = run.workdir / "prosody-rest"
    workdir.mkdir(parents=True, exist_ok=True)
    wrapper = workdir / "prosody-wrapper.sh"
    wrapper.write_text(PROSODY_WRAPPER)
    wrapper.chmod(0o755)
    server = RestProsody(module_dir, archive="off", workdir=workdir, launcher=str(wrapper))
    server.start()
    bridge = Bridge(server, run.workdir, "bridge-rest")
    rx = None
    try:
        bridge.start()
        c = sizes.rest_connections
        receivers = run.accounts(server, "restrx", sizes.receivers)
        targets = [jid for jid, _ in receivers]
        rx = run.worker(server, "rx-rest", receivers, record=True, available=True)
        users = run.accounts(server, "resttx", c)
        bridge_lines = lines_file(
            run, "rest-bridge", [(basic(u), targets[i % len(targets)]) for i, u in enumerate(users)]
        )
        rest_lines = lines_file(
            run,
            "rest-modrest",
            [
                ("Basic " + b64encode(f"{jid.split('@')[0]}:{pw}".encode()).decode(), targets[i % len(targets)])
                for i, (jid, pw) in enumerate(users)
            ],
        )
        sides = {
            "mod_rest": (f"http://127.0.0.1:{server.http_port}", "rest", rest_lines),
            "bridge": (bridge.url, "send", bridge_lines),
        }
        for url, mode, lines in sides.values():
            wrk(url, mode, lines, c, sizes.warmup)
        best: dict[str, dict[str, Any]] = {}
        order = list(sides)
        for number in range(max(2, sizes.rounds)):
            for name in order if number % 2 == 0 else reversed(order):
                url, mode, lines = sides[name]
                meter = CpuMeter({"bridge": bridge.pid, "prosody": prosody_pid(server)})
                started = now_us()
                result = wrk(url, mode, lines, c, sizes.seconds)
                ended = now_us()
                result["cpu"] = meter.stop()
                time.sleep(0.5)
                delivered = rx.command("report", since=started, until=ended)
                result["delivered"] = delivered
                if name not in best or result["rate"] > best[name]["rate"]:
                    best[name] = result
    finally:
        if rx is not None:
            rx.close()
        bridge.stop()
        server.stop()
    for name, label in (
        ("mod_rest", "Prosody mod_rest POST /rest/message"),
        ("bridge", "bridge POST, beside mod_rest"),
    ):
        result = best[name]
        run.add(
            Row(
                "modrest",
                label,
                f"wrk -t1 -c{sizes.rest_connections} {sizes.seconds}s best of {max(2, sizes.rounds)}",
                result["rate"],
                result["delivered"]["p50_ms"],
                result["delivered"]["p99_ms"],
                f"delivered {result['delivered']['count']}/{result['requests']}; HTTP p50 {result['p50_ms']:.2f} ms; "
                f"errors {result['errors']}; {result['cpu']}",
            )
        )
    ratio = best["bridge"]["rate"] / best["mod_rest"]["rate"] if best["mod_rest"]["rate"] else 0.0
    run.targets.append(
        Target(
            "send vs Prosody's mod_rest",
            ">= 8 x mod_rest",
            f"{ratio:.1f} x ({fmt(best['bridge']['rate'], 0)} vs {fmt(best['mod_rest']['rate'], 0)}/s)",
            ratio >= 8,
        )
    )
