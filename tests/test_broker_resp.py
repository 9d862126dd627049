"""
Tests for L{portshare.broker.resp}: the RESP protocol on a L{StringTransport} and a L{Clock}:
replies matched in order, errors, the reply timer, the bound on commands in flight, scripts by
SHA1, and pub/sub pushes.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from portshare.broker.resp import (
    ConnectionLost,
    Overloaded,
    ResponseError,
    RespProtocol,
    scriptSha,
)


class AbortableTransport(StringTransport):
    """A StringTransport whose abortConnection ends the connection as Twisted's does."""

    def __init__(self) -> None:
        super().__init__()
        self.protocol: Any = None

    def abortConnection(self) -> None:
        self.loseConnection()
        if self.protocol is not None and self.protocol.connected:
            self.protocol.connectionLost(None)


def connected(timeout: float = 5.0, maxPending: int = 100) -> tuple[RespProtocol, Any, Clock]:
    clock = Clock()
    protocol = RespProtocol(clock, timeout, maxPending)
    transport = AbortableTransport()
    transport.protocol = protocol
    protocol.makeConnection(transport)
    return protocol, transport, clock


class CommandTests(SynchronousTestCase):
    """Commands are pipelined; replies come back to them in order."""

    def test_pipelinedInOrder(self) -> None:
        """Two commands go out before any reply; their replies fire them in order."""
        protocol, transport, _ = connected()
        first = protocol.execute("GET", "a")
        second = protocol.execute("INCRBY", "b", 2)
        self.assertEqual(
            transport.value(),
            b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n*3\r\n$6\r\nINCRBY\r\n$1\r\nb\r\n$1\r\n2\r\n",
        )
        protocol.dataReceived(b"$2\r\nhi\r\n:")
        self.assertEqual(self.successResultOf(first), "hi")
        self.assertNoResult(second)
        protocol.dataReceived(b"3\r\n")
        self.assertEqual(self.successResultOf(second), 3)

    def test_errorReply(self) -> None:
        """An error reply fails its command with Redis's message; the next is unaffected."""
        protocol, _, _ = connected()
        bad, good = protocol.execute("NOPE"), protocol.execute("PING")
        protocol.dataReceived(b"-ERR unknown command\r\n+PONG\r\n")
        self.assertEqual(str(self.failureResultOf(bad, ResponseError).value), "ERR unknown command")
        self.assertEqual(self.successResultOf(good), "PONG")

    def test_lateReplyDropsTheConnection(self) -> None:
        """A reply later than the timeout aborts the connection; pending commands fail."""
        protocol, transport, clock = connected(timeout=5.0)
        d = protocol.execute("GET", "a")
        clock.advance(4.9)
        self.assertNoResult(d)
        clock.advance(0.2)
        self.failureResultOf(d, ConnectionLost)
        self.assertTrue(transport.disconnecting)
        self.failureResultOf(protocol.execute("GET", "a"), ConnectionLost)

    def test_timerFollowsTheOldest(self) -> None:
        """The timer measures the oldest command still waiting, not the first ever sent."""
        protocol, transport, clock = connected(timeout=5.0)
        protocol.execute("GET", "a")
        clock.advance(3)
        later = protocol.execute("GET", "b")
        protocol.dataReceived(b"$-1\r\n")
        clock.advance(3)  # 6 s after the first, 3 s after `later`
        self.assertNoResult(later)
        self.assertFalse(transport.disconnecting)
        clock.advance(2.1)
        self.failureResultOf(later, ConnectionLost)

    def test_boundedInFlight(self) -> None:
        """Past maxPending commands in flight, a command fails at once and nothing is sent."""
        protocol, transport, _ = connected(maxPending=2)
        protocol.execute("PING")
        protocol.execute("PING")
        sent = transport.value()
        self.failureResultOf(protocol.execute("PING"), Overloaded)
        self.assertEqual(transport.value(), sent)

    def test_garbageDropsTheConnection(self) -> None:
        """Bytes that are not RESP drop the connection (hostile or broken peer)."""
        protocol, _, _ = connected()
        d = protocol.execute("PING")
        protocol.dataReceived(b"!!not resp\r\n")
        self.failureResultOf(d, ConnectionLost)

    def test_unaskedReplyDropsTheConnection(self) -> None:
        """A reply no command waits for means the state is unknown: the connection goes."""
        protocol, transport, _ = connected()
        protocol.dataReceived(b"+OK\r\n")
        self.assertTrue(transport.disconnecting)


class ScriptTests(SynchronousTestCase):
    """Scripts run by SHA1; their text is sent only when Redis lacks them."""

    def test_evalshaThenEval(self) -> None:
        """NOSCRIPT makes the protocol send the text once; the reply is the script's."""
        protocol, transport, _ = connected()
        d = protocol.eval("return 1", ["k"], ["a"])
        self.assertIn(b"EVALSHA", transport.value())
        self.assertIn(scriptSha("return 1").encode(), transport.value())
        transport.clear()
        protocol.dataReceived(b"-NOSCRIPT No matching script.\r\n")
        self.assertIn(b"$4\r\nEVAL\r\n$8\r\nreturn 1\r\n", transport.value())
        protocol.dataReceived(b":1\r\n")
        self.assertEqual(self.successResultOf(d), 1)

    def test_otherScriptErrors(self) -> None:
        """Any other error is the script's failure; its text is not sent again."""
        protocol, transport, _ = connected()
        d = protocol.eval("return 1", [], [])
        transport.clear()
        protocol.dataReceived(b"-ERR boom\r\n")
        self.failureResultOf(d, ResponseError)
        self.assertEqual(transport.value(), b"")


class PubSubTests(SynchronousTestCase):
    """Pushes go to onMessage; confirmations and pongs to what asked for them."""

    def test_messagesAndConfirmations(self) -> None:
        """A subscription fires once every channel is confirmed; messages arrive decoded."""
        protocol, _, _ = connected()
        got: list[tuple[str, str]] = []
        protocol.onMessage = lambda channel, payload: got.append((channel, payload))
        d = protocol.subscribeTo(["a", "b"])
        protocol.dataReceived(b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n")
        self.assertNoResult(d)
        protocol.dataReceived(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n")
        self.successResultOf(d)
        protocol.dataReceived(b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$4\r\n\xc3\xa9t\xc3\r\n")
        self.assertEqual(got, [("a", "\u00e9t\ufffd")])

    def test_pongAndLostPing(self) -> None:
        """A pong answers a ping; a ping unanswered in time drops the connection."""
        protocol, transport, clock = connected()
        d = protocol.ping(1.0)
        protocol.dataReceived(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n")
        self.successResultOf(d)
        late = protocol.ping(1.0)
        clock.advance(1.1)
        self.failureResultOf(late)
        self.assertTrue(transport.disconnecting)
