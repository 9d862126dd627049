"""Tests for L{portshare.sendnow}: frames go to the socket at once, Twisted keeps the rest."""

from __future__ import annotations

import errno
import socket

from twisted.internet import tcp
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from portshare.sendnow import MIRRORED, ImmediateWriter, Turns, immediateWriter


class FakeSocket:
    """A socket whose C{send} takes what the test says, or raises."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.take: int | None = None  # bytes the next sends take (None: all)
        self.error: OSError | None = None

    def send(self, data: bytes) -> int:
        if self.error is not None:
            raise self.error
        taken = len(data) if self.take is None else min(self.take, len(data))
        self.sent.append(bytes(data[:taken]))
        return taken


class FakeServerTransport:
    """The attributes of L{tcp.Server} that the writer reads, and a recording C{write}."""

    TLS = False

    def __init__(self) -> None:
        self.socket = FakeSocket()
        self.dataBuffer = b""
        self.offset = 0
        self._tempDataLen = 0
        self.connected = True
        self.disconnecting = False
        self._writeDisconnected = False
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)
        self._tempDataLen += len(data)


class ImmediateWriterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.turns = Turns(self.clock)
        self.transport = FakeServerTransport()
        self.write = ImmediateWriter(self.transport, self.turns)

    def test_oneImmediateSendPerTurn(self) -> None:
        """Frames after the first in a turn are corked, and go out together in one send at
        the start of the next turn; a turn after a quiet one sends at once again."""
        self.write(b"one")
        self.write(b"two")
        self.write(b"three")
        self.assertEqual(self.transport.socket.sent, [b"one"])
        self.clock.advance(0)  # the next turn
        self.assertEqual(self.transport.socket.sent, [b"one", b"twothree"])
        self.write(b"four")  # the flush was this turn's send: corked again
        self.clock.advance(0)
        self.clock.advance(0)  # a quiet turn
        self.write(b"five")
        self.assertEqual(self.transport.socket.sent, [b"one", b"twothree", b"four", b"five"])
        self.assertEqual(self.transport.written, [])

    def test_corkedFramesQueueBehindTwistedsBuffer(self) -> None:
        """If Twisted's buffer holds bytes when the cork is flushed, the corked frames go
        behind them, through the transport."""
        self.write(b"one")
        self.write(b"two")
        self.transport._tempDataLen = 5
        self.clock.advance(0)
        self.assertEqual(self.transport.written, [b"two"])

    def test_flushBeforeTheNextTurn(self) -> None:
        """flush() sends the corked frames at once (before the connection closes)."""
        self.write(b"one")
        self.write(b"two")
        self.write.flush()
        self.assertEqual(self.transport.socket.sent, [b"one", b"two"])
        self.clock.advance(0)
        self.assertEqual(self.transport.socket.sent, [b"one", b"two"])

    def test_turnsAreCountedOnlyWhileWriting(self) -> None:
        """An idle reactor has no call pending; a write schedules one for the next turn."""
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.write(b"one")
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_sendsAtOnceWhenNothingIsBuffered(self) -> None:
        """A frame goes to the socket in the call, and nothing is left to Twisted."""
        self.write(b"frame")
        self.assertEqual(self.transport.socket.sent, [b"frame"])
        self.assertEqual(self.transport.written, [])

    def test_restOfAPartialSendIsBuffered(self) -> None:
        """What the kernel did not take goes to the transport's buffer, and so does the next
        frame: the bytes keep their order."""
        self.transport.socket.take = 2
        self.write(b"abcdef")
        self.clock.advance(0)
        self.write(b"next")
        self.assertEqual(self.transport.socket.sent, [b"ab"])
        self.assertEqual(self.transport.written, [b"cdef", b"next"])

    def test_fullKernelBufferLeavesEverythingToTwisted(self) -> None:
        """EAGAIN: the whole frame waits in Twisted's buffer (and its producer pausing)."""
        self.transport.socket.error = BlockingIOError(errno.EAGAIN, "full")
        self.write(b"frame")
        self.assertEqual(self.transport.written, [b"frame"])

    def test_brokenSocketIsLeftToTwisted(self) -> None:
        """EPIPE and the like: the transport gets the frame and meets the error itself."""
        self.transport.socket.error = OSError(errno.EPIPE, "broken pipe")
        self.write(b"frame")
        self.assertEqual(self.transport.written, [b"frame"])

    def test_bufferedDataGoesFirst(self) -> None:
        """While older bytes wait in either of Twisted's buffers, new ones queue behind."""
        self.transport.dataBuffer, self.transport.offset = b"old", 1
        self.write(b"a")
        self.clock.advance(0)
        self.transport.dataBuffer, self.transport.offset = b"", 0
        self.transport._tempDataLen = 3
        self.write(b"b")
        self.assertEqual(self.transport.socket.sent, [])
        self.assertEqual(self.transport.written, [b"a", b"b"])

    def test_closingTransportKeepsItsOwnRules(self) -> None:
        """A disconnecting or half-closed transport decides itself what to do with a write."""
        for attribute in ("disconnecting", "_writeDisconnected"):
            transport = FakeServerTransport()
            setattr(transport, attribute, True)
            ImmediateWriter(transport, self.turns)(b"frame")
            self.assertEqual((transport.socket.sent, transport.written), ([], [b"frame"]))

    def test_tlsStartedLaterIsNotBypassed(self) -> None:
        """A transport that started TLS encrypts its writes: they go through it."""
        self.transport.TLS = True
        self.write(b"frame")
        self.assertEqual(self.transport.written, [b"frame"])


class ImmediateWriterForTests(SynchronousTestCase):
    def test_otherTransportsKeepTheirWrite(self) -> None:
        """Anything but Twisted's plain TCP server transport keeps its own write."""
        transport = StringTransport()
        self.assertIsNone(immediateWriter(transport, Turns(Clock())))

    def test_tcpServerOverARealSocket(self) -> None:
        """Over a real loopback socket, the bytes arrive without a reactor turn."""
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname())
        accepted, address = listener.accept()
        self.addCleanup(listener.close)
        self.addCleanup(client.close)
        self.addCleanup(accepted.close)
        accepted.setblocking(False)

        class NoReactor:
            def addReader(self, _: object) -> None:
                pass

            def addWriter(self, _: object) -> None:
                raise AssertionError("the immediate path never registers for writing")

        server = tcp.Server(accepted, Protocol(), address, None, 1, NoReactor())  # type: ignore[arg-type]
        write = immediateWriter(server, Turns(Clock()))
        self.assertIsInstance(write, ImmediateWriter)
        write(b"hello")
        self.assertEqual(client.recv(16), b"hello")
        # the contract: the real transport has every name the writer reads, and the fake
        # the other tests use mirrors exactly those
        for name in MIRRORED:
            self.assertTrue(hasattr(server, name), name)
        fake = set(vars(FakeServerTransport())) | {"TLS"}
        self.assertLessEqual(set(MIRRORED), fake)

    def test_fallbackWithoutTheMirroredNames(self) -> None:
        """A tcp.Server whose Twisted lacks one of the mirrored names keeps its own write."""
        server = tcp.Server.__new__(tcp.Server)
        server.socket = FakeSocket()  # type: ignore[assignment]
        for name in MIRRORED[1:]:
            setattr(server, name, getattr(FakeServerTransport(), name))
        self.assertFalse(hasattr(server, "_tempDataLen"))
        self.assertIsNone(immediateWriter(server, Turns(Clock())))
        server._tempDataLen = 0
        self.assertIsInstance(immediateWriter(server, Turns(Clock())), ImmediateWriter)
