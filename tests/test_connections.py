"""Tests for L{portshare.connections}: connection caps and deadlines, through the real site."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from portshare.connections import TrackingFactory
from portshare.limits import Limits
from portshare.sendnow import ImmediateWriter
from portshare.testing import MemoryConnection, startedService
from tests.test_sendnow import FakeServerTransport


class ConnectionLimitTests(SynchronousTestCase):
    def connect(self, service: Any, host: str) -> Any:
        transport = StringTransport(peerAddress=IPv4Address("TCP", host, 5000))
        protocol = service.tracker.buildProtocol(transport.getPeer())
        if protocol is not None:
            protocol.makeConnection(transport)
        return protocol

    def test_perAddressAndTotal(self) -> None:
        """Connections beyond the per-address or total limit are refused and counted."""
        service = startedService(self, limits=Limits(maxConnections=3, maxConnectionsPerAddress=2))
        a1, a2 = self.connect(service, "10.0.0.1"), self.connect(service, "10.0.0.1")
        self.assertIsNone(self.connect(service, "10.0.0.1"))
        self.assertIsNotNone(self.connect(service, "10.0.0.2"))
        self.assertIsNone(self.connect(service, "10.0.0.3"))
        a1.connectionLost(None)
        self.assertIsNotNone(self.connect(service, "10.0.0.1"))
        refused = service.metrics.refusedConnections
        self.assertEqual(refused.labels("max-connections-per-address")._value.get(), 1)
        self.assertEqual(refused.labels("max-connections")._value.get(), 1)
        self.assertIsNotNone(a2)

    def test_slowlorisCut(self) -> None:
        """A connection that has not completed a request within --request-timeout is cut,
        however slowly it keeps sending; one that did is kept."""
        service = startedService(self, limits=Limits(requestTimeout=10))
        loris = MemoryConnection(service)
        good = MemoryConnection(service)
        good.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        for _ in range(9):
            loris.send(b"X")
            service.reactor.advance(1)
        self.assertFalse(loris.transport.disconnecting)
        service.reactor.advance(1)
        self.assertTrue(loris.transport.disconnected)
        self.assertFalse(good.transport.disconnected)

    def test_upgradedNotCut(self) -> None:
        """A WebSocket opened in time is not cut by the request timeout."""
        service = startedService(self, limits=Limits(requestTimeout=10))
        c = MemoryConnection(service)
        c.handshake()
        service.reactor.advance(11)
        self.assertFalse(c.transport.disconnected)


class TrackingProtocolTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        factory = TrackingFactory(Factory.forProtocol(Protocol), self.clock)
        self.transport = FakeServerTransport()
        self.tracked = factory.buildProtocol(None)
        self.tracked.transport = self.transport
        self.tracked._immediate = ImmediateWriter(self.transport, factory.turns)

    def test_corkedFramesGoBeforeTheClose(self) -> None:
        """loseConnection() sends corked frames (a close frame may be among them) first."""
        closed: list[list[bytes]] = []
        self.transport.loseConnection = lambda: closed.append(list(self.transport.socket.sent))  # type: ignore[attr-defined]
        self.tracked.write(b"one")
        self.tracked.write(b"close-frame")
        self.tracked.loseConnection()
        self.assertEqual(closed, [[b"one", b"close-frame"]])

    def test_writeSequenceQueuesBehindCorkedFrames(self) -> None:
        """writeSequence() on an immediate connection keeps the order of earlier writes."""
        self.tracked.write(b"one")
        self.tracked.write(b"two")
        self.tracked.writeSequence([b"thr", b"ee"])
        self.clock.advance(0)
        self.assertEqual(self.transport.socket.sent, [b"one", b"twothree"])
        self.assertEqual(self.tracked.bytesOut, 11)
