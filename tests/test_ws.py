"""
Tests for L{portshare.ws}: the chat's WebSocket endpoint in the one tree,
driven in memory (StringTransport under the real site, tracker and Autobahn protocols).
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from portshare._autobahn import unmaskSmall
from portshare.hub import IFrontEnd, IMember
from portshare.limits import Limits
from portshare.origins import originAllowed
from portshare.service import PortshareService
from portshare.testing import (
    BINARY,
    CLOSE,
    MemoryConnection,
    clientFrame,
    closeCode,
    handshakeRequest,
    splitResponse,
    startedService,
)
from portshare.wire import Error, Outgoing, Presence


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
        c = MemoryConnection(self.service)
        head = c.handshake(protocols="other, portshare.chat.v1")
        self.assertTrue(head.startswith(b"HTTP/1.1 101 Switching Protocols"), head)
        self.assertIn(b"Sec-WebSocket-Protocol: portshare.chat.v1", head)

    def test_membersAndTheirFrontEnd(self) -> None:
        """Each chat connection is a hub member, and the chat factory their front end."""
        c = MemoryConnection(self.service)
        c.handshake(protocols="portshare.chat.v1")
        chat = c.protocol.wrappedProtocol
        self.assertTrue(verifyObject(IMember, chat))
        self.assertTrue(verifyObject(IFrontEnd, self.service.chatFactory))
        self.assertIs(chat.frontEnd, self.service.chatFactory)

    def test_noSubprotocolOffered(self) -> None:
        """A client offering no subprotocol is accepted without one."""
        c = MemoryConnection(self.service)
        head = c.handshake()
        self.assertTrue(head.startswith(b"HTTP/1.1 101"))
        self.assertNotIn(b"Sec-WebSocket-Protocol", head)

    def test_chatOverTheTree(self) -> None:
        """Join and say over /ws reach the hub and come back as frames."""
        c = MemoryConnection(self.service)
        c.handshake(protocols="portshare.chat.v1")
        c.say(type="join", room="lobby", nick="ann", ref=1)
        c.say(type="say", room="lobby", text="hello", ref=2)
        kinds = [(m["type"], m.get("ref")) for m in c.messages()]
        self.assertEqual(kinds, [("joined", 1), ("message", None), ("ack", 2)])

    def test_framesInTheHandshakeRead(self) -> None:
        """Frames sent in the same read as the handshake are not lost."""
        c = MemoryConnection(self.service)
        c.send(handshakeRequest() + clientFrame(b'{"type":"join","room":"r","ref":1}'))
        head, frames = splitResponse(c.read())
        self.assertTrue(head.startswith(b"HTTP/1.1 101"))
        self.assertEqual(orjson.loads(frames[0][1])["type"], "joined")

    def test_lateReplyAfterClose(self) -> None:
        """A reply that comes after the socket started closing is dropped, not raised."""
        c = MemoryConnection(self.service)
        c.handshake()
        chat = c.protocol.wrappedProtocol
        chat.sendClose(1000)
        chat.send(Outgoing(Error(code="unavailable", reason="late")))
        chat.frontEnd.deliver(Outgoing(Presence(room="r", event="join", nick="n")), [chat])
        self.assertEqual([op for op, _ in c.frames()], [CLOSE])

    def test_binaryFrameRefused(self) -> None:
        """A binary frame on /ws gets error bad_request and the socket stays open."""
        c = MemoryConnection(self.service)
        c.handshake()
        c.send(clientFrame(b"\x00\x01", opcode=BINARY))
        self.assertEqual(c.messages()[0]["code"], "bad_request")
        self.assertFalse(c.transport.disconnecting)

    def test_binaryFrameRef(self) -> None:
        """A binary frame holding a command is answered bad_request with the command's ref,
        and the command is not carried out."""
        c = MemoryConnection(self.service)
        c.handshake()
        c.say(type="join", room="lobby", ref=1)
        c.messages()
        c.send(
            clientFrame(
                orjson.dumps({"type": "say", "room": "lobby", "text": "hi", "ref": 2}),
                opcode=BINARY,
            )
        )
        self.assertEqual(
            c.messages(),
            [
                {
                    "type": "error",
                    "code": "bad_request",
                    "reason": "frames must be text (JSON)",
                    "ref": 2,
                }
            ],
        )

    def test_loneSurrogateNickRef(self) -> None:
        """A text frame naming a nick with a lone surrogate escape gets a nick error with its
        ref, and the socket stays open."""
        c = MemoryConnection(self.service)
        c.handshake()
        c.send(clientFrame(b'{"type":"nick","nick":"\\ud800","ref":"n"}'))
        self.assertEqual(
            c.messages(),
            [
                {
                    "type": "error",
                    "code": "bad_request",
                    "reason": "nick must be 1 to 32 printable characters",
                    "ref": "n",
                }
            ],
        )
        self.assertFalse(c.transport.disconnecting)

    def test_tooBigClosed1009(self) -> None:
        """A message over --max-message-size closes the socket with 1009."""
        c = MemoryConnection(self.service)
        c.handshake()
        c.send(clientFrame(b"x" * 2000))
        closes = [closeCode(p) for op, p in c.frames() if op == CLOSE]
        self.assertEqual(closes, [1009])

    def test_invalidUtf8Closed1007(self) -> None:
        """A text frame that is not UTF-8 closes the socket with 1007."""
        c = MemoryConnection(self.service)
        c.handshake()
        c.send(clientFrame(b"\xff\xfe"))
        self.assertEqual([closeCode(p) for op, p in c.frames() if op == CLOSE], [1007])

    def test_protocolErrorClosed1002(self) -> None:
        """A frame with reserved bits set closes the socket with 1002."""
        c = MemoryConnection(self.service)
        c.handshake()
        c.send(clientFrame(b"{}", rsv=2))
        self.assertEqual([closeCode(p) for op, p in c.frames() if op == CLOSE], [1002])

    def test_foreignOriginForbidden(self) -> None:
        """A browser handshake from another origin is refused with 403 (CSWSH)."""
        c = MemoryConnection(self.service)
        head = c.handshake(origin="https://evil.example", host="chat.example:8080")
        self.assertTrue(head.startswith(b"HTTP/1.1 403"), head)

    def test_nullOriginForbidden(self) -> None:
        """An opaque origin (Origin: null from a sandboxed frame or a file: page, or a file:
        origin) is refused like every other foreign origin: the same 403 response and the
        same log event, not Autobahn's own 400."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

        def answer(origin: str) -> bytes:
            c = MemoryConnection(self.service)
            c.send(handshakeRequest(origin=origin, host="chat.example:8080"))
            return c.read()

        foreign = answer("https://evil.example")
        self.assertEqual(foreign, b"HTTP/1.1 403 origin not allowed\r\n\r\n")
        for origin in ("null", "NULL", " null ", "file://", "file:///home/a/chat.html"):
            self.assertEqual(answer(origin), foreign, origin)
        refused = [e["origin"] for e in events if "refused: origin" in e.get("log_format", "")]
        self.assertEqual(refused[:3], ["https://evil.example", "null", "NULL"])

    def test_nullOriginRefusedWhateverThePatterns(self) -> None:
        """--allowed-origin patterns, even *, do not let opaque origins in (as before, when
        Autobahn refused them); they still let their own origins in."""
        service = self.makeService(allowedOrigins=("*", "null"))
        for origin, status in (
            ("null", b"403"),
            ("file://", b"403"),
            ("https://x.example", b"101"),
        ):
            head = MemoryConnection(service).handshake(origin=origin, host="chat.example")
            self.assertTrue(head.startswith(b"HTTP/1.1 " + status), (origin, head))

    def test_sameOriginAllowed(self) -> None:
        """The page's own origin may open the chat socket."""
        c = MemoryConnection(self.service)
        head = c.handshake(origin="http://chat.example:8080", host="chat.example:8080")
        self.assertTrue(head.startswith(b"HTTP/1.1 101"), head)

    def test_plainGetIs426(self) -> None:
        """A plain GET on /ws is answered 426 with a JSON reason, and stays HTTP."""
        c = MemoryConnection(self.service)
        c.send(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = c.read().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 426 Upgrade Required"))
        self.assertEqual(orjson.loads(body)["error"], "upgrade_required")

    def test_echoOffByDefault(self) -> None:
        """Without --echo, /ws/echo does not exist."""
        c = MemoryConnection(self.service)
        head = c.handshake(path="/ws/echo")
        self.assertTrue(head.startswith(b"HTTP/1.1 404"), head)

    def test_connectionRowFollowsUpgrade(self) -> None:
        """The connections view lists the socket as HTTP, then as WebSocket after the upgrade."""
        c = MemoryConnection(self.service, port=40123)
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
        c = MemoryConnection(self.service)
        c.handshake()
        self.service.stopService()
        self.assertEqual([closeCode(p) for op, p in c.frames() if op == CLOSE], [1001])

    def test_longReasonCutOnACharacter(self) -> None:
        """A close reason over 123 bytes is cut on a character boundary: the frame's reason
        stays valid UTF-8 (a client drops the connection on one that is not)."""
        from portshare.ws import closeWithCode

        c = MemoryConnection(self.service)
        c.handshake(protocols="portshare.chat.v1")
        closeWithCode(c.protocol.wrappedProtocol, 4000, "é" * 100)  # 200 bytes
        (payload,) = [p for op, p in c.frames() if op == CLOSE]
        reason = payload[2:]
        self.assertEqual(reason.decode("utf-8"), "é" * 61)  # 122 bytes: 123 would split one


class CloseCodeTests(ServiceMixin, SynchronousTestCase):
    """
    How a client's close is answered, counted in /metrics and logged: the client's code is
    echoed (RFC 6455 section 5.5.1), and a close without a code is 1005 (section 7.1.5).
    """

    def setUp(self) -> None:
        self.service = self.makeService(echo=True)
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def closeWith(self, payload: bytes, path: str = "/ws") -> list[bytes]:
        """Open C{path}, send a close frame holding C{payload}, and end the TCP connection;
        @return: the payloads of the close frames the server sent."""
        c = MemoryConnection(self.service)
        c.handshake(path=path)
        c.send(clientFrame(payload, opcode=CLOSE))
        replies = [p for op, p in c.frames() if op == CLOSE]
        self.assertTrue(c.transport.disconnecting)
        c.protocol.connectionLost(Failure(ConnectionDone()))
        return replies

    def counted(self, code: str) -> float | None:
        return self.service.hub.metrics.registry.get_sample_value(
            "portshare_websocket_closed_total", {"code": code}
        )

    def logged(self) -> list[object]:
        return [
            e["code"] for e in self.events if e.get("log_format") == "{peer} closed /ws ({code})"
        ]

    def test_noCodeIs1005(self) -> None:
        """A close frame without a code (a browser's plain ws.close()) is answered with a close
        frame without a code, and counted and logged as 1005, not None."""
        self.assertEqual(self.closeWith(b""), [b""])
        self.assertEqual(self.counted("1005"), 1.0)
        self.assertIsNone(self.counted("None"))
        self.assertEqual(self.logged(), [1005])

    def test_clientCodeEchoed(self) -> None:
        """A client's valid code (and its reason) is echoed in the server's close frame, and
        counted and logged as that code."""
        for code in (1000, 1001, 1008, 3000, 4000, 4999):
            payload = struct.pack("!H", code) + b"bye"
            self.assertEqual(self.closeWith(payload), [payload], code)
            self.assertEqual(self.counted(str(code)), 1.0, code)
        self.assertEqual(self.logged(), [1000, 1001, 1008, 3000, 4000, 4999])

    def test_invalidCodeProtocolError(self) -> None:
        """A code a client may not send (reserved or out of range) is a protocol error, 1002,
        not echoed."""
        for code in (999, 1004, 1005, 1006, 1015, 2999, 5000):
            replies = self.closeWith(struct.pack("!H", code))
            self.assertEqual([closeCode(p) for p in replies], [1002], code)

    def test_echoEndpointEchoesToo(self) -> None:
        """/ws/echo answers a client's close the same way."""
        self.assertEqual(self.closeWith(b"\x0f\xa0", path="/ws/echo"), [b"\x0f\xa0"])
        self.assertEqual(self.closeWith(b"", path="/ws/echo"), [b""])

    def test_serverCloseCountsItsOwnCode(self) -> None:
        """When the server closes first (1001 at shutdown), that code is counted and logged,
        whatever the client's reply says."""
        c = MemoryConnection(self.service)
        c.handshake()
        self.service.stopService()
        self.assertEqual([closeCode(p) for op, p in c.frames() if op == CLOSE], [1001])
        c.send(clientFrame(b"", opcode=CLOSE))
        c.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.counted("1001"), 1.0)
        self.assertEqual(self.logged(), [1001])

    def test_droppedIs1006(self) -> None:
        """A connection lost without any close frame is counted and logged as 1006."""
        c = MemoryConnection(self.service)
        c.handshake()
        c.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.counted("1006"), 1.0)
        self.assertEqual(self.logged(), [1006])


class UnmaskTests(SynchronousTestCase):
    @given(
        mask=st.binary(min_size=4, max_size=4),
        offset=st.integers(min_value=0, max_value=1000),
        data=st.binary(max_size=300),
    )
    @settings(max_examples=300)
    def test_unmaskSmallIsRfc6455Unmasking(self, mask: bytes, offset: int, data: bytes) -> None:
        """Each byte is XORed with the mask byte of its position in the payload."""
        expected = bytes(b ^ mask[(offset + i) % 4] for i, b in enumerate(data))
        self.assertEqual(unmaskSmall(mask, offset, data), expected)


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

    def test_opaqueOriginsRefused(self) -> None:
        """null and origins without a host are refused, whatever the patterns say."""
        for origin in ("null", "NULL", "file://", "file:///x"):
            self.assertFalse(originAllowed(origin, "chat.example", ("*",)), origin)
            self.assertFalse(originAllowed(origin, "chat.example", ()), origin)

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


class SlowConsumerTests(ServiceMixin, SynchronousTestCase):
    def joined(self, service: PortshareService, nick: str) -> MemoryConnection:
        c = MemoryConnection(service)
        c.handshake()
        c.say(type="join", room="r", nick=nick)
        c.messages()
        return c

    def flood(self, publisher: MemoryConnection, count: int) -> None:
        for _ in range(count):
            publisher.say(type="say", room="r", text="x" * 1000)

    def test_slowConsumerClosed1013(self) -> None:
        """A member whose socket stays full past the byte limit is cut with 1013; others
        keep receiving."""
        service = self.makeService(limits=Limits(slowConsumerBytes=5000, rate=1e6, burst=1_000_000))
        slow = self.joined(service, "slow")
        fast = self.joined(service, "fast")
        slow.protocol.wrappedProtocol.backpressure.pauseProducing()  # its socket is full
        self.flood(fast, 10)
        self.clock.advance(0)
        closes = [closeCode(p) for op, p in slow.frames() if op == CLOSE]
        self.assertEqual(closes, [1013])
        self.assertEqual(len([m for m in fast.messages() if m["type"] == "message"]), 10)
        self.assertEqual(service.hub.metrics.slowConsumers._value.get(), 1)
        self.assertEqual([len(f) for f in service.hub._rooms.values()], [1])

    def test_fullTooLongClosed(self) -> None:
        """A socket full for longer than --slow-consumer-seconds is cut too."""
        service = self.makeService(limits=Limits(slowConsumerSeconds=3))
        slow = self.joined(service, "slow")
        slow.protocol.wrappedProtocol.backpressure.pauseProducing()
        self.clock.advance(3)
        self.assertEqual([closeCode(p) for op, p in slow.frames() if op == CLOSE], [1013])

    def test_dropPolicy(self) -> None:
        """With the drop policy, a slow member's events are dropped and counted until it
        drains; then it receives again."""
        service = self.makeService(
            limits=Limits(slowConsumerBytes=5000, rate=1e6, burst=1_000_000),
            slowConsumerPolicy="drop",
        )
        slow = self.joined(service, "slow")
        fast = self.joined(service, "fast")
        backpressure = slow.protocol.wrappedProtocol.backpressure
        backpressure.pauseProducing()
        self.flood(fast, 10)
        received = [m["offset"] for m in slow.messages() if m["type"] == "message"]
        # about 1,090 bytes a frame: the fifth passes 5,000 bytes queued, the rest are dropped
        self.assertEqual(received, [1, 2, 3, 4, 5])
        self.assertEqual(service.hub.metrics.drops._value.get(), 5)
        backpressure.resumeProducing()
        self.flood(fast, 1)
        self.assertEqual([m["offset"] for m in slow.messages()], [11])
        self.assertFalse(slow.transport.disconnecting)


class FrameLimitPropertyTests(ServiceMixin, SynchronousTestCase):
    @settings(max_examples=40, deadline=None, derandomize=True, database=None)
    @given(size=st.integers(min_value=0, max_value=3000))
    def test_closedIffOverLimit(self, size: int) -> None:
        """Any message is closed with 1009 exactly when it is larger than the limit."""
        service = self.makeService(limits=Limits(maxMessageSize=1500))
        c = MemoryConnection(service)
        c.handshake()
        c.send(clientFrame(b"x" * size))
        closes = [closeCode(p) for op, p in c.frames() if op == CLOSE]
        self.assertEqual(closes, [1009] if size > 1500 else [])
        service.stopService()


class InflationBombTests(ServiceMixin, SynchronousTestCase):
    def test_bombCutAtLimit(self) -> None:
        """A deflated message that would inflate past the echo limit is closed with 1009."""
        service = self.makeService(echo=True, limits=Limits(echoMaxMessageSize=100_000))
        c = MemoryConnection(service)
        c.send(
            handshakeRequest(path="/ws/echo").replace(
                b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
            )
        )
        head, frames = splitResponse(c.read())
        self.assertIn(b"permessage-deflate", head)
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        bomb = compressor.compress(b"\0" * 10_000_000) + compressor.flush(zlib.Z_SYNC_FLUSH)
        self.assertLess(len(bomb), 20_000)
        c.pending = frames
        c.send(clientFrame(bomb[:-4], rsv=4))  # RSV1: compressed; the tail is implied
        self.assertEqual([closeCode(p) for op, p in c.frames() if op == CLOSE], [1009])
