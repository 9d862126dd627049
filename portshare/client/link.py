"""
What the client's links share, whatever their transport: where to connect (L{Server}), the
interface of a link (L{Link}), and the items a link's queue yields (L{Incoming}).

A link is one chat connection.  It sends the typed commands of L{portshare.wire}, encoded by
L{portshare.wire.encodeCommand}, and puts what the server sends on its C{events} queue, read
by L{portshare.wire.parseEvent}: the server's events, then L{CLOSED} once the connection is
gone.  A frame that is not an event of the contract is put on the queue as its L{BadEvent}
(the commands then stop with an error); an event of a type this version does not know (a
newer server's extension) is skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.defer import DeferredQueue
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS

from portshare.wire import (
    BadEvent,
    Command,
    Join,
    Say,
    ServerEvent,
    UnknownEvent,
    parseEvent,
)


class CliError(Exception):
    """A failure to report on standard error, exit status 1."""


#: a URL path of plain segments: what a request line can carry as it is
_PATH = re.compile(r"(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*")


class Server:
    """
    Where to connect, from C{--url} and the TLS options.

    The path of C{--url} is where the chat is on the server, its C{--chat-prefix}:
    C{http://host:8080} for the chat at the root, C{http://host:8080/chat} for one beside an
    application (a trailing C{/} is the same, so the web client's address works too).  Every
    transport goes under it: C{/chat/ws} (WebSocket, lines), C{/chat/sse}, C{/chat/api}.  A
    C{ws://} or C{wss://} URL may name the WebSocket itself (C{ws://host:8080/chat/ws}).

    @ivar prefix: the chat's path on the server, C{""} or C{"/chat"} (no trailing C{/}).
    @ivar base: the scheme, host and prefix the HTTP paths (C{/sse}, C{/api}) are under.
    """

    def __init__(self, url: str, cafile: str | None = None, insecure: bool = False) -> None:
        parts = urlsplit(url if "://" in url else "http://" + url)
        self.secure = parts.scheme in ("https", "wss")
        if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
            raise CliError(f"--url {url!r}: give http://host:port or https://host:port")
        prefix = parts.path.rstrip("/")
        if parts.scheme in ("ws", "wss") and prefix.endswith("/ws"):
            prefix = prefix[: -len("/ws")]  # the WebSocket's own URL: the chat is above it
        if parts.query or parts.fragment or not _PATH.fullmatch(prefix):
            raise CliError(
                f"--url {url!r}: the path is the chat's prefix (/chat), with no query,"
                " fragment, spaces or control characters"
            )
        self.host = parts.hostname
        self.port = parts.port or (443 if self.secure else 80)
        self.prefix = prefix
        self.base = f"{'https' if self.secure else 'http'}://{parts.netloc}{prefix}"
        self.netloc = parts.netloc
        self.cafile = cafile
        self.insecure = insecure

    def tlsOptions(self) -> Any:
        """The client TLS options: the system's roots, or C{cafile}, or no check at all."""
        from twisted.internet import ssl

        if self.insecure:
            return ssl.CertificateOptions(verify=False)
        trust = None
        if self.cafile is not None:
            with open(self.cafile, "rb") as f:
                trust = ssl.Certificate.loadPEM(f.read())
        return ssl.optionsForClientTLS(self.host, trustRoot=trust)

    def endpoint(self, reactor: Any) -> Any:
        """A client endpoint to the server, TLS-wrapped for C{https://} and C{wss://}."""
        endpoint: Any = HostnameEndpoint(reactor, self.host, self.port)
        if self.secure:
            endpoint = wrapClientTLS(self.tlsOptions(), endpoint)
        return endpoint


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection is gone: the last item of a link's events."""


#: what a link's event queue yields once the connection is gone
CLOSED = Closed()

#: an item of a link's event queue
Incoming = ServerEvent | Closed | BadEvent


class Link:
    """
    One chat connection that carries the WebSocket's commands and events (the WebSocket
    itself, or the line protocol; L{portshare.client.sse.SseLink} overrides joining and
    saying).

    @ivar events: the server's events, L{CLOSED} last.
    """

    #: whether saying needs joining first
    needsJoin = True
    #: the nick messages are said with, where the transport says it with each message
    nick: str | None = None

    def __init__(self) -> None:
        self.events: DeferredQueue[Incoming] = DeferredQueue()

    def send(self, command: Command) -> None:
        """Send one command."""
        raise NotImplementedError

    async def join(self, room: str, nick: str | None, since: int | None) -> None:
        """Join C{room} (its C{joined} event, with C{ref} C{"join"}, comes on C{events})."""
        self.send(Join(room=room, nick=nick, since=since, ref="join"))

    def say(self, room: str, text: str, ref: int) -> None:
        """Say C{text} in C{room}; its C{ack} or C{error} carries C{ref}."""
        self.send(Say(room=room, text=text, ref=ref))

    def close(self) -> None:
        """End the connection (L{CLOSED} follows on C{events})."""
        raise NotImplementedError

    def frameReceived(self, payload: bytes, kind: str | None = None) -> None:
        """
        One frame from the server, read by L{parseEvent}.

        @param kind: the event's type where the transport carries it beside the payload.
        """
        try:
            event = parseEvent(payload, kind)
        except UnknownEvent:
            return
        except BadEvent as e:
            self.events.put(e)
            return
        self.eventReceived(event)

    def eventReceived(self, event: ServerEvent) -> None:
        """One event from the server, to the queue."""
        self.events.put(event)

    def connectionClosed(self) -> None:
        """The connection is gone."""
        self.events.put(CLOSED)
