"""
Writes that go to the socket at once, for connections whose every write is a finished frame.

Twisted's TCP transport buffers each C{write()} and sends it on the reactor's next turn: it
registers the socket for writing (one C{epoll_ctl}), waits for the poller to say it is
writable, sends, and unregisters it again (another C{epoll_ctl}).  That merges the many small
writes of an HTTP response into one C{send()}, but a WebSocket fan-out writes one finished
frame to each of 1,000 sockets: three system calls and a trip through the poller per member,
and the first member waits until the last one is queued.  asyncio's transports instead try
C{send()} at once when nothing is waiting in their buffer, and buffer only what the kernel
did not take.

L{immediateWriter} gives a WebSocket connection that asyncio behaviour on top of Twisted's
transport: while the transport's own buffer is empty, the frame goes straight to the socket;
whatever the kernel does not take (and everything after it, until the buffer drains) goes
through C{transport.write} as before.

Once per reactor turn and socket, though (L{Turns}): a second frame to the same socket in the
same turn is corked, and the turn's frames go out together in one C{send()} at the start of
the next turn.  When the server keeps up, each event has a turn of its own and every frame
goes out at once (latency); when it falls behind, several events share a turn and their
frames merge into one C{send()} per socket (throughput).  Corking here rather than in
Twisted's buffer spares the two C{epoll_ctl} calls and the poller trip per socket that
Twisted's buffered writes cost.  Corked frames are flushed before the connection is closed
(L{portshare.connections.TrackingProtocol.loseConnection}).

Ordering, Twisted's producer pausing (the slow-consumer policy hangs off it), and the error
handling of a broken socket stay Twisted's own: a failed C{send()} here hands the frame to
the transport, whose next write attempt meets the same error and closes the connection the
usual way.

Only Twisted's plain TCP server transport is written this way (not TLS, not UNIX sockets,
which may carry file descriptors, not HTTP/2 streams); every other transport keeps its own
C{write}.

Mirrors Twisted 26.10.0's C{twisted.internet.tcp.Server} and its
C{twisted.internet.abstract.FileDescriptor} buffers (L{MIRRORED}: C{_tempDataLen},
C{dataBuffer}, C{offset}, C{_writeDisconnected}, read to know that nothing waits in Twisted's
buffer).  A transport without one of them (another Twisted) keeps its own C{write}: the plain
path, only slower.  tests/test_sendnow.py checks the names against the real C{tcp.Server}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp
from twisted.internet.interfaces import IReactorTime

#: the Twisted version whose transport internals this module reads
MIRRORS_TWISTED = "26.10.0"
#: what the writer reads of a C{tcp.Server} besides its socket (private names among them)
MIRRORED = (
    "_tempDataLen",
    "dataBuffer",
    "offset",
    "_writeDisconnected",
    "disconnecting",
    "connected",
    "TLS",
)

__all__ = ["ImmediateWriter", "Turns", "immediateWriter"]


class Turns:
    """
    Numbers the reactor's turns in which frames are written, so that each socket gets at
    most one immediate C{send()} per turn, and flushes the frames corked during a turn at
    the start of the next one.  It costs one C{callLater(0)} per turn that writes, and none
    while idle.
    """

    __slots__ = ("_clock", "_corked", "_scheduled", "current")

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._scheduled = False
        self._corked: list[ImmediateWriter] = []
        self.current = 0

    def now(self) -> int:
        """This turn's number; the next turn gets another."""
        if not self._scheduled:
            self._scheduled = True
            self._clock.callLater(0, self._next)
        return self.current

    def cork(self, writer: ImmediateWriter) -> None:
        """Flush C{writer} at the start of the next turn."""
        self.now()
        self._corked.append(writer)

    def _next(self) -> None:
        self._scheduled = False
        self.current += 1
        corked, self._corked = self._corked, []
        for writer in corked:
            writer.flush()


class ImmediateWriter:
    """
    C{write(data)} for one L{tcp.Server}: C{send()} now when nothing is buffered and this
    socket had no immediate send in this turn; else corked until the next turn (or left to
    Twisted's buffer while that holds anything).
    """

    __slots__ = ("_corked", "_lastTurn", "_send", "_transport", "_turns")

    def __init__(self, transport: Any, turns: Turns) -> None:
        self._transport = transport
        self._send = transport.socket.send
        self._turns = turns
        self._lastTurn = -1
        self._corked: list[bytes] | None = None

    def __call__(self, data: bytes) -> None:
        corked = self._corked
        if corked is not None:
            corked.append(data)  # behind what waits for the next turn
            return
        turn = self._turns.now()
        if self._lastTurn == turn:
            # a second frame in this turn: the server is behind; the frames of this turn
            # go out together at the start of the next, in one send()
            self._corked = [data]
            self._turns.cork(self)
            return
        self._write(data, turn)

    def flush(self) -> None:
        """Send what was corked (the start of a turn, or before the connection closes)."""
        corked, self._corked = self._corked, None
        if corked:
            self._write(b"".join(corked), self._turns.now())

    def _write(self, data: bytes, turn: int) -> None:
        transport = self._transport
        # what FileDescriptor.write checks, plus: nothing still waits in its buffers
        if (
            transport._tempDataLen
            or len(transport.dataBuffer) != transport.offset
            or transport.disconnecting
            or not transport.connected
            or transport._writeDisconnected
            or transport.TLS
        ):
            transport.write(data)
            return
        self._lastTurn = turn
        try:
            sent = self._send(data)
        except BlockingIOError:  # EAGAIN: the kernel's buffer is full
            sent = 0
        except OSError:
            # EPIPE, ECONNRESET...: Twisted's own write path meets it and closes the connection
            transport.write(data)
            return
        if sent < len(data):
            transport.write(data[sent:])


def immediateWriter(transport: Any, turns: Turns) -> ImmediateWriter | None:
    """
    The fastest correct C{write} for C{transport}.

    @param transport: the transport under a protocol that writes whole frames.
    @param turns: the reactor's turns, shared by every connection of the reactor.
    @return: an immediate writer for Twisted's plain TCP server transport, else C{None}
        (the transport's own C{write} is the one to use).
    """
    if (
        type(transport) is tcp.Server
        and getattr(transport, "socket", None) is not None
        and all(hasattr(transport, name) for name in MIRRORED)
    ):
        return ImmediateWriter(transport, turns)
    return None
