"""
Tests for L{portshare._autobahn}: the fast paths' contract with the REAL installed Autobahn
(every name they read, on a real open protocol), and the plain path they fall back to.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.websocket import WebSocketServerProtocol
from twisted.trial.unittest import SynchronousTestCase

from portshare import _autobahn, echo, ws
from portshare._autobahn import MIRRORED, PREPARED_MIRRORED, mirrored
from portshare.testing import BINARY, TEXT, MemoryConnection, clientFrame, startedService
from portshare.wire import Outgoing, Presence


def chatRoundTrip(testCase: SynchronousTestCase, service: Any) -> list[dict[str, Any]]:
    """Join and say over one in-memory chat connection; @return: what came back."""
    c = MemoryConnection(service)
    c.handshake(protocols="portshare.chat.v1")
    c.say(type="join", room="r", nick="ann", ref=1)
    c.say(type="say", room="r", text="x" * 300, ref=2)  # longer than a small frame
    c.say(type="say", room="r", text="hi", ref=3)
    return c.messages()


class ContractTests(SynchronousTestCase):
    def test_namesOnARealOpenProtocol(self) -> None:
        """Every field and method the fast paths read is on a real, open Autobahn server
        protocol of the installed version, and every field a prepared frame is read for is on
        a real PreparedMessage; when this fails, re-read _autobahn against Autobahn's source
        (it mirrors Autobahn {MIRRORS_AUTOBAHN})."""
        service = startedService(self)
        c = MemoryConnection(service)
        c.handshake(protocols="portshare.chat.v1")
        c.say(type="join", room="r", ref=1)  # a whole frame: the one-step parser
        # a fragmented message: Autobahn's own parser, whose fields the fallbacks read
        c.send(clientFrame(b'{"type":"join",', fin=False) + clientFrame(b'"room":"s"}', opcode=0))
        self.assertEqual([m["type"] for m in c.messages()], ["joined", "joined"])
        protocol = c.protocol.wrappedProtocol
        self.assertIsInstance(protocol, WebSocketServerProtocol)
        for name in MIRRORED:
            self.assertTrue(hasattr(protocol, name), name)
        prepared = service.chatFactory.prepareMessage(b'{"type":"x"}')
        for name in PREPARED_MIRRORED:
            self.assertTrue(hasattr(prepared, name), name)
        self.assertTrue(mirrored())

    def test_missingNameDetected(self) -> None:
        """An Autobahn without one of the names (here a protocol class without _onMessage)
        is not mirrored: the plain protocols are used."""

        class Other:
            sendPreparedMessage = logTxOctets = onFrameBegin = None

        self.assertFalse(mirrored(Other))

    def test_versionNamed(self) -> None:
        """The module names the Autobahn version it mirrors, the installed one or older."""
        import autobahn

        mirroredVersion = tuple(int(p) for p in _autobahn.MIRRORS_AUTOBAHN.split(".")[:2])
        installed = tuple(int(p) for p in autobahn.__version__.split(".")[:2])
        self.assertLessEqual(mirroredVersion, installed)


def echoed(testCase: SynchronousTestCase, service: Any, data: bytes, step: int) -> bytes:
    """What /ws/echo sends back for C{data} (client bytes), fed C{step} bytes at a time."""
    c = MemoryConnection(service)
    c.handshake(path="/ws/echo")
    for start in range(0, len(data), step):
        c.send(data[start : start + step])
    return c.read()


class WholeFrameTests(SynchronousTestCase):
    def setUp(self) -> None:
        from autobahn.websocket.protocol import WebSocketProtocol

        self.fast = startedService(self, echo=True)
        self.assertTrue(issubclass(self.fast.echoFactory.protocol, _autobahn.FastPaths))
        self.parsed: list[object] = []
        upstream = WebSocketProtocol.processData

        def counting(protocol: Any) -> bool:
            self.parsed.append(protocol)
            return upstream(protocol)

        self.patch(WebSocketProtocol, "processData", counting)

    def plain(self) -> Any:
        self.patch(ws, "mirrored", lambda: False)
        self.patch(echo, "mirrored", lambda: False)
        service = startedService(self, echo=True)
        self.assertFalse(issubclass(service.echoFactory.protocol, _autobahn.FastPaths))
        return service

    def test_wholeFramesSkipAutobahnsParser(self) -> None:
        """A frame that is a whole message (small or not, text or binary) is parsed in
        one step: Autobahn's parser never runs for it; the echo is right."""
        data = clientFrame("héllo".encode()) + clientFrame(b"\x00" * 300, opcode=BINARY)
        got = echoed(self, self.fast, data, len(data))
        self.assertEqual(self.parsed, [])
        self.assertIn("héllo".encode(), got)

    def test_otherFramesGoToAutobahn(self) -> None:
        """A fragmented message, a frame split across reads and invalid UTF-8 go through
        Autobahn's parser, on the fast paths too."""
        for data, step in (
            (clientFrame(b"a", fin=False) + clientFrame(b"b", opcode=0), 100),
            (clientFrame(b"split me"), 3),
            (clientFrame(b"\xed\xa0\x80"), 100),
        ):
            self.parsed.clear()
            echoed(self, self.fast, data, step)
            self.assertNotEqual(self.parsed, [], data)

    def test_sameBytesAsAutobahnsParser(self) -> None:
        """For whole, fragmented, split, oversized, unmasked, reserved-bit, non-minimal,
        invalid-UTF-8 and control frames (a ping, close codes), the fast paths answer byte
        for byte what Autobahn's own path answers (echoes, and the close frames with their
        codes)."""
        plain = self.plain()
        cases = [
            clientFrame(b"hi") + clientFrame(b"x" * 200) + clientFrame(b"", opcode=BINARY),
            clientFrame("wörld".encode() * 40),
            clientFrame(b"\xed\xa0\x80"),  # a surrogate: invalid UTF-8, 1007
            clientFrame(b"\xc3"),  # text ending inside a code point, 1007
            clientFrame(b"a", fin=False) + clientFrame(b"b", opcode=0),
            clientFrame(b"x", rsv=2),  # reserved bit, 1002
            bytes([0x81, 0x05]) + b"hello",  # unmasked, 1002
            bytes([0x81, 0xFE, 0x00, 0x05]) + b"\x00" * 4 + b"hello",  # non-minimal, 1002
            clientFrame(b"y" * 70_000),  # over the echo's limit? (the same either way)
            clientFrame(b"", opcode=TEXT),
            clientFrame(b"ping!", opcode=9) + clientFrame(b"after the ping"),
            clientFrame((5000).to_bytes(2, "big"), opcode=8),  # invalid close code, 1002
            clientFrame((1000).to_bytes(2, "big"), opcode=8) + clientFrame(b"late"),
        ]
        for data in cases:
            for step in (len(data), 1, 5):
                self.assertEqual(
                    echoed(self, self.fast, data, step),
                    echoed(self, plain, data, step),
                    (data[:20], step),
                )


class OptionsTests(SynchronousTestCase):
    def test_optionsCopiedAsAutobahnDoes(self) -> None:
        """A connection on the fast paths (which copy the factory's options without
        Autobahn's per-connection pprint of them) ends up with exactly the options a
        connection on Autobahn's own path has: every one of Autobahn's server options."""
        fast = startedService(self)
        self.patch(ws, "mirrored", lambda: False)
        plain = startedService(self)
        names = list(WebSocketServerProtocol.CONFIG_ATTRS)
        self.assertGreater(len(names), 20)
        got = []
        # (applyMask is False on the fast paths by design: they unmask in onFrameData)
        names = [n for n in names if n != "applyMask"]
        for service in (fast, plain):
            c = MemoryConnection(service)
            c.handshake(protocols="portshare.chat.v1")
            protocol = c.protocol.wrappedProtocol
            values = {}
            for name in names:
                value = getattr(protocol, name)
                values[name] = value if not callable(value) else getattr(value, "__name__", "")
            got.append(values)
            self.assertEqual(
                values["maxMessagePayloadSize"], service.chatFactory.maxMessagePayloadSize
            )
        self.assertEqual(got[0], got[1])

    def test_noPrettyPrintPerConnection(self) -> None:
        """Opening a connection on the fast paths does not pretty-print Autobahn's options
        (the cost this override removes); Autobahn's own path does."""
        import pprint

        from autobahn.websocket import protocol as upstream

        calls: list[object] = []

        def counting(obj: object, *args: Any, **kwargs: Any) -> str:
            calls.append(obj)
            return pprint.pformat(obj, *args, **kwargs)

        self.patch(upstream, "pformat", counting)
        service = startedService(self)
        MemoryConnection(service).handshake(protocols="portshare.chat.v1")
        self.assertEqual([c for c in calls if c], [])
        self.patch(ws, "mirrored", lambda: False)
        plain = startedService(self)
        MemoryConnection(plain).handshake(protocols="portshare.chat.v1")
        self.assertTrue([c for c in calls if c])


class FallbackTests(SynchronousTestCase):
    def test_plainAndFastSendTheSame(self) -> None:
        """With the fast paths off (an Autobahn they do not mirror), the chat runs on
        Autobahn's own paths and answers byte for byte what the fast paths answer."""
        fast = startedService(self)
        self.assertIs(fast.chatFactory.protocol, ws.ChatProtocol)
        self.patch(ws, "mirrored", lambda: False)
        plain = startedService(self)
        self.assertIs(plain.chatFactory.protocol, ws.PlainChatProtocol)
        got = [chatRoundTrip(self, service) for service in (fast, plain)]
        types = [m["type"] for m in got[0]]
        self.assertEqual(types, ["joined", "message", "ack", "message", "ack"])
        for messages in got:
            for m in messages:
                m.pop("ts", None)
                m.pop("epoch", None)
        self.assertEqual(got[0], got[1])

    def test_fallbackLogged(self) -> None:
        """A service on the plain path says so when it starts; one on the fast paths not."""
        from twisted.internet.testing import EventLoggingObserver
        from twisted.logger import globalLogPublisher

        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        startedService(self)
        self.assertEqual([e for e in events if "fence" in e], [])
        self.patch(ws, "mirrored", lambda: False)
        startedService(self)
        [event] = [e for e in events if "fence" in e]
        self.assertEqual(event["log_level"].name, "warn")
        self.assertIn(f"mirror Autobahn {_autobahn.MIRRORS_AUTOBAHN}", event["fence"])

    def test_plainFanOut(self) -> None:
        """A room event prepared once reaches plain members through Autobahn's
        sendPreparedMessage."""
        self.patch(ws, "mirrored", lambda: False)
        service = startedService(self)
        c = MemoryConnection(service)
        c.handshake(protocols="portshare.chat.v1")
        c.say(type="join", room="r", ref=1)
        c.messages()
        member = c.protocol.wrappedProtocol
        service.chatFactory.deliver(
            Outgoing(Presence(room="r", event="join", nick="bob")), [member]
        )
        self.assertEqual(
            c.messages(), [{"type": "presence", "room": "r", "event": "join", "nick": "bob"}]
        )

    def test_echoFallsBackToo(self) -> None:
        """The echo endpoint's factory takes the plain protocol when the paths are off."""
        self.assertIs(echo.buildEchoFactory(_limits(), _clock()).protocol, echo.EchoProtocol)
        self.assertIs(
            echo.buildEchoFactory(_limits(), _clock(), fastPaths=False).protocol,
            echo.PlainEchoProtocol,
        )


def _limits() -> Any:
    from portshare.limits import Limits

    return Limits()


def _clock() -> Any:
    from twisted.internet.task import Clock

    return Clock()
