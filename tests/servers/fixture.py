"""Shared test fixtures: one XMPP server per test run, and a bridge per test.

The server is started on first use and stopped when the process exits, so a full test
run pays for one server start. Each test registers its own users (``new_user``) so tests
never see each other's rosters, archives or rooms.
"""

from __future__ import annotations

import atexit
import itertools
import os
import secrets
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from treq.client import HTTPClient
from twisted.internet import defer, task
from twisted.web.client import Agent, HTTPConnectionPool

from bridge.config import Config, HttpConfig, MucLightConfig, StorageConfig, XmppConfig
from bridge.tap import build
from tests.servers.ejabberd import EjabberdServer
from tests.servers.prosody import ProsodyServer
from tests.servers.xmpp_client import PlainClient, connect_client

XmppServer = ProsodyServer | EjabberdServer
# Which server the integration tests run against: BRIDGE_TEST_SERVER=prosody (default) or ejabberd.
SERVERS: dict[str, type[XmppServer]] = {"prosody": ProsodyServer, "ejabberd": EjabberdServer}

_server: XmppServer | None = None
_users = itertools.count(1)


def server_class() -> type[XmppServer]:
    """The server implementation named by ``BRIDGE_TEST_SERVER``."""
    name = os.environ.get("BRIDGE_TEST_SERVER", "prosody").strip().lower() or "prosody"
    if name not in SERVERS:
        raise RuntimeError(f"BRIDGE_TEST_SERVER={name!r}: expected one of {', '.join(SERVERS)}")
    return SERVERS[name]


def xmpp_server() -> XmppServer:
    """The run's XMPP server (see ``server_class``), started on first call."""
    global _server
    if _server is None:
        _server = server_class()()
        _server.start()
        atexit.register(_server.cleanup)
    if _server.process is None or _server.process.poll() is not None:
        _server.start()
    return _server


def new_user(prefix: str = "user", server: XmppServer | None = None) -> tuple[str, str]:
    """Register a fresh account on ``server`` (default: the run's); returns (bare JID, password)."""
    server = server or xmpp_server()
    name = f"{prefix}{next(_users)}-{os.getpid()}-{secrets.token_hex(3)}"
    password = "pw-" + secrets.token_urlsafe(12)
    server.register(name, password)
    return f"{name}@{server.domain}", password


def bridge_config(workdir: str, **sections: Any) -> Config:
    """A config for a bridge in front of the run's server, listening on a free port."""
    server = xmpp_server()
    config = Config(
        http=HttpConfig(endpoint="tcp:0:interface=127.0.0.1"),
        xmpp=XmppConfig(host="127.0.0.1", port=server.c2s_port, domains=[server.domain], ca_file=str(server.ca_file)),
        muclight=MucLightConfig(service=server.component, port=server.component_port, secret=server.component_secret),
        storage=StorageConfig(url=f"sqlite://{workdir}/bridge.sqlite3"),
    )
    for name, changes in sections.items():
        config = replace(config, **{name: replace(getattr(config, name), **changes)})
    return config


def daemon_config(
    server: XmppServer, port: int, storage_url: str, http: str = "", xmpp: str = "", sections: str = ""
) -> str:
    """The config file of a ``twistd bridge`` in front of ``server``, serving HTTP on ``port``
    with its store at ``storage_url``: ``bridge_config``'s twin for a bridge in a process of
    its own. ``http`` and ``xmpp`` are more lines of those sections, ``sections`` more sections."""
    return (
        f'[http]\nendpoint = "tcp:{port}:interface=127.0.0.1"\n{http}'
        f'[xmpp]\nport = {server.c2s_port}\ndomains = ["{server.domain}"]\nca_file = "{server.ca_file}"\n{xmpp}'
        f'[muclight]\nservice = "{server.component}"\nport = {server.component_port}\n'
        f'[storage]\nurl = "{storage_url}"\n{sections}'
    )


class RunningBridge:
    """An in-process bridge on the real reactor, and an HTTP client pointed at it."""

    def __init__(self, reactor: Any, config: Config) -> None:
        self.reactor = reactor
        self.config = config
        self.root, self.parts = build(config, reactor)
        self._pool = HTTPConnectionPool(reactor, persistent=False)
        self.http = HTTPClient(Agent(reactor, pool=self._pool))
        self.base = ""

    async def start(self) -> None:
        self.root.startService()
        port = await self.parts.http._waitingForPort
        self.base = f"http://127.0.0.1:{port.getHost().port}"

    async def stop(self) -> None:
        await self._pool.closeCachedConnections()
        await defer.maybeDeferred(self.root.stopService)

    def url(self, path: str) -> str:
        return self.base + path


async def start_bridge(reactor: Any, workdir: str, add_cleanup: Callable[..., None], **sections: Any) -> RunningBridge:
    """Start a bridge for one test; ``add_cleanup`` is the test's ``addCleanup``."""
    running = RunningBridge(reactor, bridge_config(workdir, **sections))
    await running.start()
    add_cleanup(lambda: defer.Deferred.fromCoroutine(running.stop()))
    return running


async def xmpp_client(
    reactor: Any,
    jid: str,
    password: str,
    add_cleanup: Callable[..., None],
    resource: str = "phone",
    server: XmppServer | None = None,
) -> PlainClient:
    """A plain XMPP client logged in as ``jid`` on ``server`` (default: the run's), closed after the test."""
    server = server or xmpp_server()
    client = await connect_client(reactor, "127.0.0.1", server.c2s_port, jid, password, str(server.ca_file), resource)
    add_cleanup(client.close)
    return client


async def until(reactor: Any, condition: Callable[[], bool], limit: float) -> float:
    """Seconds until ``condition()`` holds, polled every 0.05 s; fails past ``limit``."""
    started = reactor.seconds()
    while not condition():
        if reactor.seconds() - started > limit:
            raise AssertionError(f"not within {limit} s")
        await task.deferLater(reactor, 0.05, lambda: None)
    return reactor.seconds() - started
