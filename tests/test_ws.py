"""
Tests for L{portshare.ws} and L{portshare.echo}: the WebSocket endpoints in the one tree,
driven in memory (StringTransport under the real site, tracker and Autobahn protocols).
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from portshare.limits import Limits
from portshare.service import PortshareService
from portshare.testing import (
    BINARY,
    CLOSE,
    TEXT,
    clientFrame,
    closeCode,
    handshakeRequest,
    serverFrames,
    splitResponse,
    startedService,
)
from portshare.ws import originAllowed


class Connection:
    """One in-memory client connection to the service's shared port."""

    def __init__(self, service: PortshareService, port: int = 40000) -> None:
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
        self.protocol = service.tracker.buildProtocol(self.transport.getPeer())
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def read(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    def handshake(self, **kwargs: Any) -> bytes:
        self.send(handshakeRequest(**kwargs))
        head, frames = splitResponse(self.read())
        self.pending = frames
        return head

    def say(self, **message: Any) -> None:
        self.send(clientFrame(orjson.dumps(message)))

    def frames(self) -> list[tuple[int, bytes]]:
        frames, self.pending = self.pending + serverFrames(self.read()), []
        return frames

    def messages(self) -> list[dict[str, Any]]:
        return [orjson.loads(p) for op, p in self.frames() if op == TEXT]


class ServiceMixin:
    def makeService(self, **settings: Any) -> PortshareService:
        service = startedService(self, **settings)
        self.clock = service.reactor
        return service


class ChatEndpointTests(ServiceMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.service = self.makeService(limits=Limits(maxMessageSize=1024))

    def test_upgradeSelectsSubprotocol(self) -> None:
        """A handshake on /ws gets 101 and the chat subprotocol when the client offers it."""
        c = Connection(self.service)
        head = c.handshake(protocols="other, portshare.chat.v1")
        self.assertTrue(head.startswith(b"HTTP/1.1 101 Switching Protocols"), head)
        self.assertIn(b"Sec-WebSocket-Protocol: portshare.chat.v1", head)

    def test_noSubprotocolOffered(self) -> None:
        """A client offering no subprotocol is accepted without one."""
        c = Connection(self.service)
        head = c.handshake()
        self.assertTrue(head.startswith(b"HTTP/1.1 101"))
        self.assertNotIn(b"Sec-WebSocket-Protocol", head)

    def test_chatOverTheTree(self) -> None:
        """Join and say over /ws reach the hub and come back as frames."""
        c = Connection(self.service)
        c.handshake(protocols="portshare.chat.v1")
        c.say(type="join", room="lobby", nick="ann", ref=1)
        c.say(type="say", room="lobby", text="hello", ref=2)
        kinds = [(m["type"], m.get("ref")) for m in c.messages()]
        self.assertEqual(kinds, [("joined", 1), ("message", None), ("ack", 2)])

    def test_binaryFrameRefused(self) -> None:
        """A binary frame on /ws gets error bad_request and the socket stays open."""
        c = Connection(self.service)
        c.handshake()
        c.send(clientFrame(b"\x00\x01", opcode=BINARY))
        self.assertEqual(c.messages()[0]["code"], "bad_request")
        self.assertFalse(c.transport.disconnecting)

    def test_tooBigClosed1009(self) -> None:
        """A message over --max-message-size closes the socket with 1009."""
        c = Connection(self.service)
        c.handshake()
        c.send(clientFrame(b"x" * 2000))
        closes = [closeCode(p) for op, p in c.frames() if op == CLOSE]
        self.assertEqual(closes, [1009])

    def test_invalidUtf8Closed1007(self) -> None:
        """A text frame that is not UTF-8 closes the socket with 1007."""
        c = Connection(self.service)
        c.handshake()
        c.send(clientFrame(b"\xff\xfe"))
        self.assertEqual([closeCode(p) for op, p in c.frames() if op == CLOSE], [1007])

    def test_protocolErrorClosed1002(self) -> None:
        """A frame with reserved bits set closes the socket with 1002."""
        c = Connection(self.service)
        c.handshake()
        c.send(clientFrame(b"{}", rsv=2))
        self.assertEqual([closeCode(p) for op, p in c.frames() if op == CLOSE], [1002])

    def test_foreignOriginForbidden(self) -> None:
        """A browser handshake from another origin is refused with 403 (CSWSH)."""
        c = Connection(self.service)
        head = c.handshake(origin="https://evil.example", host="chat.example:8080")
        self.assertTrue(head.startswith(b"HTTP/1.1 403"), head)

    def test_sameOriginAllowed(self) -> None:
        """The page's own origin may open the chat socket."""
        c = Connection(self.service)
        head = c.handshake(origin="http://chat.example:8080", host="chat.example:8080")
        self.assertTrue(head.startswith(b"HTTP/1.1 101"), head)

    def test_plainGetIs426(self) -> None:
        """A plain GET on /ws is answered 426 with a JSON reason, and stays HTTP."""
        c = Connection(self.service)
        c.send(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = c.read().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 426 Upgrade Required"))
        self.assertEqual(orjson.loads(body)["error"], "upgrade_required")

    def test_echoOffByDefault(self) -> None:
        """Without --echo, /ws/echo does not exist."""
        c = Connection(self.service)
        head = c.handshake(path="/ws/echo")
        self.assertTrue(head.startswith(b"HTTP/1.1 404"), head)

    def test_connectionRowFollowsUpgrade(self) -> None:
        """The connections view lists the socket as HTTP, then as WebSocket after the upgrade."""
        c = Connection(self.service, port=40123)
        c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        c.read()
        [row] = self.service.tracker.rows()
        self.assertEqual((row["protocol"], row["port"], row["requests"]), ("http/1.1", 40123, 1))
        c.handshake(protocols="portshare.chat.v1")
        [row] = self.service.tracker.rows()
        self.assertEqual(
            (row["protocol"], row["path"], row["subprotocol"], row["port"]),
            ("websocket", "/ws", "portshare.chat.v1", 40123),
        )
        self.assertGreater(row["bytes_in"], 0)
        self.assertGreater(row["bytes_out"], 0)

    def test_shutdownClosesWith1001(self) -> None:
        """Stopping the service sends 1001 going away to every WebSocket."""
        c = Connection(self.service)
        c.handshake()
        self.service.stopService()
        self.assertEqual([closeCode(p) for op, p in c.frames() if op == CLOSE], [1001])


class EchoEndpointTests(ServiceMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.service = self.makeService(echo=True, limits=Limits(maxMessageSize=1024))

    def test_echoesTextAndBinary(self) -> None:
        """/ws/echo sends text and binary messages back unchanged."""
        c = Connection(self.service)
        head = c.handshake(path="/ws/echo")
        self.assertTrue(head.startswith(b"HTTP/1.1 101"), head)
        c.send(clientFrame("héllo".encode()))
        c.send(clientFrame(b"\x00\xff", opcode=BINARY))
        self.assertEqual(c.frames(), [(TEXT, "héllo".encode()), (BINARY, b"\x00\xff")])

    def test_echoHasItsOwnLimit(self) -> None:
        """The echo endpoint accepts messages larger than the chat limit."""
        c = Connection(self.service)
        c.handshake(path="/ws/echo")
        c.send(clientFrame(b"y" * 100_000))
        self.assertEqual(c.frames(), [(TEXT, b"y" * 100_000)])

    def test_deflateNegotiated(self) -> None:
        """/ws/echo accepts permessage-deflate; /ws does not."""
        request = handshakeRequest(path="/ws/echo").replace(
            b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
        )
        c = Connection(self.service)
        c.send(request)
        self.assertIn(b"permessage-deflate", c.read())
        c = Connection(self.service)
        c.send(request.replace(b"/ws/echo", b"/ws"))
        self.assertNotIn(b"permessage-deflate", c.read())


class OriginTests(SynchronousTestCase):
    def test_noOriginAllowed(self) -> None:
        """Non-browser clients, which send no Origin, are allowed."""
        self.assertTrue(originAllowed(None, "a:1", ()))

    def test_sameOriginDefaultPorts(self) -> None:
        """http://host matches Host: host and host:80; https uses 443."""
        self.assertTrue(originAllowed("http://chat.example", "chat.example", ()))
        self.assertTrue(originAllowed("http://chat.example", "chat.example:80", ()))
        self.assertTrue(originAllowed("https://chat.example", "chat.example:443", ()))
        self.assertFalse(originAllowed("https://chat.example", "chat.example:8443", ()))

    def test_otherHostRefused(self) -> None:
        """Another host, or a host that merely starts the same, is refused."""
        self.assertFalse(originAllowed("http://chat.example.evil", "chat.example", ()))
        self.assertFalse(originAllowed("null", "chat.example", ()))
        self.assertFalse(originAllowed("http://x", None, ()))

    def test_patterns(self) -> None:
        """--allowed-origin patterns add origins to the page's own; others stay refused."""
        patterns = ("https://*.example.com",)
        self.assertTrue(originAllowed("https://app.example.com", "other", patterns))
        self.assertFalse(originAllowed("https://example.com.evil", "other", patterns))
        self.assertFalse(originAllowed("http://app.example.com", "other", patterns))
        self.assertTrue(originAllowed("http://self.example", "self.example", patterns))
