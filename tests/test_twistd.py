"""
The real C{twistd -n portshare} process: started from the installed entry point, talked to
over loopback, stopped with SIGTERM like a service manager does.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from portshare.testing import connectChat
from tests.harness import TwistdProcess, spawnTwistd

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


async def assertStoppedCleanly(process: TwistdProcess) -> None:
    """twistd shut down in order; since Twisted 23 it then ends itself with the signal."""
    await process.ended
    assert process.stoppedCleanly, process.output.decode()[-3000:]


def startTwistd(tmp_path: Path, *args: str) -> TwistdProcess:
    return spawnTwistd(reactor, tmp_path, *args)


@pytest_twisted.ensureDeferred
async def test_twistdServesAndStopsGracefully(tmp_path: Path) -> None:
    """twistd portshare serves the page, API and chat on one port; SIGTERM sends 1001."""
    process = startTwistd(tmp_path)
    try:
        port = await process.listening
        response = await treq.get(f"http://127.0.0.1:{port}/healthz")
        assert orjson.loads(await response.content()) == {"status": "ok"}
        client = await connectChat(reactor, port, protocols=["portshare.chat.v1"])
        client.send(type="join", room="lobby", nick="proc", ref=1)
        assert (await client.next())["type"] == "joined"
        process.transport.signalProcess("TERM")
        wasClean, code, _ = await client.closed
        assert (wasClean, code) == (True, 1001)
        await assertStoppedCleanly(process)
    finally:
        if not process.ended.called:
            process.transport.signalProcess("KILL")
            await process.ended


@pytest_twisted.ensureDeferred
async def test_jsonLogs(tmp_path: Path) -> None:
    """--log-format json writes one JSON object per line, the bound address included."""
    process = startTwistd(tmp_path, "--log-format", "json")
    try:
        port = await process.listening
        # the port is bound before the reactor runs; a served request says it is running
        response = await treq.get(f"http://127.0.0.1:{port}/healthz")
        assert response.code == 200
        await response.content()
        process.transport.signalProcess("TERM")
        await assertStoppedCleanly(process)
    finally:
        if not process.ended.called:
            process.transport.signalProcess("KILL")
            await process.ended
    lines = [line for line in process.output.splitlines() if line.startswith(b"{")]
    events = [orjson.loads(line) for line in lines]
    listening = [e for e in events if e.get("log_format") == "listening on {address}"]
    assert listening and listening[0]["address"].startswith("tcp:127.0.0.1:")


@pytest_twisted.ensureDeferred
async def test_badOptionExits(tmp_path: Path) -> None:
    """A bad option makes twistd exit non-zero with a clear message."""
    process = startTwistd(tmp_path, "--max-text", "0")
    with pytest.raises(RuntimeError, match="--max-text must be positive"):
        await process.listening
    exitCode, _ = await process.ended
    assert exitCode not in (0, None)


ADMIN_BOUND = re.compile(rb"admin endpoint on tcp:127\.0\.0\.1:(\d+)")


async def rawGet(connect: Any, path: str) -> bytes:
    """GET over a fresh stream from C{connect} (TCP or UNIX), the whole answer."""
    from twisted.internet.protocol import Factory, Protocol

    class Reader(Protocol):
        def __init__(self) -> None:
            self.data = b""
            self.done: Deferred[bytes] = Deferred()

        def connectionMade(self) -> None:
            self.transport.write(  # type: ignore[union-attr]
                f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
            )

        def dataReceived(self, data: bytes) -> None:
            self.data += data

        def connectionLost(self, reason: Any = None) -> None:
            self.done.callback(self.data)

    protocol = await connect.connect(Factory.forProtocol(Reader))
    return await protocol.done  # type: ignore[no-any-return]


@pytest_twisted.ensureDeferred
async def test_adminEndpoint(tmp_path: Path) -> None:
    """--admin-port on TCP and on a UNIX socket: health and metrics there, not on the
    public port; a public port at its connection cap still lets health checks in."""
    from twisted.internet.endpoints import TCP4ClientEndpoint, UNIXClientEndpoint

    sock = tmp_path / "admin.sock"
    process = startTwistd(
        tmp_path,
        "--admin-port",
        "tcp:0:interface=127.0.0.1",
        "--admin-port",
        f"unix:{sock}",
        "--max-connections",
        "2",
    )
    held: list[Any] = []
    try:
        port = await process.listening
        for _ in range(20):  # bounded: the admin log line follows the public one
            found = ADMIN_BOUND.search(process.output)
            if found:
                break
            await deferLater(reactor, 0.1, lambda: None)
        assert found, process.output.decode()
        admin = TCP4ClientEndpoint(reactor, "127.0.0.1", int(found.group(1)))
        public = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        assert b" 404 " in (await rawGet(public, "/healthz")).split(b"\r\n")[0]
        assert b'{"status":"ok"}' in await rawGet(admin, "/healthz")
        assert b"portshare_connections" in await rawGet(
            UNIXClientEndpoint(reactor, str(sock)), "/metrics"
        )

        # the public port full: two idle connections held open
        from twisted.internet.protocol import Factory, Protocol

        for _ in range(2):
            held.append(await public.connect(Factory.forProtocol(Protocol)))
        assert await rawGet(public, "/api/rooms") == b""  # refused: closed at once
        assert b'{"status":"ok"}' in await rawGet(admin, "/healthz")
        process.transport.signalProcess("TERM")
        await assertStoppedCleanly(process)
    finally:
        for protocol in held:
            protocol.transport.abortConnection()
        if not process.ended.called:
            process.transport.signalProcess("KILL")
            await process.ended
