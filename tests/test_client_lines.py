"""
Tests for L{portshare.client.lines}: a L{LinesLink} against the real service's tree in memory,
and its handling of the upgrade's answer on a L{StringTransport}.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from portshare.client.lines import LinesLink
from portshare.client.link import CLOSED, CliError, Server
from portshare.testing import startedService
from portshare.wire import Ack, Close, Joined, Left, Message
from tests.test_client_link import queued

SWITCHED = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: portshare-lines\r\n\r\n"


def onTransport(server: str = "http://127.0.0.1:8080") -> tuple[LinesLink, StringTransport]:
    """A link whose connection is a L{StringTransport}, the request written."""
    link = LinesLink()
    protocol = link.clientFactory(Server(server)).buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return link, transport


class UpgradeTests(SynchronousTestCase):
    """The link asks for portshare-lines on /ws and opens on 101 only."""

    def test_request(self) -> None:
        """The upgrade request names the server's host and port."""
        _, transport = onTransport("http://chat.example:8080")
        self.assertEqual(
            transport.value(),
            b"GET /ws HTTP/1.1\r\nHost: chat.example:8080\r\nUpgrade: portshare-lines\r\n"
            b"Connection: Upgrade\r\n\r\n",
        )

    def test_requestUnderThePrefix(self) -> None:
        """With a path in --url (the chat's prefix), the upgrade is asked of PREFIX/ws."""
        _, transport = onTransport("http://chat.example:8080/chat/")
        self.assertTrue(transport.value().startswith(b"GET /chat/ws HTTP/1.1\r\n"))

    def test_switched(self) -> None:
        """101 opens the link, even with the head split and lines after it in one read."""
        link, _ = onTransport()
        assert link.protocol is not None
        link.protocol.dataReceived(SWITCHED[:20])
        self.assertNoResult(link.opened)
        link.protocol.dataReceived(SWITCHED[20:] + b'{"type":"left","room":"r"}\n\n')
        self.successResultOf(link.opened)
        self.assertEqual(queued(link), [Left(room="r")])

    def test_refused(self) -> None:
        """Another status fails opened with the status line and body, and hangs up."""
        link, transport = onTransport()
        assert link.protocol is not None
        link.protocol.dataReceived(b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 2\r\n\r\n{}")
        failure = self.failureResultOf(link.opened, CliError)
        self.assertEqual(
            str(failure.value), "no switch to portshare-lines: HTTP/1.1 426 Upgrade Required {}"
        )
        self.assertTrue(transport.disconnecting)

    def test_lostBeforeSwitch(self) -> None:
        """A connection lost before the answer fails opened, and queues CLOSED."""
        link, _ = onTransport()
        assert link.protocol is not None
        link.protocol.connectionLost(Failure(ConnectionError("gone")))
        failure = self.failureResultOf(link.opened, CliError)
        self.assertEqual(str(failure.value), "connection lost: gone")
        self.assertEqual(queued(link), [CLOSED])

    def test_sendsEncodedCommands(self) -> None:
        """Each command is one line of the wire's JSON."""
        link, transport = onTransport()
        assert link.protocol is not None
        link.protocol.dataReceived(SWITCHED)
        transport.clear()
        self.successResultOf(link.join("r", None, 4))
        link.say("r", "hé", 2)
        self.assertEqual(
            transport.value(),
            b'{"type":"join","room":"r","since":4,"ref":"join"}\n'
            + '{"type":"say","room":"r","text":"hé","ref":2}\n'.encode(),
        )


class LinesLinkTests(SynchronousTestCase):
    """Against the real line protocol, in memory."""

    def setUp(self) -> None:
        self.service = startedService(self)

    def connected(self) -> tuple[LinesLink, iosim.IOPump]:
        link = LinesLink()
        here = IPv4Address("TCP", "127.0.0.1", 8080)
        there = IPv4Address("TCP", "127.0.0.1", 40000)
        client = link.clientFactory(Server("http://127.0.0.1:8080")).buildProtocol(here)
        server = self.service.tracker.buildProtocol(there)
        pump = iosim.connect(
            server,
            iosim.FakeTransport(server, True, hostAddress=here, peerAddress=there),
            client,
            iosim.FakeTransport(client, False, hostAddress=there, peerAddress=here),
        )
        pump.flush()
        self.successResultOf(link.opened)
        return link, pump

    def test_joinAndSay(self) -> None:
        """A join and a say are answered with typed events."""
        link, pump = self.connected()
        self.successResultOf(link.join("r", "ann", None))
        link.say("r", "hi", 1)
        pump.flush()
        joined, message, ack = queued(link)
        assert isinstance(joined, Joined) and isinstance(message, Message)
        self.assertEqual((joined.room, joined.members, joined.ref), ("r", ("ann",), "join"))
        self.assertEqual((message.nick, message.text), ("ann", "hi"))
        self.assertEqual(ack, Ack(ref=1, offset=1, room="r"))

    def test_closeNotice(self) -> None:
        """The server's close line is a typed Close; CLOSED follows."""
        link, pump = self.connected()
        assert link.protocol is not None
        link.protocol.sendLine(b"QUIT")
        pump.flush()
        self.assertEqual(queued(link), [Close(1000, "bye"), CLOSED])
