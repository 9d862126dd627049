"""
The examples of examples/, for real (issue 14): each one started as its README says, with the
real C{twistd -n portshare} on C{tcp:0} in the example's own directory (the node backend of
the proxy example as its own process too), and on that ONE port: the application's own pages
and login form (a POST with a body, a redirect, the session cookie it sets, read back by the
next page), the chat over C{/chat/ws} with a real WebSocket client, the same room over
C{/chat/sse} and C{/chat/api}, and C{/chat/api/connections} listing the application's HTTP
connection beside the chat's WebSocket and SSE stream, all on the one listening port.
"""

from __future__ import annotations

import re
import shlex
import shutil
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
import pytest_twisted
import treq
from treq.client import HTTPClient
from twisted.internet import reactor, threads
from twisted.web.client import Agent, HTTPConnectionPool

from portshare.testing import ChatClientProtocol, connectChat
from tests.harness import TwistdProcess, spawnTwistd

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

EXAMPLES = Path(__file__).parent.parent / "examples"


class Running:
    """A running example: C{twistd portshare} serving it, and the one port of both."""

    def __init__(self, process: TwistdProcess, port: int) -> None:
        self.process = process
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.clients: list[ChatClientProtocol] = []
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        #: a browser's keep-alive connection to the application's pages
        self.browser = HTTPClient(Agent(reactor, pool=self.pool))

    async def get(self, path: str, cookie: bytes | None = None) -> tuple[int, Any, bytes]:
        headers = {b"cookie": [cookie]} if cookie else {}
        response = await self.browser.get(self.base + path, headers=headers, allow_redirects=False)
        return response.code, response.headers, await response.content()

    async def post(
        self, path: str, form: dict[str, str], cookie: bytes | None = None
    ) -> tuple[int, Any, bytes]:
        headers = {b"cookie": [cookie]} if cookie else {}
        response = await self.browser.post(
            self.base + path, data=form, headers=headers, allow_redirects=False
        )
        return response.code, response.headers, await response.content()

    async def chat(self) -> ChatClientProtocol:
        client = await connectChat(
            reactor, self.port, path="/chat/ws", protocols=["portshare.chat.v1"]
        )
        self.clients.append(client)
        return client


def cookieOf(headers: Any, name: bytes) -> bytes:
    """The C{name=value} of the cookie C{name} among a response's C{Set-Cookie}s."""
    for line in headers.getRawHeaders(b"set-cookie", []):
        pair = line.split(b";")[0].strip()
        if pair.startswith(name + b"="):
            return pair
    raise AssertionError(f"no {name!r} cookie in {headers.getRawHeaders(b'set-cookie')}")


class Backend(TwistdProcess):
    """The proxy example's node backend: C{listening} fires with its port."""

    bound = re.compile(rb"listening on http://127\.0\.0\.1:(\d+)")


@pytest_twisted.async_yield_fixture
async def example() -> AsyncIterator[Callable[..., Awaitable[Running]]]:
    """Start an example as its README says; what the test started is stopped after it."""
    started: list[Running] = []
    backends: list[Backend] = []

    async def start(name: str, **replace: str) -> Running:
        """The example C{name}, with the options its README gives (some C{replace}d)."""
        args = [replace.get(arg, arg) for arg in readmeCommand(name)]
        process = spawnTwistd(reactor, EXAMPLES / name, *args)
        running = Running(process, await process.listening)
        started.append(running)
        return running

    async def node(name: str, script: str) -> int:
        executable = shutil.which("node")
        if executable is None:  # never a skip: scripts/test installs nodejs
            pytest.fail("node is not installed (apt-get install -y nodejs)")
        backend = Backend()
        reactor.spawnProcess(
            backend, executable, [executable, script, "0"], path=str(EXAMPLES / name), env=None
        )
        backends.append(backend)
        return await backend.listening

    start.node = node  # type: ignore[attr-defined]
    yield start
    for running in started:
        for client in running.clients:
            client.dropConnection(abort=True)
        await running.pool.closeCachedConnections()
        if not running.process.ended.called:
            running.process.transport.signalProcess("TERM")
        await running.process.ended
        assert running.process.stoppedCleanly, running.process.output.decode()[-3000:]
    for backend in backends:
        if not backend.ended.called:
            backend.transport.signalProcess("TERM")  # type: ignore[attr-defined]
        await backend.ended


def readmeCommand(name: str) -> list[str]:
    """The options of C{twistd -n --pidfile= portshare} in examples/NAME/README.md: what the
    test runs is what the README says."""
    readme = (EXAMPLES / name / "README.md").read_text()
    lines = [line for line in readme.splitlines() if "twistd -n --pidfile= portshare " in line]
    # the first is the example's command; a later one is a variant (flask's, with users,
    # which tests/test_browser.py runs)
    assert lines, readme
    command = shlex.split(lines[0].split("&&")[-1])
    assert command[:4] == ["twistd", "-n", "--pidfile=", "portshare"], command
    assert "--port" not in command  # the test adds tcp:0
    return command[4:]


def commandsIn(path: Path) -> list[list[str]]:
    """The options of every C{twistd -n --pidfile= portshare} command shown in C{path}."""
    found = re.findall(r"twistd -n --pidfile= portshare ([^`\n]+)", path.read_text())
    return [shlex.split(options) for options in found]


def test_theReadmesSayTheSame() -> None:
    """The repository's README and examples/README.md give each example the command its own
    README gives (and the tests run)."""
    index = commandsIn(EXAMPLES / "README.md")
    for name in ("flask", "django", "klein", "proxy"):
        assert readmeCommand(name) in index, (name, index)
    assert readmeCommand("flask") in commandsIn(EXAMPLES.parent / "README.md")


# -- the chat's half, the same for every example -------------------------------------------


def openSse(port: int, room: str) -> tuple[socket.socket, bytes]:
    """(in a thread) C{GET /chat/sse?room=ROOM} until its C{joined} event: the socket, what
    was read."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        f"GET /chat/sse?room={room} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    return sock, readUntil(sock, b"event: joined", b"")


def readUntil(sock: socket.socket, needle: bytes, data: bytes) -> bytes:
    """(in a thread) Read until C{needle} has arrived, for 10 seconds at most."""
    deadline = time.monotonic() + 10
    while needle not in data:
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} never came: {data[-2000:]!r}")
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"closed before {needle!r}: {data[-2000:]!r}")
        data += chunk
    return data


async def chatOnThePort(app: Running) -> None:
    """
    The chat on the application's port: /chat/ws (join, say, the message and the ack), the
    same room over /chat/sse, a message published with /chat/api reaching both, its history,
    and the connections view listing the application's keep-alive HTTP connection beside the
    chat's WebSocket and SSE stream on the one listening port.
    """
    ann = await app.chat()
    ann.send(type="join", room="lobby", nick="ann", ref=1)
    joined = await ann.until("joined")
    assert (joined["ref"], joined["members"]) == (1, ["ann"])
    sock, seen = await threads.deferToThread(openSse, app.port, "lobby")
    try:
        ann.send(type="say", room="lobby", text="hello over /chat/ws", ref="s1")
        said = await ann.until("message")
        assert (said["nick"], said["text"]) == ("ann", "hello over /chat/ws")
        assert (await ann.until("ack"))["offset"] == said["offset"]

        response = await treq.post(
            app.base + "/chat/api/rooms/lobby/messages",
            json={"nick": "ops", "text": "hello over /chat/api"},
            persistent=False,
        )
        assert response.code == 201, await response.content()
        offset = orjson.loads(await response.content())["offset"]
        assert offset == said["offset"] + 1
        published = await ann.until("message")
        assert (published["nick"], published["text"]) == ("ops", "hello over /chat/api")
        seen = await threads.deferToThread(readUntil, sock, b"hello over /chat/api", seen)
        assert b"hello over /chat/ws" in seen and b"event: message" in seen

        response = await treq.get(
            app.base + "/chat/api/rooms/lobby/messages?since=0", persistent=False
        )
        history = orjson.loads(await response.content())["messages"]
        assert [m["text"] for m in history] == ["hello over /chat/ws", "hello over /chat/api"]

        response = await treq.get(app.base + "/chat/api/connections", persistent=False)
        view = orjson.loads(await response.content())
        rows = view["connections"]
        assert [address for address in view["listening"]] == [f"tcp:127.0.0.1:{app.port}"], view[
            "listening"
        ]
        pages = [r for r in rows if r["protocol"] == "http/1.1" and r["requests"] >= 3]
        sockets = [r for r in rows if r["protocol"] == "websocket" and r["path"] == "/chat/ws"]
        assert pages and sockets, rows
        # the app's connection and the chat's are different client ports on the one server port
        assert len({r["port"] for r in rows}) == len(rows) >= 3, rows
    finally:
        sock.close()


def pathOf(location: bytes) -> str:
    """The path of a C{Location} (absolute or not)."""
    return urlsplit(location.decode()).path


async def signIn(
    app: Running,
    loginPath: str,
    cookieName: bytes,
    script: str = "/",
    form: dict[str, str] | None = None,
    cookie: bytes | None = None,
) -> bytes:
    """
    The application's half: its page sends a stranger to the login page; the login form's
    POST (a body) with a bad nick is refused, with a good one answered by a redirect and a
    session cookie; the page, with that cookie, knows who it is (its nick escaped), its own
    C{/api} too, and C{script} (the page, or its script) imports C{/chat/client.js}.

    @param form: more fields of the form (Django's CSRF token), sent with C{cookie}
    @return: the cookie header to send from then on
    """
    status, headers, _ = await app.get("/", cookie)
    assert status in (302, 303), status
    assert pathOf(headers.getRawHeaders(b"location")[0]) == loginPath
    status, _, page = await app.get(loginPath, cookie)
    assert status == 200 and b"<form" in page and b'name="nick"' in page
    fields = dict(form or {})
    status, _, refused = await app.post(loginPath, {**fields, "nick": ""}, cookie)
    assert status == 400 and b"1 to 32 printable characters" in refused
    status, headers, _ = await app.post(loginPath, {**fields, "nick": "ann <3"}, cookie)
    assert status == 303
    assert pathOf(headers.getRawHeaders(b"location")[0]) == "/"
    session = cookieOf(headers, cookieName)
    cookies = b"; ".join(c for c in (cookie, session) if c)
    status, _, page = await app.get("/", cookies)
    assert status == 200, page
    assert re.search(rb'Signed in as <strong id="me">ann (&lt;|&#60;)3</strong>', page), page
    assert b"ann <3" not in page  # the nick is text on the page, never markup
    status, _, me = await app.get("/api/me", cookies)
    assert (status, orjson.loads(me)["nick"]) == (200, "ann <3")
    status, _, code = await app.get(script, cookies)
    assert status == 200 and b"import { connect } from '/chat/client.js';" in code
    return cookies


@pytest_twisted.ensureDeferred
async def test_flask(example: Any) -> None:
    """examples/flask: twistd portshare --wsgi flaskchat:app, from its directory (the
    command of its README)."""
    app = await example("flask")
    await signIn(app, "/login", b"session")
    await chatOnThePort(app)


@pytest_twisted.ensureDeferred
async def test_django(example: Any) -> None:
    """examples/django: twistd portshare --wsgi djangochat.wsgi.application; its login form
    carries Django's CSRF token, and a POST without it is refused."""
    app = await example("django")
    status, headers, page = await app.get("/login/")
    assert status == 200
    csrf = cookieOf(headers, b"csrftoken")
    found = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert found, page
    token = found.group(1).decode()
    status, _, _ = await app.post("/login/", {"nick": "mallory"}, csrf)
    assert status == 403  # Django's own CSRF check, through portshare
    await signIn(app, "/login/", b"sessionid", form={"csrfmiddlewaretoken": token}, cookie=csrf)
    await chatOnThePort(app)


@pytest_twisted.ensureDeferred
async def test_klein(example: Any) -> None:
    """examples/klein: twistd portshare --resource kleinchat.app.resource; a forged cookie
    is not a sign-in."""
    app = await example("klein")
    cookies = await signIn(app, "/login", b"nick", script="/page.js")
    forged = b"nick=" + b"mallory".hex().encode() + b"." + b"0" * 64
    assert (await app.get("/", forged))[0] == 303
    assert cookies.startswith(b"nick=")
    await chatOnThePort(app)


@pytest_twisted.ensureDeferred
async def test_proxy(example: Any) -> None:
    """examples/proxy: node server.mjs behind twistd portshare --proxy; the backend hears
    who the client is from the proxy's forwarding headers, and portshare's own paths never
    reach it."""
    backendPort = await example.node("proxy", "server.mjs")
    assert readmeCommand("proxy") == ["--proxy", "http://127.0.0.1:8000"]
    app = await example("proxy", **{"http://127.0.0.1:8000": f"http://127.0.0.1:{backendPort}"})
    cookies = await signIn(app, "/login", b"nick")
    _, _, me = await app.get("/api/me", cookies)
    told = orjson.loads(me)
    assert told["forwardedFor"] == "127.0.0.1" and told["forwardedHost"], told
    await chatOnThePort(app)
