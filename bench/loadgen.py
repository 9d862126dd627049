"""
The load generator: picows clients on uvloop, one process, pinned by the caller to its core.

Each scenario is a subcommand; its parameters come as one JSON object (C{--params}) and its
result goes to standard output as one line C{RESULT {...}}.  Every phase is bounded in time.
The generator reads the server's CPU time and RSS from C{/proc/PID} (C{--server-pid}) at the
edges of each measurement window and reports them next to its own CPU time, so a result says
which side was the limit.

Frames are only counted on the hot path; a few evenly spread "probe" members parse the
payload to measure publish-to-receive latency (the publisher writes its send time, from the
system-wide monotonic clock, into the text).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time
from array import array
from collections import deque
from typing import Any

import orjson
import uvloop
from picows import WSListener, WSMsgType, WSTransport, ws_connect

CLK_TCK = os.sysconf("SC_CLK_TCK")
TEXT = WSMsgType.TEXT
CLOSE = WSMsgType.CLOSE


# -- process figures ------------------------------------------------------------------------


def procCpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; 0.0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def procRss(pid: int) -> int:
    """Resident set size of a process in bytes; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def machineBusy() -> float:
    """CPU seconds all cores have spent busy since boot (C{/proc/stat})."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / CLK_TCK


class Window:
    """
    A measurement window: wall time, the server's CPU, this process's CPU, and what the
    rest of the machine used meanwhile (C{other_cpu}: other engineers' work is noise).
    """

    #: a process that is part of the server under test (the redis-server of a run with
    #: C{--broker redis}), set from C{--redis-pid}: its CPU is reported as C{redis_cpu}
    #: and not counted as the rest of the machine's
    helperPid: int | None = None

    def __init__(self, serverPid: int) -> None:
        self.serverPid = serverPid
        self.t0 = time.monotonic()
        self.s0 = procCpu(serverPid)
        self.r0 = procCpu(self.helperPid) if self.helperPid else 0.0
        self.g0 = time.process_time()
        self.m0 = machineBusy()

    def close(self) -> dict[str, float]:
        t = time.monotonic() - self.t0
        server = procCpu(self.serverPid) - self.s0
        helper = procCpu(self.helperPid) - self.r0 if self.helperPid else 0.0
        gen = time.process_time() - self.g0
        other = machineBusy() - self.m0 - server - gen - helper
        fig = {
            "seconds": round(t, 3),
            "server_cpu": round(100 * server / t, 1),
            "gen_cpu": round(100 * gen / t, 1),
            "other_cpu": round(max(0.0, 100 * other / t), 1),
        }
        if self.helperPid:
            fig["redis_cpu"] = round(100 * helper / t, 1)
        return fig


def percentiles(values: Any) -> dict[str, float | None]:
    """p50/p99/max of a sequence of milliseconds (None when empty)."""
    data = sorted(values)
    if not data:
        return {"p50": None, "p99": None, "max": None, "n": 0}

    def at(q: float) -> float:
        return round(data[min(len(data) - 1, int(q * len(data)))], 3)

    return {"p50": at(0.50), "p99": at(0.99), "max": round(data[-1], 3), "n": len(data)}


# -- clients --------------------------------------------------------------------------------


class Client(WSListener):  # type: ignore[misc]
    """
    One chat connection.  In control mode every frame is parsed (join replies); once live it
    only counts frames, and a probe also reads the latency stamp of each message.
    """

    def __init__(self) -> None:
        super().__init__()
        self.transport: WSTransport | None = None
        self.count = 0
        self.control = True
        self.probe = False
        self.latencies = array("d")
        self.waiter: asyncio.Future[dict[str, Any]] | None = None
        self.closeCode: int | None = None
        self.gone = False
        self.errors = 0
        #: payload bytes of every text frame received (scenario C: bytes per join)
        self.bytes = 0

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: Any) -> None:
        if frame.msg_type is not TEXT:
            if frame.msg_type is CLOSE:
                self.closeCode = int(frame.get_close_code())
                transport.disconnect()
            return
        self.bytes += frame.payload_size
        if not self.control:
            self.count += 1
            if self.probe:
                obj = orjson.loads(frame.get_payload_as_bytes())
                if obj.get("type") == "message":
                    sent = int(obj["text"].split(":", 1)[0])
                    self.latencies.append((time.monotonic_ns() - sent) / 1e6)
            return
        obj = orjson.loads(frame.get_payload_as_bytes())
        kind = obj.get("type")
        if kind == "error":
            self.errors += 1
        if kind in ("joined", "error") and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(obj)
        elif kind == "message":
            self.count += 1

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.gone = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("disconnected"))

    def send(self, obj: dict[str, Any]) -> None:
        assert self.transport is not None
        self.transport.send(TEXT, orjson.dumps(obj))

    async def join(self, room: str, nick: str | None, timeout: float) -> dict[str, Any]:
        self.waiter = asyncio.get_running_loop().create_future()
        # no nick: an anonymous join (the server names the member)
        self.send({"type": "join", "room": room, **({"nick": nick} if nick else {})})
        reply = await asyncio.wait_for(self.waiter, timeout)
        if reply.get("type") != "joined":
            raise RuntimeError(f"join refused: {reply}")
        return reply

    def close(self) -> None:
        if self.transport is not None and not self.gone:
            self.transport.disconnect(graceful=False)


async def connectOne(url: str, factory: Any, timeout: float) -> Any:
    _, listener = await asyncio.wait_for(
        ws_connect(
            factory,
            url,
            websocket_handshake_timeout=timeout,
            max_frame_size=16 * 1024 * 1024,
            enable_auto_pong=True,
        ),
        timeout,
    )
    return listener


async def connectMany(
    url: str, n: int, factory: Any, concurrency: int, timeout: float
) -> tuple[list[Any], float]:
    """Open C{n} connections, C{concurrency} handshakes in flight; @return: (clients, s)."""
    sem = asyncio.Semaphore(concurrency)
    deadline = time.monotonic() + timeout

    async def one() -> Any:
        async with sem:
            left = max(0.1, deadline - time.monotonic())
            return await connectOne(url, factory, left)

    t0 = time.monotonic()
    clients = await asyncio.gather(*[one() for _ in range(n)])
    return list(clients), time.monotonic() - t0


async def joinMany(
    clients: list[Client], room: str, nick: Any, concurrency: int, timeout: float
) -> tuple[int, float]:
    """Join every client to C{room} (nick: a str or a callable of the index)."""
    sem = asyncio.Semaphore(concurrency)
    deadline = time.monotonic() + timeout
    joined = 0

    async def one(i: int, c: Client) -> None:
        nonlocal joined
        async with sem:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                await c.join(room, nick(i) if callable(nick) else nick, left)
            except (asyncio.TimeoutError, ConnectionError):
                return
            c.control = False
            joined += 1

    t0 = time.monotonic()
    await asyncio.gather(*[one(i, c) for i, c in enumerate(clients)])
    return joined, time.monotonic() - t0


def closeAll(clients: list[Any]) -> None:
    for c in clients:
        c.close()


def stampText(size: int) -> bytes:
    """The text of a say: the send time in ns, then padding to C{size} characters."""
    stamp = f"{time.monotonic_ns()}:"
    return stamp.encode() + b"x" * max(0, size - len(stamp))


class Publisher:
    """Sends C{say}s at a paced rate from one client (text carries the send time)."""

    def __init__(self, client: Client, room: str, textSize: int) -> None:
        self.client = client
        self.prefix = b'{"type":"say","room":"' + room.encode() + b'","text":"'
        self.textSize = textSize
        self.sent = 0

    def sayOne(self) -> None:
        assert self.client.transport is not None
        self.client.transport.send(TEXT, self.prefix + stampText(self.textSize) + b'"}')
        self.sent += 1

    async def run(self, rate: float, seconds: float) -> None:
        """Send C{rate} messages per second for C{seconds} (ticks of 2 ms)."""
        t0 = time.monotonic()
        end = t0 + seconds
        start = self.sent
        while True:
            now = time.monotonic()
            if now >= end:
                break
            due = int(rate * (now - t0)) - (self.sent - start)
            for _ in range(due):
                self.sayOne()
            await asyncio.sleep(0.002)


def spread(clients: list[Any], k: int) -> list[Any]:
    """Up to C{k} clients evenly spread over the list (first and last included)."""
    if len(clients) <= k:
        return list(clients)
    step = (len(clients) - 1) / (k - 1)
    return [clients[round(i * step)] for i in range(k)]


async def waitFor(predicate: Any, timeout: float, poll: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(poll)
    return predicate()


# -- scenarios ------------------------------------------------------------------------------


async def scenarioEcho(url: str, pid: int, p: dict[str, Any]) -> dict[str, Any]:
    """(A) C{conns} connections to /ws/echo, C{window} 64-byte messages outstanding each."""
    payload = b"e" * p.get("size", 64)
    window = p.get("window", 8)

    class Echo(WSListener):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.sent: deque[int] = deque()
            self.count = 0
            self.rtts = array("d")
            self.record = False
            self.running = True
            self.transport: Any = None

        def on_ws_connected(self, transport: WSTransport) -> None:
            self.transport = transport

        def on_ws_frame(self, transport: WSTransport, frame: Any) -> None:
            if frame.msg_type is not TEXT:
                return
            now = time.monotonic_ns()
            t = self.sent.popleft()
            self.count += 1
            if self.record:
                self.rtts.append((now - t) / 1e6)
            if self.running:
                self.sent.append(time.monotonic_ns())
                transport.send(TEXT, payload)

    clients, _ = await connectMany(url + "/ws/echo", p["conns"], Echo, 50, 30)
    for c in clients:
        for _ in range(window):
            c.sent.append(time.monotonic_ns())
            c.transport.send(TEXT, payload)
    await asyncio.sleep(p.get("warmup", 1.0))
    for c in clients:
        c.count = 0
        c.record = True
    w = Window(pid)
    await asyncio.sleep(p["seconds"])
    fig = w.close()
    total = sum(c.count for c in clients)
    for c in clients:
        c.running = False
        c.record = False
    rtts = array("d")
    for c in clients:
        rtts.extend(c.rtts)
    await asyncio.sleep(0.2)
    for c in clients:
        c.transport.disconnect(graceful=False)
    return {"msgs_per_s": round(total / fig["seconds"]), "rtt_ms": percentiles(rtts), **fig}


async def setupRoom(
    url: str, room: str, members: int, nick: Any, p: dict[str, Any]
) -> tuple[list[Client], dict[str, Any]]:
    clients, hs = await connectMany(
        url + "/ws", members, Client, p.get("connect_concurrency", 100), p.get("setup_timeout", 60)
    )
    joined, js = await joinMany(
        clients, room, nick, p.get("join_concurrency", 100), p.get("setup_timeout", 60)
    )
    if joined < members:
        raise RuntimeError(f"only {joined} of {members} members joined {room}")
    return clients, {"handshake_s": round(hs, 3), "join_s": round(js, 3)}


async def fanoutSteps(
    pid: int, clients: list[Client], pub: Publisher, p: dict[str, Any]
) -> list[dict[str, Any]]:
    """Step the offered rate up until the server stops keeping up (or the steps end)."""
    size = len(clients)
    steps = []
    for offered in p["steps"]:
        rate = offered / size
        for c in clients:
            c.count = 0
            c.latencies = array("d")
        pub.sent = 0
        w = Window(pid)
        await pub.run(rate, p["step_seconds"])
        fig = w.close()
        received = sum(c.count for c in clients)
        expected = pub.sent * size
        drained = await waitFor(
            lambda expected=expected: sum(c.count for c in clients) >= expected,
            p.get("drain_seconds", 3.0),
        )
        lat = array("d")
        for c in clients:
            lat.extend(c.latencies)
        achieved = received / fig["seconds"]
        stats = percentiles(lat)
        ok = (
            drained
            and achieved >= 0.95 * pub.sent * size / fig["seconds"]
            and (stats["p99"] is None or stats["p99"] < p.get("max_p99_ms", 250))
        )
        steps.append(
            {
                "offered": round(pub.sent * size / fig["seconds"]),
                "target": offered,
                "achieved": round(achieved),
                "drained": drained,
                "ok": ok,
                "latency_ms": stats,
                **fig,
            }
        )
        # stop when the server stops keeping up; a step that only missed the latency bound
        # (noise, or a big room's burst) says nothing about the next step's throughput
        kept = drained and achieved >= 0.95 * pub.sent * size / fig["seconds"]
        if not kept and p.get("stop_on_fail", True):
            break
    return steps


async def scenarioFanout(url: str, pid: int, p: dict[str, Any]) -> dict[str, Any]:
    """(B) one room of S members (one nick: no presence storm), one publisher, rate steps."""
    out: dict[str, Any] = {"sizes": {}}
    for size in p["sizes"]:
        room = f"fan{size}"
        clients, setup = await setupRoom(url, room, size, "bench", p)
        for c in spread(clients, p.get("probes", 64)):
            c.probe = True
        pub = Publisher(clients[0], room, p.get("text", 48))
        await asyncio.sleep(p.get("settle", 0.5))
        steps = await fanoutSteps(pid, clients, pub, p)
        ok = [s for s in steps if s["ok"]]
        out["sizes"][str(size)] = {
            "setup": setup,
            "steps": steps,
            "max_sustained": max((s["achieved"] for s in ok), default=0),
            "peak": max((s["achieved"] for s in steps), default=0),
            "latency_first_step_ms": steps[0]["latency_ms"] if steps else None,
            "first_step_target": p["steps"][0],
        }
        closeAll(clients)
        await asyncio.sleep(p.get("pause", 1.0))
    return out


async def scenarioFanoutFixed(url: str, pid: int, p: dict[str, Any]) -> dict[str, Any]:
    """Fan-out at one offered rate for a time (the background of scenario D)."""
    size = p["size"]
    clients, setup = await setupRoom(url, "fixed", size, "bench", p)
    pub = Publisher(clients[0], "fixed", p.get("text", 48))
    await asyncio.sleep(0.3)
    print("READY", flush=True)
    for c in clients:
        c.count = 0
    w = Window(pid)
    await pub.run(p["rate"] / size, p["seconds"])
    fig = w.close()
    received = sum(c.count for c in clients)
    closeAll(clients)
    return {
        "offered": round(pub.sent * size / fig["seconds"]),
        "achieved": round(received / fig["seconds"]),
        "setup": setup,
        **fig,
    }


async def scenarioFanoutCount(url: str, pid: int, p: dict[str, Any]) -> dict[str, Any]:
    """
    A fixed number of messages to a room of S (for profilers): prints READY once joined,
    waits for a line on standard input, publishes C{count} messages at C{rate} per second,
    waits until every delivery arrived, prints DONE.
    """
    size = p["size"]
    clients, setup = await setupRoom(url, "count", size, "bench", p)
    pub = Publisher(clients[0], "count", p.get("text", 48))
    await asyncio.sleep(0.3)
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    for c in clients:
        c.count = 0
    w = Window(pid)
    await pub.run(p["rate"], p["count"] / p["rate"])
    expected = pub.sent * size
    done = await waitFor(
        lambda: sum(c.count for c in clients) >= expected, p.get("drain_seconds", 300)
    )
    fig = w.close()
    received = sum(c.count for c in clients)
    print("DONE", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    closeAll(clients)
    return {
        "published": pub.sent,
        "delivered": received,
        "complete": done,
        "setup": setup,
        **fig,
    }


async def scenarioIdle(url: str, pid: int, p: dict[str, Any]) -> dict[str, Any]:
    """(C) N idle connections joined to one room, distinct nicks (presence is real)."""
    n = p["conns"]
    rest = p.get("rest", 1.0)
    await asyncio.sleep(rest / 2)
    rss0 = procRss(pid)
    cpu0 = procCpu(pid)
    w = Window(pid)
    clients, hs = await connectMany(
        url + "/ws", n, Client, p.get("connect_concurrency", 100), p.get("timeout", 120)
    )
    handshake = w.close()
    rssConnected = procRss(pid)
    w = Window(pid)
    # the joins in chunks (fifths of the room by default): the bytes that reached members
    # per join, chunk by chunk, show whether a join costs more as the room grows
    chunks = max(1, p.get("join_chunks", 5))
    anonymous = p.get("anonymous", False)
    joined, js = 0, 0.0
    perChunk = []
    for k in range(chunks):
        part = clients[k * n // chunks : (k + 1) * n // chunks]
        offset = k * n // chunks
        before = sum(c.bytes for c in clients)
        got, seconds = await joinMany(
            part,
            "idle",
            (lambda i: None) if anonymous else (lambda i, o=offset: f"user-{o + i}"),
            p.get("join_concurrency", 64),
            p.get("join_timeout", 120),
        )
        joined += got
        js += seconds
        perChunk.append(
            {
                "members_after": (k + 1) * n // chunks,
                "joins": got,
                "joins_per_s": round(got / seconds) if seconds else 0,
                "bytes_per_join": round((sum(c.bytes for c in clients) - before) / got)
                if got
                else None,
            }
        )
    joinFig = w.close()
    # let presence traffic drain, then measure at rest
    settle = time.monotonic()
    last = -1
    while time.monotonic() - settle < p.get("settle_timeout", 60):
        total = sum(c.count for c in clients)
        if total == last:
            break
        last = total
        await asyncio.sleep(rest / 2)
    drainS = time.monotonic() - settle
    await asyncio.sleep(rest)
    rss1 = procRss(pid)
    presence = sum(c.count for c in clients)
    result = {
        "conns": n,
        "joined": joined,
        "handshakes_per_s": round(n / hs),
        "joins_per_s": round(joined / js) if js else 0,
        "connect_join_per_s": round(joined / (hs + js)) if hs + js else 0,
        "anonymous": anonymous,
        "join_chunks": perChunk,
        "handshake_phase": handshake,
        "join_phase": joinFig,
        "frames_to_members_during_joins": presence,
        "settle_s": round(drainS, 2),
        "rss_before": rss0,
        "rss_connected": rssConnected,
        "rss_joined": rss1,
        "rss_per_conn": round((rss1 - rss0) / n),
        "server_cpu_s_total": round(procCpu(pid) - cpu0, 2),
    }
    closeAll(clients)
    return result


def tcpState(fd: int) -> int:
    """The kernel's TCP state of a socket (1 established, 7 close, 8 close-wait)."""
    s = socket.socket(fileno=os.dup(fd))
    try:
        return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
    finally:
        s.close()


async def scenarioSlow(url: str, pid: int, p: dict[str, Any]) -> dict[str, Any]:
    """(E) one member stops reading while a publisher floods the room."""
    members = p["members"]
    clients, setup = await setupRoom(url, "slow", members, "bench", p)
    pub = Publisher(clients[0], "slow", p["text"])
    slow = clients[-1]
    others = clients[:-1]
    rate = p["rate"]
    await asyncio.sleep(0.3)
    # baseline: everyone reads
    for c in clients:
        c.count = 0
    w = Window(pid)
    await pub.run(rate, p["baseline_seconds"])
    base = w.close()
    baseRate = sum(c.count for c in others) / len(others) / base["seconds"]
    await asyncio.sleep(p.get("rest", 0.5))
    # the slow one stops reading
    ut = slow.transport.underlying_transport  # type: ignore[union-attr]
    fd = ut.get_extra_info("socket").fileno()
    ut.pause_reading()
    rss0 = procRss(pid)
    rssMax = rss0
    cutAfter: float | None = None
    for c in others:
        c.count = 0
    w = Window(pid)
    t0 = time.monotonic()
    flood = asyncio.ensure_future(pub.run(rate, p["seconds"]))
    while not flood.done():
        await asyncio.sleep(0.1)
        rssMax = max(rssMax, procRss(pid))
        if cutAfter is None and tcpState(fd) != 1:
            cutAfter = round(time.monotonic() - t0, 2)
    stall = w.close()
    stallRate = sum(c.count for c in others) / len(others) / stall["seconds"]
    state = tcpState(fd)
    rssEnd = procRss(pid)
    ut.resume_reading()
    closeAll(clients)
    return {
        "members": members,
        "rate": rate,
        "text": p["text"],
        "cut": cutAfter is not None,
        "cut_after_s": cutAfter,
        "slow_tcp_state_end": state,
        "rss_growth": rssMax - rss0,
        "rss_growth_end": rssEnd - rss0,
        "others_rate_baseline": round(baseRate, 1),
        "others_rate_during": round(stallRate, 1),
        "others_ratio": round(stallRate / baseRate, 3) if baseRate else None,
        "baseline": base,
        "stall": stall,
        "setup": setup,
    }


class RefillingClient(Client):
    """A publisher alone in its room: each of its own messages back sends the next say."""

    frame = b""
    running = False

    def on_ws_frame(self, transport: WSTransport, frame: Any) -> None:
        Client.on_ws_frame(self, transport, frame)
        if self.running and not self.control and frame.msg_type is TEXT:
            transport.send(TEXT, self.frame)


async def scenarioPublishers(url: str, pid: int, p: dict[str, Any]) -> dict[str, Any]:
    """(F) P publishers, each alone in its own room, C{window} says in flight each."""
    window = p.get("window", 8)
    n = p["publishers"]
    clients, _ = await connectMany(url + "/ws", n, RefillingClient, 50, 30)
    text = b"f" * p.get("text", 48)
    for i, c in enumerate(clients):
        await c.join(f"pub{i}", f"pub-{i}", 10)
        c.control = False
        c.frame = b'{"type":"say","room":"pub' + str(i).encode() + b'","text":"' + text + b'"}'
        c.running = True
    for c in clients:
        for _ in range(window):
            c.transport.send(TEXT, c.frame)
    await asyncio.sleep(p.get("warmup", 1.0))
    for c in clients:
        c.count = 0
    w = Window(pid)
    await asyncio.sleep(p["seconds"])
    fig = w.close()
    total = sum(c.count for c in clients)
    for c in clients:
        c.running = False
    errors = sum(c.errors for c in clients)
    await asyncio.sleep(0.3)
    closeAll(clients)
    return {"says_per_s": round(total / fig["seconds"]), "errors": errors, **fig}


SCENARIOS = {
    "echo": scenarioEcho,
    "fanout": scenarioFanout,
    "fanout-fixed": scenarioFanoutFixed,
    "fanout-count": scenarioFanoutCount,
    "idle": scenarioIdle,
    "slow": scenarioSlow,
    "publishers": scenarioPublishers,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--url", required=True, help="ws://127.0.0.1:PORT")
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--params", default="{}", help="JSON object")
    parser.add_argument(
        "--redis-pid", type=int, default=0, help="the server's redis-server (its CPU is reported)"
    )
    parser.add_argument("--timeout", type=float, default=600, help="hard limit, seconds")
    args = parser.parse_args(argv)
    params = json.loads(args.params)
    Window.helperPid = args.redis_pid or None

    async def run() -> dict[str, Any]:
        return await asyncio.wait_for(
            SCENARIOS[args.scenario](args.url, args.server_pid, params), args.timeout
        )

    try:
        result = uvloop.run(run())
    except Exception as e:  # report, don't hide: the caller records the failure
        result = {"error": f"{type(e).__name__}: {e}"}
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
