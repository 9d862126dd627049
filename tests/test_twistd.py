"""
The real C{twistd -n portshare} process: started from the installed entry point, talked to
over loopback, stopped with SIGTERM like a service manager does.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_twisted
import treq
from twisted.internet import protocol, reactor
from twisted.internet.defer import Deferred

import portshare
from portshare.testing import connectChat

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

# the bound address, in the text log or in a JSON log event
BOUND = re.compile(rb'(?:listening on |"address": ?")tcp:127\.0\.0\.1:(\d+)[\s"]')
TWISTD = str(Path(sys.executable).with_name("twistd"))
# run the same portshare these tests import, installed or from a checkout
ENV = dict(os.environ, PYTHONPATH=str(Path(portshare.__file__).parent.parent))


class Twistd(protocol.ProcessProtocol):
    """Collects the process's output; C{listening} fires with the bound port."""

    def __init__(self) -> None:
        self.output = b""
        self.listening: Deferred[int] = Deferred()
        self.ended: Deferred[Any] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data
        found = BOUND.search(self.output)
        if found and not self.listening.called:
            self.listening.callback(int(found.group(1)))

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        if not self.listening.called:
            self.listening.errback(RuntimeError(self.output.decode(errors="replace")))
        self.ended.callback((reason.value.exitCode, getattr(reason.value, "signal", None)))


async def assertStoppedCleanly(process: Twistd) -> None:
    """twistd shut down in order; since Twisted 23 it then ends itself with the signal."""
    assert await process.ended in ((0, None), (None, 15)), process.output.decode()[-3000:]
    assert b"Server Shut Down." in process.output


def startTwistd(tmp_path: Path, *args: str) -> Twistd:
    process = Twistd()
    reactor.spawnProcess(
        process,
        TWISTD,
        [TWISTD, "-n", "--pidfile=", "portshare", "--port", "tcp:0:interface=127.0.0.1", *args],
        env=ENV,
        path=str(tmp_path),
    )
    return process


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
