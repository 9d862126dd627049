"""Tests for L{portshare.connections}: connection caps and deadlines, through the real site."""

from __future__ import annotations

from typing import Any

import orjson
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


#: a first request, kept open (keep-alive), after a PROXY header
GET = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


class ProxyProtocolTests(SynchronousTestCase):
    """--port haproxy:tcp:...: the client's address comes from the proxy's PROXY header."""

    def service(self, **settings: Any) -> Any:
        from portshare.testing import startedService

        return startedService(self, ports=("haproxy:tcp:0",), **settings)

    def connect(self, service: Any, header: bytes, proxyPort: int) -> Any:
        """A connection from the proxy (127.0.0.1) through the haproxy: endpoint's factory."""
        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import StringTransport

        factory = service.reactor.tcpServers[0][1]  # the endpoint's wrapper around the tracker
        peer = IPv4Address("TCP", "127.0.0.1", proxyPort)
        protocol = factory.buildProtocol(peer)
        if protocol is None:
            return None
        transport = StringTransport(peerAddress=peer)
        protocol.makeConnection(transport)
        protocol.dataReceived(header)
        return transport

    def test_theClientsAddressIsShown(self) -> None:
        """/api/connections lists the address the PROXY header names, not the proxy's."""
        service = self.service()
        t = self.connect(
            service,
            b"PROXY TCP4 203.0.113.7 10.0.0.1 5555 8080\r\n"
            b"GET /api/connections HTTP/1.1\r\nHost: x\r\n\r\n",
            50000,
        )
        rows = orjson.loads(t.value().split(b"\r\n\r\n", 1)[1])["connections"]
        self.assertEqual(
            [(r["host"], r["peer"]) for r in rows], [("203.0.113.7", "203.0.113.7:5555")]
        )

    def test_perAddressCapCountsClients(self) -> None:
        """Through one proxy, the per-address cap counts each client: two clients pass, a
        second connection of the same client over the cap is refused."""
        from portshare.limits import Limits

        service = self.service(limits=Limits(maxConnectionsPerAddress=1))
        first = self.connect(service, b"PROXY TCP4 203.0.113.7 10.0.0.1 5555 8080\r\n" + GET, 50001)
        other = self.connect(
            service, b"PROXY TCP4 198.51.100.9 10.0.0.1 5556 8080\r\n" + GET, 50002
        )
        self.assertFalse(first.disconnecting or other.disconnecting)
        again = self.connect(service, b"PROXY TCP4 203.0.113.7 10.0.0.1 5557 8080\r\n" + GET, 50003)
        self.assertTrue(again.disconnected or again.disconnecting)
        refused = service.metrics.refusedConnections.labels("max-connections-per-address")
        self.assertEqual(refused._value.get(), 1)

    def test_forgedHeaderFromAnUntrustedPeer(self) -> None:
        """With --trusted-proxy, a PROXY header from any other peer is refused: a client
        that reaches the port directly cannot choose its own address."""
        from portshare.proxies import parseNetworks

        service = self.service(trustedProxies=tuple(parseNetworks(["10.9.9.9"])))
        t = self.connect(
            service, b"PROXY TCP4 203.0.113.7 10.0.0.1 5555 8080\r\nGET / HTTP/1.1\r\n\r\n", 50004
        )
        self.assertTrue(t.disconnected or t.disconnecting)
        self.assertEqual(t.value(), b"")

    def test_noHeader(self) -> None:
        """A connection to a haproxy: port that does not start with a PROXY header is
        dropped (Twisted's wrapper), before anything reaches the site."""
        service = self.service()
        t = self.connect(service, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 50005)
        self.assertTrue(t.disconnecting)
        self.assertEqual(t.value(), b"")
