"""
Tests for L{portshare.cli}: C{portshare-cli} against the real service over loopback, on each
transport, in process and as a real process (the console script's module).
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import DeferredQueue, ensureDeferred
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase

import portshare
from portshare.cli import CliError, Server, parser, run
from portshare.service import PortshareService, Settings

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(30)]

TRANSPORTS = ["websocket", "lines", "sse"]


class ServerTests(SynchronousTestCase):
    def test_urls(self) -> None:
        """--url takes http(s) and ws(s) URLs, with default ports."""
        s = Server("https://chat.example")
        self.assertEqual((s.secure, s.host, s.port, s.base), (True, "chat.example", 443, s.base))
        s = Server("ws://127.0.0.1:8080")
        self.assertEqual((s.secure, s.port, s.base), (False, 8080, "http://127.0.0.1:8080"))
        self.assertRaises(CliError, Server, "ftp://x")

    def test_usage(self) -> None:
        """Transports are checked; say needs a text."""
        with pytest.raises(SystemExit):
            parser().parse_args(["--transport", "carrier-pigeon", "tail", "r"])
        with pytest.raises(SystemExit):
            parser().parse_args(["say", "r"])


class Cli:
    def __init__(self, url: str) -> None:
        self.url = url

    async def __call__(
        self, *argv: str, stdin: DeferredQueue[str | None] | None = None
    ) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        status = await run(reactor, ["--url", self.url, *argv], out, err, stdin=stdin)
        return status, out.getvalue(), err.getvalue()


@pytest_twisted.async_yield_fixture
async def cli() -> AsyncIterator[Cli]:
    service = PortshareService(Settings(ports=("tcp:0:interface=127.0.0.1",)), reactor)
    service.startService()
    port = int(service.listening[0].rsplit(":", 1)[1])
    yield Cli(f"http://127.0.0.1:{port}")
    await service.stopService()


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest_twisted.ensureDeferred
async def test_sayThenTailSince(cli: Cli, transport: str) -> None:
    """say prints the offset; tail --since replays history, then stops after --count."""
    for text in ("one", "two"):
        status, out, err = await cli("--transport", transport, "--nick", "ann", "say", "r", text)
        assert status == 0, err
    assert out == "2\n"
    status, out, err = await cli(
        "--transport", transport, "tail", "r", "--since", "0", "--count", "2"
    )
    assert status == 0, err
    assert out == "[r #1] ann: one\n[r #2] ann: two\n"
    assert "* joined r at #2" in err


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest_twisted.ensureDeferred
async def test_tailSeesLiveMessages(cli: Cli, transport: str) -> None:
    """tail prints messages said after it joined, as JSON lines with --json."""
    tailing = ensureDeferred(
        cli("--transport", transport, "--json", "tail", "live", "--count", "1")
    )
    # wait for the tail to be in the room: its presence shows in the API's member count
    while True:
        status, out, err = await cli("--nick", "probe", "tail", "live", "--count", "0")
        if "2 here" in err:
            break
    await cli("--nick", "bob", "say", "live", "hello")
    status, out, err = await tailing
    assert status == 0, err
    assert '"text":"hello"' in out


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest_twisted.ensureDeferred
async def test_chatInteractive(cli: Cli, transport: str) -> None:
    """chat says each typed line and prints the room's messages; end of input exits 0."""
    typed: DeferredQueue[str | None] = DeferredQueue()
    chatting = ensureDeferred(
        cli("--transport", transport, "--nick", "cat", "chat", "c", stdin=typed)
    )
    typed.put("hello from chat")
    typed.put("")
    status, out, err = await cli("tail", "c", "--since", "0", "--count", "1")
    assert out == "[c #1] cat: hello from chat\n"
    typed.put(None)
    status, out, err = await chatting
    assert status == 0, err
    assert "[c #1] cat: hello from chat" in out


@pytest_twisted.ensureDeferred
async def test_errorsExit1(cli: Cli) -> None:
    """A refused message exits 1 with the server's reason; so does a refused connection."""
    status, _, said = await cli("say", "bad/room", "x")
    assert status == 1 and "room" in said
    err = io.StringIO()
    status = await run(reactor, ["--url", "http://127.0.0.1:1", "tail", "r"], io.StringIO(), err)
    assert status == 1 and "refused" in err.getvalue().lower()


@pytest_twisted.ensureDeferred
async def test_consoleScriptProcess(cli: Cli) -> None:
    """The console script's module, as a real process, says and tails."""
    env = dict(os.environ, PYTHONPATH=str(Path(portshare.__file__).parent.parent))
    argv = ["-m", "portshare.cli", "--url", cli.url, "--transport", "lines"]
    out, err, code = await getProcessOutputAndValue(
        sys.executable, [*argv, "say", "p", "from a process"], env=env, reactor=reactor
    )
    assert (code, out) == (0, b"1\n"), err
    out, err, code = await getProcessOutputAndValue(
        sys.executable,
        [*argv, "tail", "p", "--since", "0", "--count", "1"],
        env=env,
        reactor=reactor,
    )
    assert (code, out) == (0, b"[p #1] guest-1: from a process\n"), err


@pytest_twisted.ensureDeferred
async def test_tls(tmp_path: Path) -> None:
    """Over https, --cafile trusts a self-signed server, --insecure skips the check, and an
    untrusted certificate fails with exit status 1."""
    from portshare.testing import selfSignedCertificate

    keyPath, certPath = selfSignedCertificate(tmp_path)
    endpoint = f"ssl:0:interface=127.0.0.1:privateKey={keyPath}:certKey={certPath}"
    service = PortshareService(Settings(ports=(endpoint,)), reactor)
    service.startService()
    try:
        port = int(service.listening[0].rsplit(":", 1)[1])
        tls = Cli(f"https://localhost:{port}")
        for transport in TRANSPORTS:
            status, out, err = await tls(
                "--cafile", str(certPath), "--transport", transport, "say", "s", transport
            )
            assert status == 0, err
        status, out, err = await tls("--insecure", "tail", "s", "--since", "0", "--count", "3")
        assert status == 0, err
        assert out.splitlines()[1].endswith(": lines")
        status, out, err = await tls(
            "--insecure", "--transport", "sse", "tail", "s", "--since", "2", "--count", "1"
        )
        assert (status, out.split(": ")[-1]) == (0, "sse\n"), err
        status, out, err = await tls("say", "s", "untrusted")
        assert status == 1
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_chatProcessReadsStandardInput(cli: Cli) -> None:
    """chat as a real process says the lines of its standard input and exits at its end."""
    import subprocess

    from twisted.internet import threads

    env = dict(os.environ, PYTHONPATH=str(Path(portshare.__file__).parent.parent))
    argv = [sys.executable, "-m", "portshare.cli", "--url", cli.url, "--nick", "pipe"]
    done = await threads.deferToThread(
        subprocess.run,
        [*argv, "chat", "piped"],
        input=b"first line\nsecond line\n",
        capture_output=True,
        env=env,
        timeout=20,
    )
    assert done.returncode == 0, done.stderr
    status, out, err = await cli("tail", "piped", "--since", "0", "--count", "2")
    assert (status, out) == (0, "[piped #1] pipe: first line\n[piped #2] pipe: second line\n"), err
