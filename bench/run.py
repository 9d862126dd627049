"""
portshare's benchmark: every scenario against portshare and its peers, in one run.

    python bench/run.py            # the full run (about half an hour); results in bench/results/
    python bench/run.py --quick    # shorter steps and windows (about ten minutes)
    python bench/run.py --smoke    # seconds; what tests/test_bench_smoke.py runs

Scenarios (issue 7): A echo, B fan-out at S = 100 / 1,000 / 5,000 with stepped offered rate,
C idle joined connections (RSS per connection, handshakes and joins per second), D C{GET /}
with wrk alone and during fan-out, E a slow consumer, F many publishers, F1 (C{publisher})
one publisher saying one message at a time.

The server C{portshare-redis} is portshare with C{--broker redis://}: the run starts its own
C{redis-server} (no persistence) on a free loopback port beside it, and reports that
process's CPU (C{redis_cpu}) and C{INFO commandstats} next to portshare's.  It runs the
fan-out and publisher scenarios only (L{REDIS_SCENARIOS}); the report puts it beside the
memory broker.

Each server runs pinned to core 0 (C{taskset -c 0}), the generator (L{loadgen}, picows on
uvloop) and wrk to core 1; both CPU figures are recorded for every window, and so is the CPU
the rest of the machine used meanwhile (C{other_cpu}), the noise of a shared machine.  Only
loopback; every phase is bounded in time; every process started here is stopped by its PID.
The run is scenario-major (each scenario runs against every server back to back) so that
the ratios of one scenario come from the same minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = HERE / "peers"
STATIC = ROOT / "portshare" / "static"
SERVER_CORE = "0"
GEN_CORE = "1"

sys.path.insert(0, str(HERE))

from loadgen import machineBusy, procCpu  # noqa: E402

# -- profiles -------------------------------------------------------------------------------

FULL_STEPS = [
    10_000,
    25_000,
    50_000,
    75_000,
    100_000,
    125_000,
    150_000,
    175_000,
    200_000,
    250_000,
    300_000,
    400_000,
]

PROFILES: dict[str, dict[str, Any]] = {
    "full": {
        "echo": {"conns": 100, "window": 8, "size": 64, "warmup": 1.0, "seconds": 5.0},
        "fanout": {
            "sizes": [100, 1000, 5000],
            "steps": FULL_STEPS,
            "step_seconds": 3.0,
            "drain_seconds": 3.0,
            "probes": 64,
            "text": 48,
        },
        "idle": {"conns": 5000, "join_timeout": 150, "settle_timeout": 60, "anonymous": True},
        "http": {
            "seconds": 8,
            "conns": 32,
            "during_size": 1000,
            "during_rate": 50_000,
            "moderate_rate": 10_000,
        },
        "slow": {
            "members": 20,
            "rate": 1000,
            "text": 2000,
            "baseline_seconds": 3.0,
            "seconds": 15.0,
        },
        "publishers": {"publishers": 100, "window": 8, "warmup": 1.0, "seconds": 5.0},
        "publisher": {"publishers": 1, "window": 1, "warmup": 1.0, "seconds": 5.0},
    },
    "quick": {
        "echo": {"conns": 100, "window": 8, "size": 64, "warmup": 0.5, "seconds": 3.0},
        "fanout": {
            "sizes": [100, 1000, 5000],
            "steps": [10_000, 50_000, 100_000, 150_000, 200_000, 300_000],
            "step_seconds": 2.0,
            "drain_seconds": 2.0,
            "probes": 64,
            "text": 48,
        },
        "idle": {"conns": 5000, "join_timeout": 90, "settle_timeout": 30, "anonymous": True},
        "http": {
            "seconds": 4,
            "conns": 32,
            "during_size": 1000,
            "during_rate": 50_000,
            "moderate_rate": 10_000,
        },
        "slow": {
            "members": 20,
            "rate": 1000,
            "text": 2000,
            "baseline_seconds": 2.0,
            "seconds": 12.0,
        },
        "publishers": {"publishers": 100, "window": 8, "warmup": 0.5, "seconds": 3.0},
        "publisher": {"publishers": 1, "window": 1, "warmup": 0.5, "seconds": 3.0},
    },
    "smoke": {
        "echo": {"conns": 4, "window": 2, "size": 64, "warmup": 0.1, "seconds": 0.3},
        "fanout": {
            "sizes": [10],
            "steps": [500, 1000],
            "step_seconds": 0.3,
            "drain_seconds": 1.0,
            "probes": 4,
            "text": 48,
            "stop_on_fail": False,
            "settle": 0.1,
            "pause": 0.1,
        },
        "idle": {
            "conns": 20,
            "join_timeout": 10,
            "settle_timeout": 5,
            "rest": 0.2,
            "anonymous": True,
        },
        "http": {
            "seconds": 1,
            "conns": 4,
            "during_size": 10,
            "during_rate": 1000,
            "moderate_rate": 500,
        },
        "slow": {
            "members": 3,
            "rate": 50,
            "text": 200,
            "baseline_seconds": 0.3,
            "seconds": 0.5,
            "rest": 0.1,
        },
        "publishers": {"publishers": 3, "window": 2, "warmup": 0.1, "seconds": 0.3},
        "publisher": {"publishers": 1, "window": 1, "warmup": 0.1, "seconds": 0.3},
    },
}

SCENARIOS = ["echo", "fanout", "idle", "http", "slow", "publishers", "publisher"]
#: portshare with --broker redis:// and a redis-server of its own
REDIS = "portshare-redis"
SERVERS = ["portshare", REDIS, "autobahn", "websockets", "aiohttp", "picows"]
#: the scenarios the Redis variant runs (the others measure nothing of the broker)
REDIS_SCENARIOS = {"fanout", "publishers", "publisher"}
#: portshare with an application mounted (a tiny WSGI app, the chat under /chat): not in the
#: default run; ask for it (--servers portshare,portshare-app) to measure what mounting an
#: application costs the chat (issue 14: fan-out with one >= 0.95x fan-out without)
APP_VARIANT = "portshare-app"
APP_PREFIX = "/chat"
VARIANTS = [APP_VARIANT]
#: portshare at another commit (--baseline SRC): a refactor's before and after in one run
BASELINE = "baseline"
#: the core the run's redis-server is pinned to ("" for none: the scheduler decides)
REDIS_CORE = ""

# portshare's limits that a benchmark would trip, raised when this version has the option
PORTSHARE_RAISED = {
    "--rate": "100000",
    "--burst": "100000",
    "--flood-strikes": "1000000",
    "--max-connections": "100000",
    "--max-connections-per-address": "100000",
    "--rooms-per-connection": "64",
    "--shutdown-timeout": "1",
}


# -- processes ------------------------------------------------------------------------------


def pinned(core: str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", core, *argv] if shutil.which("taskset") else argv


class Server:
    """One server under test: started pinned to core 0, stopped by its PID."""

    def __init__(self, name: str, python: str, src: Path, logDir: Path) -> None:
        self.name = name
        self.python = python
        self.src = src
        self.logPath = logDir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        #: where the chat's paths are on this server (C{--chat-prefix})
        self.prefix = APP_PREFIX if name == APP_VARIANT else ""
        self.redis: RedisServer | None = RedisServer(logDir) if name == REDIS else None

    @property
    def redisPid(self) -> int:
        """The PID of this server's redis-server (0 for none)."""
        return self.redis.pid if self.redis is not None else 0

    def argv(self) -> list[str]:
        if self.name in ("portshare", BASELINE, REDIS, APP_VARIANT):
            app = ["--wsgi", "tiny_wsgi.app", "--chat-prefix", APP_PREFIX]
            broker = [] if self.redis is None else ["--broker", self.redis.url]
            return [
                self.python,
                "-c",
                "from twisted.scripts.twistd import run; run()",
                "-n",
                "--pidfile=",
                "portshare",
                "--port",
                "tcp:0:interface=127.0.0.1",
                "--echo",
                *(app if self.name == APP_VARIANT else []),
                *portshareOptions(self.python, self.src),
                *broker,
            ]
        script = {
            "autobahn": "autobahn_site.py",
            "websockets": "websockets_peer.py",
            "aiohttp": "aiohttp_peer.py",
            "picows": "picows_peer.py",
        }[self.name]
        return [self.python, str(PEERS / script), "--port", "0", "--static", str(STATIC)]

    def start(self, timeout: float = 30.0) -> None:
        if self.redis is not None:
            self.redis.start()
        env = dict(os.environ)
        env["PYTHONPATH"] = str(self.src)
        if self.name == APP_VARIANT:
            env["PYTHONPATH"] += os.pathsep + str(PEERS)  # tiny_wsgi
        start = self.logPath.stat().st_size if self.logPath.exists() else 0
        log = open(self.logPath, "ab")  # noqa: SIM115 (kept open for the child)
        self.proc = subprocess.Popen(
            pinned(SERVER_CORE, self.argv()),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tempfile.gettempdir(),
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.logPath.read_bytes()[start:].decode("utf-8", "replace")
            m = re.findall(r"listening on tcp:[0-9.]+:(\d+)", text)
            if m:
                self.port = int(m[-1])
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not start; see {self.logPath}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        try:
            self._stopServer()
        finally:
            if self.redis is not None:
                self.redis.stop()

    def _stopServer(self) -> None:
        terminate(self.proc)


def terminate(proc: subprocess.Popen[bytes] | None) -> None:
    """Stop a process we started, by its PID: SIGTERM, then SIGKILL after 10 s."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class RedisServer:
    """
    The redis-server of the C{portshare-redis} server: a free loopback port, no
    persistence, a temporary directory; stopped by its PID.
    """

    def __init__(self, logDir: Path) -> None:
        self.logDir = logDir
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    def start(self, timeout: float = 15.0) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        work = Path(tempfile.mkdtemp(prefix="redis-", dir=self.logDir))
        argv = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(work), "--daemonize", "no"]  # fmt: skip
        log = open(self.logDir / "redis-server.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            pinned(REDIS_CORE, argv) if REDIS_CORE else argv, stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")

    def commandStats(self) -> dict[str, Any]:
        """Redis's C{INFO commandstats}: calls and microseconds per call of each command."""
        with socket.create_connection(("127.0.0.1", self.port), 5) as s:
            s.sendall(b"INFO commandstats\r\n")
            data = b""
            while not data.endswith(b"\r\n\r\n") and len(data) < 1 << 20:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        stats: dict[str, Any] = {}
        for line in data.decode(errors="replace").splitlines():
            m = re.match(r"cmdstat_(\w+):calls=(\d+),usec=(\d+),usec_per_call=([\d.]+)", line)
            if m:
                stats[m.group(1)] = {"calls": int(m.group(2)), "usec_per_call": float(m.group(4))}
        return stats

    def stop(self) -> None:
        terminate(self.proc)


_OPTION_CACHE: dict[tuple[str, str], list[str]] = {}


def portshareOptions(python: str, src: Path) -> list[str]:
    """The raised limits this portshare version knows (read from its --help)."""
    key = (python, str(src))
    if key not in _OPTION_CACHE:
        env = dict(os.environ, PYTHONPATH=str(src))
        helpText = subprocess.run(
            [python, "-c", "from twisted.scripts.twistd import run; run()", "portshare", "--help"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            cwd=tempfile.gettempdir(),
        ).stdout
        options: list[str] = []
        for option, value in PORTSHARE_RAISED.items():
            if re.search(rf"{re.escape(option)}=", helpText):
                options += [option, value]
        _OPTION_CACHE[key] = options
    return _OPTION_CACHE[key]


def runLoadgen(
    python: str, scenario: str, server: Server, params: dict[str, Any], timeout: float
) -> dict[str, Any]:
    argv = pinned(
        GEN_CORE,
        [
            python,
            str(HERE / "loadgen.py"),
            scenario,
            "--url",
            f"ws://127.0.0.1:{server.port}{server.prefix}",
            "--server-pid",
            str(server.pid),
            "--params",
            json.dumps(params),
            "--timeout",
            str(timeout),
            "--redis-pid",
            str(server.redisPid),
        ],
    )
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    finally:
        stopChild(proc)
    return parseResult(out, err)


def stopChild(proc: subprocess.Popen[Any]) -> None:
    """Stop a child we started (by its PID), if it still runs."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def parseResult(out: str, err: str) -> dict[str, Any]:
    for line in reversed(out.splitlines()):
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return result
    return {"error": "no result: " + (err.strip().splitlines() or ["(no output)"])[-1]}


# -- scenario D: wrk --------------------------------------------------------------------------


def wrk(port: int, seconds: float, conns: int, path: str = "/") -> dict[str, Any]:
    """C{GET /} with wrk on core 1: requests/s, latency, and wrk's own CPU."""
    exe = shutil.which("wrk")
    if exe is None:
        return {"error": "wrk is not installed (apt-get install wrk)"}
    argv = pinned(
        GEN_CORE,
        [
            exe,
            "-t1",
            f"-c{conns}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            f"http://127.0.0.1:{port}{path}",
        ],
    )
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t0 = time.monotonic()
    assert proc.stdout is not None
    try:
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        stopChild(proc)
    wall = time.monotonic() - t0
    result: dict[str, Any] = {"wrk_cpu": round(100 * (usage.ru_utime + usage.ru_stime) / wall, 1)}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    result["rps"] = round(float(m.group(1))) if m else 0
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    if m:
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
        result["p99_ms"] = round(float(m.group(1)) * scale, 3)
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    result["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors:.*", out)
    result["socket_errors"] = m.group(0) if m else ""
    if not result["rps"]:
        result["error"] = out.strip()[-300:]
    return result


def scenarioHttp(python: str, server: Server, p: dict[str, Any]) -> dict[str, Any]:
    """
    (D) wrk alone, then wrk while fan-out runs at a fixed offered rate: B's moderate rate
    (10k deliveries/s, where B's latency is measured) and a heavy one (50k/s).
    """
    s0, t0 = procCpu(server.pid), time.monotonic()
    alone = wrk(server.port, p["seconds"], p["conns"], server.prefix + "/")
    alone["server_cpu"] = round(100 * (procCpu(server.pid) - s0) / (time.monotonic() - t0), 1)
    if "error" in alone:
        return {"alone": alone}
    result: dict[str, Any] = {"alone": alone}
    for key, rate in (
        ("during_fanout_moderate", p["moderate_rate"]),
        ("during_fanout", p["during_rate"]),
    ):
        during = httpWhileFanout(python, server, p, rate)
        if alone.get("rps") and during.get("rps"):
            during["ratio_to_alone"] = round(during["rps"] / alone["rps"], 3)
        result[key] = during
    return result


def httpWhileFanout(python: str, server: Server, p: dict[str, Any], rate: float) -> dict[str, Any]:
    """wrk while the generator offers C{rate} deliveries/s to a room of C{during_size}."""
    params = {"size": p["during_size"], "rate": rate, "seconds": p["seconds"] + 1.5}
    argv = pinned(
        GEN_CORE,
        [
            python,
            str(HERE / "loadgen.py"),
            "fanout-fixed",
            "--url",
            f"ws://127.0.0.1:{server.port}{server.prefix}",
            "--server-pid",
            str(server.pid),
            "--params",
            json.dumps(params),
            "--timeout",
            "120",
        ],
    )
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        during = httpDuring(proc, server, p)
    finally:
        stopChild(proc)
    during["offered"] = rate
    return during


def httpDuring(proc: subprocess.Popen[str], server: Server, p: dict[str, Any]) -> dict[str, Any]:
    """wrk once the generator's fan-out runs (it prints READY when its room has joined)."""
    assert proc.stdout is not None
    ready = False
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("READY"):
            ready = True
            break
    during: dict[str, Any]
    if ready:
        time.sleep(0.25)
        s0, t0 = procCpu(server.pid), time.monotonic()
        during = wrk(server.port, p["seconds"], p["conns"], server.prefix + "/")
        during["server_cpu"] = round(100 * (procCpu(server.pid) - s0) / (time.monotonic() - t0), 1)
    else:
        during = {"error": "fan-out did not start"}
    try:
        out, err = proc.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    during["fanout"] = parseResult("".join(lines) + out, err)
    return during


# -- machine facts ----------------------------------------------------------------------------


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def waitQuiet(maxLoad: float, maxWait: float) -> dict[str, Any]:
    """Wait (bounded) until the 1-minute load average is below C{maxLoad}."""
    t0 = time.monotonic()
    while loadavg() >= maxLoad and time.monotonic() - t0 < maxWait:
        time.sleep(5)
    return {"load1": loadavg(), "waited_s": round(time.monotonic() - t0)}


def otherCpu(seconds: float = 2.0) -> float:
    """Busy CPU of the whole machine over a short sample, in % of one core."""
    b0 = machineBusy()
    time.sleep(seconds)
    return round(100 * (machineBusy() - b0) / seconds, 1)


def waitQuietCell(limit: float, maxWait: float) -> dict[str, Any]:
    """
    Before a cell (none of our processes running): wait, at most C{maxWait} seconds, until
    the machine's busy CPU over a 2-second sample is below C{limit} % of a core.
    """
    t0 = time.monotonic()
    busy = otherCpu()
    while busy >= limit and time.monotonic() - t0 < maxWait:
        busy = otherCpu()
    return {"busy_before": busy, "waited_s": round(time.monotonic() - t0, 1)}


def version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def nvxStatus(python: str, src: Path) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(src))
    out = subprocess.run(
        [python, str(HERE / "nvx.py")], capture_output=True, text=True, env=env, timeout=60
    )
    try:
        status: dict[str, Any] = json.loads(out.stdout)
    except ValueError:
        status = {"error": out.stderr.strip()[-300:]}
    return status


def machineFacts(python: str, src: Path) -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    wrkVersion = None
    if shutil.which("wrk"):
        v = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
        wrkVersion = (v.stdout + v.stderr).strip().splitlines()[0] if v.stdout + v.stderr else None
    commit = subprocess.run(
        ["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(src), "status", "--porcelain", "portshare"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "portshare_commit": commit + ("+dirty" if dirty else ""),
        "versions": {
            n: version(n)
            for n in [
                "twisted",
                "autobahn",
                "websockets",
                "aiohttp",
                "picows",
                "uvloop",
                "orjson",
                "txaio",
            ]
        },
        "wrk": wrkVersion,
        "nvx": nvxStatus(python, src),
    }


# -- the run ----------------------------------------------------------------------------------


def available(name: str) -> bool:
    mod = {
        "portshare": "autobahn",
        BASELINE: "autobahn",
        APP_VARIANT: "autobahn",
        REDIS: "hiredis",
        "autobahn": "autobahn",
        "websockets": "websockets",
        "aiohttp": "aiohttp",
        "picows": "picows",
    }[name]
    try:
        __import__(mod)
    except ImportError:
        return False
    return True


def runCell(
    scenario: str, server: Server, python: str, params: dict[str, Any], timeout: float
) -> dict[str, Any]:
    if scenario == "http":
        return scenarioHttp(python, server, params)
    gen = {
        "echo": "echo",
        "fanout": "fanout",
        "idle": "idle",
        "slow": "slow",
        "publishers": "publishers",
        "publisher": "publishers",
    }[scenario]
    cell = runLoadgen(python, gen, server, params, timeout)
    if server.redis is not None and "error" not in cell:
        try:
            cell["redis_commandstats"] = server.redis.commandStats()
        except OSError as e:
            cell["redis_commandstats"] = {"error": str(e)}
    return cell


def noisy(result: dict[str, Any], limit: float) -> bool:
    """Whether the rest of the machine used more than C{limit} % of a core in a window."""
    found = []

    def walk(obj: Any) -> None:
        if isinstance(obj, dict):
            if "other_cpu" in obj:
                found.append(obj["other_cpu"])
            for v in obj.values():
                walk(v)
        elif isinstance(obj, list):
            for v in obj:
                walk(v)

    walk(result)
    return any(v > limit for v in found)


def main(argv: list[str] | None = None) -> int:
    global REDIS_CORE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="shorter windows and fewer steps")
    mode.add_argument("--smoke", action="store_true", help="seconds; no meaningful numbers")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="results folder")
    parser.add_argument(
        "--src", type=Path, default=ROOT, help="portshare source tree to run (PYTHONPATH)"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="another portshare source tree (e.g. a git worktree at an older commit), run as "
        "the server 'baseline' right after portshare in every scenario",
    )
    parser.add_argument("--python", default=sys.executable, help="interpreter for every side")
    parser.add_argument("--max-load", type=float, default=0.5, help="wait for a quieter machine")
    parser.add_argument("--max-wait", type=float, default=600, help="seconds to wait for quiet")
    parser.add_argument(
        "--noise-limit", type=float, default=25.0, help="re-run a cell when others used more"
    )
    parser.add_argument(
        "--cell-wait", type=float, default=180, help="seconds to wait for quiet before a cell"
    )
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument(
        "--redis-core",
        default=REDIS_CORE,
        help="the core the portshare-redis server's redis-server is pinned to ('': none)",
    )
    parser.add_argument(
        "--fanout-steps",
        default=None,
        help="comma-separated offered deliveries/s for scenario B instead of the profile's",
    )
    parser.add_argument(
        "--fanout-sizes",
        default=None,
        help="comma-separated room sizes for scenario B instead of the profile's (e.g. 1000)",
    )
    args = parser.parse_args(argv)

    # a SIGTERM unwinds like an error: every `finally` stops the processes it started
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    profile = "smoke" if args.smoke else "quick" if args.quick else "full"
    REDIS_CORE = args.redis_core
    params = json.loads(json.dumps(PROFILES[profile]))
    if args.fanout_steps:
        params["fanout"]["steps"] = [int(s) for s in args.fanout_steps.split(",") if s]
    if args.fanout_sizes:
        params["fanout"]["sizes"] = [int(s) for s in args.fanout_sizes.split(",") if s]
    servers = [s for s in args.servers.split(",") if s]
    scenarios = [s for s in args.scenarios.split(",") if s]
    for s in servers:
        if s not in SERVERS + VARIANTS:
            parser.error(f"unknown server {s}")
    if args.baseline is not None:
        servers.insert(servers.index("portshare") + 1 if "portshare" in servers else 0, BASELINE)

    def srcOf(name: str) -> Path:
        return args.baseline if name == BASELINE else args.src

    for s in scenarios:
        if s not in SCENARIOS:
            parser.error(f"unknown scenario {s}")
    args.out.mkdir(parents=True, exist_ok=True)
    logDir = Path(tempfile.mkdtemp(prefix="portshare-bench-"))

    results: dict[str, Any] = {
        "profile": profile,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machineFacts(args.python, args.src),
        "params": params,
        "portshare_options": portshareOptions(args.python, args.src),
        "baseline": None
        if args.baseline is None
        else {
            "commit": machineFacts(args.python, args.baseline)["portshare_commit"],
            "src": str(args.baseline),
        },
        "pinning": {"server": SERVER_CORE, "generator": GEN_CORE, "redis": REDIS_CORE},
        "results": {},
        "skipped": [],
    }
    if not args.smoke:
        results["quiet"] = waitQuiet(args.max_load, args.max_wait)
        results["quiet"]["busy_before"] = otherCpu()
        print(f"start: load {results['quiet']}", flush=True)
    perCellTimeout = 60.0 if args.smoke else 900.0
    if args.smoke:
        # one server process per server, every scenario in turn: seconds, not minutes
        for name in servers:
            if not available(name):
                results["skipped"].append(name)
                continue
            server = Server(name, args.python, srcOf(name), logDir)
            try:
                server.start()
                for scenario in scenarios:
                    if name == REDIS and scenario not in REDIS_SCENARIOS:
                        continue
                    t0 = time.monotonic()
                    try:
                        cell = runCell(scenario, server, args.python, params[scenario], 60.0)
                    except Exception as e:
                        cell = {"error": f"{type(e).__name__}: {e}"}
                    cell["wall_s"] = round(time.monotonic() - t0, 1)
                    results["results"].setdefault(scenario, {})[name] = cell
                    print(f"{scenario:10s} {name:10s} {summary(scenario, cell)}", flush=True)
            except Exception as e:
                for scenario in scenarios:
                    results["results"].setdefault(scenario, {})[name] = {"error": str(e)}
            finally:
                server.stop()
    for scenario in scenarios if not args.smoke else []:
        for name in servers:
            if not available(name):
                if name not in results["skipped"]:
                    results["skipped"].append(name)
                continue
            if name == REDIS and scenario not in REDIS_SCENARIOS:
                continue
            for attempt in range(2):
                quiet = waitQuietCell(args.noise_limit, args.cell_wait)
                server = Server(name, args.python, srcOf(name), logDir)
                t0 = time.monotonic()
                try:
                    server.start()
                    cell = runCell(scenario, server, args.python, params[scenario], perCellTimeout)
                except Exception as e:
                    cell = {"error": f"{type(e).__name__}: {e}"}
                finally:
                    server.stop()
                cell["wall_s"] = round(time.monotonic() - t0, 1)
                cell["attempt"] = attempt + 1
                cell["quiet"] = quiet
                if not noisy(cell, args.noise_limit) or attempt == 1:
                    break
                print(f"  {scenario}/{name}: noisy, again", flush=True)
                time.sleep(5)
            results["results"].setdefault(scenario, {})[name] = cell
            print(f"{scenario:10s} {name:10s} {summary(scenario, cell)}", flush=True)
            with open(args.out / "latest.json", "w") as f:
                json.dump(results, f, indent=1)
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with open(args.out / "latest.json", "w") as f:
        json.dump(results, f, indent=1)

    from report import writeReport

    table = writeReport(results, args.out, plots=not args.no_plots)
    print(table)
    if any('"error"' in json.dumps(c) for c in results["results"].values()):
        print(f"server logs kept in {logDir}")
    else:
        shutil.rmtree(logDir, ignore_errors=True)
    return 0


def summary(scenario: str, cell: dict[str, Any]) -> str:
    if "error" in cell:
        return "ERROR " + str(cell["error"])[:200]
    if scenario == "echo":
        return f"{cell['msgs_per_s']} msg/s p99 {cell['rtt_ms']['p99']} ms"
    if scenario == "fanout":
        return "  ".join(
            f"S={s}: {v['max_sustained']}/{v['peak']}" for s, v in cell["sizes"].items()
        )
    if scenario == "idle":
        return (
            f"{cell['rss_per_conn']} B/conn, {cell['handshakes_per_s']} hs/s, "
            f"{cell['joins_per_s']} joins/s"
        )
    if scenario == "http":
        return (
            f"alone {cell['alone'].get('rps')}"
            f" during 10k/s {cell.get('during_fanout_moderate', {}).get('rps')}"
            f" during 50k/s {cell.get('during_fanout', {}).get('rps')}"
        )
    if scenario == "slow":
        return (
            f"cut={cell['cut']} after {cell['cut_after_s']} s, "
            f"rss +{cell['rss_growth'] // 1024} KiB, others {cell['others_ratio']}"
        )
    if scenario in ("publishers", "publisher"):
        extra = f" (redis {cell['redis_cpu']}% CPU)" if "redis_cpu" in cell else ""
        return f"{cell['says_per_s']} say/s{extra}"
    return ""


if __name__ == "__main__":
    sys.exit(main())
