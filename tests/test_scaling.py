"""
Several portshare instances on one real Redis acting as one chat (pytest-twisted, real
loopback sockets, a redis-server of the test's own): one order and one sequence of offsets,
history and recovery across instances and restarts, presence across instances, a crashed
instance's members expiring, and Redis going away and coming back.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_twisted
import treq
from twisted.application.service import IServiceMaker
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.plugin import getPlugins

from portshare.testing import ChatClientProtocol, connectChat
from tests.harness import spawnTwistd
from tests.redisserver import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


def portshareMaker() -> Any:
    return next(p for p in getPlugins(IServiceMaker) if p.tapname == "portshare")


async def eventually(
    check: Callable[[], Awaitable[bool] | bool], timeout: float = 10.0, what: str = ""
) -> float:
    """Poll C{check} every 50 ms until it holds; @return: the seconds it took."""
    start = time.monotonic()
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout}s: {what}")
        await deferLater(reactor, 0.05)


async def within(waiting: Deferred[Any] | Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
    """The result of C{waiting}, failing the test after C{timeout} seconds."""
    d = waiting if isinstance(waiting, Deferred) else Deferred.fromCoroutine(waiting)
    d.addTimeout(timeout, reactor)
    return await d


class Instance:
    """One started portshare service on a loopback port, using the test's Redis."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.port = int(service.listening[0].rsplit(":", 1)[1])
        self.base = f"http://127.0.0.1:{self.port}"
        self.clients: list[ChatClientProtocol] = []

    @property
    def broker(self) -> Any:
        return self.service.broker

    async def chat(self) -> ChatClientProtocol:
        client = await connectChat(reactor, self.port, protocols=["portshare.chat.v1"])
        self.clients.append(client)
        return client

    async def join(self, room: str, nick: str, **extra: Any) -> tuple[ChatClientProtocol, Any]:
        client = await self.chat()
        client.send(type="join", room=room, nick=nick, **extra)
        return client, await within(client.until("joined"))

    async def get(self, path: str) -> tuple[int, Any]:
        response = await treq.get(self.base + path)
        return response.code, orjson.loads(await response.content())

    async def stop(self) -> None:
        for client in self.clients:
            client.dropConnection(abort=True)
        self.clients = []
        await self.service.stopService()


@pytest_twisted.async_yield_fixture
async def instances(redisServer: RedisServer) -> AsyncIterator[Callable[..., Any]]:
    """Start portshare instances on the test's Redis (C{url} overrides the broker URL)."""
    started: list[Instance] = []

    async def start(*args: str, url: str | None = None, ready: bool = True) -> Instance:
        maker = portshareMaker()
        options = maker.options()
        options.parseOptions(
            ["--port", "tcp:0:interface=127.0.0.1", "--broker", url or redisServer.url, *args]
        )
        service = maker.makeService(options)
        service.privilegedStartService()  # as twistd does: the broker starts here
        service.startService()
        instance = Instance(service)
        started.append(instance)
        if ready:
            await within(service.broker.whenReady())
        return instance

    yield start
    for instance in started:
        if instance.service.running:
            await instance.stop()


async def messages(client: ChatClientProtocol, n: int) -> list[dict[str, Any]]:
    """The next C{n} message events C{client} receives (skipping everything else)."""
    return [await within(client.until("message")) for _ in range(n)]


@pytest_twisted.ensureDeferred
async def test_oneOrderAcrossThreeInstances(instances: Callable[..., Any]) -> None:
    """
    Messages said at once on three instances reach every member on every instance in one
    order, with one gapless sequence of offsets, and each sender gets its ack after its
    message.
    """
    nodes = [await instances() for _ in range(3)]
    clients = []
    for i, node in enumerate(nodes):
        client, _joined = await node.join("lobby", f"n{i}")
        clients.append(client)
    perClient = 20
    for round_ in range(perClient):
        for i, client in enumerate(clients):
            client.send(type="say", room="lobby", text=f"{i}:{round_}", ref=f"{i}:{round_}")
    total = perClient * len(clients)
    seen = [await messages(client, total) for client in clients]
    offsets = [m["offset"] for m in seen[0]]
    assert offsets == list(range(1, total + 1))
    for other in seen[1:]:
        assert [(m["offset"], m["text"]) for m in other] == [
            (m["offset"], m["text"]) for m in seen[0]
        ]
    # each sender's own messages appear in the order it sent them
    for i in range(len(clients)):
        mine = [m["text"] for m in seen[0] if m["text"].startswith(f"{i}:")]
        assert mine == [f"{i}:{r}" for r in range(perClient)]


@pytest_twisted.ensureDeferred
async def test_ackAfterOwnMessage(instances: Callable[..., Any]) -> None:
    """A sender receives its message before the ack, as with the in-memory broker."""
    a, b = await instances(), await instances()
    sender, _ = await a.join("r", "ann")
    _other, _ = await b.join("r", "bob")
    for i in range(10):
        sender.send(type="say", room="r", text=f"m{i}", ref=i)
        first = await within(sender.until("message"))
        ack = await within(sender.next())
        assert (first["text"], ack["type"], ack["ref"], ack["offset"]) == (
            f"m{i}",
            "ack",
            i,
            first["offset"],
        )


@pytest_twisted.ensureDeferred
async def test_historyAndRecoveryAcrossInstancesAndRestarts(
    instances: Callable[..., Any],
) -> None:
    """
    What is said on one instance is in the history of every other, a join with since on
    another instance recovers it, and so does one on an instance started after a restart.
    """
    a, b = await instances(), await instances()
    sayer, joined = await a.join("hist", "ann")
    epoch = joined["epoch"]
    for i in range(1, 6):
        sayer.send(type="say", room="hist", text=f"m{i}")
    await messages(sayer, 5)
    code, page = await b.get("/api/rooms/hist/messages?since=2")
    assert code == 200 and page["epoch"] == epoch
    assert [m["text"] for m in page["messages"]] == ["m3", "m4", "m5"]
    late, joined = await b.join("hist", "bob", since=3, epoch=epoch)
    assert (joined["offset"], joined["epoch"], joined["recovered"]) == (5, epoch, True)
    assert [m["text"] for m in await messages(late, 2)] == ["m4", "m5"]
    code, rooms = await b.get("/api/rooms")
    assert {"room": "hist", "members": 2, "offset": 5} in rooms["rooms"]

    # instance a restarts: its clients come back, to a new process, and recover
    await a.stop()
    late.send(type="say", room="hist", text="while a was away")
    await messages(late, 1)
    a2 = await instances()
    back, joined = await a2.join("hist", "ann", since=5, epoch=epoch)
    assert (joined["offset"], joined["epoch"], joined["recovered"]) == (6, epoch, True)
    assert [m["text"] for m in await messages(back, 1)] == ["while a was away"]
    back.send(type="say", room="hist", text="after")
    assert (await messages(late, 1))[0]["offset"] == 7


@pytest_twisted.ensureDeferred
async def test_presenceAcrossInstances(instances: Callable[..., Any]) -> None:
    """
    Members on every instance are listed; joins and leaves are announced on every instance,
    once per nick, however many connections and instances the nick has.
    """
    a, b = await instances(), await instances()
    ann, joined = await a.join("p", "ann")
    assert joined["members"] == ["ann"]
    bob, joined = await b.join("p", "bob")
    assert joined["members"] == ["ann", "bob"]
    assert await within(ann.next()) == {
        "type": "presence",
        "room": "p",
        "event": "join",
        "nick": "bob",
    }
    # bob again, from the other instance: still one member, nothing announced
    bob2, joined = await a.join("p", "bob")
    assert (joined["members"], joined["count"]) == (["ann", "bob"], 2)
    bob.send(type="leave", room="p", ref=1)
    assert (await within(bob.until("left")))["ref"] == 1
    bob2.send(type="leave", room="p", ref=2)
    await within(bob2.until("left"))
    leave = await within(ann.until("presence"))
    assert (leave["event"], leave["nick"]) == ("leave", "bob")
    # the only presence event ann saw after bob's join is this leave: say and check order
    ann.send(type="say", room="p", text="marker")
    assert (await within(ann.next()))["text"] == "marker"
    _code, rooms = await a.get("/api/rooms")
    assert {"room": "p", "members": 1, "offset": 1} in rooms["rooms"]


@pytest_twisted.ensureDeferred
async def test_crashedInstanceMembersDisappear(
    instances: Callable[..., Any], redisServer: RedisServer, tmp_path: Path
) -> None:
    """
    The members of an instance that dies without a word (SIGKILL) are announced as leaving
    on the other instances within the presence TTL (plus one heartbeat), and are no longer
    listed.
    """
    ttl = 1.5
    url = f"{redisServer.url}?presence_ttl={ttl}"
    a = await instances(url=url)
    ann, _ = await a.join("crash", "ann")
    process = spawnTwistd(reactor, tmp_path, "--broker", url)
    transport = process.transport
    try:
        port = await within(process.listening, 30)

        async def healthy() -> bool:
            response = await treq.get(f"http://127.0.0.1:{port}/healthz")
            await response.content()
            return response.code == 200

        await eventually(healthy, 15, "the twistd instance is connected to redis")
        victim = await connectChat(reactor, port, protocols=["portshare.chat.v1"])
        victim.send(type="join", room="crash", nick="victim")
        assert (await within(victim.until("joined")))["members"] == ["ann", "victim"]
        joinedEvent = await within(ann.until("presence"))
        assert (joinedEvent["event"], joinedEvent["nick"]) == ("join", "victim")
        transport.signalProcess("KILL")
        await within(process.ended)
        killedAt = time.monotonic()
        leave = await within(ann.until("presence"), 3 * ttl + 5)
        took = time.monotonic() - killedAt
        assert (leave["event"], leave["nick"]) == ("leave", "victim")
        assert took <= ttl + ttl / 3 + 2.0, took  # + scheduling slack on a busy machine
        print(f"\ncrashed instance's member gone after {took:.2f}s (presence TTL {ttl}s)")
        _code, rooms = await a.get("/api/rooms")
        assert {"room": "crash", "members": 1, "offset": 0} in rooms["rooms"]
        _newcomer, joined = await a.join("crash", "cid")
        assert joined["members"] == ["ann", "cid"]
    finally:
        if not process.ended.called:
            transport.signalProcess("KILL")
            await process.ended


async def health(instance: Instance) -> tuple[int, Any]:
    return await instance.get("/healthz")


@pytest_twisted.ensureDeferred
async def test_redisRestartWithoutPersistence(
    instances: Callable[..., Any], redisServer: RedisServer
) -> None:
    """
    While Redis is down every instance keeps serving HTTP and its WebSockets, answers say
    with unavailable and /healthz with 503 and a reason; once Redis is back the instances
    reconnect on their own and clients rejoin with since (recovered false: an empty Redis
    is a new epoch).
    """
    a, b = await instances(), await instances()
    ann, joined = await a.join("f", "ann")
    bob, _ = await b.join("f", "bob")
    epoch = joined["epoch"]
    ann.send(type="say", room="f", text="before")
    await messages(bob, 1)
    await redisServer.stop()
    await eventually(lambda: a.broker.unavailableReason is not None, 10, "a notices")
    for node in (a, b):
        code, body = await health(node)
        assert code == 503 and body["reason"], body
        page = await treq.get(node.base + "/")
        assert page.code == 200
        await page.content()
    ann.send(type="say", room="f", text="lost", ref="x")
    error = await within(ann.until("error"))
    assert (error["code"], error["ref"]) == ("unavailable", "x")
    code, body = await a.get("/api/rooms")
    assert code == 503 and body["error"] == "unavailable"
    assert not ann.closed.called and not bob.closed.called
    downAt = time.monotonic()
    await redisServer.start()
    took = await eventually(
        lambda: a.broker.unavailableReason is None and b.broker.unavailableReason is None,
        15,
        "both instances back",
    )
    print(f"\nboth instances available {took:.2f}s after redis-server was up again")
    assert time.monotonic() - downAt < 15
    assert (await health(a))[0] == 200
    # the connections stayed up; history was lost with Redis: a rejoin says so
    ann.send(type="join", room="f", since=1, epoch=epoch, ref="re")
    rejoined = await within(ann.until("joined"))
    assert rejoined["recovered"] is False and rejoined["epoch"] != epoch
    ann.send(type="say", room="f", text="after", ref="y")
    message = await within(bob.until("message"))
    assert (message["text"], message["offset"]) == ("after", 1)


@pytest_twisted.ensureDeferred
async def test_redisRestartWithAppendOnlyFile(tmp_path: Path) -> None:
    """
    With Redis persisting every write (appendfsync always), a Redis restart loses nothing:
    clients recover with since, recovered true, and offsets go on from where they were.
    """
    directory = tmp_path / "aof"
    directory.mkdir()
    server = RedisServer(directory, None, "--appendonly", "yes", "--appendfsync", "always")
    await server.start()
    node: Instance | None = None
    try:
        maker = portshareMaker()
        options = maker.options()
        options.parseOptions(
            ["--port", "tcp:0:interface=127.0.0.1", "--broker", server.url + "?timeout=2"]
        )
        service = maker.makeService(options)
        service.privilegedStartService()  # as twistd does: the broker starts here
        service.startService()
        node = Instance(service)
        await within(service.broker.whenReady())
        ann, joined = await node.join("aof", "ann")
        for i in range(1, 4):
            ann.send(type="say", room="aof", text=f"m{i}")
        await messages(ann, 3)
        await server.restart()
        await eventually(lambda: node.broker.unavailableReason is None, 15, "back")
        late, again = await node.join("aof", "bob", since=1, epoch=joined["epoch"])
        assert (again["recovered"], again["epoch"], again["offset"]) == (
            True,
            joined["epoch"],
            3,
        )
        assert [m["text"] for m in await messages(late, 2)] == ["m2", "m3"]
        ann.send(type="say", room="aof", text="m4")
        assert (await messages(late, 1))[0]["offset"] == 4
    finally:
        if node is not None:
            await node.stop()
        await server.stop()


async def killConnections(server: RedisServer, name: str) -> int:
    """CLIENT KILL every connection of C{server} whose name contains C{name}."""
    from tests.redisserver import rawCommand

    listing = await rawCommand(server.port, "CLIENT", "LIST")
    killed = 0
    for line in listing.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if name in fields.get("name", ""):
            await rawCommand(server.port, "CLIENT", "KILL", "ID", fields["id"])
            killed += 1
    return killed


@pytest_twisted.ensureDeferred
async def test_catchUpAfterLostConnection(
    instances: Callable[..., Any], redisServer: RedisServer
) -> None:
    """
    When one instance loses its Redis connections while another keeps publishing, its
    members get every message published meanwhile, in order and once, after it reconnects
    (caught up from the stream before live messages).
    """
    a, b = await instances("--burst", "100"), await instances()
    talker, _ = await a.join("c", "ann")
    listener, _ = await b.join("c", "bob")
    total = 60
    sent = 0

    async def talk() -> None:
        nonlocal sent
        for i in range(1, total + 1):
            talker.send(type="say", room="c", text=f"m{i}", ref=i)
            await within(talker.until("ack"))
            sent = i
            if i == 10:
                assert await killConnections(redisServer, b.broker.instanceId) == 2

    await talk()
    await eventually(lambda: b.broker.unavailableReason is None, 15, "b back")
    got = await messages(listener, total)
    assert [m["offset"] for m in got] == list(range(1, total + 1))
    assert [m["text"] for m in got] == [f"m{i}" for i in range(1, total + 1)]
    listener.send(type="say", room="c", text="done", ref="d")
    assert (await within(listener.until("message")))["text"] == "done"


@pytest_twisted.ensureDeferred
async def test_startsWithoutRedisAndConnectsLater(
    instances: Callable[..., Any], redisServer: RedisServer
) -> None:
    """An instance started while Redis is down serves HTTP, reports 503, and joins later."""
    await redisServer.stop()
    node = await instances(ready=False)
    code, body = await health(node)
    assert code == 503 and "redis" in body["reason"], body
    client = await node.chat()
    client.send(type="join", room="later", nick="ann", ref=1)
    error = await within(client.until("error"))
    assert (error["code"], error["ref"]) == ("unavailable", 1)
    await redisServer.start()
    await within(node.broker.whenReady(), 15)
    client.send(type="join", room="later", nick="ann", ref=2)
    assert (await within(client.until("joined")))["ref"] == 2
