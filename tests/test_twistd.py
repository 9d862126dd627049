"""
The real C{twistd -n portshare} process: started from the installed entry point, talked to
over loopback, stopped with SIGTERM like a service manager does.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import pytest_twisted
import treq
from twisted.internet import reactor

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
