"""
Peer: picows on uvloop, the near-limit reference (Cython frames, orjson).

C{GET /} gets the same C{index.html} through picows' non-101 response path (one response per
connection, then close).  Fan-out sends the same payload to each member with C{send}.
"""

import argparse
import sys
import time
from itertools import islice
from pathlib import Path

import orjson
import uvloop
from picows import (
    WSListener,
    WSMsgType,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

rooms: dict[str, set] = {}
offsets: dict[str, int] = {}
TEXT = WSMsgType.TEXT


class Chat(WSListener):
    def __init__(self):
        super().__init__()
        self.nick = "guest"
        self.rooms = set()
        self.transport = None

    def on_ws_connected(self, transport):
        self.transport = transport

    def on_ws_frame(self, transport, frame):
        if frame.msg_type is not TEXT:
            if frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()
            return
        msg = orjson.loads(frame.get_payload_as_bytes())
        kind = msg.get("type")
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
                "offset": offsets.get(room, 0),
                "epoch": "e",
                "members": nicks,
                "recovered": True,
            }
            transport.send(TEXT, orjson.dumps(reply))
        elif kind == "leave":
            room = msg["room"]
            rooms.get(room, set()).discard(self)
            self.rooms.discard(room)
            transport.send(TEXT, orjson.dumps({"type": "left", "room": room}))
        elif kind == "say":
            room = msg["room"]
            offset = offsets[room] = offsets.get(room, 0) + 1
            data = orjson.dumps(
                {
                    "type": "message",
                    "room": room,
                    "offset": offset,
                    "ts": int(time.time() * 1000),
                    "nick": self.nick,
                    "text": msg["text"],
                }
            )
            for member in rooms.get(room, ()):
                member.transport.send(TEXT, data)

    def on_ws_disconnected(self, transport):
        for room in self.rooms:
            rooms.get(room, set()).discard(self)


class Echo(WSListener):
    def on_ws_frame(self, transport, frame):
        if frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
            transport.send(frame.msg_type, frame.get_payload_as_bytes())
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--static", required=True)
    args = parser.parse_args()
    index = (Path(args.static) / "index.html").read_bytes()

    def route(request):
        if request.path == b"/ws":
            return Chat()
        if request.path == b"/ws/echo":
            return Echo()
        if request.path == b"/":
            response = WSUpgradeResponse.create_ok_response(
                index, extra_headers={"Content-Type": "text/html"}
            )
            return WSUpgradeResponseWithListener(response, None)
        return None

    server = await ws_create_server(route, "127.0.0.1", args.port)
    port = server.sockets[0].getsockname()[1]
    print(f"listening on tcp:127.0.0.1:{port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    sys.exit(uvloop.run(main()))
