"""
Peer: an aiohttp application, C{GET /} as a C{FileResponse}, C{/ws} and C{/ws/echo} as
C{WebSocketResponse} handlers; fan-out awaits C{send_str} per member, as its docs show.
Default asyncio event loop, stdlib C{json}.
"""

import argparse
import asyncio
import json
import sys
import time
from itertools import islice
from pathlib import Path

from aiohttp import WSMsgType, web

rooms: dict[str, set] = {}
offsets: dict[str, int] = {}


async def chat(request):
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    nick = "guest"
    joined = set()
    try:
        async for m in ws:
            if m.type != WSMsgType.TEXT:
                continue
            msg = json.loads(m.data)
            kind = msg.get("type")
            if kind == "join":
                room = msg["room"]
                nick = msg.get("nick", nick)
                ws.nick = nick
                members = rooms.setdefault(room, set())
                members.add(ws)
                joined.add(room)
                nicks = [getattr(x, "nick", "guest") for x in islice(members, 100)]
                reply = {
                    "type": "joined",
                    "room": room,
                    "offset": offsets.get(room, 0),
                    "epoch": "e",
                    "members": nicks,
                    "recovered": True,
                }
                await ws.send_str(json.dumps(reply))
            elif kind == "leave":
                room = msg["room"]
                rooms.get(room, set()).discard(ws)
                joined.discard(room)
                await ws.send_str(json.dumps({"type": "left", "room": room}))
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
                data = json.dumps(event)
                for member in list(rooms.get(room, ())):
                    if not member.closed:
                        await member.send_str(data)
    finally:
        for room in joined:
            rooms.get(room, set()).discard(ws)
    return ws


async def echo(request):
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for m in ws:
        if m.type == WSMsgType.TEXT:
            await ws.send_str(m.data)
        elif m.type == WSMsgType.BINARY:
            await ws.send_bytes(m.data)
    return ws


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--static", required=True)
    args = parser.parse_args()
    index = Path(args.static) / "index.html"

    async def root(request):
        return web.FileResponse(index)

    app = web.Application()
    app.router.add_get("/", root)
    app.router.add_get("/ws", chat)
    app.router.add_get("/ws/echo", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    print(f"listening on tcp:127.0.0.1:{port}", flush=True)
    await asyncio.Future()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
