"""
Tests for L{portshare.client.websocket}: a L{WebSocketLink} against the real service's tree,
in memory (L{twisted.test.iosim}), handshake included.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from portshare.client.link import CLOSED, CliError, Server
from portshare.client.websocket import WebSocketLink
from portshare.testing import startedService
from portshare.wire import Ack, Error, Joined, Message, Presence
from tests.test_client_link import queued


class WebSocketLinkTests(SynchronousTestCase):
    """The link's commands reach the hub as the wire's, and its events come back typed."""

    def setUp(self) -> None:
        self.service = startedService(self)

    def connected(self, port: int = 40000) -> tuple[WebSocketLink, iosim.IOPump]:
        """A link to the service, its WebSocket open, and the pump between them."""
        link = WebSocketLink()
        factory = link.clientFactory(self.service.reactor, Server("http://127.0.0.1:8080"))
        here = IPv4Address("TCP", "127.0.0.1", 8080)
        there = IPv4Address("TCP", "127.0.0.1", port)
        client = factory.buildProtocol(here)
        server = self.service.tracker.buildProtocol(there)
        pump = iosim.connect(
            server,
            iosim.FakeTransport(server, True, hostAddress=here, peerAddress=there),
            client,
            iosim.FakeTransport(client, False, hostAddress=there, peerAddress=here),
            greet=False,
        )
        pump.flush()
        self.successResultOf(link.opened)
        self.addCleanup(self.closed, link, pump)
        return link, pump

    def closed(self, link: WebSocketLink, pump: iosim.IOPump) -> None:
        link.close()
        pump.flush()

    def test_subprotocol(self) -> None:
        """The link offers portshare.chat.v1, and the server selects it."""
        link, _ = self.connected()
        assert link.protocol is not None
        self.assertEqual(link.protocol.websocket_protocol_in_use, "portshare.chat.v1")

    def test_joinAndSay(self) -> None:
        """A join is answered with its typed joined (ref "join"), a say with the message
        and its ack (ref as given)."""
        link, pump = self.connected()
        self.successResultOf(link.join("r", "ann", None))
        pump.flush()
        [joined] = queued(link)
        assert isinstance(joined, Joined)
        self.assertEqual(
            (joined.room, joined.offset, joined.members, joined.count, joined.ref),
            ("r", 0, ("ann",), 1, "join"),
        )
        link.say("r", "hi", 1)
        pump.flush()
        message, ack = queued(link)
        assert isinstance(message, Message)
        self.assertEqual(
            (message.room, message.offset, message.nick, message.text), ("r", 1, "ann", "hi")
        )
        self.assertEqual(ack, Ack(ref=1, offset=1, room="r"))

    def test_sinceReplays(self) -> None:
        """A join with since replays the history after it."""
        self.service.hub.publish("h", "bob", "old")
        link, pump = self.connected()
        self.successResultOf(link.join("h", None, 0))
        pump.flush()
        joined, message = queued(link)
        assert isinstance(joined, Joined) and isinstance(message, Message)
        self.assertEqual((joined.offset, joined.recovered, message.text), (1, True, "old"))

    def test_refused(self) -> None:
        """The server's refusal is a typed error with the command's ref."""
        link, pump = self.connected()
        link.say("nowhere", "hi", 1)
        pump.flush()
        [error] = queued(link)
        assert isinstance(error, Error)
        self.assertEqual((error.code, error.ref), ("not_joined", 1))

    def test_presence(self) -> None:
        """Another member's join reaches the link as a typed presence."""
        link, pump = self.connected()
        self.successResultOf(link.join("p", "ann", None))
        pump.flush()
        queued(link)
        other, otherPump = self.connected(40001)
        self.successResultOf(other.join("p", "bob", None))
        otherPump.flush()
        pump.flush()
        self.assertEqual(queued(link), [Presence(room="p", event="join", nick="bob")])

    def test_binaryIgnored(self) -> None:
        """A binary frame from the server is not an event: nothing is queued."""
        link, _ = self.connected()
        assert link.protocol is not None
        link.protocol.onMessage(b'{"type":"left","room":"r"}', True)
        self.assertEqual(queued(link), [])

    def test_close(self) -> None:
        """close() ends the WebSocket; CLOSED is the last item."""
        link, pump = self.connected()
        link.close()
        pump.flush()
        self.assertEqual(queued(link), [CLOSED])

    def test_handshakeRefused(self) -> None:
        """A WebSocket that never opens fails opened with the close code, and queues CLOSED."""
        link = WebSocketLink()
        factory = link.clientFactory(self.service.reactor, Server("http://127.0.0.1:8080"))
        protocol: Any = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 8080))
        protocol.onClose(False, 1006, "connection was closed uncleanly")
        failure = self.failureResultOf(link.opened, CliError)
        self.assertEqual(
            str(failure.value), "WebSocket refused: 1006 connection was closed uncleanly"
        )
        self.assertEqual(queued(link), [CLOSED])
