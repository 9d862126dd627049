"""
Issue 15 across instances on one real Redis (pytest-twisted, loopback sockets, a
redis-server of the test's own): the server API's commands reach every instance over Redis
pub/sub, and users survive Redis, in messages and in presence.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_twisted
import treq
from twisted.internet import reactor

from portshare.testing import ChatClientProtocol, connectChat
from tests.jwts import API_TOKEN, SECRET, bearer, token
from tests.test_scaling import Instance, instances, within

__all__ = ["instances"]  # the fixture, from test_scaling

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


@pytest.fixture
def authArgs(tmp_path: Path) -> list[str]:
    """The command line of an instance that knows users' tokens and the API token."""
    secret = tmp_path / "jwt.secret"
    secret.write_bytes(SECRET)
    return ["--auth", "optional", "--jwt-secret-file", str(secret), "--api-token", API_TOKEN]


def userToken(sub: str) -> str:
    """A token of C{sub} valid for ten minutes of real time."""
    return token(sub, exp=time.time() + 600)


async def joinAs(
    node: Instance, user: str | None, room: str, nick: str
) -> tuple[ChatClientProtocol, Any]:
    """A chat connection to C{node} (as C{user}, or anonymous) joined to C{room}."""
    headers = bearer(userToken(user)) if user is not None else {}
    client = await connectChat(reactor, node.port, protocols=["portshare.chat.v1"], headers=headers)
    node.clients.append(client)
    client.send(type="join", room=room, nick=nick)
    return client, await within(client.until("joined"))


async def api(node: Instance, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """A server API request to C{node}, with the API token."""
    headers = {k: [v] for k, v in bearer(API_TOKEN).items()}
    if body is not None:
        headers["Content-Type"] = ["application/json"]
    response = await treq.request(
        method,
        node.base + path,
        headers=headers,
        data=None if body is None else orjson.dumps(body),
    )
    return response.code, orjson.loads(await response.content())


@pytest_twisted.ensureDeferred
async def test_disconnectReachesAnotherInstance(
    instances: Callable[..., Any], authArgs: list[str]
) -> None:
    """
    POST /api/users/{user}/disconnect on instance A closes (4000) the user's connection on
    instance B, and the answer counts it; another user's connection stays open.
    """
    a, b = await instances(*authArgs), await instances(*authArgs)
    ann, _ = await joinAs(b, "ann", "lobby", "ann")
    bob, _ = await joinAs(b, "bob", "lobby", "bob")
    code, answer = await api(a, "POST", "/api/users/ann/disconnect", {"reason": "bye"})
    assert (code, answer) == (200, {"connections": 1})
    _clean, closeCode, reason = await within(ann.closed)
    assert (closeCode, reason) == (4000, "bye")
    assert not bob.closed.called
    code, answer = await api(a, "POST", "/api/users/nobody/disconnect")
    assert (code, answer) == (200, {"connections": 0})


@pytest_twisted.ensureDeferred
async def test_membersListedFromEveryInstance(
    instances: Callable[..., Any], authArgs: list[str]
) -> None:
    """GET /api/rooms/{room}/members on A lists the members on A and on B, with users."""
    a, b = await instances(*authArgs), await instances(*authArgs)
    await joinAs(a, "ann", "hall", "ann")
    await joinAs(b, "bob", "hall", "bob")
    await joinAs(b, "ann", "hall", "ann")  # ann's second connection, on the other instance
    await joinAs(b, None, "hall", "guest")
    code, answer = await api(a, "GET", "/api/rooms/hall/members")
    assert code == 200
    assert answer == {
        "room": "hall",
        "members": [
            {"user": "ann", "nick": "ann", "connections": 2},
            {"user": "bob", "nick": "bob", "connections": 1},
            {"user": None, "nick": "guest", "connections": 1},
        ],
    }


@pytest_twisted.ensureDeferred
async def test_usersOfMessagesAndPresenceAcrossInstances(
    instances: Callable[..., Any], authArgs: list[str]
) -> None:
    """
    A message said by a user on A arrives on B with its user, and B's history has it; the
    user's join and leave reach B with the user too.
    """
    a, b = await instances(*authArgs), await instances(*authArgs)
    watcher, _ = await joinAs(b, None, "said", "watcher")
    ann, _ = await joinAs(a, "ann", "said", "ann")
    join = await within(watcher.until("presence"))
    assert (join["event"], join["nick"], join.get("user")) == ("join", "ann", "ann")
    ann.send(type="say", room="said", text="hello from a")
    arrived = await within(watcher.until("message"))
    assert (arrived["text"], arrived.get("user")) == ("hello from a", "ann")
    code, page = await b.get("/api/rooms/said/messages?since=0")
    assert code == 200
    assert [(m["text"], m.get("user")) for m in page["messages"]] == [("hello from a", "ann")]
    ann.send(type="leave", room="said")
    leave = await within(watcher.until("presence"))
    assert (leave["event"], leave["nick"], leave.get("user")) == ("leave", "ann", "ann")
