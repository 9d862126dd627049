"""
Tests for L{portshare.broker.redis.RedisBroker}: its timing (reconnect backoff, heartbeat)
on a L{Clock} with fake connections, and its behaviour against a real redis-server (the
Lua scripts, parity with the in-memory broker, presence across instances, epochs).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from itertools import pairwise
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from portshare.broker import IBroker
from portshare.broker.control import (
    Answer,
    Request,
    answerPayload,
    parseControl,
    requestPayload,
)
from portshare.broker.link import Backoff
from portshare.broker.memory import MemoryBroker
from portshare.broker.redis import MAX_COMMANDS, RedisBroker
from portshare.broker.url import parseBrokerURL
from portshare.errors import Unavailable
from portshare.wire import Message, Presence
from tests.redisserver import RedisServer, rawCommand
from tests.test_broker_memory import RecordingListener
from tests.test_scaling import eventually, within

# -- on a Clock, with fake connections ---------------------------------------------------------


class FakeTransport:
    def __init__(self, protocol: FakeRedis) -> None:
        self.protocol = protocol

    def abortConnection(self) -> None:
        self.protocol.lose()

    loseConnection = abortConnection


class FakeRedis:
    """Just enough of a connection for the broker's timing: records what it is sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []
        self.transport = FakeTransport(self)
        self.onMessage: Any = None
        self._lost: list[Deferred[Any]] = []

    #: what PUBLISH answers: how many subscribers received the message
    receivers = 1

    def execute_command(self, *args: Any) -> Deferred[Any]:
        self.sent.append(args)
        return succeed(self.receivers if args[0] == "PUBLISH" else "OK")

    def eval(self, script: str, keys: list[str], args: list[Any]) -> Deferred[Any]:
        self.sent.append(("EVAL", keys[0]))
        return succeed([0, 0])

    def ping(self, timeout: float) -> Deferred[None]:
        self.sent.append(("PING",))
        return succeed(None)

    def subscribeTo(self, channels: list[str]) -> Deferred[None]:
        self.sent.append(("SUBSCRIBE", *channels))
        return succeed(None)

    def whenDisconnected(self) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self._lost.append(d)
        return d

    def lose(self) -> None:
        lost, self._lost = self._lost, []
        for d in lost:
            d.callback(self)


class Connector:
    """Opens fake connections, or refuses while C{refusing}."""

    def __init__(self) -> None:
        self.refusing = True
        self.attempts: list[float] = []
        self.opened: list[FakeRedis] = []
        self.clock = Clock()

    def __call__(self, kind: str) -> Deferred[Any]:
        self.attempts.append(self.clock.seconds())
        if self.refusing:
            return fail(ConnectionRefusedError("refused"))
        connection = FakeRedis()
        self.opened.append(connection)
        return succeed(connection)


def clockBroker(ttl: float = 3.0) -> tuple[RedisBroker, Connector]:
    connector = Connector()
    broker = RedisBroker(
        parseBrokerURL(f"redis://h:1/0?presence_ttl={ttl}"),
        connector.clock,
        history=10,
        maxRooms=10,
        connect=connector,
        backoff=Backoff(0.1, 1.0, jitter=0),
        instanceId="me",
    )
    return broker, connector


class ClockTests(SynchronousTestCase):
    """Reconnects and heartbeats run on the injected clock."""

    def test_interface(self) -> None:
        """RedisBroker provides IBroker."""
        broker, _ = clockBroker()
        self.assertTrue(verifyObject(IBroker, broker))

    def test_backoffWhileRedisIsAway(self) -> None:
        """
        Attempts follow the backoff (0.1 s doubling up to 1 s); meanwhile the broker says
        why it is unavailable and refuses work at once, but still counts presence.
        """
        broker, connector = clockBroker()
        broker.start()
        clock = connector.clock
        for _ in range(12):  # to each scheduled call in turn
            due = min(call.getTime() for call in clock.getDelayedCalls())
            clock.advance(due - clock.seconds())
        times = sorted(set(connector.attempts))
        self.assertEqual([round(b - a, 2) for a, b in pairwise(times)][:4], [0.1, 0.2, 0.4, 0.8])
        self.assertLessEqual(max(b - a for a, b in pairwise(times)), 1.0)
        self.assertIn("cannot connect to redis at redis://h:1/0", broker.unavailableReason or "")
        failure = self.failureResultOf(broker.publish("r", "n", "t", 0))
        self.assertIsInstance(failure.value, Unavailable)
        self.failureResultOf(broker.subscribe("r", RecordingListener()), Unavailable)
        self.failureResultOf(broker.members("r", 10), Unavailable)
        self.successResultOf(broker.enter("r", "ann"))

    def test_connectsAndHeartbeats(self) -> None:
        """
        Once Redis answers: the broker is available, has synchronised the presence counted
        while away, and refreshes its key with the TTL every third of the TTL.
        """
        broker, connector = clockBroker(ttl=3.0)
        ready = broker.start()
        broker.enter("r", "ann")
        connector.clock.advance(0.1)
        connector.refusing = False
        connector.clock.advance(0.2)
        self.successResultOf(ready)
        self.assertIsNone(broker.unavailableReason)
        command = connector.opened[0]
        self.assertIn(("SET", "portshare:instance:me", "1", "PX", 3000, "GET"), command.sent)
        self.assertIn(("EVAL", "portshare:{r}:here"), command.sent)  # the presence sync
        beats = len([s for s in command.sent if s[0] == "SET"])
        connector.clock.advance(1.0)
        connector.clock.advance(1.0)
        self.assertEqual(len([s for s in command.sent if s[0] == "SET"]), beats + 2)
        self.assertIn(("PING",), connector.opened[1].sent)

    def test_lostConnectionReconnects(self) -> None:
        """A lost connection makes the broker unavailable, and it connects again."""
        broker, connector = clockBroker()
        connector.refusing = False
        self.successResultOf(broker.start())
        connector.opened[1].lose()
        self.assertIn("lost the connection", broker.unavailableReason or "")
        self.failureResultOf(broker.publish("r", "n", "t", 0), Unavailable)
        connector.clock.advance(0.1)
        self.assertIsNone(broker.unavailableReason)
        self.assertEqual(len(connector.opened), 4)

    def test_aTurnsPublishesAreOneCallPerRoom(self) -> None:
        """
        Publishes wait for the end of the reactor turn; then each room's go to Redis as one
        script call, and every publish gets its own message (consecutive offsets).
        """
        broker, connector = clockBroker()
        connector.refusing = False
        self.successResultOf(broker.start())
        command = connector.opened[0]
        said = [broker.publish("r", "n", f"t{i}", i) for i in range(3)]
        said.append(broker.publish("s", "n", "other", 9))
        calls = lambda key: [s for s in command.sent if s == ("EVAL", key)]  # noqa: E731
        self.assertEqual(calls("portshare:{r}:epoch"), [])
        for d in said:
            self.assertNoResult(d)
        connector.clock.advance(0)
        self.assertEqual(len(calls("portshare:{r}:epoch")), 1)
        self.assertEqual(len(calls("portshare:{s}:epoch")), 1)
        messages = [self.successResultOf(d) for d in said]
        self.assertEqual(
            [(m.room, m.offset, m.text) for m in messages],
            [("r", 0, "t0"), ("r", 1, "t1"), ("r", 2, "t2"), ("s", 0, "other")],
        )

    def test_stopCancelsEverything(self) -> None:
        """After stop, nothing is scheduled on the clock any more."""
        broker, connector = clockBroker()
        broker.start()
        connector.clock.advance(0.1)
        self.successResultOf(broker.stop())
        self.assertEqual(connector.clock.getDelayedCalls(), [])


class CommandTests(SynchronousTestCase):
    """
    The server API's commands over pub/sub, on a Clock with fake connections: gathered
    until every receiver answered, never past the timeout, bounded, robust to junk.
    """

    def setUp(self) -> None:
        self.broker, self.connector = clockBroker()
        self.connector.refusing = False
        self.successResultOf(self.broker.start())
        self.command = self.connector.opened[0]
        self.asked: list[dict[str, Any]] = []

        def answerer(message: dict[str, Any]) -> dict[str, Any]:
            self.asked.append(message)
            return {"connections": 1}

        self.broker.answerCommands(answerer)

    def published(self, channel: str) -> list[str]:
        return [args[2] for args in self.command.sent if args[:2] == ("PUBLISH", channel)]

    def test_subscribesTheControlChannels(self) -> None:
        """The subscriber listens to the control channel and to this instance's replies."""
        self.assertIn(
            ("SUBSCRIBE", "portshare:control", "portshare:reply:me"),
            self.connector.opened[1].sent,
        )

    def test_gatheredUntilEveryReceiverAnswered(self) -> None:
        """
        A command is published once on the control channel; this instance answers it when
        it comes back (on this instance's reply channel), like any other; the command fires
        once as many instances answered as PUBLISH counted, a duplicate answer ignored.
        """
        self.command.receivers = 2
        d = self.broker.command({"op": "members", "room": "r"})
        [request] = self.published("portshare:control")
        self.assertNoResult(d)
        self.broker._channelMessage("portshare:control", request)
        self.assertEqual(self.asked, [{"op": "members", "room": "r"}])
        [mine] = self.published("portshare:reply:me")
        self.broker._channelMessage("portshare:reply:me", mine)
        self.broker._channelMessage("portshare:reply:me", mine)  # a duplicate
        self.assertNoResult(d)
        other = answerPayload(Answer(parseControl(request).id, "other", {"connections": 2}))
        self.broker._channelMessage("portshare:reply:me", other)
        self.assertEqual(self.successResultOf(d), [{"connections": 1}, {"connections": 2}])
        self.assertEqual(self.connector.clock.getDelayedCalls(), [self.broker._heartbeat.call])

    def test_answersBeforeThePublishReply(self) -> None:
        """Answers may arrive before PUBLISH's reply (another connection): they count."""
        pending: Deferred[Any] = Deferred()
        self.command.execute_command = lambda *args: pending  # type: ignore[method-assign]
        d = self.broker.command({"op": "members", "room": "r"})
        requestId = next(iter(self.broker._commands))
        answer = answerPayload(Answer(requestId, "other", {"n": 1}))
        self.broker._channelMessage("portshare:reply:me", answer)
        self.assertNoResult(d)
        pending.callback(1)
        self.assertEqual(self.successResultOf(d), [{"n": 1}])

    def test_silentInstanceIsNotWaitedForPastTheTimeout(self) -> None:
        """
        An instance that received the command but never answers delays it until the URL's
        timeout (5 s by default), not longer: then it fires with the answers it has.
        """
        self.command.receivers = 2
        d = self.broker.command({"op": "disconnect", "user": "u"})
        [request] = self.published("portshare:control")
        self.broker._channelMessage("portshare:control", request)
        self.broker._channelMessage("portshare:reply:me", self.published("portshare:reply:me")[0])
        self.connector.clock.advance(4.9)
        self.assertNoResult(d)
        self.connector.clock.advance(0.1)
        self.assertEqual(self.successResultOf(d), [{"connections": 1}])
        self.assertEqual(self.broker._commands, {})

    def test_noReceiverAtAll(self) -> None:
        """PUBLISH counting no receiver (not even this one yet) fires at once, empty."""
        self.command.receivers = 0
        self.assertEqual(self.successResultOf(self.broker.command({"op": "x"})), [])

    def test_boundedInFlight(self) -> None:
        """Past MAX_COMMANDS in flight, a command is refused at once; the others time out."""
        self.command.receivers = 2
        waiting = [self.broker.command({"op": "x"}) for _ in range(MAX_COMMANDS)]
        self.failureResultOf(self.broker.command({"op": "x"}), Unavailable)
        self.connector.clock.advance(5)
        self.assertEqual([self.successResultOf(d) for d in waiting], [[]] * MAX_COMMANDS)
        self.assertNoResult(self.broker.command({"op": "x"}))  # room again: accepted, waiting
        self.assertEqual(len(self.broker._commands), 1)

    def test_unavailableWhileDown(self) -> None:
        """With the link down a command fails at once; a failed PUBLISH fails it too."""
        self.command.execute_command = lambda *args: fail(  # type: ignore[method-assign]
            ConnectionError("lost")
        )
        self.failureResultOf(self.broker.command({"op": "x"}), Unavailable)
        self.assertEqual(self.broker._commands, {})
        self.connector.refusing = True
        self.command.lose()
        self.connector.opened[1].lose()
        self.failureResultOf(self.broker.command({"op": "x"}), Unavailable)

    def test_junkIsIgnored(self) -> None:
        """
        What is not a control message on the control channels is ignored: no answer, no
        exception; an answer to no command of ours is ignored too.
        """
        for junk in ("", "q|", "q|[]", 'q|{"id":"1","from":"x","command":[]}',
                     'q|{"id":"","from":"x","command":{}}', "a|{", "p|join|x",
                     answerPayload(Answer("unknown", "x", {}))):  # fmt: skip
            self.broker._channelMessage("portshare:control", junk)
            self.broker._channelMessage("portshare:reply:me", junk)
        self.assertEqual(self.published("portshare:reply:me"), [])
        self.assertEqual(self.asked, [])

    def test_failingAnswererStillAnswers(self) -> None:
        """An answerer that raises still answers (with the error), so no one waits for it."""

        def broken(message: dict[str, Any]) -> dict[str, Any]:
            raise KeyError("user")

        self.broker.answerCommands(broken)
        request = requestPayload(Request("r1", "other", {"op": "disconnect"}))
        self.broker._channelMessage("portshare:control", request)
        [answer] = self.published("portshare:reply:other")
        self.assertEqual(parseControl(answer), Answer("r1", "me", {"error": "KeyError: 'user'"}))
        self.flushLoggedErrors(KeyError)

    def test_stopFiresCommandsInFlight(self) -> None:
        """Stopping the broker fires the commands in flight with what they have."""
        self.command.receivers = 3
        d = self.broker.command({"op": "x"})
        self.successResultOf(self.broker.stop())
        self.assertEqual(self.successResultOf(d), [])
        self.assertEqual(self.connector.clock.getDelayedCalls(), [])


# -- against a real redis-server -----------------------------------------------------------------


@pytest_twisted.async_yield_fixture
async def brokers(redisServer: RedisServer) -> AsyncIterator[Callable[..., Any]]:
    """Started RedisBrokers on the test's Redis, as if in separate instances."""
    started: list[RedisBroker] = []

    async def make(history: int = 5, query: str = "") -> RedisBroker:
        broker = RedisBroker(
            parseBrokerURL(redisServer.url + query), reactor, history=history, maxRooms=100
        )
        started.append(broker)
        await within(broker.start())
        return broker

    yield make
    for broker in started:
        await broker.stop()


async def raw(redisServer: RedisServer, *command: Any) -> Any:
    return await rawCommand(redisServer.port, *command)


@pytest.mark.e2e
@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_sameAnswersAsMemoryBroker(brokers: Callable[..., Any]) -> None:
    """
    For the same messages, the Redis broker answers replay and history as the in-memory
    broker does (offsets, held window, recovered), whatever since and epoch are asked.
    """
    history = 3
    redis = await brokers(history=history)
    for n in (0, 1, 3, 5):
        room = f"parity{n}"
        memory = MemoryBroker(history, 10, newEpoch=lambda: "E")
        for i in range(1, n + 1):
            await redis.publish(room, "ann", f"m{i}", i)
            await memory.publish(room, "ann", f"m{i}", i)
        epoch = (await redis.replay(room, None, None)).epoch
        for since in (None, 0, 1, n - 1, n, n + 1):
            if since is not None and since < 0:
                continue
            for asked in (None, "current", "other"):
                redisReplay = await redis.replay(
                    room, since, epoch if asked == "current" else asked
                )
                memoryReplay = await memory.replay(
                    room, since, "E" if asked == "current" else asked
                )
                assert (
                    redisReplay.last,
                    redisReplay.messages,
                    redisReplay.recovered,
                ) == (memoryReplay.last, memoryReplay.messages, memoryReplay.recovered), (
                    n,
                    since,
                    asked,
                )
        for since, limit in ((0, 10), (1, 1), (n, 5)):
            assert (await redis.history(room, since, limit))[1] == (
                await memory.history(room, since, limit)
            )[1]
    assert await redis.history("never", 0, 10) == (None, ())


@pytest.mark.e2e
@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_presenceCountedAcrossInstances(brokers: Callable[..., Any]) -> None:
    """
    A nick on two instances is one member: its join is announced on the first, its leave
    on the last; every instance's listener sees the same announcements.
    """
    a, b = await brokers(), await brokers()
    la, lb = RecordingListener(), RecordingListener()
    await a.subscribe("p", la)
    await b.subscribe("p", lb)
    await a.enter("p", "ann")
    await b.enter("p", "ann")
    await b.enter("p", "ann")  # a second tab on b: counted locally, nothing sent
    await b.enter("p", "bob")
    assert await a.members("p", None) == (("ann", "bob"), 2)
    assert await b.members("p", 1) == (("ann",), 2)
    await a.exit("p", "ann")
    await b.exit("p", "ann")
    await b.exit("p", "ann")
    await b.publish("p", "bob", "marker", 1)
    expected = [
        Presence(room="p", event="join", nick="ann"),
        Presence(room="p", event="join", nick="bob"),
        Presence(room="p", event="leave", nick="ann"),
        Message(room="p", offset=1, ts=1, nick="bob", text="marker"),
    ]
    await eventually(lambda: len(la.delivered) == 4 and len(lb.delivered) == 4, 5, "delivered")
    assert la.delivered == lb.delivered == expected
    assert [(r.room, r.members, r.offset) for r in await a.rooms()] == [("p", 1, 1)]


@pytest.mark.e2e
@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_silentInstanceIsReaped(brokers: Callable[..., Any]) -> None:
    """
    An instance that stops heartbeating without a goodbye (as a crashed one) has its
    members announced as leaving by the others within the TTL plus a heartbeat.
    """
    ttl = 0.9
    a, b = await brokers(query=f"?presence_ttl={ttl}"), await brokers(query=f"?presence_ttl={ttl}")
    listener = RecordingListener()
    await a.subscribe("q", listener)
    await a.enter("q", "ann")
    await b.enter("q", "ghost")
    assert (await a.members("q", None))[0] == ("ann", "ghost")
    # b "crashes": no more heartbeats, connections cut, no goodbye
    b._heartbeat.stop()
    await b.link.stop()
    took = await eventually(
        lambda: Presence(room="q", event="leave", nick="ghost") in listener.delivered,
        3 * ttl + 3,
        "the ghost's leave",
    )
    assert took <= ttl + ttl / 3 + 2.0, took  # + scheduling slack on a busy machine
    assert (await a.members("q", None))[0] == ("ann",)


@pytest.mark.e2e
@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_historyLostIsANewEpoch(
    brokers: Callable[..., Any], redisServer: RedisServer
) -> None:
    """
    When Redis loses the data (FLUSHALL) under a subscribed instance, the next message
    starts a new epoch at offset 1, and it is still delivered.
    """
    a = await brokers()
    listener = RecordingListener()
    await a.subscribe("e", listener)
    first = await a.publish("e", "ann", "one", 1)
    epoch = (await a.replay("e", None, None)).epoch
    await raw(redisServer, "FLUSHALL")
    again = await a.publish("e", "ann", "two", 2)
    assert (first.offset, again.offset) == (1, 1)
    replay = await a.replay("e", 1, epoch)
    assert replay.epoch != epoch and replay.recovered is False
    await eventually(lambda: len(listener.delivered) == 2, 5, "both delivered")
    assert [m.text for m in listener.delivered if isinstance(m, Message)] == ["one", "two"]


@pytest.mark.e2e
@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_keysExpireAndStreamIsBounded(
    brokers: Callable[..., Any], redisServer: RedisServer
) -> None:
    """Room keys carry the room TTL; the stream is trimmed near the history length."""
    a = await brokers(history=5, query="?room_ttl=3600&prefix=t")
    for i in range(400):
        await a.publish("big", "ann", f"m{i}", i)
    length = await raw(redisServer, "XLEN", "t:{big}:log")
    assert 5 <= length <= 5 + 200, length
    for key in ("t:{big}:log", "t:{big}:seq", "t:{big}:epoch"):
        ttl = await raw(redisServer, "PTTL", key)
        assert 0 < ttl <= 3600 * 1000, (key, ttl)
    assert [m.offset for m in (await a.history("big", 0, 100))[1]] == list(range(396, 401))


@pytest.mark.e2e
@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_restartFromOlderSnapshotIsANewEpoch(
    brokers: Callable[..., Any], redisServer: RedisServer
) -> None:
    """
    Redis restarted from a snapshot older than its last writes (RDB) would give offsets
    again under the same epoch; the broker notices the restart and starts new epochs, so no
    offset means two messages under one epoch.
    """
    a = await brokers()
    listener = RecordingListener()
    await a.subscribe("snap", listener)
    for i in range(1, 4):
        await a.publish("snap", "ann", f"m{i}", i)
    epoch = (await a.replay("snap", None, None)).epoch
    await raw(redisServer, "SAVE")  # offsets 1-3 are in the snapshot, 4-5 will not be
    for i in range(4, 6):
        await a.publish("snap", "ann", f"m{i}", i)
    await redisServer.stop("KILL")
    await redisServer.start()
    await within(a.whenReady(), 15)
    assert int(await raw(redisServer, "GET", "portshare:{snap}:seq")) == 3  # rolled back
    replay = await a.replay("snap", 5, epoch)
    assert (replay.epoch != epoch, replay.last, replay.recovered) == (True, 0, False)
    message = await a.publish("snap", "ann", "after", 6)
    assert message.offset == 1
    await eventually(lambda: len(listener.delivered) == 6, 5, "delivered")
    assert [(m.offset, m.text) for m in listener.delivered if isinstance(m, Message)][-1] == (
        1,
        "after",
    )


@pytest.mark.e2e
@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_aTurnsPublishesAreOneBatch(
    brokers: Callable[..., Any], redisServer: RedisServer
) -> None:
    """
    The publishes of one reactor turn to one room travel as one script call and one pub/sub
    message; each gets its own ack with consecutive offsets, every instance delivers them
    once and in order, and history holds each of them.
    """
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    from portshare.broker.resp import RespProtocol

    a, b = await brokers(history=50), await brokers(history=50)
    listener = RecordingListener()
    await a.subscribe("batch", listener)
    watcher = RespProtocol(reactor, 10.0)
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", redisServer.port), watcher)
    payloads: list[str] = []
    watcher.onMessage = lambda channel, payload: payloads.append(payload)
    try:
        await watcher.subscribeTo(["portshare:{batch}:events"])
        said = [b.publish("batch", f"n{i}", f"text {i} |", 100 + i) for i in range(10)]
        acks = [await within(d) for d in said]
        assert [(m.offset, m.nick, m.ts) for m in acks] == [
            (i + 1, f"n{i}", 100 + i) for i in range(10)
        ]
        await eventually(lambda: len(listener.delivered) == 10)
        assert listener.delivered == list(acks)
        await eventually(lambda: len(payloads) == 1)
        assert payloads[0].startswith("b|")
        assert (await a.history("batch", 0, 100))[1] == tuple(acks)
    finally:
        watcher.abort()


@pytest.mark.e2e
@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_publishWhileRedisIsDownIsUnavailable(
    brokers: Callable[..., Any], redisServer: RedisServer
) -> None:
    """
    Publishes queued in the turn Redis goes away, and those after, each get an error
    (unavailable), none is left without an answer; once Redis is back, publishing works.
    """
    a = await brokers()
    await a.publish("down", "ann", "before", 1)
    queued = [a.publish("down", "ann", f"q{i}", i) for i in range(5)]
    await redisServer.stop("KILL")
    results = []
    for d in queued:
        try:
            results.append((await within(d, 10)).offset)
        except Unavailable:
            results.append("unavailable")
    # each answered: stored (an offset) if Redis ran the call before dying, else an error
    assert len(results) == 5 and all(r == "unavailable" or isinstance(r, int) for r in results)
    with pytest.raises(Unavailable):
        await a.publish("down", "ann", "while down", 2)
    await redisServer.start()
    await within(a.whenReady(), 15)
    message = await a.publish("down", "ann", "after", 3)
    assert message.text == "after"


@pytest.mark.e2e
@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_ownPublishesDeliveredOnceFromTheReply(brokers: Callable[..., Any]) -> None:
    """
    An instance subscribed to the room it publishes to delivers its messages (from the
    publish reply) before their acks, each once and in order, interleaved correctly with
    another instance's messages; the pub/sub copies are not delivered again.
    """
    a, b = await brokers(history=100), await brokers(history=100)
    here, there = RecordingListener(), RecordingListener()
    await a.subscribe("own", here)
    await b.subscribe("own", there)
    acked: list[int] = []
    for rnd in range(5):
        mine = [a.publish("own", "ann", f"a{rnd}.{i}", i) for i in range(4)]
        theirs = [b.publish("own", "bob", f"b{rnd}.{i}", i) for i in range(3)]
        for d in mine:
            message = await within(d)
            assert message in here.delivered  # delivered here before its ack
            acked.append(message.offset)
        for d in theirs:
            acked.append((await within(d)).offset)
    await eventually(lambda: len(here.delivered) >= 35 and len(there.delivered) >= 35)
    for listener in (here, there):
        assert [m.offset for m in listener.delivered] == list(range(1, 36))
    assert sorted(acked) == list(range(1, 36))


@pytest.mark.e2e
@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_usersSurviveRedis(brokers: Callable[..., Any]) -> None:
    """
    A message's user (or its absence) survives Redis, alone and in a batch: in the
    publisher's ack and own delivery, in another instance's live delivery, in history and in
    a replay.
    """
    a, b = await brokers(history=50), await brokers(history=50)
    here, there = RecordingListener(), RecordingListener()
    await a.subscribe("users", here)
    await b.subscribe("users", there)
    alone = await within(a.publish("users", "ann", "one", 1, user="auth0|ann"))
    batch = [
        a.publish("users", "ann", "two", 2, user="auth0|ann"),
        a.publish("users", "guest-1", "three", 3),
        a.publish("users", "bob", "four", 4, user='b|"ob"'),
    ]
    acks = [alone, *[await within(d) for d in batch]]
    expected = ["auth0|ann", "auth0|ann", None, 'b|"ob"']
    assert [m.user for m in acks] == expected
    await eventually(lambda: len(there.delivered) == 4, what="delivery on b")
    assert there.delivered == acks
    assert here.delivered == acks
    assert [m.user for m in (await b.history("users", 0, 10))[1]] == expected
    replay = await b.replay("users", 0, None)
    assert [m.user for m in replay.messages] == expected


@pytest.mark.e2e
@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_presenceUsersAcrossInstances(
    brokers: Callable[..., Any], redisServer: RedisServer
) -> None:
    """
    An authenticated member's join and leave carry its user on every instance, whichever
    instance announces them: its own (enter, exit) and the reaping of a silent instance's
    members; an anonymous member's carry none, and the users hash forgets whoever left.
    """
    ttl = 0.9
    query = f"?presence_ttl={ttl}"
    a, b = await brokers(query=query), await brokers(query=query)
    la, lb = RecordingListener(), RecordingListener()
    await a.subscribe("pu", la)
    await b.subscribe("pu", lb)
    await a.enter("pu", "ann", user="auth0|ann/1")
    await b.enter("pu", "guest-1")
    await b.enter("pu", "ann", user="auth0|ann/1")  # ann on b too: no second join
    await a.exit("pu", "ann")  # still on b: no leave
    await b.exit("pu", "ann")
    await b.enter("pu", "ghost", user="g")
    join = [
        Presence(room="pu", event="join", nick="ann", user="auth0|ann/1"),
        Presence(room="pu", event="join", nick="guest-1"),
        Presence(room="pu", event="leave", nick="ann", user="auth0|ann/1"),
        Presence(room="pu", event="join", nick="ghost", user="g"),
    ]
    await eventually(lambda: len(la.delivered) == 4 and len(lb.delivered) == 4, 5, "presence")
    assert la.delivered == lb.delivered == join
    # b goes silent: a reaps its members, each with its user (or none)
    b._heartbeat.stop()
    await b.link.stop()
    await eventually(lambda: len(la.delivered) == 6, 3 * ttl + 3, "the reaped leaves")
    assert la.delivered[4:] == [
        Presence(room="pu", event="leave", nick="ghost", user="g"),
        Presence(room="pu", event="leave", nick="guest-1"),
    ]
    assert await raw(redisServer, "HGETALL", "portshare:{pu}:users") == []


@pytest.mark.e2e
@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_presenceUsersWrittenOnResync(brokers: Callable[..., Any]) -> None:
    """
    A member counted while the instance's link is down joins, with its user, when the
    resynchronisation (SYNC) writes it to Redis.
    """
    a, b = await brokers(), await brokers()
    listener = RecordingListener()
    await a.subscribe("rs", listener)
    b.link.command.transport.abortConnection()
    await eventually(lambda: b.unavailableReason is not None, 5, "b down")
    await b.enter("rs", "carol", user="auth0|carol")
    await b.enter("rs", "dan")
    await within(b.whenReady())
    await eventually(lambda: len(listener.delivered) == 2, 5, "the joins")
    assert listener.delivered == [
        Presence(room="rs", event="join", nick="carol", user="auth0|carol"),
        Presence(room="rs", event="join", nick="dan"),
    ]
