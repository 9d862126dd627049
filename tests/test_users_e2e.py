"""
Users over real loopback sockets: the application's hook as a real HTTP backend started by
the test (allow, deny, rewrite, a 500, a slow answer past --hook-timeout, the in-flight cap,
--hook-fail-open), and the real C{twistd portshare --auth required} with a browser-like
client (a cookie token, chat, and the 4001 close at the token's expiry).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from portshare.service import PortshareService, Settings
from portshare.testing import connectChat
from tests.harness import spawnTwistd
from tests.jwts import SECRET, token

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

PROTOCOL = ["portshare.chat.v1"]


class Backend(Resource):
    """The application's hook: its answer chosen by the room (or text) it is asked about."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[dict[str, Any]] = []
        self.held: list[Request] = []

    def render_POST(self, request: Request) -> bytes | int:
        body = json.loads(request.content.read())  # type: ignore[union-attr]
        self.asked.append(body)
        request.setHeader(b"content-type", b"application/json")
        room, text = body.get("room"), body.get("text", "")
        if room == "slow" or text == "slow":
            self.held.append(request)  # never answered: the hook's timeout decides
            return NOT_DONE_YET
        if room == "failing" or text == "fail":
            request.setResponseCode(500)
            return b'{"error": "boom"}'
        if room == "private" or text == "deny":
            return json.dumps({"allow": False, "reason": "invite only"}).encode()
        if body["event"] == "publish":
            return json.dumps({"allow": True, "text": text.replace("darn", "d**n")}).encode()
        return b'{"allow": true}'


async def serve(backendPort: int, **settings: Any) -> tuple[PortshareService, int]:
    service = PortshareService(
        Settings(
            ports=("tcp:0:interface=127.0.0.1",),
            auth="optional",
            jwtSecret=SECRET,
            hookUrl=f"http://127.0.0.1:{backendPort}/hook",
            **settings,
        ),
        reactor,
    )
    service.startService()
    return service, int(service.listening[0].rsplit(":", 1)[1])


@pytest_twisted.async_yield_fixture
async def backend() -> AsyncIterator[tuple[Backend, int]]:
    resource = Backend()
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        Site(resource, reactor=reactor)
    )
    yield resource, port.getHost().port
    for request in resource.held:
        if not request.finished and not request._disconnected:  # type: ignore[attr-defined]
            request.finish()
    await port.stopListening()


async def reply(client: Any, ref: int) -> dict[str, Any]:
    """The reply (any type) to the command sent with C{ref}."""
    for _ in range(50):
        message = await client.next()
        if message.get("ref") == ref:
            return message  # type: ignore[no-any-return]
    raise AssertionError(f"no reply to {ref}")


@pytest_twisted.ensureDeferred
async def test_hookAllowDenyRewrite500Slow(backend: tuple[Backend, int]) -> None:
    """Through a real backend: a join allowed, one denied with the reason, one the backend
    fails (unavailable), a say rewritten; a say past --hook-timeout gets unavailable and the
    connection stays open; the hook saw the contract's fields."""
    resource, backendPort = backend
    service, port = await serve(backendPort, hookTimeout=0.5)
    try:
        client = await connectChat(
            reactor,
            port,
            protocols=PROTOCOL,
            headers={"Authorization": f"Bearer {token('ann', exp=time.time() + 600)}"},
        )
        client.send(type="join", room="lobby", ref=1)
        assert (await reply(client, 1))["type"] == "joined"
        client.send(type="join", room="private", ref=2)
        assert await reply(client, 2) == {
            "type": "error",
            "code": "forbidden",
            "reason": "invite only",
            "ref": 2,
        }
        client.send(type="join", room="failing", ref=3)
        assert (await reply(client, 3))["code"] == "unavailable"
        client.send(type="say", room="lobby", text="darn it", ref=4)
        assert (await reply(client, 4))["type"] == "ack"
        started = time.monotonic()
        client.send(type="say", room="lobby", text="slow", ref=5)
        assert (await reply(client, 5))["code"] == "unavailable"
        assert 0.4 < time.monotonic() - started < 3.0
        client.send(type="say", room="lobby", text="after", ref=6)
        assert (await reply(client, 6))["type"] == "ack"
        history = await service.hub.history("lobby", 0, 10)
        assert [(m.text, m.user) for m in history[1]] == [("d**n it", "ann"), ("after", "ann")]
        events = [(a["event"], a.get("room"), a["user"]) for a in resource.asked]
        assert events[:3] == [
            ("connect", None, "ann"),
            ("join", "lobby", "ann"),
            ("join", "private", "ann"),
        ]
        publish = next(a for a in resource.asked if a["event"] == "publish")
        assert publish["text"] == "darn it" and publish["nick"] == "ann"
        assert publish["client"].startswith("127.0.0.1")
        client.sendClose()
        await client.closed
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_hookInFlightCapAndFailOpen(backend: tuple[Backend, int]) -> None:
    """With --hook-max-in-flight 1 a say while another waits on the hook is unavailable at
    once; with --hook-fail-open what the hook could not decide (a 500) is allowed."""
    resource, backendPort = backend
    service, port = await serve(backendPort, hookTimeout=2.0, hookMaxInFlight=1)
    try:
        client = await connectChat(reactor, port, protocols=PROTOCOL)
        client.send(type="join", room="lobby", nick="guest", ref=1)
        assert (await reply(client, 1))["type"] == "joined"
        client.send(type="say", room="lobby", text="slow", ref=2)
        while not resource.held:  # bounded by the test's timeout
            await deferLater(0.01)
        started = time.monotonic()
        client.send(type="say", room="lobby", text="second", ref=3)
        # says keep their order: the second's refusal comes after the first's answer, but
        # it was refused at once (the cap), not after its own timeout
        first = await reply(client, 2)
        second = await reply(client, 3)
        assert (first["code"], second["code"]) == ("unavailable", "unavailable")
        assert time.monotonic() - started < 3.0
        client.sendClose()
        await client.closed
    finally:
        await service.stopService()
    service, port = await serve(backendPort, hookFailOpen=True)
    try:
        client = await connectChat(reactor, port, protocols=PROTOCOL)
        client.send(type="join", room="failing", nick="guest", ref=1)
        assert (await reply(client, 1))["type"] == "joined"
        client.send(type="say", room="failing", text="fail", ref=2)
        assert (await reply(client, 2))["type"] == "ack"
        client.sendClose()
        await client.closed
    finally:
        await service.stopService()


def deferLater(seconds: float) -> Deferred[None]:
    return task.deferLater(reactor, seconds, lambda: None)


@pytest_twisted.ensureDeferred
async def test_twistdAuthRequiredCookieChatExpiry(tmp_path: Path) -> None:
    """The real twistd portshare --auth required: a WebSocket with the token in its cookie
    chats as its user, a connection without one is refused until it sends auth, and the
    token's expiry closes the connection with 4001."""
    secretFile = tmp_path / "jwt.secret"
    secretFile.write_bytes(SECRET)
    process = spawnTwistd(
        reactor,
        tmp_path,
        "--auth", "required", "--jwt-secret-file", str(secretFile), "--jwt-leeway", "0",
    )  # fmt: skip
    try:
        port = await process.listening
        exp = int(time.time()) + 3
        ann = await connectChat(
            reactor,
            port,
            protocols=PROTOCOL,
            headers={"Cookie": f"portshare_token={token('ann', exp=exp, name='Ann')}"},
        )
        ann.send(type="join", room="lobby", ref=1)
        joined = await reply(ann, 1)
        assert joined["members"] == ["Ann"]
        ann.send(type="say", room="lobby", text="hello", ref=2)
        message = await ann.until("message")
        assert (message["nick"], message["user"], message["text"]) == ("Ann", "ann", "hello")
        anon = await connectChat(reactor, port, protocols=PROTOCOL)
        anon.send(type="join", room="lobby", nick="sneaky", ref=1)
        assert (await reply(anon, 1))["code"] == "unauthorized"
        assert (await anon.closed)[1] == 1008
        started = time.monotonic()
        _, code, reason = await ann.closed
        assert (code, reason) == (4001, "token expired")
        assert time.monotonic() - started < 6.0
        assert time.time() >= exp - 0.5
        process.transport.signalProcess("TERM")
        await process.ended
    finally:
        if not process.ended.called:
            process.transport.signalProcess("KILL")
            await process.ended
