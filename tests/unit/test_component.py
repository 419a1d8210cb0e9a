"""The component connection's reconnect backoff (bridge.muclight.component)."""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial import unittest

from bridge.muclight.component import MAX_DELAY, ComponentConnection, _Factory


class BackoffTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.connection = ComponentConnection(self.clock, "127.0.0.1", 5347, "muclight.localhost", "s")
        self.connection.startService()
        self.factory = self.connection.factory

    def refused_handshakes(self, count: int) -> list[float]:
        """Delays before each retry when every TCP connect succeeds and every handshake fails."""
        delays = []
        for _ in range(count):
            self.factory.buildProtocol(None)
            connector = self.clock.tcpClients[-1]  # (host, port, factory, timeout, bindAddress)
            self.factory.clientConnectionLost(_Connector(connector), Failure(ConnectionError("refused")))
            call = self.clock.getDelayedCalls()[-1]
            delays.append(call.getTime() - self.clock.seconds())
            call.cancel()
        return delays

    def test_refused_handshakes_back_off_to_the_cap(self) -> None:
        """Each connection that ends before a handshake waits twice as long, up to MAX_DELAY."""
        self.assertGreater(self.factory.jitter, 0)  # retries are spread; measured here without it
        self.factory.jitter = 0
        self.assertEqual(self.refused_handshakes(6), [1.0, 2.0, 4.0, MAX_DELAY, MAX_DELAY, MAX_DELAY])

    def test_a_successful_handshake_resets_the_backoff(self) -> None:
        """After a handshake the next loss is retried quickly again."""
        self.factory.jitter = 0
        self.refused_handshakes(6)
        self.factory.resetDelay()  # what ComponentConnection._authd does
        self.assertEqual(self.refused_handshakes(1), [_Factory.initialDelay])


class _Connector:
    """What ReconnectingClientFactory.retry needs of a connector: connect() again."""

    def __init__(self, recorded: tuple[object, ...]) -> None:
        self.recorded = recorded

    def connect(self) -> None:
        pass
