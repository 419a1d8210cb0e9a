"""A throw-away Prosody on free loopback ports, for the demo (and, subclassed, the tests).

The server is real: c2s with STARTTLS on a certificate made for the run (``bridge.demo.tls``),
SASL, roster, carbons, MAM in SQLite (Prosody's default file store archives about 60
messages/s), stream management, the MUC Light service declared as an XEP-0114
component with XEP-0356 presence privileges (see DESIGN.md, "Room delivery"), and (unless
``upload=False``) XEP-0363 file upload: ``mod_http_file_share`` as the component
``upload.<domain>``, its HTTP on a free loopback port, its URLs on ``127.0.0.1`` (no DNS
needed). Accounts are written straight into Prosody's internal store.

Prosody refuses to run as root, so as root it runs as the ``prosody`` user on a work
directory that user owns.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from bridge.demo.tls import CertificateFiles, make_certificates


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class LocalServer:
    """The identity, ports, secret and work directory of one local XMPP server.

    One user domain and one declared component, free loopback ports, a work directory
    (removed by ``cleanup`` when it was made here) and a TLS certificate from a CA made for
    the run, which the bridge trusts through ``xmpp.ca_file``.
    """

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


def plugin_path(launcher: str) -> str:
    """Prosody's modules directory: next to an unpacked launcher, else Debian's."""
    path = Path(launcher)
    if path.is_absolute():
        return str(path.parent.parent / "lib" / "prosody" / "modules")
    return "/usr/lib/prosody/modules"


def store_name(value: str) -> str:
    """A name as Prosody's file store encodes it: every non-alphanumeric byte as %xx."""
    return "".join(chr(b) if chr(b).isalnum() and b < 128 else f"%{b:02x}" for b in value.encode())


def lua_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _as_prosody_user() -> list[str]:
    return ["runuser", "-u", "prosody", "--"] if os.geteuid() == 0 else []


def _give_to_prosody(*paths: Path) -> None:
    if os.geteuid() == 0:
        user = pwd.getpwnam("prosody")
        for path in paths:
            os.chown(path, user.pw_uid, user.pw_gid)


class Prosody(LocalServer):
    """One Prosody process with one user domain and one declared component.

    ``archive``: "sql" (MAM in SQLite, needs lua-dbi-sqlite3), "internal" (Prosody's file
    store) or "off" (no MAM). ``launcher``: the ``prosody`` command to run. ``upload``:
    serve XEP-0363 uploads (``upload_host``, files up to ``upload_limit`` bytes) over HTTP
    on ``http_port``.
    """

    name = "prosody"
    # Small, so that a test can exceed it cheaply.
    upload_limit = 1024 * 1024

    def __init__(
        self,
        domain: str = "localhost",
        component: str = "muclight.localhost",
        privileges: bool = True,
        archive: str = "sql",
        c2s_port: int | None = None,
        component_port: int | None = None,
        workdir: Path | None = None,
        launcher: str = "prosody",
        upload: bool = True,
    ) -> None:
        super().__init__(domain, component, privileges, archive, c2s_port, component_port, workdir)
        self.launcher = launcher
        self.upload = upload
        self.upload_host = f"upload.{domain}"
        self.http_port = free_port() if upload else None

    def upload_config(self) -> tuple[str, str]:
        """(global options, component section) of XEP-0363 uploads; empty without ``upload``."""
        if not self.upload:
            return "", ""
        base = f"http://127.0.0.1:{self.http_port}/"
        # https_ports: none, or Prosody would listen on 5281, shared by every Prosody here.
        global_options = f"""http_ports = {{ {self.http_port} }}
http_interfaces = {{ "127.0.0.1" }}
https_ports = {{ }}
"""
        # http_host: requests to 127.0.0.1 reach this component's HTTP handlers;
        # http_external_url: the slots' URLs point there.
        component = f"""
Component {lua_string(self.upload_host)} "http_file_share"
  http_host = "127.0.0.1"
  http_external_url = {lua_string(base)}
  http_file_share_size_limit = {self.upload_limit}
  http_file_share_daily_quota = {self.upload_limit * 100}
"""
        return global_options, component

    @property
    def log_file(self) -> Path:
        return self.workdir / "prosody.log"

    def config(self) -> str:
        """The whole prosody.cfg.lua of this server."""
        certs = self.certificates
        assert certs is not None
        archive_store = "sql" if self.archive == "sql" else "internal"
        mam = '"mam",' if self.archive != "off" else ""
        privilege_global = '"privilege",' if self.privileges else ""
        privileged = (
            f'privileged_entities = {{ [{lua_string(self.component)}] = {{ presence = "managed_entity" }} }}'
            if self.privileges
            else ""
        )
        component_modules = 'modules_enabled = { "privilege" }' if self.privileges else ""
        upload_global, upload_component = self.upload_config()
        work = str(self.workdir)
        return f"""
certificates = {lua_string(work)}
pidfile = {lua_string(work + "/prosody.pid")}
data_path = {lua_string(work + "/data")}
plugin_paths = {{ {lua_string(plugin_path(self.launcher))} }}
log = {{ {{ levels = {{ min = "info" }}, to = "file", filename = {lua_string(str(self.log_file))} }} }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {self.c2s_port} }}
component_ports = {{ {self.component_port} }}
component_interface = "127.0.0.1"
modules_disabled = {{ "s2s" }}
modules_enabled = {{
  "roster", "saslauth", "tls", "disco", "carbons", "ping", "smacks",
  "private", "vcard", "blocklist", "register", "admin_shell",
  {mam} {privilege_global}
}}
c2s_require_encryption = true
allow_registration = false
authentication = "internal_plain"
default_storage = "internal"
storage = {{ archive = {lua_string(archive_store)} }}
sql = {{ driver = "SQLite3", database = "prosody.sqlite" }}
archive_expires_after = "never"
default_archive_policy = true
max_archive_query_results = 500
limits = {{ c2s = {{ rate = "100mb/s" }}, s2sin = {{ rate = "100mb/s" }} }}
ssl = {{ certificate = {lua_string(str(certs.cert_file))}, key = {lua_string(str(certs.key_file))} }}
{upload_global}
VirtualHost {lua_string(self.domain)}
  {privileged}

Component {lua_string(self.component)}
  component_secret = {lua_string(self.component_secret)}
  {component_modules}
{upload_component}"""

    def start(self) -> None:
        """Write the configuration and start Prosody; return once c2s and components listen."""
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        if self.certificates is None:
            self.certificates = make_certificates(self.workdir, [self.domain, self.component])
        config = self.workdir / "prosody.cfg.lua"
        config.write_text(self.config())
        _give_to_prosody(self.workdir, *self.workdir.rglob("*"))
        self.process = subprocess.Popen(
            [*_as_prosody_user(), self.launcher, "-F", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "prosody.stderr", "ab"),  # noqa: SIM115
            start_new_session=True,
        )
        try:
            wait_for_port(self.c2s_port)
            wait_for_port(self.component_port)
            if self.http_port is not None:
                wait_for_port(self.http_port)
        except RuntimeError:
            self.stop()
            raise RuntimeError("Prosody did not start:\n" + self.tail_logs()) from None

    def tail_logs(self) -> str:
        parts = []
        for path in (self.workdir / "prosody.stderr", self.log_file):
            if path.exists():
                parts.append(path.read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    def register(self, user: str, password: str) -> None:
        """Create an account by writing Prosody's internal_plain account file.

        Prosody reads account files on every authentication, so a running server sees
        the account at once; this is far faster than starting ``prosodyctl`` per user.
        """
        accounts = self.workdir / "data" / store_name(self.domain) / "accounts"
        accounts.mkdir(parents=True, exist_ok=True)
        path = accounts / f"{store_name(user)}.dat"
        path.write_text(f'return {{\n\t["password"] = {lua_string(password)};\n}};\n')
        _give_to_prosody(accounts.parent, accounts, path)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None
