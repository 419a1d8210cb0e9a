"""Run Debian's Prosody on free loopback ports for tests, benchmarks and the demo.

The server is real: c2s with STARTTLS on a certificate made for the run, SASL, roster,
carbons, MAM in SQLite (Prosody's default file store archives about 60 messages/s), stream
management, and the MUC Light component declared with XEP-0356 presence privileges.

Prosody refuses to run as root, so as root it runs as the ``prosody`` user on a data
directory that user owns.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
from pathlib import Path

from tests.servers.server import XmppTestServer, wait_for_port
from tests.servers.tls import make_certificates

# BRIDGE_PROSODY: another Prosody's launcher, e.g. a backports package unpacked with
# ``dpkg-deb -x`` whose CFG_SOURCEDIR points into it; its own modules directory is used.
PROSODY = os.environ.get("BRIDGE_PROSODY", "prosody")


def _plugin_path() -> str:
    launcher = Path(PROSODY)
    if launcher.is_absolute():
        return str(launcher.parent.parent / "lib" / "prosody" / "modules")
    return "/usr/lib/prosody/modules"


def _store_name(value: str) -> str:
    """A name as Prosody's file store encodes it: every non-alphanumeric byte as %xx."""
    return "".join(chr(b) if chr(b).isalnum() and b < 128 else f"%{b:02x}" for b in value.encode())


def _lua_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ProsodyServer(XmppTestServer):
    """One Prosody process with one user domain and one declared component."""

    name = "prosody"

    def __init__(
        self,
        domain: str = "localhost",
        component: str = "muclight.localhost",
        privileges: bool = True,
        archive: str = "sql",
        c2s_port: int | None = None,
        component_port: int | None = None,
        workdir: Path | None = None,
    ) -> None:
        super().__init__(domain, component, privileges, archive, c2s_port, component_port, workdir)

    @property
    def log_file(self) -> Path:
        return self.workdir / "prosody.log"

    def _config(self) -> str:
        certs = self.certificates
        assert certs is not None
        archive_store = "sql" if self.archive == "sql" else "internal"
        mam = '"mam",' if self.archive != "off" else ""
        privilege_global = '"privilege",' if self.privileges else ""
        privileged = (
            f'privileged_entities = {{ [{_lua_string(self.component)}] = {{ presence = "managed_entity" }} }}'
            if self.privileges
            else ""
        )
        component_modules = 'modules_enabled = { "privilege" }' if self.privileges else ""
        work = str(self.workdir)
        return f"""
certificates = {_lua_string(work)}
pidfile = {_lua_string(work + "/prosody.pid")}
data_path = {_lua_string(work + "/data")}
plugin_paths = {{ {_lua_string(_plugin_path())} }}
log = {{ {{ levels = {{ min = "info" }}, to = "file", filename = {_lua_string(str(self.log_file))} }} }}
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
storage = {{ archive = {_lua_string(archive_store)} }}
sql = {{ driver = "SQLite3", database = "prosody.sqlite" }}
archive_expires_after = "never"
default_archive_policy = true
max_archive_query_results = 500
limits = {{ c2s = {{ rate = "100mb/s" }}, s2sin = {{ rate = "100mb/s" }} }}
ssl = {{ certificate = {_lua_string(str(certs.cert_file))}, key = {_lua_string(str(certs.key_file))} }}

VirtualHost {_lua_string(self.domain)}
  {privileged}

Component {_lua_string(self.component)}
  component_secret = {_lua_string(self.component_secret)}
  {component_modules}
"""

    def _as_prosody_user(self) -> list[str]:
        return ["runuser", "-u", "prosody", "--"] if os.geteuid() == 0 else []

    def start(self) -> None:
        """Write the configuration and start Prosody; return once c2s and components listen."""
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        if self.certificates is None:
            self.certificates = make_certificates(self.workdir, [self.domain, self.component])
        config = self.workdir / "prosody.cfg.lua"
        config.write_text(self._config())
        if os.geteuid() == 0:
            user = pwd.getpwnam("prosody")
            for path in [self.workdir, *self.workdir.rglob("*")]:
                os.chown(path, user.pw_uid, user.pw_gid)
        self.process = subprocess.Popen(
            [*self._as_prosody_user(), PROSODY, "-F", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "prosody.stderr", "ab"),  # noqa: SIM115
            start_new_session=True,
        )
        try:
            wait_for_port(self.c2s_port)
            wait_for_port(self.component_port)
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
        accounts = self.workdir / "data" / _store_name(self.domain) / "accounts"
        accounts.mkdir(parents=True, exist_ok=True)
        path = accounts / f"{_store_name(user)}.dat"
        path.write_text(f'return {{\n\t["password"] = {_lua_string(password)};\n}};\n')
        if os.geteuid() == 0:
            user_entry = pwd.getpwnam("prosody")
            for each in (accounts.parent, accounts, path):
                os.chown(each, user_entry.pw_uid, user_entry.pw_gid)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None
