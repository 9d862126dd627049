"""
Your application on the same port, for real (issue 14): C{twistd -n portshare --wsgi},
C{--resource} and C{--proxy} as child processes on C{tcp:0}, and on that ONE port the
application's pages and forms beside the chat over C{/chat/ws} and its HTTP API.  The
C{--proxy} backend is Python's own C{http.server}, in a thread of the test
(L{tests.apps.backend}).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_twisted
import treq
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.web.client import Agent, HTTPConnectionPool

from portshare.testing import ChatClientProtocol, connectChat
from tests.apps.backend import Server, startBackend
from tests.harness import TwistdProcess, spawnTwistd

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


class Portshare:
    """A running C{twistd portshare} and the one port it serves everything on."""

    def __init__(self, process: TwistdProcess, port: int) -> None:
        self.process = process
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.clients: list[ChatClientProtocol] = []

    async def chat(self, path: str = "/chat/ws") -> ChatClientProtocol:
        client = await connectChat(reactor, self.port, path=path, protocols=["portshare.chat.v1"])
        self.clients.append(client)
        return client

    async def get(self, path: str, **kwargs: Any) -> tuple[int, Any, bytes]:
        response = await treq.get(self.base + path, allow_redirects=False, **kwargs)
        return response.code, response.headers, await response.content()

    async def stop(self) -> None:
        """SIGTERM, as a service manager stops it; it must stop in order."""
        if not self.process.ended.called:
            self.process.transport.signalProcess("TERM")
        await self.process.ended
        assert self.process.stoppedCleanly, self.process.output.decode()[-3000:]


@pytest_twisted.async_yield_fixture
async def twistd(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start C{twistd -n portshare ARGS}; what the test started is stopped after it."""
    started: list[Portshare] = []

    async def start(*args: str) -> Portshare:
        process = spawnTwistd(reactor, tmp_path, *args)
        running = Portshare(process, await process.listening)
        started.append(running)
        return running

    yield start
    for running in started:
        for client in running.clients:
            client.dropConnection(abort=True)
        if not running.process.ended.called:
            running.process.transport.signalProcess("KILL")
            await running.process.ended


@pytest.fixture
def backend() -> Any:
    """A real HTTP backend on 127.0.0.1 and a free port, stopped after the test."""
    server, thread = startBackend()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


async def chatAndApi(app: Portshare) -> None:
    """The chat works on the application's port: /chat/ws, and /chat/api publishing to it."""
    ann = await app.chat()
    ann.send(type="join", room="lobby", nick="ann", ref=1)
    joined = await ann.until("joined")
    assert joined["ref"] == 1
    response = await treq.post(
        app.base + "/chat/api/rooms/lobby/messages", json={"nick": "http", "text": "hi ann"}
    )
    assert response.code == 201, await response.content()
    message = await ann.until("message")
    assert (message["nick"], message["text"]) == ("http", "hi ann")
    status, _, body = await app.get("/healthz")
    assert (status, orjson.loads(body)) == (200, {"status": "ok"})
    status, _, page = await app.get("/chat/")
    assert status == 200 and b"<html" in page.lower()


@pytest_twisted.ensureDeferred
async def test_flaskBesideTheChat(twistd: Callable[..., Any], tmp_path: Path) -> None:
    """twistd portshare --wsgi: Flask's page, form POST, redirect and cookie, its own /api,
    and the chat over /chat/ws and /chat/api, all on one port; the connections view shows
    the app's HTTP connection and the chat's WebSocket side by side; SIGTERM lets a request
    in flight finish, then stops with no thread left."""
    app = await twistd("--wsgi", "tests.apps.flaskapp.app", "--wsgi-threads", "4")
    status, _, page = await app.get("/")
    assert status == 200 and b"<form" in page
    response = await treq.post(
        app.base + "/submit", data={"name": "ann", "note": "x" * 2000}, allow_redirects=False
    )
    assert response.code == 303
    assert response.headers.getRawHeaders(b"location")[0].endswith(b"/hello")
    await response.content()
    cookie = response.headers.getRawHeaders(b"set-cookie")[0].split(b";")[0]
    assert cookie == b"name=ann"
    status, _, hello = await app.get("/hello", headers={b"cookie": [cookie]})
    assert (status, hello) == (200, b"hello, ann")
    status, _, items = await app.get("/api/items")
    assert orjson.loads(items)["items"] == ["from", "the", "flask", "app"]
    await chatAndApi(app)

    # a keep-alive connection of the application's, open while the view is read
    pool = HTTPConnectionPool(reactor, persistent=True)
    browser = HTTPClient(Agent(reactor, pool=pool))
    for path in ("/hello", "/api/items"):
        await (await browser.get(app.base + path)).content()
    response = await treq.get(app.base + "/chat/api/connections", persistent=False)
    rows = orjson.loads(await response.content())["connections"]
    assert any(row["protocol"] == "http/1.1" and row["requests"] == 2 for row in rows), rows
    assert any(r["protocol"] == "websocket" and r["path"] == "/chat/ws" for r in rows), rows
    assert len({row["port"] is None for row in rows}) == 1  # all TCP, on the one port
    await pool.closeCachedConnections()

    slow = treq.get(app.base + "/sleep?seconds=1.5")
    for _ in range(200):  # until the request is in the application's thread (10 s at most)
        if (tmp_path / "sleeping").exists():
            break
        await _sleep(0.05)
    assert (tmp_path / "sleeping").exists(), "the request never reached the application"
    app.process.transport.signalProcess("TERM")
    response = await slow
    assert (response.code, await response.content()) == (200, b"slept")
    await app.stop()
    assert b"abandoned" not in app.process.output  # it finished, within the timeout


@pytest_twisted.ensureDeferred
async def test_djangoBesideTheChat(twistd: Callable[..., Any]) -> None:
    """twistd portshare --wsgi with a Django project configured in code."""
    app = await twistd("--wsgi", "tests.apps.djangoapp.application")
    status, _, body = await app.get("/django/")
    assert (status, orjson.loads(body)["framework"]) == (200, "django")
    await chatAndApi(app)
    await app.stop()


@pytest_twisted.ensureDeferred
async def test_kleinBesideTheChat(twistd: Callable[..., Any]) -> None:
    """twistd portshare --resource with klein's app.resource; and --chat-prefix moves the
    chat."""
    app = await twistd("--resource", "tests.apps.kleinapp.app.resource")
    assert (await app.get("/klein/bob"))[2] == b"hello from klein, bob"
    assert (await app.get("/"))[2] == b"klein home"
    await chatAndApi(app)
    await app.stop()
    moved = await twistd("--resource", "tests.apps.kleinapp.app.resource", "--chat-prefix", "/talk")
    status, _, body = await moved.get("/talk/api/rooms")
    assert (status, body) == (200, b'{"rooms":[]}')
    chat = await moved.chat("/talk/ws")
    chat.send(type="join", room="r", nick="kim")
    assert (await chat.until("joined"))["room"] == "r"
    assert (await moved.get("/chat/api/rooms"))[0] == 404  # klein's: the path is the app's
    await moved.stop()


@pytest_twisted.ensureDeferred
async def test_proxyBesideTheChat(twistd: Callable[..., Any], backend: Server) -> None:
    """twistd portshare --proxy to a real HTTP server: pages with cookies, a POST body, the
    forwarding headers (a client's X-Forwarded-For not believed), a streaming answer that
    arrives piece by piece, a 20 MB answer streamed whole, a slow one answered 504, and the
    chat on the same port; portshare's own paths never reach the backend."""
    app = await twistd("--proxy", backend.url, "--proxy-response-timeout", "1")
    status, headers, page = await app.get("/page")
    assert (status, page) == (200, b"<html><body>the backend's page</body></html>")
    assert headers.getRawHeaders(b"set-cookie") == [b"a=1; Path=/", b"b=2; Path=/"]
    servers = headers.getRawHeaders(b"server")  # http.server adds its own beside the page's
    assert b"backend/1.0" in servers and b"portshare" not in servers, servers

    response = await treq.post(
        app.base + "/echo?x=1",
        data=b"y" * 30000,
        headers={b"x-forwarded-for": [b"6.6.6.6"], b"content-type": [b"text/plain"]},
    )
    echo = orjson.loads(await response.content())
    seen = {name.lower(): value for name, value in echo["headers"]}
    assert (echo["method"], echo["target"], len(echo["body"])) == ("POST", "/echo?x=1", 30000)
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["forwarded"].startswith("for=127.0.0.1;host=")
    assert seen["x-forwarded-host"] == f"127.0.0.1:{app.port}"

    streamed: Deferred[None] = Deferred()
    pieces: list[bytes] = []

    def piece(data: bytes) -> None:
        pieces.append(data)
        if b"first" in b"".join(pieces) and not streamed.called:
            streamed.callback(None)

    response = await treq.get(app.base + "/stream", unbuffered=True)
    collected = treq.collect(response, piece)
    await streamed  # the first piece is here while the backend still holds the second
    assert b"second" not in b"".join(pieces)
    backend.release.set()
    await collected
    assert b"".join(pieces) == b"first\nsecond\n"

    response = await treq.get(app.base + "/big?bytes=20000000", unbuffered=True)
    received = [0]
    await treq.collect(response, lambda data: received.__setitem__(0, received[0] + len(data)))
    assert received[0] == 20_000_000

    status, _, body = await app.get("/slow?seconds=3")
    assert status == 504 and orjson.loads(body)["error"] == "gateway_timeout"

    before = list(backend.seen)
    await chatAndApi(app)
    for path in ("/healthz", "/metrics", "/chat/api/rooms", "/chat/"):
        await app.get(path)
    assert backend.seen == before  # none of portshare's own paths reached the backend
    await app.stop()


@pytest_twisted.ensureDeferred
async def test_proxyToNothing(twistd: Callable[..., Any]) -> None:
    """A backend that is not there (connection refused): a JSON 502, and the chat still
    works."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    app = await twistd("--proxy", f"http://127.0.0.1:{port}")
    status, headers, body = await app.get("/anything")
    assert status == 502
    assert headers.getRawHeaders(b"content-type") == [b"application/json"]
    assert orjson.loads(body) == {
        "error": "bad_gateway",
        "reason": "the application is not available",
    }
    await chatAndApi(app)
    await app.stop()


@pytest_twisted.ensureDeferred
async def test_badDottedNameExitsWithOneLine(tmp_path: Path) -> None:
    """A --wsgi name that does not import makes twistd exit non-zero with one line naming
    the module, and no traceback."""
    process = spawnTwistd(reactor, tmp_path, "--wsgi", "nosuchpackage.app")
    with pytest.raises(RuntimeError):
        await process.listening
    exitCode, _ = await process.ended
    assert exitCode not in (0, None)
    output = process.output.decode()
    assert "--wsgi nosuchpackage.app: there is no module named nosuchpackage" in output
    assert "Traceback" not in output


def _sleep(seconds: float) -> Deferred[None]:
    from twisted.internet.task import deferLater

    return deferLater(reactor, seconds, lambda: None)
