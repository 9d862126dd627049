"""
Fakes and helpers for testing portshare and code built on it.

L{RecordingMember} (with its L{RecordingFrontEnd}) stands in for a chat connection in hub
tests; L{ChatClient} is a real WebSocket client (Autobahn) that queues what it receives, for
end-to-end tests over loopback.
L{SynchronousThreads} runs a mounted WSGI application at once, in the test's thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import orjson
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from portshare.hub import IFrontEnd, IMember
from portshare.wire import Outgoing
from portshare.wsgi import IWsgiThreads


@implementer(IFrontEnd)
class RecordingFrontEnd:
    """
    The L{IFrontEnd} of L{RecordingMember}s: frames each room event once (C{framings}
    counts how many times it did) and hands every member the same framed object.
    """

    def __init__(self) -> None:
        self.framings = 0

    def deliver(self, outgoing: Outgoing, members: Sequence[IMember]) -> None:
        framed = outgoing.framed(self, self._frame)
        for member in cast("Sequence[RecordingMember]", members):
            member.delivered(outgoing, framed)

    def _frame(self, outgoing: Outgoing) -> tuple[Any, bytes]:
        self.framings += 1
        return (outgoing.event, outgoing.payload)


@implementer(IMember)
class RecordingMember:
    """
    An L{IMember} that keeps what it is sent: C{events} in order as dicts, whether sent to
    it alone or delivered to a room through its C{frontEnd} (then C{framed} keeps the framed
    objects), and C{closed} as (code, reason) once closed.
    """

    def __init__(self, peer: str = "test", frontEnd: RecordingFrontEnd | None = None) -> None:
        self.peer = peer
        self.frontEnd = frontEnd if frontEnd is not None else _RECORDING
        self.events: list[dict[str, Any]] = []
        self.framed: list[Any] = []
        self.closed: tuple[int, str] | None = None

    def send(self, outgoing: Outgoing) -> None:
        self.events.append(orjson.loads(outgoing.payload))

    def delivered(self, outgoing: Outgoing, framed: Any) -> None:
        """A room event, framed by C{frontEnd} (see L{RecordingFrontEnd})."""
        self.framed.append(framed)
        self.events.append(orjson.loads(outgoing.payload))

    def closeWith(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def take(self) -> list[dict[str, Any]]:
        """The events received since the last call."""
        events, self.events = self.events, []
        return events

    def ofType(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == kind]


#: the front end of RecordingMembers made without one
_RECORDING = RecordingFrontEnd()


class ChatClientProtocol(WebSocketClientProtocol):
    """Queues every received message; C{closed} fires with (wasClean, code, reason)."""

    def __init__(self) -> None:
        super().__init__()
        self.received: DeferredQueue[Any] = DeferredQueue()
        self.opened: Deferred[ChatClientProtocol] = Deferred()
        self.closed: Deferred[tuple[bool, int | None, str | None]] = Deferred()

    def onOpen(self) -> None:
        self.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.received.put(payload if isBinary else orjson.loads(payload))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.opened.called:
            self.opened.errback(ConnectionError(f"handshake failed: {code} {reason}"))
        if not self.closed.called:
            self.closed.callback((wasClean, code, reason))

    def send(self, **message: Any) -> None:
        """Send one JSON text frame."""
        self.sendMessage(orjson.dumps(message))

    def next(self) -> Deferred[Any]:
        """The next message received (a dict for text frames)."""
        return self.received.get()

    async def until(self, kind: str) -> dict[str, Any]:
        """Skip messages until one of type C{kind}; return it."""
        while True:
            message = await self.next()
            if message.get("type") == kind:
                return message


async def connectChat(
    reactor: Any,
    port: int,
    path: str = "/ws",
    protocols: list[str] | None = None,
    headers: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    tls: Any = None,
    **options: Any,
) -> ChatClientProtocol:
    """
    Open a WebSocket to C{ws://host:port/path} over loopback (C{wss://} with C{tls}, client
    TLS options from C{optionsForClientTLS}); fires once open.
    """
    factory = WebSocketClientFactory(
        f"{'wss' if tls else 'ws'}://{host}:{port}{path}",
        protocols=protocols or [],
        headers=headers or {},
        reactor=reactor,
    )
    factory.protocol = ChatClientProtocol
    if options:
        factory.setProtocolOptions(**options)
    endpoint: Any = TCP4ClientEndpoint(reactor, host, port)
    if tls is not None:
        endpoint = wrapClientTLS(tls, endpoint)
    protocol = await endpoint.connect(factory)
    return await protocol.opened


# -- raw WebSocket bytes, for in-memory tests with StringTransport ---------------------------

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

    def __init__(self, service: Any, port: int = 40000) -> None:
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
        factory = getattr(service, "tracker", service)
        self.protocol = factory.buildProtocol(self.transport.getPeer())
        # as a reactor's transport does: its protocol may be replaced after a protocol switch
        self.transport.protocol = self.protocol  # type: ignore[attr-defined]
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.transport.protocol.dataReceived(data)  # type: ignore[attr-defined]

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


@implementer(IWsgiThreads)
class SynchronousThreads:
    """
    Runs a WSGI application at once in the calling thread (L{portshare.wsgi.IWsgiThreads}):
    a request to a mounted application is answered before C{dataReceived} returns, on a
    L{MemoryReactorClock}, with no thread.  Pass it as the C{threads} of
    L{portshare.apps.WsgiApp}.

    @ivar calls: how many application calls it ran.
    """

    def __init__(self) -> None:
        self.calls = 0

    def callInThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        self.calls += 1
        f(*args, **kwargs)

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        f(*args, **kwargs)
