"""
End-to-end tests: the real service, built by its twistd plugin, on a real loopback port;
the page, the API and the WebSockets all on that one port (pytest-twisted).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_twisted
import treq
from twisted.application.service import IServiceMaker
from twisted.internet import reactor
from twisted.plugin import getPlugins

from portshare.auth import JoinTokens
from portshare.testing import ChatClientProtocol, connectChat

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(30)]


def portshareMaker() -> Any:
    # the installed plugin, and the checkout's when tests run from one: the same code
    return next(p for p in getPlugins(IServiceMaker) if p.tapname == "portshare")


class Running:
    """A started service and the port it is bound to."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.port = int(service.listening[0].rsplit(":", 1)[1])
        self.base = f"http://127.0.0.1:{self.port}"
        self.clients: list[ChatClientProtocol] = []

    async def chat(self, **kwargs: Any) -> ChatClientProtocol:
        client = await connectChat(reactor, self.port, protocols=["portshare.chat.v1"], **kwargs)
        self.clients.append(client)
        return client

    async def getJson(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        response = await treq.get(self.base + path, **kwargs)
        return response.code, orjson.loads(await response.content())

    async def postJson(self, path: str, body: Any, **kwargs: Any) -> tuple[int, Any]:
        response = await treq.post(self.base + path, json=body, **kwargs)
        return response.code, orjson.loads(await response.content())


@pytest_twisted.async_yield_fixture
async def startService() -> Any:
    """Start portshare through its plugin with extra command-line arguments."""
    started: list[Running] = []

    def start(*args: str) -> Running:
        maker = portshareMaker()
        options = maker.options()
        options.parseOptions(["--port", "tcp:0:interface=127.0.0.1", *args])
        service = maker.makeService(options)
        service.startService()
        running = Running(service)
        started.append(running)
        return running

    yield start
    for running in started:
        for client in running.clients:
            client.dropConnection(abort=True)
        await running.service.stopService()


@pytest.fixture
def portshare(startService: Callable[..., Running]) -> Running:
    return startService("--echo")


@pytest_twisted.ensureDeferred
async def test_oneportServesPageApiChatAndEcho(portshare: Running) -> None:
    """The page, the API, the chat socket and the echo socket answer on the same port."""
    page = await treq.get(portshare.base + "/")
    assert page.code == 200
    assert b"<html" in (await page.content()).lower()
    assert await portshare.getJson("/healthz") == (200, {"status": "ok"})
    chat = await portshare.chat()
    assert chat.websocket_protocol_in_use == "portshare.chat.v1"
    chat.send(type="join", room="lobby", nick="ann", ref=1)
    joined = await chat.next()
    assert (joined["type"], joined["ref"], joined["members"]) == ("joined", 1, ["ann"])
    echo = await connectChat(reactor, portshare.port, path="/ws/echo")
    portshare.clients.append(echo)
    echo.sendMessage(b"\x01\x02", isBinary=True)
    assert await echo.next() == b"\x01\x02"


@pytest_twisted.ensureDeferred
async def test_httpPublishReachesWebSocketMembers(portshare: Running) -> None:
    """A message POSTed to the API is delivered to every WebSocket member of the room."""
    a, b = await portshare.chat(), await portshare.chat()
    for client, nick in ((a, "ann"), (b, "bob")):
        client.send(type="join", room="lobby", nick=nick)
        await client.until("joined")
    assert await portshare.postJson(
        "/api/rooms/lobby/messages", {"nick": "http", "text": "hello"}
    ) == (201, {"offset": 1})
    for client in (a, b):
        message = await client.until("message")
        assert (message["nick"], message["text"], message["offset"]) == ("http", "hello", 1)


@pytest_twisted.ensureDeferred
async def test_sayPresenceAck(portshare: Running) -> None:
    """Say reaches every member, the sender included, with an ack; presence is announced."""
    a = await portshare.chat()
    a.send(type="join", room="r", nick="ann")
    await a.until("joined")
    b = await portshare.chat()
    b.send(type="join", room="r", nick="bob")
    joined = await b.until("joined")
    assert joined["members"] == ["ann", "bob"]
    assert await a.next() == {"type": "presence", "room": "r", "event": "join", "nick": "bob"}
    b.send(type="say", room="r", text="hi ann", ref="s1")
    message = await b.next()
    assert (message["type"], message["text"], message["nick"]) == ("message", "hi ann", "bob")
    assert await b.next() == {"type": "ack", "ref": "s1", "offset": 1, "room": "r"}
    assert (await a.next())["text"] == "hi ann"
    b.send(type="leave", room="r", ref=2)
    assert await b.next() == {"type": "left", "room": "r", "ref": 2}
    assert (await a.next())["event"] == "leave"


@pytest_twisted.ensureDeferred
async def test_recoveryWithSince(portshare: Running) -> None:
    """A client that rejoins with since gets what it missed, in order, then live messages."""
    a = await portshare.chat()
    a.send(type="join", room="r", nick="ann")
    await a.until("joined")
    for i in range(1, 5):
        a.send(type="say", room="r", text=f"m{i}")
    for _ in range(4):
        await a.until("message")
    b = await portshare.chat()
    b.send(type="join", room="r", since=2)
    joined = await b.next()
    assert (joined["offset"], joined["recovered"]) == (4, True)
    assert [(await b.next())["text"] for _ in range(2)] == ["m3", "m4"]
    a.send(type="say", room="r", text="live")
    assert (await b.until("message"))["offset"] == 5


@pytest_twisted.ensureDeferred
async def test_errorCodes(startService: Callable[..., Running], tmp_path: Path) -> None:
    """Every error code of the contract is sent, with the ref, on a live connection."""
    secret = tmp_path / "secret"
    secret.write_bytes(b"k" * 32)
    running = startService(
        "--max-text",
        "5",
        "--rate",
        "0.01",
        "--burst",
        "9",
        "--max-rooms",
        "2",
        "--join-secret-file",
        str(secret),
    )
    token = JoinTokens(b"k" * 32).mint(join=["*"], say=["open"], expires=reactor.seconds() + 60)
    c = await running.chat()
    c.send(type="join", room="open", token=token)
    await c.until("joined")
    c.send(type="join", room="muted", token=token)
    await c.until("joined")
    sent = [
        ({"type": "join", "room": "bad room!", "token": token, "ref": 1}, "bad_request"),
        ({"type": "shout", "ref": 2}, "unknown_type"),
        ({"type": "say", "room": "elsewhere", "text": "x", "ref": 3}, "not_joined"),
        ({"type": "say", "room": "open", "text": "toolong", "ref": 4}, "too_large"),
        ({"type": "join", "room": "third", "token": token, "ref": 5}, "unavailable"),
        ({"type": "say", "room": "muted", "text": "x", "ref": 6}, "forbidden"),
        ({"type": "join", "room": "open", "ref": 7}, "forbidden"),
        ({"type": "nick", "nick": "x", "ref": 8}, "rate_limited"),
    ]
    for message, _ in sent:
        c.send(**message)
    errors = [await c.until("error") for _ in sent]
    assert [(e["ref"], e["code"]) for e in errors] == [(m["ref"], code) for m, code in sent]
    assert all(e["reason"] for e in errors)
    assert not c.closed.called


@pytest_twisted.ensureDeferred
async def test_closeCodes(startService: Callable[..., Running]) -> None:
    """Too big a message closes with 1009; a persistent flood with 1008."""
    running = startService(
        "--max-message-size", "1000", "--rate", "1", "--burst", "1", "--flood-strikes", "2"
    )
    big = await running.chat()
    big.sendMessage(b'"' + b"x" * 2000 + b'"')
    assert (await big.closed)[1] == 1009
    flood = await running.chat()
    for _ in range(5):
        flood.send(type="nick", nick="f")
    assert (await flood.closed)[1] == 1008


@pytest_twisted.ensureDeferred
async def test_shutdownSays1001(startService: Callable[..., Running]) -> None:
    """Stopping the service closes open WebSockets cleanly with 1001."""
    running = startService()
    c = await running.chat()
    await running.service.stopService()
    wasClean, code, _ = await c.closed
    assert (wasClean, code) == (True, 1001)
    running.clients.clear()


@pytest_twisted.ensureDeferred
async def test_connectionsView(portshare: Running) -> None:
    """The connections view shows upgraded and plain connections on the one server port."""
    chat = await portshare.chat()
    code, body = await portshare.getJson("/api/connections")
    assert code == 200
    assert body["listening"] == [f"tcp:127.0.0.1:{portshare.port}"]
    rows = body["connections"]
    wsRows = [r for r in rows if r["protocol"] == "websocket"]
    httpRows = [r for r in rows if r["protocol"] == "http/1.1"]
    assert [(r["path"], r["subprotocol"]) for r in wsRows] == [("/ws", "portshare.chat.v1")]
    assert wsRows[0]["port"] == chat.transport.getHost().port
    assert len(httpRows) >= 1
    assert httpRows[0]["port"] != wsRows[0]["port"]


@pytest_twisted.ensureDeferred
async def test_foreignOriginRefused(portshare: Running) -> None:
    """A WebSocket from a foreign browser origin is refused with 403."""
    with pytest.raises(ConnectionError):
        await portshare.chat(headers={"Origin": "https://evil.example"})


@pytest_twisted.ensureDeferred
async def test_tlsPageAndWebSocketOnOnePort(
    startService: Callable[..., Running], tmp_path: Path
) -> None:
    """On an ssl: endpoint the page (HTTPS, ALPN offered) and wss share the port."""
    from treq.client import HTTPClient
    from twisted.internet.ssl import Certificate, optionsForClientTLS
    from twisted.web.client import Agent, BrowserLikePolicyForHTTPS

    from tests.harness import selfSignedCertificate

    keyPath, certPath = selfSignedCertificate(tmp_path)
    maker = portshareMaker()
    options = maker.options()
    options.parseOptions(
        ["--port", f"ssl:0:interface=127.0.0.1:privateKey={keyPath}:certKey={certPath}"]
    )
    service = maker.makeService(options)
    service.startService()
    try:
        [address] = service.listening
        assert address.startswith("ssl:127.0.0.1:")
        port = int(address.rsplit(":", 1)[1])
        trust = Certificate.loadPEM(certPath.read_bytes())
        agent = Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trustRoot=trust))
        http = HTTPClient(agent)
        response = await http.get(f"https://localhost:{port}/healthz")
        assert (response.code, orjson.loads(await response.content())) == (200, {"status": "ok"})
        client = await connectChat(
            reactor,
            port,
            host="127.0.0.1",
            protocols=["portshare.chat.v1"],
            tls=optionsForClientTLS("localhost", trustRoot=trust),
        )
        client.send(type="join", room="secure", ref=1)
        assert (await client.next())["type"] == "joined"
        response = await http.get(f"https://localhost:{port}/api/connections")
        rows = orjson.loads(await response.content())["connections"]
        assert "websocket" in {r["protocol"] for r in rows}
        client.dropConnection(abort=True)
    finally:
        await service.stopService()
