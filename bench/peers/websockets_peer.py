"""
Peer: the C{websockets} library (asyncio implementation), fan-out with C{broadcast()}.

C{GET /} is answered from C{process_request} with the same C{index.html} (websockets closes
plain HTTP connections after one response).  Default asyncio event loop, stdlib C{json}.
"""

import argparse
import asyncio
import json
import sys
import time
from http import HTTPStatus
from itertools import islice
from pathlib import Path

from websockets.asyncio.server import broadcast, serve
from websockets.datastructures import Headers
from websockets.http11 import Response

rooms: dict[str, set] = {}
offsets: dict[str, int] = {}


async def chat(ws):
    nick = "guest"
    joined = set()
    try:
        async for payload in ws:
            msg = json.loads(payload)
            kind = msg.get("type")
            if kind == "join":
                room = msg["room"]
                nick = msg.get("nick", nick)
                ws.nick = nick
                members = rooms.setdefault(room, set())
                members.add(ws)
                joined.add(room)
                nicks = [getattr(m, "nick", "guest") for m in islice(members, 100)]
                reply = {
                    "type": "joined",
                    "room": room,
                    "offset": offsets.get(room, 0),
                    "epoch": "e",
                    "members": nicks,
                    "recovered": True,
                }
                await ws.send(json.dumps(reply))
            elif kind == "leave":
                room = msg["room"]
                rooms.get(room, set()).discard(ws)
                joined.discard(room)
                await ws.send(json.dumps({"type": "left", "room": room}))
            elif kind == "say":
                room = msg["room"]
                offset = offsets[room] = offsets.get(room, 0) + 1
                event = {
                    "type": "message",
                    "room": room,
                    "offset": offset,
                    "ts": int(time.time() * 1000),
                    "nick": nick,
                    "text": msg["text"],
                }
                broadcast(rooms.get(room, ()), json.dumps(event))
    finally:
        for room in joined:
            rooms.get(room, set()).discard(ws)


async def echo(ws):
    async for payload in ws:
        await ws.send(payload)


async def handler(ws):
    if ws.request.path == "/ws/echo":
        await echo(ws)
    else:
        await chat(ws)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--static", required=True)
    args = parser.parse_args()
    index = (Path(args.static) / "index.html").read_bytes()

    def process_request(connection, request):
        if request.headers.get("Upgrade", "").lower() != "websocket":
            headers = Headers([("Content-Type", "text/html"), ("Content-Length", str(len(index)))])
            return Response(HTTPStatus.OK, "OK", headers, index)
        return None

    async with serve(handler, "127.0.0.1", args.port, process_request=process_request) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on tcp:127.0.0.1:{port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
