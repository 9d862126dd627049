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
from portshare.testing import MemoryConnection, startedService
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
        c.say(type="join", room="r", ref=1)  # a frame read: current_frame exists
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
