"""A throw-away PostgreSQL server for the store's tests: Debian's binaries, a cluster in a
temporary directory, a Unix socket there and a free loopback port.

``BRIDGE_TEST_POSTGRES_URL`` names an existing server instead. Without either, the tests
that need one are skipped. PostgreSQL refuses to run as root, so as root the cluster
belongs to the ``postgres`` user.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.servers.server import free_port, wait_for_port

_url: str | None = None
_tried = False
_restart_command: list[str] | None = None


def _binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def postgres_url() -> str | None:
    """A PostgreSQL URL the tests may use (a fresh database), or None when there is none."""
    global _url, _tried, _restart_command
    if os.environ.get("BRIDGE_TEST_POSTGRES_URL"):
        return os.environ["BRIDGE_TEST_POSTGRES_URL"]
    if _tried:
        return _url
    _tried = True
    binaries = _binaries()
    if binaries is None:
        return None
    workdir = Path(tempfile.mkdtemp(prefix="bridge-postgres-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            entry = pwd.getpwnam("postgres")
        except KeyError:
            return None
        os.chown(workdir, entry.pw_uid, entry.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = workdir / "data", free_port()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.run(
        [*as_user, str(binaries / "initdb"), "-A", "trust", "-U", "bridge", "-D", str(data)], check=True, **quiet
    )
    options = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(workdir / "log"), "-w", "start"],
        check=True,
        **quiet,
    )

    _restart_command = [
        *as_user,
        str(binaries / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(workdir / "log"),
        "-m",
        "immediate",
        "-w",
        "restart",
    ]

    def stop() -> None:
        subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], **quiet)
        shutil.rmtree(workdir, ignore_errors=True)

    atexit.register(stop)
    wait_for_port(port)
    _url = f"postgresql://bridge@127.0.0.1:{port}/postgres"
    return _url


def fresh_database(url: str, name: str) -> str:
    """Create database ``name`` on the server at ``url``; return its URL."""
    import psycopg2

    connection = psycopg2.connect(url)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()
    return url.rsplit("/", 1)[0] + "/" + name


def restart_postgres() -> bool:
    """Restart (immediate mode: every session ends at once) the server ``postgres_url``
    started; False when it did not start one (``BRIDGE_TEST_POSTGRES_URL``, or none)."""
    if _restart_command is None:
        return False
    subprocess.run(_restart_command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return True


def fresh_test_database(prefix: str) -> str:
    """A fresh database for one test (``prefix`` plus random hex); skips the test when there
    is no PostgreSQL server or no psycopg2."""
    from twisted.trial.unittest import SkipTest

    server = postgres_url()
    if server is None:
        raise SkipTest("no PostgreSQL server (install Debian's postgresql, or set BRIDGE_TEST_POSTGRES_URL)")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        raise SkipTest("psycopg2 is not installed") from None
    return fresh_database(server, prefix + secrets.token_hex(4))
