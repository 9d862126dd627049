"""
Raw WebSocket bytes, and one client connection to a service's port in memory.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


def handshakeRequest(
    path: str = "/ws",
    protocols: str | None = None,
    origin: str | None = None,
    host: str = "127.0.0.1:8080",
) -> bytes:
    """The bytes of a client's WebSocket opening handshake."""
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    if protocols:
        lines.append(f"Sec-WebSocket-Protocol: {protocols}")
    if origin:
        lines.append(f"Origin: {origin}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def clientFrame(
    payload: bytes,
    opcode: int = TEXT,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes = b"\x01\x02\x03\x04",
) -> bytes:
    """One masked frame, as a client sends it."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def serverFrames(data: bytes) -> list[tuple[int, bytes]]:
    """Split unmasked server bytes (after the handshake) into (opcode, payload) pairs."""
    frames = []
    while len(data) >= 2:
        opcode, n = data[0] & 0x0F, data[1] & 0x7F
        offset = 2
        if n == 126:
            n, offset = int.from_bytes(data[2:4], "big"), 4
        elif n == 127:
            n, offset = int.from_bytes(data[2:10], "big"), 10
        frames.append((opcode, data[offset : offset + n]))
        data = data[offset + n :]
    return frames


def splitResponse(data: bytes) -> tuple[bytes, list[tuple[int, bytes]]]:
    """A handshake response's head, and the frames that followed it."""
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, serverFrames(rest)


def closeCode(payload: bytes) -> int | None:
    """The status code of a close frame's payload."""
    return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None


def startedService(testCase: Any, **settings: Any) -> Any:
    """
    A started L{PortshareService} on a L{MemoryReactorClock} (no sockets), with Autobahn's
    timers on the same clock; stopped at the end of C{testCase}.  C{settings} are
    L{portshare.service.Settings} fields; the reactor is the service's C{reactor}.
    """
    import txaio.testutil
    from twisted.internet.testing import MemoryReactorClock

    from portshare.service import PortshareService, Settings

    reactor = MemoryReactorClock()
    loop = txaio.testutil.replace_loop(reactor)
    loop.__enter__()
    testCase.addCleanup(loop.__exit__, None, None, None)
    settings.setdefault("ports", ("tcp:0",))
    service = PortshareService(Settings(**settings), reactor)
    service.startService()
    testCase.addCleanup(service.stopService)
    return service


class MemoryConnection:
    """
    One client connection to a service's shared port, in memory: bytes go through the real
    tracker, site and Autobahn protocols on a L{StringTransport}.

    @param service: a L{portshare.service.PortshareService} (its tracker builds the
        connection), or any protocol factory: the C{Site} of an application that mounted
        L{portshare.Chat.resource} in its own tree.
    """

    def __init__(self, service: Any, port: int = 40000, host: str = "127.0.0.1") -> None:
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
        factory = getattr(service, "tracker", service)
        self.protocol = factory.buildProtocol(self.transport.getPeer())
        # as a reactor's transport does: its protocol may be replaced after a protocol switch
        self.transport.protocol = self.protocol  # type: ignore[attr-defined]
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        """The client sends C{data}; once the connection is gone it goes nowhere."""
        if self.lost:
            return
        self.transport.protocol.dataReceived(data)  # type: ignore[attr-defined]

    lost = False

    def lose(self) -> None:
        """The connection closed (the client went away, or the server's close completed):
        the server's protocol is told, once."""
        if self.lost:
            return
        self.lost = True
        self.transport.protocol.connectionLost(  # type: ignore[attr-defined]
            Failure(ConnectionDone("the connection was closed"))
        )

    def settle(self) -> None:
        """What a network does next: a connection the server is closing closes, once what
        it wrote has been read (as a reactor's transport does after flushing)."""
        if self.transport.disconnecting and not self.lost:
            self.lose()

    def read(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    def handshake(self, **kwargs: Any) -> bytes:
        self.send(handshakeRequest(**kwargs))
        head, frames = splitResponse(self.read())
        self.pending = frames
        return head

    def say(self, **message: Any) -> None:
        self.send(clientFrame(orjson.dumps(message)))

    def frames(self) -> list[tuple[int, bytes]]:
        frames, self.pending = self.pending + serverFrames(self.read()), []
        return frames

    def messages(self) -> list[dict[str, Any]]:
        return [orjson.loads(p) for op, p in self.frames() if op == TEXT]
