"""
Tests for L{portshare.broker.sentinel}: reading the sentinels' answers (hostile ones
included), asking them in turn, the C{ROLE} check, the link following a failover on a
L{Clock} with fakes; and one failover of a real master, replica and three sentinels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from portshare.broker.link import Backoff, Link
from portshare.broker.redis import RedisBroker
from portshare.broker.resp import ResponseError
from portshare.broker.sentinel import (
    NoMaster,
    SentinelConnector,
    Sentinels,
    masterAddressOf,
    roleOf,
)
from portshare.broker.url import BrokerURL, parseBrokerURL
from portshare.errors import Unavailable
from tests.redisserver import RedisServer, SentinelServer, rawCommand
from tests.test_broker_memory import RecordingListener
from tests.test_scaling import eventually, within

URL = parseBrokerURL("redis+sentinel://secret@s1:1,s2:2,s3:3/mymaster/4")


class AnswersTests(SynchronousTestCase):
    """The sentinels' and servers' answers are read strictly."""

    def test_address(self) -> None:
        """A two-item reply is the master's host and port; nil means not known."""
        self.assertEqual(masterAddressOf(["10.0.0.5", "6380"]), ("10.0.0.5", 6380))
        self.assertIsNone(masterAddressOf(None))

    def test_hostileAddresses(self) -> None:
        """Anything but a host and a port in range is refused, never connected to."""
        for reply in (
            [],
            ["h"],
            ["h", "1", "x"],
            "h:1",
            ["", "1"],
            ["h", "0"],
            ["h", "65536"],
            ["h", "-1"],
            ["h", "1e3"],
            ["h", "\u0661\u0662"],  # (non-ASCII digits)
            [b"h", "1"],
            ["h", 1],
            ["h h", "1"],
            ["user@h", "1"],
            ["h/x", "1"],
            ["h" * 254, "1"],
            ResponseError("ERR"),
        ):
            with self.assertRaises(ValueError, msg=repr(reply)):
                masterAddressOf(reply)

    def test_role(self) -> None:
        """ROLE's first item is the role; anything else is refused."""
        self.assertEqual(roleOf(["master", 10, []]), "master")
        self.assertEqual(roleOf(["slave", "h", 1, "connected", 10]), "slave")
        for reply in (None, [], "master", [1], [None]):
            with self.assertRaises(ValueError):
                roleOf(reply)


class FakeSentinels:
    """Answers by sentinel: a reply, an exception to fail with, or a pending Deferred."""

    def __init__(self, answers: dict[tuple[str, int], Any]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, int, tuple[Any, ...]]] = []

    def __call__(self, host: str, port: int, command: Sequence[Any]) -> Deferred[Any]:
        self.asked.append((host, port, tuple(command)))
        answer = self.answers[(host, port)]
        if isinstance(answer, Deferred):
            return answer
        if isinstance(answer, BaseException):
            return fail(answer)
        return succeed(answer)


class SentinelsTests(SynchronousTestCase):
    """The sentinels are asked in turn until one gives the master's address."""

    def test_firstAnswerWins(self) -> None:
        """The first sentinel that gives an address is the last one asked."""
        fake = FakeSentinels({("s1", 1): ["10.0.0.1", "6379"], ("s2", 2): ["other", "1"]})
        sentinels = Sentinels(URL.sentinels, "mymaster", fake)
        self.assertEqual(self.successResultOf(sentinels.locate()), ("10.0.0.1", 6379))
        self.assertEqual(
            fake.asked, [("s1", 1, ("SENTINEL", "get-master-addr-by-name", "mymaster"))]
        )

    def test_skipsTheSilentTheIgnorantAndTheHostile(self) -> None:
        """
        A sentinel that fails, does not know the master, or answers junk is skipped; the one
        that answered is asked first next time.
        """
        fake = FakeSentinels(
            {
                ("s1", 1): TimeoutError("late"),
                ("s2", 2): ["evil host", "99999"],
                ("s3", 3): ["10.0.0.3", "7000"],
            }
        )
        sentinels = Sentinels(URL.sentinels, "mymaster", fake)
        self.assertEqual(self.successResultOf(sentinels.locate()), ("10.0.0.3", 7000))
        self.assertEqual([a[:2] for a in fake.asked], [("s1", 1), ("s2", 2), ("s3", 3)])
        fake.asked.clear()
        self.successResultOf(sentinels.locate())
        self.assertEqual([a[:2] for a in fake.asked], [("s3", 3)])

    def test_noneKnows(self) -> None:
        """When no sentinel gives an address, NoMaster says what each one did."""
        fake = FakeSentinels(
            {
                ("s1", 1): None,
                ("s2", 2): ConnectionRefusedError("refused"),
                ("s3", 3): ResponseError("NOAUTH Authentication required."),
            }
        )
        failure = self.failureResultOf(Sentinels(URL.sentinels, "mymaster", fake).locate())
        failure.trap(NoMaster)
        text = str(failure.value)
        for part in ("s1:1: does not know 'mymaster'", "s2:2: refused", "s3:3: NOAUTH"):
            self.assertIn(part, text)


class FakeServer:
    """A connection to a Redis server whose ROLE is C{role}."""

    def __init__(self, role: Any) -> None:
        self.role = role
        self.aborted = False
        self.sent: list[tuple[Any, ...]] = []
        self.transport = self
        self.lost: list[Deferred[Any]] = []

    def execute(self, *args: Any) -> Deferred[Any]:
        self.sent.append(args)
        if args == ("ROLE",):
            return fail(self.role) if isinstance(self.role, Exception) else succeed(self.role)
        if args[0] == "SET":
            return fail(ResponseError("READONLY You can't write against a read only replica."))
        return succeed("OK")

    execute_command = execute

    def abort(self) -> None:
        self.aborted = True
        lost, self.lost = self.lost, []
        for d in lost:
            d.callback(self)

    abortConnection = loseConnection = abort

    def whenDisconnected(self) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.lost.append(d)
        return d


class Opener:
    """Opens L{FakeServer}s with the role each address has now."""

    def __init__(self, roles: dict[tuple[str, int], Any]) -> None:
        self.roles = roles
        self.opened: list[tuple[BrokerURL, str, FakeServer]] = []

    def __call__(self, reactor: Any, url: BrokerURL, instanceId: str, kind: str) -> Deferred[Any]:
        assert url.host is not None and url.port is not None
        server = FakeServer(self.roles[(url.host, url.port)])
        self.opened.append((url, kind, server))
        return succeed(server)


class ConnectorTests(SynchronousTestCase):
    """Connections go to the master the sentinels name, checked with ROLE."""

    def connector(self, address: Any, roles: dict[tuple[str, int], Any]) -> SentinelConnector:
        fake = FakeSentinels({("s1", 1): address, ("s2", 2): None, ("s3", 3): None})
        self.open = Opener(roles)
        return SentinelConnector(
            Clock(), URL, "me", Sentinels(URL.sentinels, "mymaster", fake), self.open
        )

    def test_connectsToTheMaster(self) -> None:
        """Both connections go to the located master, with the URL's password and db."""
        connector = self.connector(["m", "10"], {("m", 10): ["master", 0, []]})
        self.assertEqual(self.successResultOf(connector.locate()), "m:10")
        server = self.successResultOf(connector.connect("command"))
        url, kind, opened = self.open.opened[0]
        self.assertIs(server, opened)
        self.assertEqual(
            (url.scheme, url.host, url.port, url.db, url.password, kind),
            ("redis", "m", 10, 4, "secret", "command"),
        )
        self.assertFalse(server.aborted)

    def test_replicaIsRefused(self) -> None:
        """A server that is not a master (a stale answer) is closed and refused."""
        for role in (["slave", "m", 1, "connected", 0], ["sentinel", []], ResponseError("ERR")):
            connector = self.connector(["r", "11"], {("r", 11): role})
            self.successResultOf(connector.locate())
            failure = self.failureResultOf(connector.connect("subscriber"))
            failure.trap(ConnectionError)
            self.assertTrue(self.open.opened[-1][2].aborted)

    def test_notLocated(self) -> None:
        """Connecting before a master is located fails (the link then waits its backoff)."""
        connector = self.connector(None, {})
        self.failureResultOf(connector.locate()).trap(NoMaster)
        self.failureResultOf(connector.connect("command")).trap(NoMaster)


class FollowsFailoverTests(SynchronousTestCase):
    """The link asks the sentinels at every attempt, so it follows a failover."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.address: Any = None
        self.fake = FakeSentinels({})
        self.fake.answers = _Live(self)  # type: ignore[assignment]
        self.open = Opener({("old", 1): ["master", 0, []], ("new", 2): ["master", 0, []]})
        self.connector = SentinelConnector(
            self.clock, URL, "me", Sentinels(URL.sentinels, "mymaster", self.fake), self.open
        )
        self.ups = 0
        self.downs: list[str] = []
        self.link = Link(
            self.clock,
            self.connector.connect,
            self._up,
            self.downs.append,
            Backoff(0.1, 1.0, jitter=0),
            URL.describe(),
            locate=self.connector.locate,
        )

    def _up(self) -> Deferred[Any]:
        self.ups += 1
        return succeed(None)

    def test_noMasterThenMasterThenFailover(self) -> None:
        """
        While no sentinel knows a master the link waits (its reason says so); once one is
        named, both connections go there; when it is lost, the next attempt goes to the
        new master.
        """
        self.link.start()
        self.assertFalse(self.link.up)
        self.assertIn("no redis master known", self.link.reason)
        self.assertEqual(len(self.fake.asked), 3)  # each sentinel once
        self.address = ["old", "1"]
        self.clock.advance(0.1)
        self.assertTrue(self.link.up)
        self.assertEqual(self.ups, 1)
        self.assertEqual(
            {(u.host, k) for u, k, _ in self.open.opened},
            {("old", "command"), ("old", "subscriber")},
        )
        self.address = ["new", "2"]
        self.link.command.abort()  # the old master dies
        self.assertFalse(self.link.up)
        self.assertEqual(len(self.downs), 1)
        self.clock.advance(0.1)
        self.assertTrue(self.link.up)
        self.assertEqual(self.ups, 2)
        self.assertEqual(self.open.opened[-1][0].host, "new")

    def test_readOnlyDropsTheLink(self) -> None:
        """A -READONLY refusal (the master was demoted) drops the link and finds the master."""
        self.address = ["old", "1"]
        self.link.start()
        self.assertTrue(self.link.up)
        self.open.roles[("old", 1)] = ["slave", "new", 2, "connected", 0]
        self.address = ["new", "2"]
        self.failureResultOf(self.link.execute("SET", "k", "v"))
        self.assertFalse(self.link.up)
        self.assertIn("read-only replica", self.downs[0])
        self.clock.advance(0.1)
        self.assertTrue(self.link.up)
        self.assertEqual(self.link.command.sent[0], ("ROLE",))
        self.assertEqual(self.open.opened[-1][0].host, "new")

    def test_otherRefusalsKeepTheLink(self) -> None:
        """Another refusal is the command's, not a sign of a failover: the link stays up."""
        self.address = ["old", "1"]
        self.link.start()
        self.link.command.execute_command = lambda *a: fail(ResponseError("ERR wrong number"))
        self.failureResultOf(self.link.execute("GET"))
        self.assertTrue(self.link.up)

    def test_stopWhileLocating(self) -> None:
        """A stop while the sentinels are asked leaves no retry behind."""
        pending: Deferred[Any] = Deferred()
        self.fake.answers = {("s1", 1): pending, ("s2", 2): None, ("s3", 3): None}
        self.link.start()
        self.successResultOf(self.link.stop())
        pending.callback(["old", "1"])
        self.assertEqual(self.open.opened, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class _Live(dict):  # type: ignore[type-arg]
    """Every sentinel answers with the test's current address."""

    def __init__(self, test: FollowsFailoverTests) -> None:
        super().__init__()
        self.test = test

    def __getitem__(self, key: Any) -> Any:
        return self.test.address


class BrokerTests(SynchronousTestCase):
    """The Redis broker asks the sentinels of a redis+sentinel:// URL, over real protocols."""

    def test_asksInTurnThenConnectsToTheMaster(self) -> None:
        """
        A silent sentinel is given up after sentinel_timeout; while none answers the broker
        is unavailable and says why; the one that answers (after AUTH with the sentinels'
        password) sends both connections to the master it names.
        """
        reactor = MemoryReactorClock()
        broker = RedisBroker(
            parseBrokerURL(
                "redis+sentinel://127.0.0.1:1,127.0.0.1:2/mymaster"
                "?sentinel_timeout=0.1&sentinel_password=s3cret&timeout=1"
            ),
            reactor,
            history=10,
            maxRooms=10,
            backoff=Backoff(0.5, 1.0, jitter=0),
        )
        broker.start()
        self.assertEqual([c[:2] for c in reactor.tcpClients], [("127.0.0.1", 1)])
        reactor.advance(0.1)  # the first is silent
        self.assertEqual([c[:2] for c in reactor.tcpClients][1:], [("127.0.0.1", 2)])
        reactor.advance(0.1)  # and so is the second
        self.assertIn("no redis master known", broker.unavailableReason or "")
        self.assertIn("127.0.0.1:2:", broker.unavailableReason or "")
        self.failureResultOf(broker.publish("room", "ann", "hi", 1)).trap(Unavailable)
        reactor.advance(0.5)  # the backoff: ask again, the first answers this time
        host, port, factory, *_ = reactor.tcpClients[2]
        self.assertEqual((host, port), ("127.0.0.1", 1))
        sentinel = factory.buildProtocol(None)
        transport = StringTransport()
        sentinel.makeConnection(transport)
        self.assertEqual(
            transport.value(),
            b"*2\r\n$4\r\nAUTH\r\n$6\r\ns3cret\r\n",
        )
        sentinel.dataReceived(b"+OK\r\n")
        self.assertIn(b"get-master-addr-by-name", transport.value())
        self.assertIn(b"mymaster", transport.value())
        sentinel.dataReceived(b"*2\r\n$8\r\n10.0.0.7\r\n$4\r\n6390\r\n")
        self.assertTrue(transport.disconnecting or transport.disconnected)
        # (MemoryReactorClock's resolver answers 127.0.0.1 for every name: the port tells)
        self.assertEqual([c[1] for c in reactor.tcpClients[3:]], [6390, 6390])
        self.successResultOf(broker.stop())


# -- a real failover -----------------------------------------------------------------------------


async def _info(port: int, section: str) -> dict[str, str]:
    text = await rawCommand(port, "INFO", section)
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


@pytest.mark.e2e
@pytest.mark.timeout(120)
@pytest.mark.parametrize("durable", ["0", "1"])
@pytest_twisted.ensureDeferred
async def test_failover(tmp_path: Path, durable: str) -> None:
    """
    Chat through the sentinels; kill the master: say is unavailable only until the sentinels
    promote the replica, then works again on the new master, and the room's subscription
    delivers again.  By default the new master is a new generation (replication is
    asynchronous: it may lack the last acked writes), so the room starts a new epoch and a
    client resuming gets C{recovered: false}; with C{durable=1} (the operator says no acked
    write is lost) the messages acked and replicated before the kill are still the history,
    under the same epoch, and a client resumes with C{recovered: true}.
    """
    directories = [tmp_path / name for name in ("master", "replica", "s1", "s2", "s3")]
    for directory in directories:
        directory.mkdir()
    master = RedisServer(directories[0])
    replica = RedisServer(directories[1], None, "--replicaof", "127.0.0.1", str(master.port))
    sentinels = [SentinelServer(d, master.port) for d in directories[2:]]
    started: list[RedisServer] = []
    broker: RedisBroker | None = None
    try:
        for server in (master, replica, *sentinels):
            await server.start()
            started.append(server)

        async def replicating() -> bool:
            return (await _info(replica.port, "replication")).get("master_link_status") == "up"

        await eventually(replicating, 20, "the replica syncs")

        async def sentinelsReady() -> bool:
            for s in sentinels:
                state = await rawCommand(s.port, "SENTINEL", "master", "mymaster")
                fields = dict(zip(state[::2], state[1::2], strict=True))
                if fields["num-slaves"] != "1" or fields["num-other-sentinels"] != "2":
                    return False
            return True

        await eventually(sentinelsReady, 30, "the sentinels know the replica and each other")

        url = "redis+sentinel://{}/mymaster/0?timeout=2&sentinel_timeout=0.5&durable={}".format(
            ",".join(s.url for s in sentinels), durable
        )
        broker = RedisBroker(
            parseBrokerURL(url), reactor, history=50, maxRooms=10, backoff=Backoff(0.1, 0.5)
        )
        await within(broker.start(), 15)
        listener = RecordingListener()
        await within(broker.subscribe("ha", listener))
        acked = [await within(broker.publish("ha", "ann", f"m{i}", i)) for i in range(1, 6)]
        before = await within(broker.replay("ha", 0, None))
        assert [m.text for m in before.messages] == ["m1", "m2", "m3", "m4", "m5"]
        log = broker.layout.room("ha").log

        async def replicated() -> bool:
            return int(await rawCommand(replica.port, "XLEN", log)) == len(acked)

        await eventually(replicated, 10, "the replica holds the acked messages")

        await master.stop("KILL")
        with pytest.raises(Unavailable):
            await within(broker.publish("ha", "ann", "while failing over", 6), 10)
        assert broker.unavailableReason is not None
        took = await eventually(
            lambda: broker is not None and broker.unavailableReason is None,
            60,
            "the broker follows the failover",
        )
        assert (await rawCommand(replica.port, "ROLE"))[0] == "master"
        after = await within(broker.publish("ha", "ann", "after", 7))
        await eventually(lambda: after in listener.delivered, 10, "delivered after the failover")
        resumed = await within(broker.replay("ha", before.last, before.epoch))
        everything = await within(broker.replay("ha", 0, None))
        print(f"failover followed in {took:.1f}s (durable={durable})")
        if durable == "1":
            assert (resumed.epoch, resumed.recovered) == (before.epoch, True)
            assert [(m.offset, m.text) for m in resumed.messages] == [(6, "after")]
            assert [m.text for m in everything.messages] == [m.text for m in acked] + ["after"]
        else:
            assert resumed.epoch != before.epoch and not resumed.recovered
            assert [(m.offset, m.text) for m in everything.messages] == [(1, "after")]
    finally:
        if broker is not None:
            await broker.stop()
        for server in reversed(started):
            await server.stop()
