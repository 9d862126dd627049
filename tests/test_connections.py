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
        self.tracked._writer = ImmediateWriter(self.transport, factory.turns)
        self.tracked._immediate = True

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


class WritesDuringAReadTests(SynchronousTestCase):
    """What a protocol writes while it handles one read goes out in one send() after it."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.sentDuringRead: list[list[bytes]] = []
        test = self

        class Replier(Protocol):
            def dataReceived(self, data: bytes) -> None:
                assert self.transport is not None
                for part in data.split(b","):
                    self.transport.write(part)
                test.sentDuringRead.append(list(test.transport.socket.sent))

        factory = TrackingFactory(Factory.forProtocol(Replier), self.clock)
        self.transport = FakeServerTransport()
        self.tracked = factory.buildProtocol(None)
        self.tracked.transport = self.transport
        self.tracked.wrappedProtocol.makeConnection(self.tracked)
        self.tracked._writer = ImmediateWriter(self.transport, factory.turns)

    def test_oneSendPerRead(self) -> None:
        """Three writes while a read is handled are one send(), made once it is handled
        (nothing goes out before: the last reply is part of it); Twisted's buffer is not
        used."""
        self.tracked.dataReceived(b"a,b,c")
        self.assertEqual(self.sentDuringRead, [[]])
        self.assertEqual(self.transport.socket.sent, [b"abc"])
        self.assertEqual(self.transport.written, [])
        self.assertEqual(self.tracked.bytesOut, 3)

    def test_writesOutsideAReadKeepTwistedsWrite(self) -> None:
        """On a connection that has not asked for immediate writes (HTTP), a write made
        outside a read (a response that waited for something) goes to Twisted's buffer."""
        self.tracked.write(b"late")
        self.assertEqual(self.transport.written, [b"late"])
        self.assertEqual(self.transport.socket.sent, [])

    def test_heldWritesQueueBehindTwistedsBuffer(self) -> None:
        """While Twisted's buffer holds bytes, the read's writes go behind them there."""
        self.tracked.write(b"late")
        self.tracked.dataReceived(b"a,b")
        self.assertEqual(self.transport.written, [b"late", b"ab"])
        self.assertEqual(self.transport.socket.sent, [])

    def test_closeDuringAReadSendsWhatWasHeldFirst(self) -> None:
        """A close while a read is handled sends the read's earlier writes before it."""
        closed: list[list[bytes]] = []
        self.transport.loseConnection = lambda: closed.append(list(self.transport.socket.sent))  # type: ignore[attr-defined]

        class Closer(Protocol):
            def dataReceived(self, data: bytes) -> None:
                assert self.transport is not None
                self.transport.write(b"bye")
                self.transport.loseConnection()

        self.tracked.wrappedProtocol = Closer()
        self.tracked.wrappedProtocol.makeConnection(self.tracked)
        self.tracked.dataReceived(b"x")
        self.assertEqual(closed, [[b"bye"]])

    def test_tcpOnly(self) -> None:
        """A connection on another transport than Twisted's plain TCP one (TLS, a test's
        StringTransport) has no writer: every write is the transport's own."""
        factory = TrackingFactory(Factory.forProtocol(Protocol), self.clock)
        tracked = factory.buildProtocol(None)
        transport = StringTransport()
        tracked.makeConnection(transport)
        self.assertIsNone(tracked._writer)
        tracked.dataReceived(b"x")
        tracked.write(b"y")
        self.assertEqual(transport.value(), b"y")
