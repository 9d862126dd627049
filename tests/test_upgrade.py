"""
Tests for L{portshare.upgrade} and L{portshare.lines}: the protocol switch on C{/ws} and the
chat line protocol behind it, in memory (StringTransport under the real tracker, site and
hub), plus a resource-level test with a user's own protocol and one real-loopback test.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.protocols.basic import LineOnlyReceiver
from twisted.trial.unittest import SynchronousTestCase

from portshare.limits import Limits
from portshare.testing import MemoryConnection, startedService
from portshare.upgrade import UpgradeDispatcher, upgradeTokens


def switchRequest(token: str = "portshare-lines", path: str = "/ws", extra: str = "") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: {token}\r\nConnection: Upgrade\r\n{extra}\r\n"
    ).encode()


def lines(data: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in data.splitlines() if line]


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(b"echo:" + data)  # type: ignore[union-attr]


class UpgradeTokensTests(SynchronousTestCase):
    def test_tokens(self) -> None:
        """Upgrade tokens are split, lowercased and kept in order; junk is left out."""
        self.assertEqual(
            upgradeTokens(b"WebSocket, foo/2 ,, bad token, x"), ["websocket", "foo/2", "x"]
        )
        self.assertEqual(upgradeTokens(None), [])

    def test_registerRefusals(self) -> None:
        """websocket, malformed and duplicate tokens cannot be registered."""
        d = UpgradeDispatcher()
        d.registerUpgrade("Echo", Factory.forProtocol(Echo))
        for bad in ("websocket", "two words", "echo"):
            self.assertRaises(ValueError, d.registerUpgrade, bad, Factory.forProtocol(Echo))
        self.assertEqual(d.tokens(), ["echo"])
        d.unregisterUpgrade("ECHO")
        self.assertEqual(d.tokens(), [])


class DispatchTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.service = startedService(self)
        self.service.upgrades.registerUpgrade("echo", Factory.forProtocol(Echo))

    def test_registeredTokenSwitches(self) -> None:
        """A registered token gets 101 with that token; the socket is the protocol's after it,
        bytes sent with the request included, and the connections view names the protocol."""
        c = MemoryConnection(self.service, port=40200)
        c.send(switchRequest("echo") + b"early")
        head, _, rest = c.read().partition(b"\r\n\r\n")
        self.assertEqual(
            head.split(b"\r\n"),
            [b"HTTP/1.1 101 Switching Protocols", b"Upgrade: echo", b"Connection: Upgrade"],
        )
        self.assertEqual(rest, b"echo:early")
        c.send(b"GET / HTTP/1.1\r\n\r\n")
        self.assertEqual(c.read(), b"echo:GET / HTTP/1.1\r\n\r\n")
        [row] = self.service.tracker.rows()
        self.assertEqual((row["protocol"], row["port"]), ("echo", 40200))
        self.assertEqual(self.service.tracker.counts()["echo"], 1)
        self.assertEqual(self.service.site.inflight, set())

    def test_preferenceOrder(self) -> None:
        """Of several tokens the first one known wins; websocket still goes to Autobahn."""
        c = MemoryConnection(self.service)
        c.send(switchRequest("nope, echo, portshare-lines"))
        self.assertIn(b"Upgrade: echo", c.read())

    def test_unknownToken426(self) -> None:
        """Only unknown tokens: 426 with a JSON reason and the tokens on offer."""
        c = MemoryConnection(self.service)
        c.send(switchRequest("h2c"))
        head, _, body = c.read().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 426"), head)
        self.assertIn(b"upgrade: websocket, echo, portshare-lines", head.lower())
        error = orjson.loads(body)
        self.assertEqual(error["error"], "upgrade_required")
        self.assertIn("h2c", error["reason"])

    def test_connectionHeaderNeeded(self) -> None:
        """Upgrade without Connection: upgrade is a 400 that says so, and stays HTTP."""
        c = MemoryConnection(self.service)
        c.send(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\n\r\n")
        head, _, body = c.read().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 400"), head)
        self.assertIn("Connection: Upgrade", orjson.loads(body)["reason"])
        [row] = self.service.tracker.rows()
        self.assertEqual(row["protocol"], "http/1.1")

    def test_postRefused(self) -> None:
        """Switching needs GET."""
        c = MemoryConnection(self.service)
        c.send(switchRequest("echo").replace(b"GET", b"POST"))
        self.assertTrue(c.read().startswith(b"HTTP/1.1 400"))

    def test_upgradeElsewhereIgnored(self) -> None:
        """Upgrade on a GET to a path that does not switch is served as plain HTTP."""
        c = MemoryConnection(self.service)
        c.send(switchRequest("echo", path="/healthz"))
        head, _, body = c.read().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        self.assertEqual(orjson.loads(body), {"status": "ok"})
        c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(c.read().startswith(b"HTTP/1.1 200"))

    def test_plainGetStill426(self) -> None:
        """Without Upgrade, /ws answers the WebSocket 426 as before; /ws/echo stays a child."""
        c = MemoryConnection(self.service)
        c.send(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(c.read().startswith(b"HTTP/1.1 426"))
        c.send(b"GET /ws/nothing HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(c.read().startswith(b"HTTP/1.1 404"))


class LinesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.service = startedService(self)

    def connect(self, port: int = 40300) -> MemoryConnection:
        c = MemoryConnection(self.service, port=port)
        c.send(switchRequest())
        head, _, rest = c.read().partition(b"\r\n\r\n")
        self.assertIn(b"Upgrade: portshare-lines", head)
        self.assertEqual(rest, b"")
        return c

    def test_chat(self) -> None:
        """Two line clients join, talk and leave; replies are the WebSocket's JSON events."""
        a, b = self.connect(), self.connect(40301)
        a.send(b"NICK ann\r\nJOIN lobby\r\n")
        self.assertEqual(lines(a.read())[0]["type"], "joined")
        b.send(b'{"type":"join","room":"lobby","nick":"bob","ref":7}\n')
        joined = lines(b.read())[0]
        self.assertEqual(
            (joined["type"], joined["ref"], joined["members"]), ("joined", 7, ["ann", "bob"])
        )
        self.assertEqual(
            lines(a.read()), [{"type": "presence", "room": "lobby", "event": "join", "nick": "bob"}]
        )
        b.send(b"SAY lobby hi there\n")
        for c in (a, b):
            [message] = lines(c.read())
            self.assertEqual(
                (message["nick"], message["text"], message["offset"]), ("bob", "hi there", 1)
            )
        b.send(b"LEAVE lobby\n")
        self.assertEqual(lines(b.read()), [{"type": "left", "room": "lobby"}])
        self.assertEqual(lines(a.read())[0]["event"], "leave")
        rows = {r["port"]: r["protocol"] for r in self.service.tracker.rows()}
        self.assertEqual(rows, {40300: "portshare-lines", 40301: "portshare-lines"})

    def test_presenceBatch(self) -> None:
        """A big room's presence_batch is one line, the WebSocket's JSON event."""
        self.service = startedService(self, limits=Limits(presenceBatchAbove=1))
        a, b = self.connect(), self.connect(40301)
        a.send(b"NICK ann\nJOIN lobby\n")
        b.send(b"NICK bob\nJOIN lobby\n")
        self.assertEqual([e["type"] for e in lines(a.read())], ["joined"])
        self.service.reactor.advance(self.service.settings.limits.presenceBatchInterval)
        self.assertEqual(
            lines(a.read()),
            [
                {
                    "type": "presence_batch",
                    "room": "lobby",
                    "count": 2,
                    "joined": ["bob"],
                    "left": [],
                    "truncated": False,
                }
            ],
        )

    def test_commandInHandshakePacket(self) -> None:
        """Lines sent right behind the request, in the same read, are not lost."""
        c = MemoryConnection(self.service)
        c.send(switchRequest() + b"JOIN lobby 0\nSAY lobby first\n")
        _, _, rest = c.read().partition(b"\r\n\r\n")
        kinds = [e["type"] for e in lines(rest)]
        self.assertEqual(kinds, ["joined", "message"])

    def test_errorsKeepConnection(self) -> None:
        """A bad line is an error event; the connection stays usable."""
        c = self.connect()
        c.send(b"SAY lobby hi\nWAT\nJOIN bad/room\n{not json\n")
        errors = lines(c.read())
        self.assertEqual(
            [e["code"] for e in errors],
            ["not_joined", "unknown_type", "bad_request", "bad_request"],
        )
        c.send(b"JOIN lobby\n")
        self.assertEqual(lines(c.read())[0]["type"], "joined")

    def test_hubAndProtocolHistoryReplay(self) -> None:
        """JOIN with since replays history after that offset, with recovered."""
        self.service.hub.publish("lobby", "http", "one")
        self.service.hub.publish("lobby", "http", "two")
        c = self.connect()
        c.send(b"JOIN lobby 1\n")
        events = lines(c.read())
        self.assertEqual((events[0]["type"], events[0]["recovered"]), ("joined", True))
        self.assertEqual([e["text"] for e in events[1:]], ["two"])

    def test_lineTooLong(self) -> None:
        """A line over the message size limit closes with a close line (1009)."""
        c = self.connect()
        c.send(b"x" * (self.service.settings.limits.maxMessageSize + 10))
        [close] = lines(c.read())
        self.assertEqual((close["type"], close["code"]), ("close", 1009))
        self.assertTrue(c.transport.disconnecting)

    def test_quitAndDisconnect(self) -> None:
        """QUIT closes; a lost connection leaves its rooms (presence leave)."""
        a, b = self.connect(), self.connect(40301)
        a.send(b"JOIN lobby\n")
        b.send(b"JOIN lobby\n")
        a.read()
        b.send(b"QUIT\n")
        self.assertEqual(lines(b.read())[-1]["type"], "close")
        b.protocol.connectionLost(connectionDone)
        self.assertEqual(lines(a.read())[-1]["event"], "leave")

    def test_shutdownCloses(self) -> None:
        """At shutdown a line client gets a 1001 close line."""
        c = self.connect()
        self.service.closeWebSockets(1001, "server shutting down")
        [close] = lines(c.read())
        self.assertEqual((close["code"], close["reason"]), (1001, "server shutting down"))

    def test_slowConsumerCut(self) -> None:
        """A client whose socket stays full is cut, as on the WebSocket (close policy)."""
        c = self.connect()
        c.send(b"JOIN lobby\n")
        c.read()
        c.protocol.wrappedProtocol.backpressure.pauseProducing()
        self.service.reactor.advance(self.service.settings.limits.slowConsumerSeconds + 1)
        self.assertTrue(c.transport.disconnecting)
        self.assertEqual(self.service.metrics.slowConsumers._value.get(), 1)


class LinesClient(LineOnlyReceiver):
    delimiter = b"\n"

    def __init__(self) -> None:
        self.head = b""
        self.switched: Deferred[bytes] = Deferred()
        self.events: list[Deferred[dict[str, Any]]] = []
        self.backlog: list[dict[str, Any]] = []

    def dataReceived(self, data: bytes) -> None:
        if not self.switched.called:
            self.head += data
            if b"\r\n\r\n" not in self.head:
                return
            head, _, rest = self.head.partition(b"\r\n\r\n")
            self.switched.callback(head)
            data = rest
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        event = orjson.loads(line)
        if self.events:
            self.events.pop(0).callback(event)
        else:
            self.backlog.append(event)

    def next(self) -> Deferred[dict[str, Any]]:
        if self.backlog:
            d: Deferred[dict[str, Any]] = Deferred()
            d.callback(self.backlog.pop(0))
            return d
        d = Deferred()
        self.events.append(d)
        return d


@pytest.mark.e2e
@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_linesAndWebSocketOverLoopback() -> None:
    """Over a real socket, a line client and a WebSocket client chat in one room on one port."""
    from portshare.service import PortshareService, Settings
    from portshare.testing import connectChat

    service = PortshareService(Settings(ports=("tcp:0:interface=127.0.0.1",)), reactor)
    service.startService()
    try:
        port = int(service.listening[0].rsplit(":", 1)[1])
        lineClient = LinesClient()
        await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(
            Factory.forProtocol(lambda: lineClient)
        )
        lineClient.transport.write(switchRequest() + b"NICK ann\nJOIN lobby\n")  # type: ignore[union-attr]
        assert (await lineClient.switched).startswith(b"HTTP/1.1 101 Switching Protocols")
        assert (await lineClient.next())["type"] == "joined"
        ws = await connectChat(reactor, port)
        ws.send(type="join", room="lobby", nick="bob")
        await ws.until("joined")
        assert (await lineClient.next())["nick"] == "bob"  # presence
        ws.send(type="say", room="lobby", text="from ws")
        assert (await lineClient.next())["text"] == "from ws"
        lineClient.sendLine(b"SAY lobby from lines")
        assert (await ws.until("message"))["text"] == "from ws"
        assert (await ws.until("message"))["text"] == "from lines"
        protocols = {row["protocol"] for row in service.tracker.rows()}
        assert {"portshare-lines", "websocket"} <= protocols
        ws.dropConnection(abort=True)
    finally:
        await service.stopService()
