"""
Tests for L{portshare.workers}: the option checks and the workers' command lines (unit), and
C{twistd portshare --workers 2} on a real redis-server (end to end).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import orjson
import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase

from portshare.testing import connectChat
from portshare.workers import checkWorkers, workerArgv
from tests.redisserver import RedisServer
from tests.test_scaling import eventually, within
from tests.test_twistd import assertStoppedCleanly, startTwistd


class CheckWorkersTests(SynchronousTestCase):
    """--workers is refused where it cannot work."""

    def test_oneNeedsNothing(self) -> None:
        """One worker (the default) works with the in-memory broker."""
        checkWorkers(1, ["ssl:8443"], shared=False)

    def test_needsSharedBroker(self) -> None:
        """Two workers with the in-memory broker are refused, naming --broker."""
        with self.assertRaises(ValueError) as raised:
            checkWorkers(2, ["tcp:8080"], shared=False)
        self.assertIn("needs a shared broker", str(raised.exception))
        self.assertIn("--broker redis://", str(raised.exception))

    def test_positive(self) -> None:
        """Zero workers are refused."""
        with self.assertRaises(ValueError):
            checkWorkers(0, ["tcp:8080"], shared=True)

    def test_tlsPortsRefused(self) -> None:
        """TLS ports cannot be handed to workers as plain sockets."""
        with self.assertRaises(ValueError) as raised:
            checkWorkers(2, ["tcp:8080", "ssl:8443:privateKey=k"], shared=True)
        self.assertIn("ssl:8443", str(raised.exception))
        checkWorkers(2, ["tcp:8080", "unix:/run/p.sock", "tcp6:8081"], shared=True)


class WorkerArgvTests(SynchronousTestCase):
    """A worker gets the parent's options, its ports replaced by inherited sockets."""

    def test_portsAndWorkersReplaced(self) -> None:
        """Every spelling of --port and --workers goes; one systemd: port per socket comes."""
        argv = [
            "--port",
            "tcp:0",
            "-p",
            "unix:/x",
            "--port=tcp:1",
            "-ptcp:2",
            "--workers",
            "3",
            "--workers=3",
            "--broker",
            "redis://h:1/0",
            "--echo",
        ]
        self.assertEqual(
            workerArgv(argv, ["INET", "UNIX"]),
            [
                "--broker",
                "redis://h:1/0",
                "--echo",
                "--port",
                "systemd:domain=INET:index=0",
                "--port",
                "systemd:domain=UNIX:index=1",
            ],
        )

    def test_adminPortsToo(self) -> None:
        """The admin endpoints are bound by the parent too: the last sockets, as
        --admin-port systemd:... of each worker."""
        argv = ["--port", "tcp:0", "--admin-port", "unix:/a", "--admin-port=tcp:9", "--echo"]
        self.assertEqual(
            workerArgv(argv, ["INET", "UNIX", "INET"], admin=2),
            [
                "--echo",
                "--port",
                "systemd:domain=INET:index=0",
                "--admin-port",
                "systemd:domain=UNIX:index=1",
                "--admin-port",
                "systemd:domain=INET:index=2",
            ],
        )


WORKER = re.compile(rb"worker (\d+) started \(pid (\d+)\)")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped) counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.e2e
@pytest.mark.timeout(90)
@pytest_twisted.ensureDeferred
async def test_twoWorkersShareOnePort(redisServer: RedisServer, tmp_path: Path) -> None:
    """
    twistd portshare --workers 2 logs the bound port, runs two workers on it that act as one
    chat, starts a killed worker again, and stops every worker with the parent on SIGTERM.
    """
    process = startTwistd(tmp_path, "--workers", "2", "--broker", redisServer.url)
    try:
        port = await within(process.listening, 30)

        def workers() -> dict[int, int]:
            return {int(n): int(p) for n, p in WORKER.findall(process.output)}

        async def healthy() -> bool:
            try:
                response = await treq.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
                body = orjson.loads(await response.content())
            except Exception:  # a connection that the killed worker had accepted
                return False
            return response.code == 200 and body == {"status": "ok"}

        await eventually(lambda: len(workers()) == 2, 30, "two workers started")
        await eventually(
            lambda: process.output.count(b"redis broker available") >= 2,
            30,
            "both workers connected to redis",
        )
        await eventually(healthy, 30, "a worker answers")
        assert process.output.count(b"listening on tcp:127.0.0.1:%d" % port) >= 1

        # several connections, spread over the workers by the kernel, are one chat
        clients = []
        for i in range(6):
            client = await connectChat(reactor, port, protocols=["portshare.chat.v1"])
            client.send(type="join", room="w", nick=f"c{i}")
            await within(client.until("joined"), 15)
            clients.append(client)
        clients[0].send(type="say", room="w", text="to all")
        for client in clients:
            message = await within(client.until("message"), 15)
            assert (message["text"], message["offset"]) == ("to all", 1)
        for client in clients:
            client.dropConnection(abort=True)

        # a worker that dies is started again; the other one serves meanwhile
        first = workers()
        os.kill(first[1], 9)
        await eventually(lambda: b"worker 1 (pid" in process.output, 15, "the parent noticed")
        await eventually(healthy, 15, "the other worker serves")
        await eventually(lambda: workers()[1] != first[1], 30, "worker 1 started again")
        await eventually(
            lambda: process.output.count(b"redis broker available") >= 3,
            30,
            "the new worker connected to redis",
        )
        pids = list(workers().values())
        await eventually(healthy, 30, "served after the restart")

        process.transport.signalProcess("TERM")
        await assertStoppedCleanly(process)
        await eventually(lambda: not any(alive(pid) for pid in pids), 15, "workers gone")
    finally:
        if not process.ended.called:
            process.transport.signalProcess("KILL")
            await process.ended
        for pid in WORKER.findall(process.output):
            if alive(int(pid[1])):
                os.kill(int(pid[1]), 9)


@pytest.mark.e2e
@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_workersWithoutSharedBrokerExit(tmp_path: Path) -> None:
    """twistd portshare --workers 2 without --broker exits non-zero, saying why."""
    process = startTwistd(tmp_path, "--workers", "2")
    with pytest.raises(RuntimeError, match="needs a shared broker"):
        await within(process.listening, 30)
    exitCode, _ = await within(process.ended, 30)
    assert exitCode not in (0, None)
