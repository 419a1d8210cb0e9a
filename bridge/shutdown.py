"""Graceful shutdown and readiness: what a load balancer and systemd see.

On SIGTERM twistd stops the service tree. ``StagedService`` stops its children one after
the other, the last added first, so the order in which ``bridge.tap.build`` adds them is
the shutdown order read backwards:

1. ``DrainingHttpService`` stops accepting connections, closes idle kept-alive ones, lets
   the requests in flight finish (each answered with ``Connection: close``) for up to
   ``http.shutdown_timeout`` seconds, and leaves event streams open;
2. the live-events hub ends every event stream with a final ``close`` event;
3. the session pool closes every XMPP session with a stream footer;
4. the MUC Light component and the store, when they are there, close last.

``/readyz`` turns 503 from the moment the drain starts (``bridge.http.readiness``).
"""

from __future__ import annotations

import time
from typing import cast

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime, IStreamServerEndpoint, ITCPTransport
from twisted.logger import Logger

from bridge.http.channel import GuardedChannel
from bridge.http.request import BridgeRequest
from bridge.http.site import BridgeSite

log = Logger()

# Seconds between looks at the connections while draining.
DRAIN_POLL = 0.05
# A part that takes this many seconds to stop is named in the log.
SLOW_STOP = 1.0


class StagedService(MultiService):
    """A MultiService that stops its children one at a time, last added first."""

    def stopService(self) -> defer.Deferred[None]:
        Service.stopService(self)
        return defer.Deferred.fromCoroutine(self._stop_children())

    async def _stop_children(self) -> None:
        for child in reversed(list(self)):
            started = time.monotonic()
            try:
                await defer.maybeDeferred(child.stopService)
            except Exception:
                log.failure("Stopping {service} failed", service=type(child).__name__)
            took = time.monotonic() - started
            if took >= SLOW_STOP:
                log.info("Stopping {service} took {seconds:.1f} s", service=type(child).__name__, seconds=took)


class DrainingHttpService(StreamServerEndpointService):
    """The HTTP listener; on stop, drains the site's connections before the rest stops."""

    def __init__(self, endpoint: IStreamServerEndpoint, site: BridgeSite, clock: IReactorTime, deadline: float) -> None:
        super().__init__(endpoint, site)
        self._site = site
        self._clock = clock
        self._deadline = deadline

    def stopService(self) -> defer.Deferred[None]:
        stopped = super().stopService()
        stopped.addCallback(lambda _: defer.Deferred.fromCoroutine(self._drain()))
        return stopped

    def _busy(self) -> list[GuardedChannel]:
        """Channels with a request in flight other than an event stream; closes idle ones."""
        busy = []
        for channel in list(self._site.channels):
            requests = list(channel.requests)
            if not requests and channel.idle:
                if channel.transport is not None:
                    channel.transport.loseConnection()
                continue
            if requests and all(_streaming(request) for request in requests):
                continue  # closed by the events hub with a final event
            channel.persistent = False
            for request in requests:
                if not request.startedWriting:
                    request.setHeader(b"Connection", b"close")
            busy.append(channel)
        return busy

    async def _drain(self) -> None:
        self._site.draining = True
        deadline = self._clock.seconds() + self._deadline
        busy = self._busy()
        if busy:
            log.info(
                "Shutting down: waiting up to {timeout} s for {count} requests", timeout=self._deadline, count=len(busy)
            )
        while busy and self._clock.seconds() < deadline:
            await task.deferLater(self._clock, DRAIN_POLL)
            busy = self._busy()
        if busy:
            log.warn(
                "Shutting down: {count} requests did not finish within {timeout} s; they are cut off",
                count=len(busy),
                timeout=self._deadline,
            )
            for channel in busy:
                if channel.transport is not None:
                    cast(ITCPTransport, channel.transport).abortConnection()


def _streaming(request: object) -> bool:
    """An event stream that has begun its answer (which the events hub ends itself)."""
    return isinstance(request, BridgeRequest) and request.is_event_stream and bool(request.startedWriting)
