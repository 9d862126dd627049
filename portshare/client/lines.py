"""
The client's link over the line protocol: C{Upgrade: portshare-lines} on C{/ws}, then one
JSON command per line out and one JSON event per line in (see L{portshare.lines}).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, connectionDone
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from portshare.client.link import CliError, Link, Server
from portshare.lines import TOKEN as LINES_TOKEN
from portshare.wire import Command, encodeCommand


class _Lines(LineOnlyReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 16 * 1024 * 1024

    def __init__(self, link: LinesLink, request: bytes) -> None:
        self.link = link
        self.request = request
        self.head = b""

    def connectionMade(self) -> None:
        self.transport.write(self.request)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        if not self.link.opened.called:
            self.head += data
            if b"\r\n\r\n" not in self.head:
                return
            head, _, data = self.head.partition(b"\r\n\r\n")
            status = head.split(b"\r\n", 1)[0]
            if not status.startswith(b"HTTP/1.1 101"):
                self.link.opened.errback(
                    CliError(f"no switch to {LINES_TOKEN}: {status.decode()} {data.decode()}")
                )
                self.transport.loseConnection()  # type: ignore[union-attr]
                return
            self.link.opened.callback(None)
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        if line.strip():
            self.link.frameReceived(line)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.link.opened.called:
            self.link.opened.errback(CliError(f"connection lost: {reason.getErrorMessage()}"))
        self.link.connectionClosed()


class LinesLink(Link):
    """C{Upgrade: portshare-lines} on C{/ws} (under the server's prefix): the JSON commands,
    one per line."""

    def __init__(self) -> None:
        super().__init__()
        self.opened: Deferred[None] = Deferred()
        self.protocol: _Lines | None = None

    @classmethod
    async def connect(cls, reactor: Any, server: Server) -> LinesLink:
        """A link to C{server}'s line protocol, once it answered C{101}."""
        link = cls()
        await server.endpoint(reactor).connect(link.clientFactory(server))
        await link.opened
        return link

    def clientFactory(self, server: Server) -> Factory:
        """The factory of this link's one connection to C{server} (C{opened} fires on 101)."""
        request = (
            f"GET {server.prefix}/ws HTTP/1.1\r\nHost: {server.netloc}\r\n"
            f"Upgrade: {LINES_TOKEN}\r\n"
            "Connection: Upgrade\r\n\r\n"
        ).encode()
        protocol = self.protocol = _Lines(self, request)
        return Factory.forProtocol(lambda: protocol)

    def send(self, command: Command) -> None:
        assert self.protocol is not None
        self.protocol.sendLine(encodeCommand(command))

    def close(self) -> None:
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.loseConnection()
