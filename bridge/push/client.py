"""The webhook POST: one request per notification, with every guard a server-side fetch needs.

* The host is resolved here (``getaddrinfo`` on the reactor's thread pool) and every
  address it resolves to is checked (``bridge.push.urls.address_allowed``) before the
  connection is made to that address, so DNS cannot point a delivery into the bridge's own
  network between the check and the connect; TLS still verifies the certificate for the name.
* Timeouts: ``push.connect_timeout`` for the TCP connect, ``push.response_timeout`` for
  the whole exchange from then on. Redirects are not followed (a plain ``Agent``): a 3xx
  is a failed delivery. The answer's body is not read.
* At most ``push.per_host`` deliveries to one host at a time; the rest wait their turn.
"""

from __future__ import annotations

import enum
import socket
from io import BytesIO
from typing import Any

from twisted.internet import defer, threads
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import optionsForClientTLS
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, _HTTP11ClientFactory
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from bridge import __version__
from bridge.config import PushConfig
from bridge.push.signing import HEADER, signature
from bridge.push.urls import WebhookUrl, address_allowed, ip_literal, parse_url


class Outcome(enum.Enum):
    DELIVERED = "delivered"  # a 2xx answer
    GONE = "gone"  # 410: the webhook is no more
    FAILED = "failed"  # anything else: retried
    REFUSED = "refused"  # the URL or address is not (or no longer) allowed: dropped


class AddressRefused(Exception):
    """The webhook's host resolved to an address the bridge does not deliver to."""


def _resolve(host: str, port: int) -> list[str]:
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


@implementer(IStreamClientEndpoint)
class CheckedEndpoint:
    """Connects to ``url``'s host only at an address ``address_allowed`` accepts."""

    def __init__(self, reactor: Any, url: WebhookUrl, config: PushConfig) -> None:
        self._reactor, self._url, self._config = reactor, url, config

    async def _addresses(self) -> list[str]:
        if ip_literal(self._url.host) is not None:
            return [self._url.host]
        pool = self._reactor.getThreadPool()
        return await threads.deferToThreadPool(self._reactor, pool, _resolve, self._url.host, self._url.port)

    async def _connect(self, factory: Any) -> Any:
        addresses = await self._addresses()
        allowed = self._config.allowed_hosts
        if not addresses or not all(address_allowed(self._url.host, a, allowed) for a in addresses):
            raise AddressRefused(self._url.host)
        address = addresses[0]
        kind = TCP6ClientEndpoint if ":" in address else TCP4ClientEndpoint
        endpoint: Any = kind(self._reactor, address, self._url.port, timeout=self._config.connect_timeout)
        if self._url.scheme == "https":
            endpoint = wrapClientTLS(optionsForClientTLS(self._url.host), endpoint)
        return await endpoint.connect(factory)

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        return defer.Deferred.fromCoroutine(self._connect(factory))


@implementer(IAgentEndpointFactory)
class _Endpoints:
    def __init__(self, reactor: Any, config: PushConfig) -> None:
        self._reactor, self._config = reactor, config

    def endpointForURI(self, uri: Any) -> CheckedEndpoint:
        return CheckedEndpoint(self._reactor, parse_url(uri.toBytes().decode("ascii")), self._config)


class _Discard(Protocol):
    """Reads nothing of an answer's body: the status is all a delivery needs."""

    def connectionMade(self) -> None:
        self.transport.stopProducing()  # type: ignore[union-attr]


class _QuietFactory(_HTTP11ClientFactory):
    noisy = False  # no "Starting factory" line per delivery


class _QuietPool(HTTPConnectionPool):
    _factory = _QuietFactory


class WebhookClient:
    """POSTs signed notifications; ``post`` never raises, it answers an ``Outcome``."""

    def __init__(self, reactor: Any, config: PushConfig) -> None:
        self._reactor = reactor
        self._config = config
        self._pool = _QuietPool(reactor, persistent=False)
        self._agent = Agent.usingEndpointFactory(reactor, _Endpoints(reactor, config), pool=self._pool)
        self._hosts: dict[str, defer.DeferredSemaphore] = {}

    async def post(self, url: str, body: bytes, secret: str) -> tuple[Outcome, str]:
        """Deliver ``body`` to ``url``: the outcome, and a short reason for the log."""
        try:
            parsed = parse_url(url)
        except ValueError:
            return Outcome.REFUSED, "not a valid URL"
        if parsed.host not in self._config.allowed_hosts:
            return Outcome.REFUSED, "host no longer in push.allowed_hosts"
        semaphore = self._hosts.setdefault(parsed.host, defer.DeferredSemaphore(self._config.per_host))
        await semaphore.acquire()
        try:
            return await self._post(url, body, secret)
        finally:
            semaphore.release()
            if semaphore.tokens == semaphore.limit and not semaphore.waiting:
                self._hosts.pop(parsed.host, None)

    async def _post(self, url: str, body: bytes, secret: str) -> tuple[Outcome, str]:
        headers = Headers(
            {
                "Content-Type": ["application/json"],
                "User-Agent": [f"xmpp-rest-bridge/{__version__}"],
                HEADER: [signature(body, secret)],
            }
        )
        request = self._agent.request(b"POST", url.encode("ascii"), headers, FileBodyProducer(BytesIO(body)))
        timeout = self._config.connect_timeout + self._config.response_timeout
        timed_out: list[bool] = []

        def on_timeout(result: object, _: float) -> object:
            # Cancelling the request surfaces as ResponseNeverReceived; remember why.
            timed_out.append(True)
            return result

        request.addTimeout(timeout, self._reactor, onTimeoutCancel=on_timeout)
        try:
            response = await request
        except AddressRefused:
            return Outcome.REFUSED, "address not allowed"
        except Exception as e:
            return Outcome.FAILED, "timed out" if timed_out else type(e).__name__
        response.deliverBody(_Discard())
        if 200 <= response.code < 300:
            return Outcome.DELIVERED, str(response.code)
        if response.code == 410:
            return Outcome.GONE, "410"
        return Outcome.FAILED, str(response.code)

    async def close(self) -> None:
        await self._pool.closeCachedConnections()
