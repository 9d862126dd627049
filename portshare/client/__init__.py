"""
The chat client that ships with the server: C{portshare-cli}, and the links it runs on.

It speaks through the server's own codec, L{portshare.wire}: commands are the wire's typed
commands, encoded by L{portshare.wire.encodeCommand}; what the server sends is read by
L{portshare.wire.parseEvent} into the wire's typed events.  One module per job:

    link.py        Server (--url, TLS), Link (the interface of a link), CLOSED
    websocket.py   WebSocketLink: /ws, Autobahn's client
    lines.py       LinesLink: Upgrade: portshare-lines on /ws
    sse.py         SseLink: GET /sse to read, POST /api/rooms/ROOM/messages to say
    commands.py    tail, say, chat over any link, and the Printer of their output
    cli.py         the command line (argparse), run() and the console script's main()
"""

from portshare.client.cli import connect, main, parser, run
from portshare.client.commands import Printer, chat, say, tail
from portshare.client.lines import LinesLink
from portshare.client.link import CLOSED, CliError, Closed, Incoming, Link, Server
from portshare.client.sse import SseLink
from portshare.client.websocket import WebSocketLink

__all__ = [
    "CLOSED",
    "CliError",
    "Closed",
    "Incoming",
    "LinesLink",
    "Link",
    "Printer",
    "Server",
    "SseLink",
    "WebSocketLink",
    "chat",
    "connect",
    "main",
    "parser",
    "run",
    "say",
    "tail",
]
