"""
Every code block of docs/embedding.md, run: the snippets in memory (their functions called on a
L{Chat} over a C{MemoryReactorClock}), the two programs (C{# mysite.py}, C{# myapp.tac}) as
real processes on loopback, started with the commands of the page's C{sh} blocks, with the
page's C{tcp:8080} replaced by a free loopback port.  The page and the code cannot part ways
without a failure here.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

import portshare
from portshare import Chat
from portshare.tap import _LIMIT_OPTIONS, Options
from portshare.testing import RecordingMember, connectChat
from portshare.wire import Join

DOC = Path(__file__).parent.parent / "docs" / "embedding.md"
_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks(kind: str) -> list[str]:
    """The page's code blocks of one language, in order."""
    return [body for lang, body in _BLOCK.findall(DOC.read_text()) if lang == kind]


def programs() -> dict[str, str]:
    """The blocks that are whole programs, by the file name on their first line."""
    found = {}
    for body in blocks("python"):
        first = body.split("\n", 1)[0]
        if re.fullmatch(r"# [\w.]+\.(py|tac)", first):
            found[first[2:]] = body
    return found


def snippets() -> dict[str, Any]:
    """The other Python blocks, run in order in one namespace: what they define."""
    namespace: dict[str, Any] = {}
    for body in blocks("python"):
        if body.split("\n", 1)[0][2:] not in programs():
            exec(compile(body, str(DOC), "exec"), namespace)
    return namespace


def startedChat() -> Chat:
    chat = Chat(MemoryReactorClock())
    chat.service.startService()
    return chat


class TestSnippets:
    def test_thePageHasItsBlocks(self) -> None:
        """The parser finds the page's programs and commands (so the tests below can fail)."""
        assert set(programs()) == {"mysite.py", "myapp.tac"}
        assert len(blocks("sh")) == 2
        assert {"announceDeploy", "auditRoom", "testAnnouncement", "MembersOnly"} <= set(snippets())

    def test_announceDeploy(self) -> None:
        """The publishing snippet says its text in lobby and prints the offset it got."""
        chat = startedChat()
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            d = snippets()["announceDeploy"](chat)
        assert out.getvalue() == "announced as message 1\n"
        assert d.called
        _, messages = chat._service.hub.history("lobby", 0, 10).result
        assert [(m.nick, m.text) for m in messages] == [("ops", "deploy done")]

    def test_auditRoom(self) -> None:
        """The subscribing snippet logs a member's join and a published message, in order."""
        chat = startedChat()
        log: list[str] = []
        subscription = snippets()["auditRoom"](chat, log)
        hub = chat._service.hub
        session = hub.connected(RecordingMember("ann"))
        hub.received(session, Join(room="lobby", nick="ann"))
        chat.publish("lobby", "hi", nick="ops")
        subscription.cancel()
        chat.publish("lobby", "unseen", nick="ops")
        assert log == ["subscribed", "ann joins", "#1 ops: hi"]

    def test_membersOnlyPolicy(self) -> None:
        """The policy block: a guest may join the lobby but not a staff room, nor say
        anything; a signed-in user's say is rewritten."""
        from portshare.testing import ChatError, MemoryChat

        policy = snippets()["MembersOnly"]()
        secret = b"the-application-secret-of-32-bytes+"
        with MemoryChat(policy=policy, auth="optional", jwtSecret=secret) as memory:
            guest = memory.websocket()
            guest.join("lobby", nick="guest")
            for attempt in (lambda: guest.join("staff-ops"), lambda: guest.say("lobby", "hi")):
                try:
                    attempt()
                except ChatError as e:
                    assert e.code == "forbidden"
                else:
                    raise AssertionError("the policy let a guest through")
            token = memory.token("u-1", name="ada")
            ada = memory.websocket(headers={"Authorization": "Bearer " + token})
            ada.join("staff-ops")
            ada.say("staff-ops", "darn")
            assert [m.text for m in ada.messages()] == ["d***"]

    def test_testAnnouncement(self) -> None:
        """The page's own test of an application passes (and checks what it says)."""
        snippets()["testAnnouncement"]()

    def test_everyOptionIsInTheTable(self) -> None:
        """Each option of twistd portshare is in the page's table, or named as CLI-only."""
        doc = DOC.read_text()
        table = doc[doc.index("| option | `Chat(reactor, ...)` |") :]
        options = [p[0] for p in Options.optParameters] + [f[0] for f in Options.optFlags]
        options += ["port", "allowed-origin", "trusted-proxy", "admin-port"]
        for name in options:
            if name in ("workers", "log-format"):
                assert f"`--{name}`" in doc
                continue
            assert f"`--{name}`" in table, name
        for name, field, _, _ in _LIMIT_OPTIONS:
            assert f"| `--{name}` | `limits=Limits({field}=...)` |" in table

    def test_theNamesTableIsThePublicApi(self) -> None:
        """Every public name of portshare is on the page, and each is importable."""
        doc = DOC.read_text()
        for name in portshare.__all__:
            assert hasattr(portshare, name), name
            if name != "__version__":
                assert f"`{name}" in doc, name


# -- the programs, for real ------------------------------------------------------------------


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Program(ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.ended: Deferred[BaseException] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(reason.value)  # the exception, as a result (not an error)


def command(program: str) -> list[str]:
    """The page's command for C{program}, with this environment's interpreter and twistd."""
    for line in (line for body in blocks("sh") for line in body.splitlines()):
        words = line.split()
        if program in words:
            tool = words[0]
            executable = (
                sys.executable if tool == "python" else str(Path(sys.executable).with_name(tool))
            )
            return [executable, *words[1:]]
    raise AssertionError(f"no command for {program} on the page")


async def running(tmp_path: Path, name: str) -> tuple[Program, int]:
    port = freePort()
    source = programs()[name]
    assert '"tcp:8080"' in source
    (tmp_path / name).write_text(source.replace('"tcp:8080"', f'"tcp:{port}:interface=127.0.0.1"'))
    program = Program()
    argv = command(name)
    env = dict(os.environ, PYTHONPATH=str(Path(portshare.__file__).parent.parent))
    reactor.spawnProcess(program, argv[0], argv, env=env, path=str(tmp_path))
    for _ in range(100):  # bounded: 10 s
        if program.ended.called:
            raise AssertionError(program.output.decode(errors="replace"))
        try:
            response = await treq.get(f"http://127.0.0.1:{port}/chat/healthz")
            await response.content()
            return program, port
        except Exception:
            await deferLater(reactor, 0.1, lambda: None)
    raise AssertionError(f"{name} did not listen: {program.output.decode(errors='replace')}")


async def stopped(program: Program) -> BaseException:
    if not program.ended.called:
        program.transport.signalProcess("TERM")  # type: ignore[union-attr]
    return await program.ended


async def chatsOnThePort(port: int, home: bytes) -> None:
    """The program's own page at /, and the chat at /chat/ws and /chat/api, on one port."""
    response = await treq.get(f"http://127.0.0.1:{port}/")
    assert response.code == 200 and home in await response.content()
    ann = await connectChat(reactor, port, path="/chat/ws", protocols=["portshare.chat.v1"])
    try:
        ann.send(type="join", room="lobby", nick="ann", ref=1)
        assert (await ann.until("joined"))["ref"] == 1
        ann.send(type="say", room="lobby", text="hello", ref=2)
        message = await ann.until("message")
        assert (message["nick"], message["text"]) == ("ann", "hello")
        response = await treq.get(f"http://127.0.0.1:{port}/chat/api/rooms")
        rooms = orjson.loads(await response.content())
        assert [r["room"] for r in rooms["rooms"]] == ["lobby"]
        response = await treq.get(f"http://127.0.0.1:{port}/chat/")
        assert response.code == 200 and b"<html" in (await response.content()).lower()
    finally:
        ann.dropConnection(abort=True)


@pytest.mark.e2e
@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_mysite(tmp_path: Path) -> None:
    """mysite.py, run with `python mysite.py`: the site's page and the chat on its one port;
    SIGTERM stops it."""
    program, port = await running(tmp_path, "mysite.py")
    try:
        await chatsOnThePort(port, b"My site")
    finally:
        reason = await stopped(program)
    assert isinstance(reason, ProcessDone), (reason, program.output.decode(errors="replace"))


@pytest.mark.e2e
@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_myappTac(tmp_path: Path) -> None:
    """myapp.tac, run with twistd: the Flask app's page and the chat on its one port; SIGTERM
    stops twistd in order."""
    program, port = await running(tmp_path, "myapp.tac")
    try:
        await chatsOnThePort(port, b"My Flask app")
    finally:
        await stopped(program)
    assert b"Server Shut Down." in program.output, program.output.decode(errors="replace")


class TestTransportsPage:
    def test_yourOwnProtocolBlock(self) -> None:
        """docs/transports.md's "your own protocol" block, run on a MemoryReactorClock:
        C{Upgrade: amp} on /ws is switched to AMP on the chat's port."""
        from twisted.protocols.amp import AMP

        from portshare.testing import MemoryConnection

        page = DOC.with_name("transports.md").read_text()
        (block,) = [b for lang, b in _BLOCK.findall(page) if lang == "python"]
        namespace: dict[str, Any] = {"reactor": MemoryReactorClock()}
        exec(compile(block, "docs/transports.md", "exec"), namespace)
        chat = namespace["chat"]
        c = MemoryConnection(chat._service)
        c.send(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: amp\r\nConnection: Upgrade\r\n\r\n")
        self.assertSwitched(c.read())
        assert isinstance(c.protocol.wrappedProtocol, AMP)

    @staticmethod
    def assertSwitched(head: bytes) -> None:
        assert head.startswith(b"HTTP/1.1 101 Switching Protocols"), head
        assert b"Upgrade: amp" in head, head
