"""
A soak run: the real service under mixed load with abuse, for a bounded time, on loopback.

It starts C{twistd -n portshare} on a free loopback port and, for C{--duration} seconds,
runs at once:

  - well-behaved members who say a message every C{--interval} seconds and time how long
    their own message takes to come back (publish-to-receive latency);
  - flooders (closed with 1008), oversize senders (closed with 1009), senders of garbage
    JSON and unknown types (answered with errors), all reconnecting as they are cut;
  - slowloris HTTP connections that trickle header bytes (cut by --request-timeout);
  - members that stop reading in a busy room (slow consumers: cut with 1013);
  - connection churn: connect, join, leave, close.

Every second it samples the server's resident memory (/proc/PID/status).  At the end it
checks that memory stayed flat (the last third of the samples against the first third),
that well-behaved members kept their latency (p99 under C{--max-p99-ms}), that the abuse was
answered with the right close codes, and that the server logged no traceback.  Exit status
0 means all held.

    python soak/run.py --duration 60
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import treq
from twisted.internet import defer, protocol, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout: tests.harness

from portshare.testing import connectChat
from tests.harness import spawnTwistd


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.closes: dict[str, list[int | None]] = {}
        self.errors: dict[str, int] = {}
        self.rss: list[int] = []
        self.metrics = ""

    def closed(self, kind: str, code: int | None) -> None:
        self.closes.setdefault(kind, []).append(code)


class Slowloris(protocol.Protocol):
    def connectionLost(self, reason: Any) -> None:
        self.lost = True


async def goodMember(
    reactor: Any,
    port: int,
    stats: Stats | None,
    until: float,
    n: int,
    interval: float,
    size: int = 0,
    room: str = "soak",
) -> None:
    client = await connectChat(reactor, port)
    client.send(type="join", room=room, nick=f"good{n}")
    await client.until("joined")
    sent: dict[str, float] = {}
    ref = 0
    while reactor.seconds() < until:
        ref += 1
        text = f"{n}:{ref}:" + "x" * size
        sent[text] = time.monotonic()
        client.send(type="say", room=room, text=text)
        deadline = reactor.seconds() + interval
        while reactor.seconds() < deadline:
            d = client.next()
            timeout = deadline - reactor.seconds()
            d.addTimeout(max(timeout, 0.001), reactor)
            try:
                message = await d
            except defer.TimeoutError:
                break
            if message.get("type") == "message" and message.get("text") in sent:
                latency = time.monotonic() - sent.pop(message["text"])
                if stats is not None:
                    stats.latencies.append(latency)
    client.sendClose()


async def abuser(reactor: Any, port: int, stats: Stats, until: float, kind: str) -> None:
    while reactor.seconds() < until:
        try:
            client = await connectChat(reactor, port)
        except Exception:
            await task.deferLater(reactor, 0.2, lambda: None)
            continue
        client.send(type="join", room="busy" if kind == "slow" else "soak", nick=kind)
        if kind == "flood":
            for _ in range(200):
                client.send(type="say", room="soak", text="flood")
        elif kind == "oversize":
            client.sendMessage(b'"' + b"x" * 200_000 + b'"')
        elif kind == "garbage":
            for payload in (b"{nope", b"[]", b'{"type":"dance"}', b'{"type":"say"}'):
                client.sendMessage(payload)
            client.sendMessage(b"\x00\x01", isBinary=True)
            await task.deferLater(reactor, 0.5, lambda: None)
            client.sendClose()
        elif kind == "slow":
            client.transport.pauseProducing()  # stop reading: the server's buffer fills
            await task.deferLater(reactor, 15, lambda: None)
            client.transport.resumeProducing()  # read again: by now the server has cut it
        result = client.closed
        result.addTimeout(30, reactor)
        try:
            _, code, _ = await result
        except defer.TimeoutError:
            code = None
            client.dropConnection(abort=True)
        stats.closed(kind, code)
        await task.deferLater(reactor, 0.1, lambda: None)


async def churn(reactor: Any, port: int, stats: Stats, until: float) -> None:
    n = 0
    while reactor.seconds() < until:
        n += 1
        client = await connectChat(reactor, port)
        client.send(type="join", room=f"churn{n % 50}", nick=f"c{n}")
        await client.until("joined")
        client.send(type="leave", room=f"churn{n % 50}")
        client.sendClose()
        await client.closed


async def slowloris(reactor: Any, port: int, stats: Stats, until: float) -> None:
    while reactor.seconds() < until:
        proto = Slowloris()
        proto.lost = False
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), proto)
        proto.transport.write(b"GET / HTTP/1.1\r\n")
        while not proto.lost and reactor.seconds() < until:
            proto.transport.write(b"X")
            await task.deferLater(reactor, 0.5, lambda: None)
        stats.closed("slowloris", 0 if proto.lost else None)
        if not proto.lost:
            proto.transport.abortConnection()


async def main(reactor: Any, args: argparse.Namespace) -> int:
    server = spawnTwistd(
        reactor,
        Path.cwd(),
        "--request-timeout",
        "3",
        "--slow-consumer-seconds",
        "3",
        "--slow-consumer-bytes",
        str(256 * 1024),
        "--max-message-size",
        "65536",
        "--rate",
        "50",
        "--burst",
        "100",
        "--flood-strikes",
        "20",
    )
    process = server.transport
    stats = Stats()
    try:
        port = await server.listening
        start = reactor.seconds()
        until = start + args.duration
        sampler = task.LoopingCall(lambda: stats.rss.append(rss(process.pid)))
        sampler.clock = reactor
        sampler.start(1.0)
        jobs = [
            goodMember(reactor, port, stats, until, n, args.interval) for n in range(args.members)
        ]
        jobs += [
            abuser(reactor, port, stats, until, kind)
            for kind in ("flood", "oversize", "garbage", "slow")
        ]
        jobs += [churn(reactor, port, stats, until), slowloris(reactor, port, stats, until)]
        # a busy room, so that slow consumers really fall behind (not timed)
        jobs += [
            goodMember(reactor, port, None, until, 1000 + n, 0.02, size=4000, room="busy")
            for n in range(3)
        ]
        await defer.gatherResults([defer.ensureDeferred(j) for j in jobs], consumeErrors=True)
        sampler.stop()
        response = await treq.get(f"http://127.0.0.1:{port}/metrics")
        stats.metrics = (await response.content()).decode()
    except Exception:
        print(server.output.decode(errors="replace")[-4000:])
        raise
    finally:
        if not server.ended.called:
            process.signalProcess("TERM")
        await server.ended
    return report(stats, server.output, args)


def report(stats: Stats, log: bytes, args: argparse.Namespace) -> int:
    failures = []
    lat = sorted(stats.latencies)
    p50 = lat[len(lat) // 2] * 1000 if lat else float("nan")
    p99 = lat[int(len(lat) * 0.99) - 1] * 1000 if lat else float("nan")
    third = max(len(stats.rss) // 3, 1)
    early, late = statistics.median(stats.rss[:third]), statistics.median(stats.rss[-third:])
    growth = late - early
    print(f"deliveries timed: {len(lat)}; latency p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    print(
        f"RSS: first third {early / 2**20:.1f} MiB, last third {late / 2**20:.1f} MiB, "
        f"growth {growth / 2**20:+.1f} MiB, max {max(stats.rss) / 2**20:.1f} MiB"
    )
    for kind, codes in sorted(stats.closes.items()):
        counts: dict[Any, int] = {}
        for code in codes:
            counts[code] = counts.get(code, 0) + 1
        print(f"{kind}: closes {counts}")
    if not lat:
        failures.append("no latency samples")
    elif p99 > args.max_p99_ms:
        failures.append(f"p99 latency {p99:.1f} ms > {args.max_p99_ms} ms")
    if growth > args.max_growth_mib * 2**20:
        failures.append(f"RSS grew {growth / 2**20:.1f} MiB > {args.max_growth_mib} MiB")
    slowCut = re.search(r"^portshare_slow_consumers_total (\S+)$", stats.metrics, re.M)
    print(f"slow consumers cut by the server: {slowCut.group(1) if slowCut else 'none'}")
    if not slowCut or float(slowCut.group(1)) < 1:
        failures.append("no slow consumer was cut")
    if any(code is None for code in stats.closes.get("slow", [])):
        failures.append("a slow consumer's connection was still open 30 s after it read again")
    expected = {"flood": 1008, "oversize": 1009, "slowloris": 0}
    for kind, code in expected.items():
        if code not in stats.closes.get(kind, []):
            failures.append(f"{kind} was never closed with {code}")
    for marker in (b"Traceback", b"Unhandled"):
        if marker in log:
            failures.append(f"server log has {marker.decode()}")
    for failure in failures:
        print("FAILED:", failure)
    print("soak passed" if not failures else "soak failed")
    return 1 if failures else 0


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("--members", type=int, default=20, help="well-behaved members")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between says")
    parser.add_argument(
        "--max-p99-ms",
        type=float,
        default=500.0,
        help="p99 publish-to-receive latency of the well-behaved members",
    )
    parser.add_argument("--max-growth-mib", type=float, default=16.0)
    args = parser.parse_args()
    if not 30 <= args.duration <= 3600:
        # a slow consumer needs about 20 s to fill the socket buffers and be cut
        parser.error("--duration must be 30 to 3600 seconds")
    return args


if __name__ == "__main__":
    arguments = parse()
    random.seed(0)

    async def run(reactor: Any) -> None:
        status = await main(reactor, arguments)
        if status:
            raise SystemExit(status)

    task.react(lambda reactor: defer.ensureDeferred(run(reactor)))
