"""
Profile portshare in scenario B (one room of S members, one publisher).

    python bench/profile.py callgrind --size 1000 --count 40 --rate 4   # instructions/delivery
    python bench/profile.py pyspy --size 1000 --rate 120000 --seconds 8  # where the time goes

C{callgrind} runs the server under C{valgrind --tool=callgrind} with instrumentation off
until the room is joined, counts the instructions of exactly C{count} published messages
and their S deliveries each, and divides: instructions per delivered message, a figure that
hardly moves on a noisy machine, good for comparing two source trees (C{--src}).

C{pyspy} runs the server natively (pinned to core 0) under a fan-out load from the generator
(core 1) and samples it with py-spy; it prints the functions with the most samples, by self
time and inclusive time.  Output goes to C{--out} (default bench/results/profile).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import GEN_CORE, PROFILES, ROOT, Server, parseResult, pinned, wrk  # noqa: E402


class WrappedServer(Server):
    """portshare with a command in front (valgrind) and extra options."""

    def __init__(self, prefix: list[str], extra: list[str], *args: Any) -> None:
        super().__init__("portshare", *args)
        self.prefix = prefix
        self.extra = extra

    def argv(self) -> list[str]:
        return [*self.prefix, *super().argv(), *self.extra]


def loadgen(
    python: str, scenario: str, port: int, pid: int, params: dict[str, Any]
) -> subprocess.Popen[str]:
    argv = pinned(
        GEN_CORE,
        [
            python,
            str(HERE / "loadgen.py"),
            scenario,
            "--url",
            f"ws://127.0.0.1:{port}",
            "--server-pid",
            str(pid),
            "--params",
            json.dumps(params),
            "--timeout",
            "1200",
        ],
    )
    return subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def waitLine(proc: subprocess.Popen[str], word: str, timeout: float) -> list[str]:
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith(word):
            return lines
    raise RuntimeError(f"no {word} from the generator: {''.join(lines)[-500:]}")


def callgrind(args: argparse.Namespace) -> dict[str, Any]:
    out = args.out / f"callgrind.{args.label}.out"
    for old in args.out.glob(f"callgrind.{args.label}.out*"):
        old.unlink()
    server = WrappedServer(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
        ],
        ["--ping-interval", "3600"],
        args.python,
        args.src,
        Path(tempfile.mkdtemp()),
    )
    server.start(timeout=300)
    gen = loadgen(
        args.python,
        "fanout-count",
        server.port,
        server.pid,
        {
            "size": args.size,
            "count": args.count,
            "rate": args.rate,
            "connect_concurrency": 8,
            "join_concurrency": 8,
            "setup_timeout": 900,
            "drain_seconds": 900,
        },
    )
    try:
        waitLine(gen, "READY", 1200)
        subprocess.run(["callgrind_control", "-i", "on", str(server.pid)], check=True)
        subprocess.run(["callgrind_control", "-z", str(server.pid)], check=True)
        assert gen.stdin is not None
        gen.stdin.write("go\n")
        gen.stdin.flush()
        waitLine(gen, "DONE", 1200)
        subprocess.run(["callgrind_control", "-d", str(server.pid)], check=True)
        subprocess.run(["callgrind_control", "-i", "off", str(server.pid)], check=True)
        gen.stdin.write("end\n")
        gen.stdin.flush()
        stdout, stderr = gen.communicate(timeout=120)
        result = parseResult(stdout, stderr)
    finally:
        if gen.poll() is None:
            gen.kill()
        server.stop()
    dumps = sorted(
        (p for p in args.out.glob(f"callgrind.{args.label}.out.*") if p.suffix != ".txt"),
        key=lambda p: p.stat().st_mtime,
    )
    dump = dumps[0] if dumps else out
    text = dump.read_text(errors="replace")
    m = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
    instructions = int(m.group(1)) if m else 0
    annotate = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", str(dump)], capture_output=True, text=True
    ).stdout
    (args.out / f"callgrind.{args.label}.annotate.txt").write_text(annotate)
    delivered = result.get("delivered") or 0
    return {
        "label": args.label,
        "src": str(args.src),
        "size": args.size,
        "published": result.get("published"),
        "delivered": delivered,
        "complete": result.get("complete"),
        "instructions": instructions,
        "instructions_per_delivery": round(instructions / delivered) if delivered else None,
        "dump": str(dump),
    }


def aggregate(raw: Path, top: int) -> dict[str, Any]:
    """Self and inclusive sample counts per function from py-spy's raw (collapsed) output."""
    selfCount: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = [re.sub(r":\d+\)$", ")", f.strip()) for f in stack.split(";")]
        # py-spy puts the thread first; drop it
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        selfCount[frames[-1]] += count
        for f in set(frames):
            inclusive[f] += count

    def rows(c: Counter[str]) -> list[tuple[str, float]]:
        return [(f, round(100 * n / total, 1)) for f, n in c.most_common(top)]

    return {"samples": total, "self": rows(selfCount), "inclusive": rows(inclusive)}


def pyspyRecord(exe: str, pid: int, seconds: float, raw: Path) -> list[str]:
    """py-spy sampling C{pid} for C{seconds} at 200 Hz into C{raw}, on the generator's core."""
    return pinned(
        GEN_CORE,
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "200",
            "--format",
            "raw",
            "--output",
            str(raw),
        ],
    )


def pyspy(args: argparse.Namespace) -> dict[str, Any]:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    server = WrappedServer([], [], args.python, args.src, Path(tempfile.mkdtemp()))
    server.start()
    gen = loadgen(
        args.python,
        "fanout-fixed",
        server.port,
        server.pid,
        {"size": args.size, "rate": args.rate, "seconds": args.seconds + 3},
    )
    raw = args.out / f"pyspy.{args.label}.txt"
    try:
        waitLine(gen, "READY", 300)
        time.sleep(1.0)
        subprocess.run(
            pyspyRecord(exe, server.pid, args.seconds, raw), check=True, capture_output=True
        )
        stdout, stderr = gen.communicate(timeout=120)
        result = parseResult(stdout, stderr)
    finally:
        if gen.poll() is None:
            gen.kill()
        server.stop()
    return {"label": args.label, "fanout": result, **aggregate(raw, args.top)}


def pyspyScenario(args: argparse.Namespace) -> dict[str, Any]:
    """
    py-spy over one of the benchmark's own scenarios (its C{quick} parameters): echo, idle
    (handshakes, then joins), publishers, or http (wrk C{GET /} alone).  Sampling starts with
    the load and lasts C{--seconds}; samples of the server waiting in C{epoll} are not
    counted (py-spy's default).
    """
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    server = WrappedServer([], [], args.python, args.src, Path(tempfile.mkdtemp()))
    server.start()
    raw = args.out / f"pyspy.{args.label}.txt"
    spy = subprocess.Popen(
        pyspyRecord(exe, server.pid, args.seconds, raw),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        if args.scenario == "http":
            result = wrk(server.port, args.seconds, 32)
        else:
            gen = loadgen(
                args.python,
                args.scenario,
                server.port,
                server.pid,
                dict(PROFILES["quick"][args.scenario]),
            )
            stdout, stderr = gen.communicate(timeout=300)
            result = parseResult(stdout, stderr)
        spy.wait(timeout=args.seconds + 60)
    finally:
        if spy.poll() is None:
            spy.kill()
        server.stop()
    return {
        "label": args.label,
        "scenario": args.scenario,
        "result": result,
        **aggregate(raw, args.top),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tool", choices=["callgrind", "pyspy", "scenario"])
    parser.add_argument(
        "--scenario",
        choices=["echo", "idle", "publishers", "http"],
        default="echo",
        help="the benchmark scenario to sample (tool scenario)",
    )
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--count", type=int, default=40, help="messages (callgrind)")
    parser.add_argument("--rate", type=float, default=4, help="msgs/s (callgrind), deliveries/s")
    parser.add_argument("--seconds", type=float, default=8, help="sampling time (pyspy)")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--src", type=Path, default=ROOT)
    parser.add_argument("--label", default="head")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "profile")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.tool == "scenario":
        result = pyspyScenario(args)
    else:
        result = callgrind(args) if args.tool == "callgrind" else pyspy(args)
    (args.out / f"{args.tool}.{args.label}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
