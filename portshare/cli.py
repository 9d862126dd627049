"""
C{portshare-cli}: the chat from a terminal or a script, over any of the port's transports.

    portshare-cli [--url URL] [--transport websocket|lines|sse] tail ROOM [--since O] [--count N]
    portshare-cli [--url URL] say ROOM TEXT
    portshare-cli [--url URL] chat ROOM

C{tail} prints the room's messages as they come (C{--since} replays history first), C{say}
publishes one message and prints its offset, C{chat} does both with lines typed on standard
input.  Messages go to standard output (C{[room #offset] nick: text}, or one JSON event per
line with C{--json}); status lines (joined, presence, errors) go to standard error.  Exit
status: 0, or 1 after an error from the server, or 2 for bad usage.

Transports: C{websocket} (C{/ws}, the default), C{lines} (C{Upgrade: portshare-lines} on
C{/ws}) and C{sse} (C{GET /sse} to read, C{POST /api/rooms/ROOM/messages} to say).  For
C{https://} URLs, the server's certificate is checked against the system's roots, or
C{--cafile}; C{--insecure} skips the check.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Sequence
from typing import IO, Any
from urllib.parse import quote, urlsplit

import orjson
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.defer import Deferred, DeferredList, DeferredQueue, ensureDeferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from portshare import __version__
from portshare.lines import TOKEN as LINES_TOKEN

TRANSPORTS = ("websocket", "lines", "sse")

#: what a link's event queue yields once the connection is gone
CLOSED: dict[str, Any] = {"type": "closed"}


class CliError(Exception):
    """A failure to report on standard error, exit status 1."""


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="portshare-cli", description="Chat on a portshare server from the terminal."
    )
    p.add_argument("--version", action="version", version=f"portshare {__version__}")
    p.add_argument(
        "--url",
        default="http://127.0.0.1:8080",
        help="the server (http://, https://, ws://, wss://)",
    )
    p.add_argument("--transport", choices=TRANSPORTS, default="websocket")
    p.add_argument("--nick", default=None, help="nickname (default: the server's guest-N)")
    p.add_argument("--token", default=None, help="API token for saying over sse")
    p.add_argument("--cafile", default=None, help="PEM file of the CA (or self-signed) to trust")
    p.add_argument("--insecure", action="store_true", help="do not verify the TLS certificate")
    p.add_argument("--json", action="store_true", help="print every event as one JSON line")
    commands = p.add_subparsers(dest="command", required=True)
    tail = commands.add_parser("tail", help="print a room's messages as they come")
    tail.add_argument("room")
    tail.add_argument("--since", type=int, default=None, help="replay messages after this offset")
    tail.add_argument("--count", type=int, default=None, help="exit after this many messages")
    say = commands.add_parser("say", help="publish one message; prints its offset")
    say.add_argument("room")
    say.add_argument("text")
    chat = commands.add_parser("chat", help="interactive: lines typed are said")
    chat.add_argument("room")
    chat.add_argument("--since", type=int, default=None)
    return p


class Server:
    """Where to connect, from C{--url} and the TLS options."""

    def __init__(self, url: str, cafile: str | None = None, insecure: bool = False) -> None:
        parts = urlsplit(url if "://" in url else "http://" + url)
        self.secure = parts.scheme in ("https", "wss")
        if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
            raise CliError(f"--url {url!r}: give http://host:port or https://host:port")
        self.host = parts.hostname
        self.port = parts.port or (443 if self.secure else 80)
        self.base = f"{'https' if self.secure else 'http'}://{parts.netloc}"
        self.netloc = parts.netloc
        self.cafile = cafile
        self.insecure = insecure

    def tlsOptions(self) -> Any:
        from twisted.internet import ssl

        if self.insecure:
            return ssl.CertificateOptions(verify=False)
        trust = None
        if self.cafile is not None:
            with open(self.cafile, "rb") as f:
                trust = ssl.Certificate.loadPEM(f.read())
        return ssl.optionsForClientTLS(self.host, trustRoot=trust)

    def endpoint(self, reactor: Any) -> Any:
        endpoint: Any = HostnameEndpoint(reactor, self.host, self.port)
        if self.secure:
            endpoint = wrapClientTLS(self.tlsOptions(), endpoint)
        return endpoint


# -- links: one chat connection per transport, yielding events as the WebSocket's JSON -------


class JsonLink:
    """A connection that carries the WebSocket's JSON commands and events."""

    #: whether saying needs joining first
    needsJoin = True
    #: the nick messages are said with, where the transport says it with each message
    nick: str | None = None

    def __init__(self) -> None:
        self.events: DeferredQueue[dict[str, Any]] = DeferredQueue()

    def send(self, command: dict[str, Any]) -> None:
        raise NotImplementedError

    async def join(self, room: str, nick: str | None, since: int | None) -> None:
        command: dict[str, Any] = {"type": "join", "room": room, "ref": "join"}
        if nick is not None:
            command["nick"] = nick
        if since is not None:
            command["since"] = since
        self.send(command)

    def say(self, room: str, text: str, ref: int) -> None:
        self.send({"type": "say", "room": room, "text": text, "ref": ref})

    def close(self) -> None:
        raise NotImplementedError


class _WebSocket(WebSocketClientProtocol):
    link: WebSocketLink

    def onOpen(self) -> None:
        self.link.opened.callback(None)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if not isBinary:
            self.link.events.put(orjson.loads(payload))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.link.opened.called:
            self.link.opened.errback(CliError(f"WebSocket refused: {code} {reason or ''}"))
        self.link.events.put(CLOSED)


class WebSocketLink(JsonLink):
    """C{/ws}, Autobahn's client."""

    def __init__(self) -> None:
        super().__init__()
        self.opened: Deferred[None] = Deferred()
        self.protocol: _WebSocket | None = None

    @classmethod
    async def connect(cls, reactor: Any, server: Server) -> WebSocketLink:
        link = cls()
        scheme = "wss" if server.secure else "ws"
        factory = WebSocketClientFactory(
            f"{scheme}://{server.netloc}/ws", protocols=["portshare.chat.v1"], reactor=reactor
        )

        def build() -> _WebSocket:
            protocol = _WebSocket()
            protocol.factory = factory
            protocol.link = link
            link.protocol = protocol
            return protocol

        factory.protocol = build  # type: ignore[assignment]
        await server.endpoint(reactor).connect(factory)
        await link.opened
        return link

    def send(self, command: dict[str, Any]) -> None:
        assert self.protocol is not None
        self.protocol.sendMessage(orjson.dumps(command))

    def close(self) -> None:
        if self.protocol is not None:
            self.protocol.sendClose(1000)


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
            self.link.events.put(orjson.loads(line))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.link.opened.called:
            self.link.opened.errback(CliError(f"connection lost: {reason.getErrorMessage()}"))
        self.link.events.put(CLOSED)


class LinesLink(JsonLink):
    """C{Upgrade: portshare-lines} on C{/ws}: the JSON commands, one per line."""

    def __init__(self) -> None:
        super().__init__()
        self.opened: Deferred[None] = Deferred()
        self.protocol: _Lines | None = None

    @classmethod
    async def connect(cls, reactor: Any, server: Server) -> LinesLink:
        link = cls()
        request = (
            f"GET /ws HTTP/1.1\r\nHost: {server.netloc}\r\nUpgrade: {LINES_TOKEN}\r\n"
            "Connection: Upgrade\r\n\r\n"
        ).encode()
        protocol = link.protocol = _Lines(link, request)
        await server.endpoint(reactor).connect(Factory.forProtocol(lambda: protocol))
        await link.opened
        return link

    def send(self, command: dict[str, Any]) -> None:
        assert self.protocol is not None
        self.protocol.sendLine(orjson.dumps(command))

    def close(self) -> None:
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.loseConnection()


class _SseBody(Protocol):
    """Reads a C{text/event-stream} body; each event's data goes to the link's queue."""

    def __init__(self, link: SseLink) -> None:
        self.link = link
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data.replace(b"\r\n", b"\n")
        while b"\n\n" in self.buffer:
            block, self.buffer = self.buffer.split(b"\n\n", 1)
            fields: dict[bytes, bytes] = {}
            for line in block.split(b"\n"):
                name, _, value = line.partition(b":")
                if name:
                    fields[name] = value[1:] if value.startswith(b" ") else value
            if b"data" in fields:
                event = orjson.loads(fields[b"data"])
                if fields.get(b"event") == b"close":
                    event["type"] = "close"
                self.link.lastEventId = fields.get(b"id", b"").decode() or self.link.lastEventId
                self.link.events.put(event)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.link.events.put(CLOSED)


class SseLink(JsonLink):
    """C{GET /sse} to read, C{POST /api/rooms/ROOM/messages} to say (no join needed)."""

    needsJoin = False

    def __init__(self, reactor: Any, server: Server, token: str | None) -> None:
        from twisted.web.client import Agent, BrowserLikePolicyForHTTPS

        super().__init__()
        self.server = server
        self.token = token
        self.lastEventId = ""
        self.body: _SseBody | None = None
        policy: Any = BrowserLikePolicyForHTTPS()
        if server.secure:
            options = server.tlsOptions()
            policy = _FixedPolicy(options)
        self.agent = Agent(reactor, contextFactory=policy)

    async def join(self, room: str, nick: str | None, since: int | None) -> None:
        from twisted.web.http_headers import Headers

        self.nick = nick
        query = f"room={quote(room)}"
        if nick is not None:
            query += f"&nick={quote(nick)}"
        if since is not None:
            query += f"&since={since}"
        response = await self.agent.request(
            b"GET",
            f"{self.server.base}/sse?{query}".encode(),
            Headers({b"accept": [b"text/event-stream"]}),
        )
        if response.code != 200:
            raise CliError(f"/sse answered {response.code}")
        self.body = _SseBody(self)
        response.deliverBody(self.body)

    def say(self, room: str, text: str, ref: int) -> None:
        ensureDeferred(self._post(room, text, ref))

    async def _post(self, room: str, text: str, ref: int) -> None:
        from twisted.web.client import FileBodyProducer
        from twisted.web.http_headers import Headers

        headers = Headers({b"content-type": [b"application/json"]})
        if self.token is not None:
            headers.addRawHeader(b"authorization", f"Bearer {self.token}".encode())
        body = orjson.dumps({"nick": self.nick or "cli", "text": text})
        try:
            response = await self.agent.request(
                b"POST",
                f"{self.server.base}/api/rooms/{quote(room)}/messages".encode(),
                headers,
                FileBodyProducer(io.BytesIO(body)),
            )
            collected = _Collect()
            response.deliverBody(collected)
            reply = orjson.loads(await collected.done)
        except Exception as e:
            reply = {"error": "unavailable", "reason": str(e)}
        if "offset" in reply:
            self.events.put({"type": "ack", "ref": ref, "offset": reply["offset"]})
        else:
            self.events.put({"type": "error", "ref": ref, **_errorFields(reply)})

    def close(self) -> None:
        body = self.body
        if body is not None and body.transport is not None:
            body.transport.stopProducing()  # type: ignore[attr-defined]
        elif body is None:
            self.events.put(CLOSED)


class _Collect(Protocol):
    """A whole response body."""

    def __init__(self) -> None:
        self.data = b""
        self.done: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.done.callback(self.data)


def _errorFields(reply: dict[str, Any]) -> dict[str, Any]:
    return {"code": reply.get("error", "error"), "reason": reply.get("reason", str(reply))}


@implementer(IPolicyForHTTPS)
class _FixedPolicy:
    """The same client TLS options for every host (the one server of C{--url})."""

    def __init__(self, options: Any) -> None:
        self.options = options

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return self.options


async def connect(reactor: Any, transport: str, server: Server, token: str | None = None) -> Any:
    """A link of the C{transport} kind to C{server}."""
    if transport == "websocket":
        return await WebSocketLink.connect(reactor, server)
    if transport == "lines":
        return await LinesLink.connect(reactor, server)
    if transport == "sse":
        return SseLink(reactor, server, token)
    raise CliError(f"unknown transport {transport}")


# -- output -------------------------------------------------------------------------------------


class Printer:
    """Messages to C{out}, status to C{err}."""

    def __init__(self, out: IO[str], err: IO[str], asJson: bool) -> None:
        self.out = out
        self.err = err
        self.asJson = asJson

    def event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if self.asJson:
            if kind != "closed":
                self.out.write(orjson.dumps(event).decode() + "\n")
        elif kind == "message":
            self.out.write(
                f"[{event['room']} #{event['offset']}] {event['nick']}: {event['text']}\n"
            )
        elif kind == "joined":
            recovered = "" if event.get("recovered", True) else " (history incomplete)"
            self.err.write(
                f"* joined {event['room']} at #{event['offset']}, "
                f"{event.get('count', len(event.get('members', [])))} here{recovered}\n"
            )
        elif kind == "presence":
            self.err.write(f"* {event['nick']} {event['event']}s {event['room']}\n")
        elif kind == "error":
            self.err.write(f"! {event['code']}: {event['reason']}\n")
        elif kind == "close":
            self.err.write(f"! closed by the server ({event['code']}): {event['reason']}\n")
        self.out.flush()
        self.err.flush()


# -- commands ---------------------------------------------------------------------------------


async def _joined(link: Any, printer: Printer) -> None:
    while True:
        event = await link.events.get()
        printer.event(event)
        if event.get("type") == "joined":
            return
        if event.get("type") == "error":
            raise CliError(f"{event['code']}: {event['reason']}")
        if event is CLOSED:
            raise CliError("the connection closed")


async def tail(link: Any, args: argparse.Namespace, printer: Printer) -> int:
    await link.join(args.room, args.nick, args.since)
    await _joined(link, printer)
    seen = 0
    while args.count is None or seen < args.count:
        event = await link.events.get()
        printer.event(event)
        if event is CLOSED:
            return 1
        if event.get("type") == "message" and event.get("room") == args.room:
            seen += 1
    return 0


async def say(link: Any, args: argparse.Namespace, printer: Printer) -> int:
    link.nick = args.nick
    if link.needsJoin:
        await link.join(args.room, args.nick, None)
        await _joined(link, printer)
    link.say(args.room, args.text, 1)
    while True:
        event = await link.events.get()
        if event is CLOSED:
            raise CliError("the connection closed before the message was acknowledged")
        if event.get("ref") == 1:
            if event["type"] == "ack":
                printer.out.write(f"{event['offset']}\n")
                return 0
            raise CliError(f"{event['code']}: {event['reason']}")


class _StdinLines(LineOnlyReceiver):
    delimiter = b"\n"

    def __init__(self, queue: DeferredQueue[str | None]) -> None:
        self.queue = queue

    def lineReceived(self, line: bytes) -> None:
        self.queue.put(line.decode("utf-8", "replace").rstrip("\r"))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.queue.put(None)


async def chat(
    link: Any, args: argparse.Namespace, printer: Printer, lines: DeferredQueue[str | None]
) -> int:
    await link.join(args.room, args.nick, args.since)
    await _joined(link, printer)
    status = 0
    # at the end of input, wait until each line said is answered and, when acknowledged,
    # has come back as a message (over SSE the two travel on different connections)
    unanswered: set[int] = set()
    offsets = {"acked": 0, "seen": 0}
    settled: Deferred[None] | None = None

    def settle() -> None:
        nonlocal settled
        d = settled
        if d is not None and not unanswered and offsets["seen"] >= offsets["acked"]:
            settled = None
            d.callback(None)

    async def show() -> None:
        nonlocal status
        while True:
            event = await link.events.get()
            printer.event(event)
            if event is CLOSED:
                return
            kind = event.get("type")
            if kind == "error":
                status = 1
                unanswered.discard(event.get("ref"))  # type: ignore[arg-type]
            elif kind == "ack":
                unanswered.discard(event.get("ref"))  # type: ignore[arg-type]
                offsets["acked"] = max(offsets["acked"], event.get("offset") or 0)
            elif kind == "message" and event.get("room") == args.room:
                offsets["seen"] = max(offsets["seen"], event.get("offset") or 0)
            settle()

    async def typing() -> None:
        nonlocal settled
        ref = 1
        while (line := await lines.get()) is not None:
            if line.strip():
                ref += 1
                unanswered.add(ref)
                link.say(args.room, line, ref)
        settled = Deferred()
        waiting = settled
        settle()
        await waiting
        link.close()

    showing = ensureDeferred(show())
    typed = ensureDeferred(typing())
    first = await DeferredList([showing, typed], fireOnOneCallback=True, fireOnOneErrback=True)
    if first[1] == 0:  # the server closed first
        typed.cancel()
        return 1
    await showing  # the link closed: what was said is acknowledged, then CLOSED
    return status


async def run(
    reactor: Any,
    argv: Sequence[str],
    out: IO[str],
    err: IO[str],
    stdin: DeferredQueue[str | None] | None = None,
) -> int:
    """
    Run one command; @return: the exit status.

    @param stdin: the lines C{chat} says (C{None} ends); standard input when not given.
    """
    try:
        args = parser().parse_args(list(argv))
    except SystemExit as e:
        return int(e.code or 0)
    printer = Printer(out, err, args.json)
    try:
        server = Server(args.url, args.cafile, args.insecure)
        link = await connect(reactor, args.transport, server, args.token)
        try:
            if args.command == "tail":
                return await tail(link, args, printer)
            if args.command == "say":
                return await say(link, args, printer)
            if stdin is None:
                from twisted.internet.stdio import StandardIO

                stdin = DeferredQueue()
                StandardIO(_StdinLines(stdin), reactor=reactor)
            return await chat(link, args, printer, stdin)
        finally:
            link.close()
    except CliError as e:
        err.write(f"portshare-cli: {e}\n")
        return 1
    except Exception as e:  # connection refused, TLS failures, ...
        err.write(f"portshare-cli: {type(e).__name__}: {e}\n")
        return 1


def main(argv: Sequence[str] | None = None) -> None:
    """The C{portshare-cli} console script."""
    from twisted.internet import task

    def go(reactor: Any) -> Deferred[None]:
        async def body() -> None:
            status = await run(
                reactor, sys.argv[1:] if argv is None else argv, sys.stdout, sys.stderr
            )
            if status:
                raise SystemExit(status)

        return ensureDeferred(body())

    task.react(go)


if __name__ == "__main__":
    main()
