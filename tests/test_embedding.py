"""
Tests for L{portshare.embedding}: L{Chat}, the public Python API, in memory.  The chat's
resource mounted in an application's own twisted.web tree and Site; publishing and
subscribing from the application's code; the options; C{twistd portshare} built on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import txaio.testutil
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

import portshare
from portshare import BadRequest, Chat, Limits, Message, RemoteError, Settings, Unavailable
from portshare.broker.memory import MemoryBroker
from portshare.service import PortshareService
from portshare.testing import CLOSE, MemoryConnection, closeCode


def started(testCase: SynchronousTestCase, chat: Chat) -> Chat:
    chat.service.startService()
    testCase.addCleanup(chat.service.stopService)
    return chat


class ChatInYourTreeTests(SynchronousTestCase):
    """The chat's resource in an application's own tree, served by the application's Site."""

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        loop = txaio.testutil.replace_loop(self.reactor)
        loop.__enter__()
        self.addCleanup(loop.__exit__, None, None, None)
        self.chat = Chat(self.reactor)
        root = Resource()
        root.putChild(b"", Data(b"my page", "text/plain"))
        root.putChild(b"chat", self.chat.resource())
        self.site = Site(root, reactor=self.reactor)
        self.chat.service.startService()

    def member(self, nick: str, port: int) -> MemoryConnection:
        c = MemoryConnection(self.site, port=port)
        head = c.handshake(path="/chat/ws", protocols="portshare.chat.v1")
        self.assertIn(b"101 Switching Protocols", head)
        c.say(type="join", room="lobby", nick=nick, ref=1)
        self.assertEqual(c.messages()[0]["type"], "joined")
        return c

    def test_pagesAndChatOnOneSite(self) -> None:
        """The application's page and the chat's WebSocket, API and client on the same
        Site; a publish from the application's code reaches the WebSocket member and the
        in-process subscriber, with the same offset."""
        page = MemoryConnection(self.site, port=40001)
        page.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(page.read().endswith(b"my page"))
        api = MemoryConnection(self.site, port=40002)
        api.send(b"GET /chat/api/rooms HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b"200 OK", api.read())

        seen: list[Any] = []
        subscription = self.chat.subscribe("lobby", seen.append)
        ann = self.member("ann", 40003)
        offset = self.successResultOf(self.chat.publish("lobby", "deploy done", nick="ops"))
        self.assertEqual(offset, 1)
        message = next(m for m in ann.messages() if m["type"] == "message")
        self.assertEqual(
            (message["nick"], message["text"], message["offset"]), ("ops", "deploy done", 1)
        )
        self.assertEqual(
            seen[-1],
            Message(room="lobby", offset=1, ts=message["ts"], nick="ops", text="deploy done"),
        )
        subscription.cancel()
        rooms = self.successResultOf(self.chat.rooms())
        self.assertEqual([(r.room, r.offset) for r in rooms], [("lobby", 1)])

    def test_gracefulStopClosesForeignSitesSockets(self) -> None:
        """Stopping the chat's service closes its WebSockets on the application's Site
        with 1001 too, and waits for them to go (at most the shutdown timeout)."""
        ann = self.member("ann", 40004)
        stopping = self.chat.service.stopService()
        frames = ann.frames()
        self.assertEqual([(op, closeCode(p)) for op, p in frames], [(CLOSE, 1001)])
        self.assertNoResult(stopping)
        ann.lose()  # the client went
        self.successResultOf(stopping)

    def test_gracefulStopGivesUpAtTheTimeout(self) -> None:
        """A client that never goes is waited for C{shutdownTimeout} seconds, not more."""
        self.member("ann", 40005)
        stopping = self.chat.service.stopService()
        self.reactor.advance(self.chat.settings.shutdownTimeout - 0.1)
        self.assertNoResult(stopping)
        self.reactor.advance(0.2)
        self.successResultOf(stopping)


class PublishTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.chat = started(self, Chat(MemoryReactorClock(), limits=Limits(maxText=10)))

    def test_invalid(self) -> None:
        """What the wire refuses from a client, publish refuses too: with a RemoteError
        (BadRequest, TooLarge), as the client would get it."""
        for room, text, nick in [
            ("..", "hi", "ops"),
            ("lobby", "x" * 11, "ops"),
            ("lobby", "hi", ""),
            ("lobby", "\ud800", "ops"),
        ]:
            failure = self.failureResultOf(self.chat.publish(room, text, nick=nick), RemoteError)
            self.assertTrue(failure.getErrorMessage())

    def test_brokerDown(self) -> None:
        """A broker that cannot take the message fails the Deferred: never silently."""

        class Full(MemoryBroker):
            def publish(self, *args: Any) -> Any:
                from twisted.internet.defer import fail

                return fail(Unavailable("redis is down"))

        chat = started(self, Chat(MemoryReactorClock(), broker=Full(10, 10)))
        self.failureResultOf(chat.publish("lobby", "hi"), Unavailable)

    def test_subscribeBadRoom(self) -> None:
        self.assertRaises(BadRequest, self.chat.subscribe, "a b", lambda e: None)


class OptionsTests(SynchronousTestCase):
    def test_defaultsListenNowhere(self) -> None:
        """A Chat listens nowhere unless told; the broker is the memory one."""
        chat = Chat(MemoryReactorClock())
        self.assertEqual((chat.settings.ports, chat.settings.broker), ((), "memory"))
        self.assertEqual(list(chat.service), [])  # no listening service
        self.assertEqual(chat.listening, [])

    def test_overrides(self) -> None:
        """Options override fields of the given Settings; Python spellings are accepted."""
        base = Settings(echo=True, shutdownTimeout=1.0)
        chat = Chat(
            MemoryReactorClock(),
            base,
            broker="redis://127.0.0.1:6379/0",
            ports=["tcp:0"],
            trustedProxies=["10.0.0.0/8"],
            staticDir=str(Path(__file__).parent),
            joinSecret="s" * 16,
        )
        s = chat.settings
        self.assertEqual(
            (s.echo, s.shutdownTimeout, s.broker), (True, 1.0, "redis://127.0.0.1:6379/0")
        )
        self.assertEqual(s.ports, ("tcp:0",))
        self.assertEqual([str(n) for n in s.trustedProxies], ["10.0.0.0/8"])
        self.assertEqual(s.staticDir, Path(__file__).parent)
        self.assertEqual(s.joinSecret, b"s" * 16)
        self.assertFalse(base.ports)  # the given Settings is not changed

    def test_badOptions(self) -> None:
        """An unknown name is a TypeError; a bad value a ValueError naming the field."""
        reactor = MemoryReactorClock()
        self.assertRaises(TypeError, Chat, reactor, noSuchOption=1)
        self.assertRaises(TypeError, Chat, reactor, ports="tcp:8080")
        for options, field in [
            ({"shutdownTimeout": -1}, "shutdownTimeout"),
            ({"slowConsumerPolicy": "ignore"}, "slowConsumerPolicy"),
            ({"apiToken": "short"}, "API token"),
            ({"joinSecret": b"short"}, "join secret"),
            ({"ports": ["nonsense:1"]}, "ports"),
            ({"chatPrefix": "chat"}, "chat-prefix"),
            ({"broker": "mysql://x"}, ""),
            ({"staticDir": "/no/such/dir"}, "staticDir"),
            ({"trustedProxies": ["not an address"]}, ""),
        ]:
            with self.assertRaises(ValueError, msg=str(options)) as raised:
                Chat(reactor, **options)
            self.assertIn(field, str(raised.exception))


class PublicApiTests(SynchronousTestCase):
    def test_allIsImportable(self) -> None:
        """Every name of portshare.__all__ is there, documented; nothing else is offered."""
        for name in portshare.__all__:
            value = getattr(portshare, name)
            if name != "__version__" and name != "RoomEvent":
                self.assertTrue(value.__doc__, name)
        self.assertRaises(AttributeError, getattr, portshare, "PortshareService")
        self.assertEqual(set(portshare.__all__) - {"__version__"}, set(portshare._PUBLIC))

    def test_twistdIsBuiltOnChat(self) -> None:
        """twistd portshare makes its service with Chat: one way to build it, not two."""
        from portshare import tap

        made: list[Chat] = []

        class Recording(Chat):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                made.append(self)

        self.patch(tap, "Chat", Recording)
        for logFormat in ("text", "json"):
            options = tap.Options()
            options.parseOptions(["--port", "tcp:0", "--log-format", logFormat])
            service = tap.makeService(options, MemoryReactorClock())
            self.assertIn(made[-1].service, [service, *service])  # itself, or its one child
        self.assertEqual(len(made), 2)
        self.assertIsInstance(made[0].service, PortshareService)
        self.assertEqual(made[0].settings.ports, ("tcp:0",))
