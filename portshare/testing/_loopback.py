"""
A real WebSocket client (Autobahn's) over loopback, for end-to-end tests.
"""

from __future__ import annotations

from typing import Any

import orjson
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS


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
