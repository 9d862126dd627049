"""
Tests for L{portshare.echo}: the echo endpoint for compliance runs, in the one tree, driven in
memory (StringTransport under the real site, tracker and Autobahn protocols).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from portshare._autobahn import SMALL_FRAME
from portshare.limits import Limits
from portshare.testing import (
    BINARY,
    TEXT,
    MemoryConnection,
    clientFrame,
    handshakeRequest,
)
from tests.test_ws import ServiceMixin


class EchoEndpointTests(ServiceMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.service = self.makeService(echo=True, limits=Limits(maxMessageSize=1024))

    def test_echoesTextAndBinary(self) -> None:
        """/ws/echo sends text and binary messages back unchanged."""
        c = MemoryConnection(self.service)
        head = c.handshake(path="/ws/echo")
        self.assertTrue(head.startswith(b"HTTP/1.1 101"), head)
        c.send(clientFrame("héllo".encode()))
        c.send(clientFrame(b"\x00\xff", opcode=BINARY))
        self.assertEqual(c.frames(), [(TEXT, "héllo".encode()), (BINARY, b"\x00\xff")])

    def test_nullOriginForbidden(self) -> None:
        """/ws/echo refuses Origin: null with the same 403 as any foreign origin (its factory
        sets its options twice: the second call must not bring Autobahn's 400 back)."""
        for origin in ("null", "https://evil.example"):
            c = MemoryConnection(self.service)
            c.send(handshakeRequest(path="/ws/echo", origin=origin, host="chat.example"))
            self.assertEqual(c.read(), b"HTTP/1.1 403 origin not allowed\r\n\r\n", origin)

    def test_messageSignalStillFiresForListeners(self) -> None:
        """Skipping Autobahn's per-message signal is only for protocols nobody listens to: a
        C{"message"} listener still hears every message, and the echo still goes out."""
        c = MemoryConnection(self.service)
        c.handshake(path="/ws/echo")
        heard: list[bytes] = []
        c.protocol.wrappedProtocol.on("message", lambda payload, is_binary: heard.append(payload))
        c.send(clientFrame(b"one"))
        c.send(clientFrame(b"two"))
        self.assertEqual(heard, [b"one", b"two"])
        self.assertEqual(c.frames(), [(TEXT, b"one"), (TEXT, b"two")])

    def test_framesSplitAcrossReads(self) -> None:
        """Masked frames that arrive a few bytes at a time are unmasked right, small ones
        (unmasked in Python) and large ones (Autobahn's masker), text and binary, with
        masks that differ per frame; the echo frames them back whole."""
        c = MemoryConnection(self.service)
        c.handshake(path="/ws/echo")
        payloads = [
            (TEXT, "héllo wörld, ".encode() * 3),
            (BINARY, bytes(range(256)) * 2),
            (TEXT, b"x" * (SMALL_FRAME - 1)),
            (BINARY, b""),
        ]
        for i, (opcode, payload) in enumerate(payloads):
            frame = clientFrame(payload, opcode=opcode, mask=bytes([i + 5, 0xFF, i, 0x80]))
            for start in range(0, len(frame), 7):
                c.send(frame[start : start + 7])
        self.assertEqual(c.frames(), payloads)

    def test_sizesAroundTheLengthEncodings(self) -> None:
        """Messages of 125, 126, 65,535 and 65,536 bytes come back with the right length
        encoding (7-bit, 16-bit, 64-bit)."""
        service = self.makeService(echo=True, limits=Limits(maxMessageSize=100_000))
        c = MemoryConnection(service)
        c.handshake(path="/ws/echo")
        sizes = [125, 126, 65_535, 65_536]
        for n in sizes:
            c.send(clientFrame(b"z" * n, opcode=BINARY))
        self.assertEqual(c.frames(), [(BINARY, b"z" * n) for n in sizes])

    def test_echoHasItsOwnLimit(self) -> None:
        """The echo endpoint accepts messages larger than the chat limit."""
        c = MemoryConnection(self.service)
        c.handshake(path="/ws/echo")
        c.send(clientFrame(b"y" * 100_000))
        self.assertEqual(c.frames(), [(TEXT, b"y" * 100_000)])

    def test_deflateNegotiated(self) -> None:
        """/ws/echo accepts permessage-deflate; /ws does not."""
        request = handshakeRequest(path="/ws/echo").replace(
            b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
        )
        c = MemoryConnection(self.service)
        c.send(request)
        self.assertIn(b"permessage-deflate", c.read())
        c = MemoryConnection(self.service)
        c.send(request.replace(b"/ws/echo", b"/ws"))
        self.assertNotIn(b"permessage-deflate", c.read())
