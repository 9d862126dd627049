"""
Peer: a plain Autobahn + twisted.web site, as a user would copy it from Autobahn's examples.

One C{Site} on one port: C{twisted.web.static.File} at C{/}, a C{WebSocketResource} at C{/ws}
(join/say/message, fan-out with C{sendMessage} per member as in Autobahn's broadcast example)
and at C{/ws/echo}.  The global reactor, stdlib C{json}, no limits, no history, no presence.
"""

import argparse
import json
import sys
import time
from itertools import islice

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import File


class ChatProtocol(WebSocketServerProtocol):
    def onOpen(self):
        self.rooms = set()
        self.nick = "guest"

    def onMessage(self, payload, isBinary):
        msg = json.loads(payload)
        kind = msg.get("type")
        rooms = self.factory.rooms
        if kind == "join":
            room = msg["room"]
            self.nick = msg.get("nick", self.nick)
            members = rooms.setdefault(room, set())
            members.add(self)
            self.rooms.add(room)
            nicks = [m.nick for m in islice(members, 100)]
            reply = {
                "type": "joined",
                "room": room,
                "offset": self.factory.offsets.get(room, 0),
                "epoch": "e",
                "members": nicks,
                "recovered": True,
            }
            self.sendMessage(json.dumps(reply).encode("utf8"))
        elif kind == "leave":
            room = msg["room"]
            rooms.get(room, set()).discard(self)
            self.rooms.discard(room)
            self.sendMessage(json.dumps({"type": "left", "room": room}).encode("utf8"))
        elif kind == "say":
            room = msg["room"]
            offset = self.factory.offsets.get(room, 0) + 1
            self.factory.offsets[room] = offset
            event = {
                "type": "message",
                "room": room,
                "offset": offset,
                "ts": int(time.time() * 1000),
                "nick": self.nick,
                "text": msg["text"],
            }
            data = json.dumps(event).encode("utf8")
            for client in rooms.get(room, ()):
                client.sendMessage(data)

    def onClose(self, wasClean, code, reason):
        for room in getattr(self, "rooms", ()):
            self.factory.rooms.get(room, set()).discard(self)


class EchoProtocol(WebSocketServerProtocol):
    def onMessage(self, payload, isBinary):
        self.sendMessage(payload, isBinary)


class WsRoot(Resource):
    """C{/ws} is the chat, C{/ws/echo} the echo (C{WebSocketResource} is a leaf)."""

    def __init__(self, chat, echo):
        super().__init__()
        self.chat = chat
        self.echo = echo

    def getChild(self, path, request):
        return self.echo if path == b"echo" else self.chat

    def render(self, request):
        return self.chat.render(request)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--static", required=True)
    args = parser.parse_args()

    chat = WebSocketServerFactory()
    chat.protocol = ChatProtocol
    chat.rooms = {}
    chat.offsets = {}
    echo = WebSocketServerFactory()
    echo.protocol = EchoProtocol

    root = File(args.static)
    root.putChild(b"ws", WsRoot(WebSocketResource(chat), WebSocketResource(echo)))
    port = reactor.listenTCP(args.port, Site(root), interface="127.0.0.1")
    print(f"listening on tcp:127.0.0.1:{port.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    sys.exit(main())
