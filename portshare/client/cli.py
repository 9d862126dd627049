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
C{/ws}) and C{sse} (C{GET /sse} to read, C{POST /api/rooms/ROOM/messages} to say), each under
the path of C{--url}: the server's C{--chat-prefix} (C{http://host:8080/chat} when the chat is
beside an application; a C{ws://} URL may also name the WebSocket, C{ws://host:8080/chat/ws}).  For
C{https://} URLs, the server's certificate is checked against the system's roots, or
C{--cafile}; C{--insecure} skips the check.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import IO, Any

from twisted.internet.defer import Deferred, DeferredQueue, ensureDeferred
from twisted.internet.protocol import connectionDone
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from portshare import __version__
from portshare.client.commands import Printer, chat, say, tail
from portshare.client.lines import LinesLink
from portshare.client.link import CliError, Link, Server
from portshare.client.sse import SseLink
from portshare.client.websocket import WebSocketLink

TRANSPORTS = ("websocket", "lines", "sse")


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="portshare-cli", description="Chat on a portshare server from the terminal."
    )
    p.add_argument("--version", action="version", version=f"portshare {__version__}")
    p.add_argument(
        "--url",
        default="http://127.0.0.1:8080",
        help=(
            "the server and where its chat is (http://, https://, ws://, wss://): its path is"
            " the chat's --chat-prefix, e.g. http://host:8080/chat beside an application"
        ),
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


async def connect(reactor: Any, transport: str, server: Server, token: str | None = None) -> Link:
    """A link of the C{transport} kind to C{server}."""
    if transport == "websocket":
        return await WebSocketLink.connect(reactor, server)
    if transport == "lines":
        return await LinesLink.connect(reactor, server)
    if transport == "sse":
        return SseLink(reactor, server, token)
    raise CliError(f"unknown transport {transport}")


class _StdinLines(LineOnlyReceiver):
    delimiter = b"\n"

    def __init__(self, queue: DeferredQueue[str | None]) -> None:
        self.queue = queue

    def lineReceived(self, line: bytes) -> None:
        self.queue.put(line.decode("utf-8", "replace").rstrip("\r"))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.queue.put(None)


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
