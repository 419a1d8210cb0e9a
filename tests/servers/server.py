"""What every XMPP server the harness runs has in common (Prosody, ejabberd).

A server has one user domain and one declared component, listens on free loopback ports,
owns a work directory (removed by ``cleanup`` when the harness made it) and serves a TLS
certificate from a CA made for the run, which the bridge trusts through ``ca_file``.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.servers.tls import CertificateFiles


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class XmppTestServer:
    """The identity, ports, secret and work directory of one test server."""

    name = ""

    def __init__(
        self,
        domain: str,
        component: str,
        privileges: bool,
        archive: str,
        c2s_port: int | None,
        component_port: int | None,
        workdir: Path | None,
        workdir_parent: Path | None = None,
    ) -> None:
        self.domain = domain
        self.component = component
        self.privileges = privileges
        self.archive = archive
        self.c2s_port = c2s_port or free_port()
        self.component_port = component_port or free_port()
        self.component_secret = secrets.token_hex(16)
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix=f"bridge-{self.name}-", dir=workdir_parent))
        self.process: subprocess.Popen[bytes] | None = None
        self.certificates: CertificateFiles | None = None

    @property
    def ca_file(self) -> Path:
        assert self.certificates is not None
        return self.certificates.ca_file

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
