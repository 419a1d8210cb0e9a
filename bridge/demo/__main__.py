"""Run the bridge against a local Prosody it starts: ``python3 -m bridge.demo``.

Starts Debian's Prosody on free loopback ports with the users alice@localhost and
bob@localhost (password ``secret``), writes a bridge config next to it (SQLite store,
REST on 127.0.0.1:8089) and runs ``twistd -n bridge`` in the foreground. Ctrl-C or SIGTERM
stops both and removes their files.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from bridge.demo.prosody import Prosody

USERS = ("alice", "bob")
PASSWORD = "secret"
# Seconds the bridge gets to shut down (http.shutdown_timeout is 10) before SIGKILL.
SHUTDOWN_WAIT = 15.0


def demo_config(server: Prosody, workdir: Path, http_port: int) -> str:
    return f"""# Written by bridge.demo for a throw-away Prosody; see etc/bridge.toml for every key.
[http]
endpoint = "tcp:{http_port}:interface=127.0.0.1"

[xmpp]
host = "127.0.0.1"
port = {server.c2s_port}
domains = ["{server.domain}"]
tls = "required"
ca_file = "{server.ca_file}"

[muclight]
service = "{server.component}"
host = "127.0.0.1"
port = {server.component_port}
secret = "{server.component_secret}"

[storage]
url = "sqlite://{workdir}/bridge.sqlite3"
"""


def stop(process: subprocess.Popen[bytes]) -> None:
    """End the bridge as systemd would: SIGTERM (a graceful shutdown), SIGKILL if it hangs."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(SHUTDOWN_WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8089, help="HTTP port of the bridge (default 8089)")
    args = parser.parse_args()
    # SIGTERM (kill, timeout) must run the finally clauses below too, or the bridge and
    # Prosody outlive the demo.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    workdir = Path(tempfile.mkdtemp(prefix="bridge-demo-"))
    server = Prosody()
    server.start()
    try:
        for user in USERS:
            server.register(user, PASSWORD)
        config = workdir / "bridge.toml"
        config.write_text(demo_config(server, workdir, args.port))
        print(f"Prosody on 127.0.0.1:{server.c2s_port}; users alice@localhost and bob@localhost, password 'secret'")
        print(f"Bridge config: {config}; REST API on http://127.0.0.1:{args.port}/api")
        sys.stdout.flush()
        twistd = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
        bridge = subprocess.Popen([*twistd, "-n", "--pidfile=", "bridge", "-c", str(config)], env=dict(os.environ))
        try:
            return bridge.wait()
        except KeyboardInterrupt:
            return 0
        finally:
            stop(bridge)
    finally:
        server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
