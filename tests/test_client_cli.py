"""
Tests for L{portshare.client.cli}: C{portshare-cli} against the real service over loopback, on
each transport, in process and as a real process (C{python -m portshare.client}).
"""

from __future__ import annotations

import argparse
import io
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.defer import DeferredQueue, ensureDeferred
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase

import portshare
from portshare.client.cli import parser, run
from portshare.service import PortshareService, Settings

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(30)]

TRANSPORTS = ["websocket", "lines", "sse"]


def options(p: argparse.ArgumentParser) -> list[tuple[object, ...]]:
    """Every argument of C{p} but -h: flags, destination, default, choices, type, help."""
    return [
        (
            tuple(a.option_strings),
            a.dest,
            a.default,
            tuple(a.choices) if a.choices is not None else None,
            getattr(a.type, "__name__", a.type),
            a.help,
            a.required,
        )
        for a in p._actions
        if a.dest != "help"
    ]


class ParserTests(SynchronousTestCase):
    def test_usage(self) -> None:
        """Transports are checked; say needs a text."""
        with pytest.raises(SystemExit):
            parser().parse_args(["--transport", "carrier-pigeon", "tail", "r"])
        with pytest.raises(SystemExit):
            parser().parse_args(["say", "r"])

    def test_optionsPinned(self) -> None:
        """The command line's options, commands and their arguments, as first shipped."""
        p = parser()
        self.assertEqual(
            (p.prog, p.description),
            ("portshare-cli", "Chat on a portshare server from the terminal."),
        )
        version = f"portshare {portshare.__version__}"
        self.assertEqual(
            options(p),
            [
                (
                    ("--version",),
                    "version",
                    argparse.SUPPRESS,
                    None,
                    None,
                    "show program's version number and exit",
                    False,
                ),
                (
                    ("--url",),
                    "url",
                    "http://127.0.0.1:8080",
                    None,
                    None,
                    "the server and where its chat is (http://, https://, ws://, wss://): its"
                    " path is the chat's --chat-prefix, e.g. http://host:8080/chat beside an"
                    " application",
                    False,
                ),
                (
                    ("--transport",),
                    "transport",
                    "websocket",
                    ("websocket", "lines", "sse"),
                    None,
                    None,
                    False,
                ),
                (
                    ("--nick",),
                    "nick",
                    None,
                    None,
                    None,
                    "nickname (default: the server's guest-N)",
                    False,
                ),
                (("--token",), "token", None, None, None, "API token for saying over sse", False),
                (
                    ("--cafile",),
                    "cafile",
                    None,
                    None,
                    None,
                    "PEM file of the CA (or self-signed) to trust",
                    False,
                ),
                (
                    ("--insecure",),
                    "insecure",
                    False,
                    None,
                    None,
                    "do not verify the TLS certificate",
                    False,
                ),
                (
                    ("--json",),
                    "json",
                    False,
                    None,
                    None,
                    "print every event as one JSON line",
                    False,
                ),
                ((), "command", None, ("tail", "say", "chat"), None, None, True),
            ],
        )
        self.assertEqual([a.version for a in p._actions if a.dest == "version"], [version])
        commands = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        self.assertEqual(
            [(c.dest, c.help) for c in commands._choices_actions],
            [
                ("tail", "print a room's messages as they come"),
                ("say", "publish one message; prints its offset"),
                ("chat", "interactive: lines typed are said"),
            ],
        )
        room = ((), "room", None, None, None, None, True)
        self.assertEqual(
            {name: options(sub) for name, sub in commands.choices.items()},
            {
                "tail": [
                    room,
                    (
                        ("--since",),
                        "since",
                        None,
                        None,
                        "int",
                        "replay messages after this offset",
                        False,
                    ),
                    (
                        ("--count",),
                        "count",
                        None,
                        None,
                        "int",
                        "exit after this many messages",
                        False,
                    ),
                ],
                "say": [room, ((), "text", None, None, None, None, True)],
                "chat": [room, (("--since",), "since", None, None, "int", None, False)],
            },
        )


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


@pytest_twisted.async_yield_fixture
async def prefixed() -> AsyncIterator[tuple[int, PortshareService]]:
    """A service whose chat is under C{--chat-prefix /chat}, beside a twisted.web application
    that answers every other path (and would answer /ws, /sse and /api if asked)."""
    from portshare.apps import ResourceApp
    from tests.apps import resourceapp

    service = PortshareService(
        Settings(
            ports=("tcp:0:interface=127.0.0.1",),
            app=ResourceApp(resourceapp.withReactor),
            chatPrefix="/chat",
        ),
        reactor,
    )
    service.startService()
    yield int(service.listening[0].rsplit(":", 1)[1]), service
    await service.stopService()


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    "path", ["/chat", "/chat/", "/chat/ws"], ids=["prefix", "slash", "websocket-url"]
)
@pytest_twisted.ensureDeferred
async def test_urlPathIsTheChatPrefix(
    prefixed: tuple[int, PortshareService], transport: str, path: str
) -> None:
    """The path of --url is where the chat is (--chat-prefix): every transport reaches
    /chat/ws, /chat/sse and /chat/api under it (a ws:// URL may name /chat/ws itself),
    never the application's /ws."""
    port, _ = prefixed
    scheme = "ws" if path.endswith("/ws") else "http"
    cli = Cli(f"{scheme}://127.0.0.1:{port}{path}")
    status, out, err = await cli("--transport", transport, "--nick", "ann", "say", "p", "hi")
    assert (status, out) == (0, "1\n"), err
    status, out, err = await cli(
        "--transport", transport, "tail", "p", "--since", "0", "--count", "1"
    )
    assert (status, out) == (0, "[p #1] ann: hi\n"), err


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
    """The console script's package, as a real process, says and tails."""
    env = dict(os.environ, PYTHONPATH=str(Path(portshare.__file__).parent.parent))
    argv = ["-m", "portshare.client", "--url", cli.url, "--transport", "lines"]
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
    from tests.harness import selfSignedCertificate

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
    argv = [sys.executable, "-m", "portshare.client", "--url", cli.url, "--nick", "pipe"]
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


# -- output pinned before the client moved to portshare.client (issue 13, item 5) -------------
#
# What each command prints, byte for byte, on every transport: status lines, --json lines (with
# the timestamps and epochs, which change from run to run, replaced by TS and EPOCH), and exit
# statuses, for the real service.  Waits use GET /api/rooms, which adds no presence.


def normalised(text: str) -> str:
    """C{text} with every message's C{ts} and every joined event's C{epoch} replaced."""
    text = re.sub(r'"ts":\d+', '"ts":TS', text)
    return re.sub(r'"epoch":"[0-9a-f]+"', '"epoch":"EPOCH"', text)


async def members(url: str, room: str) -> int:
    """The room's member count, from C{GET /api/rooms}."""
    response = await treq.get(f"{url}/api/rooms", reactor=reactor)
    rooms = (await response.json())["rooms"]
    return next((r["members"] for r in rooms if r["room"] == room), 0)


async def membersReach(url: str, room: str, count: int) -> None:
    """Wait until the room has C{count} members."""
    while await members(url, room) != count:
        await deferLater(reactor, 0.01, lambda: None)


def joinRef(transport: str, room: str) -> str:
    """The C{ref} of the client's own join: C{"join"}, or over sse the server's (the room)."""
    return room if transport == "sse" else "join"


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest_twisted.ensureDeferred
async def test_tailOutputPinned(cli: Cli, transport: str) -> None:
    """tail prints each message as [room #offset] nick: text and the join on standard error;
    with --json, every event as the server's compact JSON, in the server's key order."""
    room = f"pin-{transport}"
    assert (await cli("--transport", transport, "--nick", "ann", "say", room, "one"))[0] == 0
    argv = ("--transport", transport, "--nick", "tl", "tail", room, "--since", "0", "--count", "1")
    assert await cli(*argv) == (0, f"[{room} #1] ann: one\n", f"* joined {room} at #1, 1 here\n")
    status, out, err = await cli("--json", *argv)
    assert (status, err) == (0, "")
    assert normalised(out) == (
        f'{{"type":"joined","room":"{room}","offset":1,"epoch":"EPOCH","members":["tl"],'
        f'"count":1,"recovered":true,"ref":"{joinRef(transport, room)}"}}\n'
        f'{{"type":"message","room":"{room}","offset":1,"ts":TS,"nick":"ann","text":"one"}}\n'
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest_twisted.ensureDeferred
async def test_historyIncompletePinned(cli: Cli, transport: str) -> None:
    """A join whose since is beyond the room's history says so on the joined line."""
    room = f"gap-{transport}"
    assert await cli("--transport", transport, "tail", room, "--since", "99", "--count", "0") == (
        0,
        "",
        f"* joined {room} at #0, 1 here (history incomplete)\n",
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest_twisted.ensureDeferred
async def test_sayRefusedPinned(cli: Cli, transport: str) -> None:
    """say to a bad room exits 1: over websocket and lines the join's error is printed, then
    the reason; over sse the HTTP API's refusal of the path."""
    reason = "room must be 1 to 64 characters of A-Z a-z 0-9 . _ -, not . or .."
    expected = (
        "portshare-cli: not_found: no such resource\n"
        if transport == "sse"
        else f"! bad_request: {reason}\nportshare-cli: bad_request: {reason}\n"
    )
    assert await cli("--transport", transport, "say", "bad/room", "x") == (1, "", expected)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest_twisted.ensureDeferred
async def test_chatRefusalPinned(cli: Cli, transport: str) -> None:
    """chat prints a refused line's error (exit status 1) and goes on: as ! code: reason, or
    with --json as the error event (over sse, the HTTP API's refusal with the ref first)."""
    reason = "text is longer than 4096 characters"
    for asJson in (False, True):
        room = f"refused-{transport}-{'json' if asJson else 'text'}"
        typed: DeferredQueue[str | None] = DeferredQueue()
        flags = ("--json",) if asJson else ()
        chatting = ensureDeferred(
            cli("--transport", transport, *flags, "--nick", "cat", "chat", room, stdin=typed)
        )
        typed.put("x" * 4097)
        typed.put("ok")
        typed.put(None)
        status, out, err = await chatting
        assert status == 1
        if not asJson:
            assert (out, err) == (
                f"[{room} #1] cat: ok\n",
                f"* joined {room} at #0, 1 here\n! too_large: {reason}\n",
            )
            continue
        assert err == ""
        lines = normalised(out).splitlines()
        joined = (
            f'{{"type":"joined","room":"{room}","offset":0,"epoch":"EPOCH","members":["cat"],'
            f'"count":1,"recovered":true,"ref":"{joinRef(transport, room)}"}}'
        )
        message = (
            f'{{"type":"message","room":"{room}","offset":1,"ts":TS,"nick":"cat","text":"ok"}}'
        )
        if transport == "sse":
            # the two POSTs and the stream are three connections: their order may vary
            assert lines[0] == joined
            assert sorted(lines[1:]) == sorted(
                [
                    f'{{"type":"error","ref":2,"code":"too_large","reason":"{reason}"}}',
                    '{"type":"ack","ref":3,"offset":1}',
                    message,
                ]
            )
        else:
            assert lines == [
                joined,
                f'{{"type":"error","code":"too_large","reason":"{reason}","ref":2}}',
                message,
                f'{{"type":"ack","ref":3,"offset":1,"room":"{room}"}}',
            ]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest_twisted.ensureDeferred
async def test_presencePinned(cli: Cli, transport: str) -> None:
    """tail prints other members' joins and leaves on standard error (--json: their events)."""
    for asJson in (False, True):
        room = f"seen-{transport}-{'json' if asJson else 'text'}"
        flags = ("--json",) if asJson else ()
        tailing = ensureDeferred(
            cli("--transport", transport, *flags, "--nick", "tl", "tail", room, "--count", "1")
        )
        await membersReach(cli.url, room, 1)
        await cli("--nick", "probe", "tail", room, "--count", "0")
        await membersReach(cli.url, room, 1)
        await cli("--transport", "sse", "--nick", "ender", "say", room, "end")
        status, out, err = await tailing
        assert status == 0
        if not asJson:
            assert (out, err) == (
                f"[{room} #1] ender: end\n",
                f"* joined {room} at #0, 1 here\n* probe joins {room}\n* probe leaves {room}\n",
            )
            continue
        assert err == ""
        assert normalised(out).splitlines()[1:] == [
            f'{{"type":"presence","room":"{room}","event":"join","nick":"probe"}}',
            f'{{"type":"presence","room":"{room}","event":"leave","nick":"probe"}}',
            f'{{"type":"message","room":"{room}","offset":1,"ts":TS,"nick":"ender","text":"end"}}',
        ]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest_twisted.ensureDeferred
async def test_serverClosePinned(transport: str) -> None:
    """When the server shuts down, tail exits 1; over lines and sse it first prints the
    server's close notice (--json: lines' close event, sse's close data then its type)."""
    for asJson in (False, True):
        service = PortshareService(Settings(ports=("tcp:0:interface=127.0.0.1",)), reactor)
        service.startService()
        port = int(service.listening[0].rsplit(":", 1)[1])
        cli = Cli(f"http://127.0.0.1:{port}")
        flags = ("--json",) if asJson else ()
        tailing = ensureDeferred(cli("--transport", transport, *flags, "--nick", "tl", "tail", "z"))
        await membersReach(cli.url, "z", 1)
        await service.stopService()
        status, out, err = await tailing
        assert status == 1
        notice = "! closed by the server (1001): server shutting down\n"
        if not asJson:
            assert (out, err) == (
                "",
                "* joined z at #0, 1 here\n" + ("" if transport == "websocket" else notice),
            )
            continue
        assert err == ""
        close = {
            "websocket": [],
            "lines": ['{"type":"close","code":1001,"reason":"server shutting down"}'],
            "sse": ['{"code":1001,"reason":"server shutting down","type":"close"}'],
        }[transport]
        assert normalised(out).splitlines() == [
            '{"type":"joined","room":"z","offset":0,"epoch":"EPOCH","members":["tl"],"count":1,'
            f'"recovered":true,"ref":"{joinRef(transport, "z")}"}}',
            *close,
        ]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest_twisted.ensureDeferred
async def test_sayWithoutNickPinned(cli: Cli, transport: str) -> None:
    """Without --nick, say speaks as the server's guest-N, or over sse (no join) as cli."""
    room = f"anon-{transport}"
    assert (await cli("--transport", transport, "say", room, "hi"))[0] == 0
    status, out, err = await cli("tail", room, "--since", "0", "--count", "1")
    nick = "cli" if transport == "sse" else "guest-1"
    assert (status, out) == (0, f"[{room} #1] {nick}: hi\n"), err
