"""
The client's link over the chat WebSocket on C{/ws} (subprotocol C{portshare.chat.v1}),
with Autobahn's client: one command per text frame, one event per text frame.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.defer import Deferred

from portshare.client.link import CliError, Link, Server
from portshare.wire import SUBPROTOCOL, Command, encodeCommand


class _WebSocket(WebSocketClientProtocol):
    link: WebSocketLink

    def onOpen(self) -> None:
        self.link.opened.callback(None)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if not isBinary:
            self.link.frameReceived(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.link.opened.called:
            self.link.opened.errback(CliError(f"WebSocket refused: {code} {reason or ''}"))
        self.link.connectionClosed()


class WebSocketLink(Link):
    """C{/ws} under the server's prefix, Autobahn's client."""

    def __init__(self) -> None:
        super().__init__()
        self.opened: Deferred[None] = Deferred()
        self.protocol: _WebSocket | None = None

    @classmethod
    async def connect(cls, reactor: Any, server: Server) -> WebSocketLink:
        """A link to C{server}'s C{/ws} (under its prefix), once the WebSocket is open."""
        link = cls()
        await server.endpoint(reactor).connect(link.clientFactory(reactor, server))
        await link.opened
        return link

    def clientFactory(self, reactor: Any, server: Server) -> WebSocketClientFactory:
        """The factory of this link's one WebSocket to C{server} (C{opened} fires once open)."""
        scheme = "wss" if server.secure else "ws"
        factory = WebSocketClientFactory(
            f"{scheme}://{server.netloc}{server.prefix}/ws",
            protocols=[SUBPROTOCOL],
            reactor=reactor,
        )

        def build() -> _WebSocket:
            protocol = _WebSocket()
            protocol.factory = factory
            protocol.link = self
            self.protocol = protocol
            return protocol

        factory.protocol = build  # type: ignore[assignment]
        return factory

    def send(self, command: Command) -> None:
        assert self.protocol is not None
        self.protocol.sendMessage(encodeCommand(command))

    def close(self) -> None:
        if self.protocol is not None:
            self.protocol.sendClose(1000)
