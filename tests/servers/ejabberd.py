"""Run Debian's ejabberd 23.01 on free loopback ports for tests, as the second server.

Same interface as ``tests.servers.prosody.ProsodyServer``. The server is real: c2s with STARTTLS
on the certificate made for the run (ejabberd wants certificate and key in one PEM), SASL,
roster, carbons, MAM, stream management, offline storage and the MUC Light component from
``etc/ejabberd-component.yml``: the harness loads that admin snippet, renames its example
host, port and password to the run's, and merges it into its own configuration, so the
snippet in the README is the one the suite runs.

Start-up notes (Debian's package):

* ``ejabberdctl`` sources ``/etc/ejabberd/ejabberdctl.cfg``, which overrides ``--config``;
  the harness passes ``--ctl-config`` with its own file.
* Erlang distribution normally registers with an ``epmd`` daemon that outlives the node.
  The harness sets ``ERL_DIST_PORT`` instead (a free port per run): the node listens there
  itself, no ``epmd`` is started, and the node name (unique per run) cannot clash with the
  packaged ejabberd or another test run.
* MAM on the default Mnesia store slows down as the archive grows (measured here: 95
  acknowledged messages/s once it holds 1,500, against 580/s for SQLite on tmpfs and about
  140/s for SQLite on disk); ``archive="sql"`` (the default) keeps every table in SQLite
  (``erlang-p1-sqlite3``) in a directory under ``/dev/shm`` when there is one.
* ``ejabberdctl register`` starts an Erlang VM per call (0.8 s each); ``register`` uses
  ``mod_http_api`` on a loopback HTTP listener instead (11 ms each).
* XEP-0363 uploads: ``mod_http_upload`` (service ``upload.<domain>``, routed by the node
  itself) serves ``/upload`` on that same listener, its files in the work directory, up to
  ``upload_limit`` bytes.
"""

from __future__ import annotations

import copy
import json
import os
import pwd
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from bridge.demo.tls import make_certificates
from tests.servers.server import XmppTestServer, free_port, wait_for_port

EJABBERDCTL = "/usr/sbin/ejabberdctl"
SNIPPET = Path(__file__).resolve().parents[2] / "etc" / "ejabberd-component.yml"
# XEP-0357 push for the bridge's webhooks, merged too (harmless without registered webhooks).
PUSH_SNIPPET = SNIPPET.with_name("ejabberd-push.yml")
# The example names in the snippet that the harness replaces with the run's.
SNIPPET_COMPONENT = "muclight.localhost"
SNIPPET_PORT = 5347
SNIPPET_PASSWORD = "change me"
# SQLite's fsync per archived message dominates the suite; tmpfs makes it free.
RAM_DIR = Path("/dev/shm")


def load_snippet(component: str, port: int, password: str) -> dict[str, Any]:
    """``etc/ejabberd-component.yml`` with its example names replaced by the given ones."""
    snippet = yaml.safe_load(SNIPPET.read_text())
    (listener,) = snippet["listen"]
    assert listener["port"] == SNIPPET_PORT and list(listener["hosts"]) == [SNIPPET_COMPONENT]
    assert listener["hosts"][SNIPPET_COMPONENT]["password"] == SNIPPET_PASSWORD
    listener["port"] = port
    listener["hosts"] = {component: {"password": password}}
    snippet["acl"]["bridge_component"]["server"] = component
    return snippet


class EjabberdServer(XmppTestServer):
    """One ejabberd node with one user domain and one component."""

    name = "ejabberd"
    # The same as the Prosody harness's: small, so that a test can exceed it cheaply.
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
    ) -> None:
        if archive not in ("sql", "internal", "off"):
            raise ValueError(f"archive must be sql, internal or off, not {archive!r}")
        parent = RAM_DIR if RAM_DIR.is_dir() and os.access(RAM_DIR, os.W_OK) else None
        super().__init__(domain, component, privileges, archive, c2s_port, component_port, workdir, parent)
        self.http_port = free_port()
        self.dist_port = free_port()
        self.node = f"bridge-{secrets.token_hex(4)}@localhost"
        self.upload_host = f"upload.{domain}"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    @property
    def spool_dir(self) -> Path:
        return self.workdir / "spool"

    def config(self) -> dict[str, Any]:
        """The whole ejabberd.yml as data: the harness's own options plus the snippet."""
        snippet = load_snippet(self.component, self.component_port, self.component_secret)
        modules = copy.deepcopy(snippet["modules"])
        modules.update(yaml.safe_load(PUSH_SNIPPET.read_text())["modules"])
        if self.archive == "off":
            del modules["mod_mam"]
        elif self.archive == "internal":
            modules["mod_mam"]["db_type"] = "mnesia"
        if not self.privileges:
            del modules["mod_privilege"]
        modules["mod_http_api"] = {}
        upload_base = f"http://127.0.0.1:{self.http_port}/upload"
        modules["mod_http_upload"] = {
            "hosts": [self.upload_host],
            "put_url": upload_base,
            "get_url": upload_base,
            "docroot": str(self.workdir / "upload"),
            "max_size": self.upload_limit,
            "access": "bridge_upload",
        }
        config: dict[str, Any] = {
            "hosts": [self.domain],
            "loglevel": "info",
            "log_rotate_count": 0,
            "hide_sensitive_log_data": True,
            "certfiles": [str(self.workdir / "server-with-key.pem")],
            "acme": {"auto": False},
            "language": "en",
            "auth_method": "internal",
            "auth_password_format": "scram",  # Debian's default
            "listen": [
                {
                    "port": self.c2s_port,
                    "ip": "127.0.0.1",
                    "module": "ejabberd_c2s",
                    # ejabberd's default accept queue is 5: simultaneous logins would be dropped.
                    "backlog": 1024,
                    "max_stanza_size": 262144,
                    "starttls_required": True,
                },
                {
                    "port": self.http_port,
                    "ip": "127.0.0.1",
                    "module": "ejabberd_http",
                    "request_handlers": {"/api": "mod_http_api", "/upload": "mod_http_upload"},
                },
                *snippet["listen"],
            ],
            "acl": {**snippet["acl"], "loopback": {"ip": ["127.0.0.0/8"]}, "bridge_users": {"user_regexp": ""}},
            "access_rules": {**snippet["access_rules"], "bridge_upload": {"allow": "bridge_users"}},
            "api_permissions": {
                "harness registers users": {
                    "from": ["mod_http_api"],
                    "who": {"acl": "loopback"},
                    "what": ["register"],
                },
            },
            "modules": modules,
        }
        if self.archive == "sql":
            config["default_db"] = "sql"
            config["sql_type"] = "sqlite"
            config["sql_database"] = str(self.spool_dir / "ejabberd.db")
        return config

    def _ctl_config(self) -> str:
        return (
            "# Written by tests/servers/ejabberd.py; replaces /etc/ejabberd/ejabberdctl.cfg.\n"
            f"ERLANG_NODE={self.node}\n"
            f"ERL_DIST_PORT={self.dist_port}\n"
            'INET_DIST_INTERFACE="127.0.0.1"\n'
            'ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0"\n'
            f"EJABBERD_PID_PATH={self.workdir / 'ejabberd.pid'}\n"
            "EJABBERD_BYPASS_WARNINGS=true\n"
        )

    def _command(self, *args: str) -> list[str]:
        return [
            EJABBERDCTL,
            "--config",
            str(self.workdir / "ejabberd.yml"),
            "--ctl-config",
            str(self.workdir / "ejabberdctl.cfg"),
            "--spool",
            str(self.spool_dir),
            "--logs",
            str(self.log_dir),
            "--node",
            self.node,
            *args,
        ]

    def _as_ejabberd(self) -> dict[str, Any]:
        """Popen arguments that run the node as the ``ejabberd`` user, keeping our rlimits.

        ``ejabberdctl`` run as root would ``su`` to that user itself, which starts a new
        session (so stopping our process group would miss the node) and resets the
        open-files limit; running it as ``ejabberd`` directly avoids both.
        """
        if os.geteuid() != 0:
            raise RuntimeError("ejabberdctl runs only as root or as the ejabberd user")
        return {"user": "ejabberd", "group": "ejabberd", "extra_groups": []}

    def start(self) -> None:
        """Write the configuration and start ejabberd; return once it serves c2s and HTTP."""
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.certificates is None:
            self.certificates = make_certificates(self.workdir, [self.domain, self.component])
            combined = self.workdir / "server-with-key.pem"
            combined.write_bytes(self.certificates.cert_file.read_bytes() + self.certificates.key_file.read_bytes())
            combined.chmod(0o600)
        (self.workdir / "ejabberd.yml").write_text(yaml.safe_dump(self.config(), sort_keys=False))
        (self.workdir / "ejabberdctl.cfg").write_text(self._ctl_config())
        user = pwd.getpwnam("ejabberd")
        for path in [self.workdir, *self.workdir.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid)
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.workdir),  # the Erlang cookie goes here, not into /var/lib/ejabberd
            "LANG": "C.UTF-8",
        }
        self.process = subprocess.Popen(
            self._command("foreground"),
            stdin=subprocess.DEVNULL,
            stdout=open(self.workdir / "ejabberd.stdout", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=env,
            start_new_session=True,
            **self._as_ejabberd(),
        )
        try:
            wait_for_port(self.c2s_port, timeout=30)
            wait_for_port(self.component_port, timeout=10)
            wait_for_port(self.http_port, timeout=10)
        except RuntimeError:
            self.stop()
            raise RuntimeError("ejabberd did not start:\n" + self.tail_logs()) from None

    def tail_logs(self) -> str:
        parts = []
        for path in (self.workdir / "ejabberd.stdout", self.log_dir / "error.log", self.log_dir / "ejabberd.log"):
            if path.exists():
                parts.append(f"== {path.name}\n" + path.read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    def register(self, user: str, password: str) -> None:
        """Create an account through ``mod_http_api`` (loopback only).

        Blocking, like ``ProsodyServer.register``: about 11 ms on the loopback.
        """
        body = json.dumps({"user": user, "host": self.domain, "password": password}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}/api/register",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"ejabberd refused to register {user}: {e.code} {e.read()[:200]!r}") from None

    def stop(self) -> None:
        """Stop the node (SIGTERM makes Erlang shut down cleanly); no epmd is left behind."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.process is not None:
            # The shell may exit before the VM; wait for the VM too, by our process group.
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    os.killpg(self.process.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process = None
