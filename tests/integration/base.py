"""A trial TestCase with a bridge in front of the run's real XMPP server."""

from __future__ import annotations

import json
from base64 import b64encode
from typing import Any

from twisted.internet import defer, reactor
from twisted.trial import unittest
from twisted.web.http_headers import Headers

from tests.servers.fixture import RunningBridge, new_user, start_bridge, xmpp_client, xmpp_server
from tests.servers.xmpp_client import PlainClient


def basic(jid: str, password: str) -> str:
    return "Basic " + b64encode(f"{jid}:{password}".encode()).decode()


class Reply:
    def __init__(self, code: int, headers: Headers, raw: bytes) -> None:
        self.code = code
        self.headers = headers
        self.raw = raw

    @property
    def json(self) -> Any:
        return json.loads(self.raw) if self.raw else None

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    def __repr__(self) -> str:
        return f"<Reply {self.code} {self.raw[:200]!r}>"


class BridgeTestCase(unittest.TestCase):
    """Each test gets a fresh bridge; the XMPP server is shared by the run."""

    timeout = 60
    bridge_sections: dict[str, dict[str, Any]] = {}

    def setUp(self) -> defer.Deferred[None]:
        self.server = xmpp_server()
        return defer.Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        self.bridge: RunningBridge = await start_bridge(reactor, self.mktemp(), self.addCleanup, **self.bridge_sections)

    def new_user(self, prefix: str = "user") -> tuple[str, str]:
        return new_user(prefix)

    async def client(self, user: tuple[str, str], resource: str = "phone") -> PlainClient:
        return await xmpp_client(reactor, user[0], user[1], self.addCleanup, resource)

    async def call(
        self,
        method: str,
        path: str,
        user: tuple[str, str] | None = None,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """One HTTP request to the bridge; ``body`` is sent as JSON, ``raw`` as it is.

        Either is declared ``application/json`` unless ``headers`` says otherwise (the
        bridge answers 415 to any other body).
        """
        all_headers = dict(headers or {})
        if user is not None:
            all_headers["Authorization"] = basic(*user)
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data:
            all_headers.setdefault("Content-Type", "application/json")
        response = await self.bridge.http.request(
            method,
            self.bridge.url(path),
            data=data,
            headers={k: [v] for k, v in all_headers.items()},
        )
        return Reply(response.code, response.headers, await response.content())
