"""
A real C{redis-server} for the integration tests: started on a free loopback port in a
temporary directory, without persistence, and stopped, killed or restarted (on the same
port) by the fault tests.  Only the process started here is ever signalled.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from typing import Any

from twisted.internet import protocol, reactor
from twisted.internet.defer import Deferred

REDIS_SERVER = os.environ.get("PORTSHARE_REDIS_SERVER") or shutil.which("redis-server") or ""
READY = b"Ready to accept connections"


def freePort() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Process(protocol.ProcessProtocol):
    def __init__(self, ready: bytes = READY) -> None:
        self.readyLine = ready
        self.output = b""
        self.ready: Deferred[None] = Deferred()
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output = (self.output + data)[-20000:]
        if self.readyLine in self.output and not self.ready.called:
            self.ready.callback(None)

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        if not self.ready.called:
            self.ready.errback(RuntimeError(self.output.decode(errors="replace")))
        self.ended.callback(None)


class RedisServer:
    """
    One C{redis-server} process at a time, always on C{port}.

    @ivar url: the C{--broker} URL of this server.
    """

    #: what the server logs once it accepts clients
    readyLine = READY

    def __init__(self, directory: Path, port: int | None = None, *extra: str) -> None:
        self.directory = directory
        self.port = port or freePort()
        self.extra = extra
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.socket = directory / "redis.sock"
        self._process: _Process | None = None
        self._transport: Any = None

    @property
    def running(self) -> bool:
        return self._process is not None and not self._process.ended.called

    async def start(self, timeout: float = 15.0) -> None:
        """Start the server and wait (at most C{timeout} seconds) until it accepts clients."""
        assert not self.running
        process = self._process = _Process(self.readyLine)
        args = self._args()
        self._transport = reactor.spawnProcess(  # type: ignore[attr-defined]
            process, REDIS_SERVER, args, env={}, path=str(self.directory)
        )
        process.ready.addTimeout(timeout, reactor)
        await process.ready

    @property
    def pid(self) -> int | None:
        """The process's id while it runs (only this process is ever signalled)."""
        return self._transport.pid if self.running else None

    def _args(self) -> list[str]:
        return [
            REDIS_SERVER,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--daemonize", "no",
            "--loglevel", "notice",
            *self.extra,
        ]  # fmt: skip

    async def stop(self, signal: str = "TERM", timeout: float = 15.0) -> None:
        """Stop the server (C{KILL}: as a crash) and wait until it has exited."""
        process = self._process
        if process is None or process.ended.called:
            return
        self._transport.signalProcess(signal)
        process.ended.addTimeout(timeout, reactor)
        await process.ended

    async def restart(self, signal: str = "TERM") -> None:
        """Stop and start again on the same port (with an empty dataset)."""
        await self.stop(signal)
        await self.start()


class SentinelServer(RedisServer):
    """
    One C{redis-server --sentinel} monitoring the master on C{masterPort} under C{name},
    with short failover timings (a master silent for C{downAfterMs} is down; a quorum of 2).
    Its config file is its own (Sentinel rewrites it), in C{directory}.
    """

    readyLine = b"+monitor master"

    def __init__(
        self, directory: Path, masterPort: int, name: str = "mymaster", downAfterMs: int = 1000
    ) -> None:
        super().__init__(directory)
        self.url = f"127.0.0.1:{self.port}"
        self.config = directory / "sentinel.conf"
        self.config.write_text(
            f"port {self.port}\n"
            "bind 127.0.0.1\n"
            f"dir {directory}\n"
            f"sentinel monitor {name} 127.0.0.1 {masterPort} 2\n"
            f"sentinel down-after-milliseconds {name} {downAfterMs}\n"
            f"sentinel failover-timeout {name} 10000\n"
            f"sentinel parallel-syncs {name} 1\n"
        )

    def _args(self) -> list[str]:
        return [REDIS_SERVER, str(self.config), "--sentinel", "--daemonize", "no"]


async def rawCommand(port: int, *command: Any) -> Any:
    """
    One command to the redis-server on C{port}, on a connection of its own (the broker's
    protocol, L{portshare.broker.resp}, opened and closed here): for tests that look at
    Redis beside the broker, or act on it.
    """
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    from portshare.broker.resp import RespProtocol

    client = RespProtocol(reactor, 10.0)  # type: ignore[arg-type]
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
    try:
        return await client.execute(*command)
    finally:
        client.abort()
