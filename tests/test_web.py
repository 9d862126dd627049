"""
Tests for L{portshare.web} and L{portshare.connections}: request limits, connection limits,
static files, over the real site and tracker in memory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from portshare.limits import Limits
from portshare.testing import MemoryConnection, startedService


def response(c: MemoryConnection) -> tuple[int, dict[bytes, bytes], bytes]:
    head, _, body = c.read().partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = dict(line.lower().split(b": ", 1) for line in lines[1:] if b": " in line)
    return int(lines[0].split()[1]), headers, body


class RequestLimitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.service = startedService(
            self, limits=Limits(maxBody=100, maxHeaders=5, maxHeaderBytes=400)
        )

    def test_bodyRefusedBeforeReading(self) -> None:
        """A Content-Length over --max-body is answered 413 at once, before any body byte."""
        c = MemoryConnection(self.service)
        c.send(b"POST /api/rooms/r/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        status, headers, body = response(c)
        self.assertEqual((status, orjson.loads(body)["error"]), (413, "too_large"))
        self.assertEqual(headers[b"connection"], b"close")
        self.assertTrue(c.transport.disconnecting)
        self.assertEqual(self.service.metrics.httpErrors.labels("413")._value.get(), 1)

    def test_chunkedBodyCut(self) -> None:
        """A chunked body is cut with 413 as soon as it passes --max-body."""
        c = MemoryConnection(self.service)
        c.send(
            b"POST /api/rooms/r/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        c.send(b"64\r\n" + b"a" * 100 + b"\r\n")
        self.assertEqual(c.read(), b"")
        c.send(b"64\r\n" + b"a" * 100 + b"\r\n")
        self.assertEqual(response(c)[0], 413)
        self.assertEqual(self.service.hub.metrics.messagesIn._value.get(), 0)

    def test_tooManyHeaders(self) -> None:
        """More headers than --max-headers are refused with 400."""
        c = MemoryConnection(self.service)
        c.send(
            b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(8)) + b"\r\n"
        )
        self.assertEqual(response(c)[0], 400)

    def test_headersTooLarge(self) -> None:
        """A request line plus headers larger than --max-header-bytes is refused."""
        c = MemoryConnection(self.service)
        c.send(b"GET /healthz HTTP/1.1\r\nX-Big: " + b"y" * 500 + b"\r\n\r\n")
        answer = c.read()
        self.assertTrue(answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer)
        self.assertTrue(c.transport.disconnecting)
        self.assertNotIn(b"200", answer)

    def test_keepAliveServesManyRequests(self) -> None:
        """Under the limits, one connection serves several requests (HTTP/1.1 keep-alive)."""
        c = MemoryConnection(self.service)
        for _ in range(3):
            c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(response(c)[0], 200)
        self.assertEqual(self.service.tracker.rows()[0]["requests"], 3)


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


class StaticFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        root = Path(self.mktemp())
        (root / "sub").mkdir(parents=True)
        (root / "index.html").write_text("<p>home</p>")
        (root / ".secret").write_text("nope")
        outside = Path(self.mktemp())
        outside.mkdir()
        (outside / "passwd").write_text("root:x")
        os.symlink(outside / "passwd", root / "escape")
        self.service = startedService(self, staticDir=root)

    def get(self, path: bytes) -> int:
        c = MemoryConnection(self.service)
        c.send(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        return response(c)[0]

    def test_refusals(self) -> None:
        """Dotfiles, symlinks out of the directory, dot segments, NUL and listings are 404s."""
        for path in (
            b"/.secret",
            b"/escape",
            b"/%2e%2e/etc/passwd",
            b"/sub/../.secret",
            b"/a%00b",
            b"/sub/",
        ):
            self.assertEqual(self.get(path), 404, path)

    def test_securityHeaders(self) -> None:
        """Pages carry a Content-Security-Policy and nosniff."""
        c = MemoryConnection(self.service)
        c.send(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, _ = response(c)
        self.assertEqual(status, 200)
        self.assertIn(b"frame-ancestors 'none'", headers[b"content-security-policy"])
        self.assertEqual(headers[b"x-content-type-options"], b"nosniff")
