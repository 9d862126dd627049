"""
Tests for L{portshare.broker.memory.MemoryBroker}, the in-process L{IBroker}.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from portshare.broker import IBroker, IRoomListener
from portshare.broker.memory import MemoryBroker
from portshare.chat import Replay, RoomInfo
from portshare.errors import Unavailable
from portshare.wire import Message, Presence


@implementer(IRoomListener)
class RecordingListener:
    """An L{IRoomListener} that keeps, in order, everything delivered to it."""

    def __init__(self) -> None:
        self.delivered: list[Message | Presence] = []

    def messagePublished(self, message: Message) -> None:
        self.delivered.append(message)

    def presenceChanged(self, presence: Presence) -> None:
        self.delivered.append(presence)


def epochs() -> Callable[[], str]:
    """A deterministic epoch maker: C{e1}, C{e2}, ..."""
    count = 0

    def newEpoch() -> str:
        nonlocal count
        count += 1
        return f"e{count}"

    return newEpoch


class MemoryBrokerTestsMixin:
    """Builds a broker with deterministic epochs."""

    def makeBroker(self, history: int = 3, maxRooms: int = 100) -> MemoryBroker:
        return MemoryBroker(history=history, maxRooms=maxRooms, newEpoch=epochs())


class RecordingListenerTests(SynchronousTestCase):
    """The test listener is a faithful IRoomListener."""

    def test_interface(self) -> None:
        """RecordingListener provides IRoomListener."""
        self.assertTrue(verifyObject(IRoomListener, RecordingListener()))


class MemoryBrokerTests(MemoryBrokerTestsMixin, SynchronousTestCase):
    """MemoryBroker numbers, keeps and delivers messages and presence in one process."""

    def setUp(self) -> None:
        self.broker = self.makeBroker()
        self.listener = RecordingListener()

    def subscribe(self, room: str, listener: RecordingListener | None = None) -> None:
        self.assertIsNone(
            self.successResultOf(self.broker.subscribe(room, listener or self.listener))
        )

    def publish(self, room: str, nick: str, text: str, ts: int = 0) -> Message:
        return self.successResultOf(self.broker.publish(room, nick, text, ts))

    def test_interface(self) -> None:
        """MemoryBroker provides IBroker."""
        self.assertTrue(verifyObject(IBroker, self.broker))

    def test_available(self) -> None:
        """An in-memory broker is always available."""
        self.assertIsNone(self.broker.unavailableReason)

    def test_startStop(self) -> None:
        """start and stop succeed at once with None."""
        self.assertIsNone(self.successResultOf(self.broker.start()))
        self.assertIsNone(self.successResultOf(self.broker.stop()))

    def test_publishAssignsOffsets(self) -> None:
        """Messages published to a room get offsets 1, 2, 3 and keep nick, text and time."""
        self.assertEqual(
            [self.publish("r", "alice", f"t{i}", 100 + i) for i in range(1, 4)],
            [
                Message(room="r", offset=i, ts=100 + i, nick="alice", text=f"t{i}")
                for i in (1, 2, 3)
            ],
        )

    def test_offsetsPerRoom(self) -> None:
        """Each room numbers its own messages."""
        self.publish("a", "n", "x")
        self.publish("a", "n", "y")
        self.assertEqual(self.publish("b", "n", "z").offset, 1)

    def test_publishDelivers(self) -> None:
        """A published message reaches the room's subscribed listener, in order."""
        self.subscribe("r")
        first = self.publish("r", "alice", "one", 1)
        second = self.publish("r", "bob", "two", 2)
        self.assertEqual(self.listener.delivered, [first, second])
        self.assertEqual(first, Message(room="r", offset=1, ts=1, nick="alice", text="one"))

    def test_publishOnlyToItsRoom(self) -> None:
        """A listener of one room does not receive another room's messages."""
        other = RecordingListener()
        self.subscribe("a")
        self.subscribe("b", other)
        message = self.publish("b", "n", "x")
        self.assertEqual((self.listener.delivered, other.delivered), ([], [message]))

    def test_publishWithoutSubscriber(self) -> None:
        """A room without a listener still accepts and numbers messages."""
        self.publish("r", "n", "x")
        self.assertEqual(self.publish("r", "n", "y").offset, 2)

    def test_unsubscribeStopsDelivery(self) -> None:
        """After unsubscribe, the listener receives no more messages or presence."""
        self.subscribe("r")
        first = self.publish("r", "n", "before")
        self.assertIsNone(self.successResultOf(self.broker.unsubscribe("r")))
        self.publish("r", "n", "after")
        self.successResultOf(self.broker.enter("r", "alice"))
        self.assertEqual(self.listener.delivered, [first])

    def test_unsubscribeUnknown(self) -> None:
        """Unsubscribing from a room never subscribed succeeds."""
        self.assertIsNone(self.successResultOf(self.broker.unsubscribe("nowhere")))

    def test_resubscribe(self) -> None:
        """Subscribing again after unsubscribing resumes delivery and keeps the offsets."""
        self.subscribe("r")
        self.publish("r", "n", "x")
        self.successResultOf(self.broker.unsubscribe("r"))
        self.subscribe("r")
        self.assertEqual(self.publish("r", "n", "y").offset, 2)
        self.assertEqual([m.offset for m in self.listener.delivered], [1, 2])  # type: ignore[union-attr]

    def test_replayNewRoom(self) -> None:
        """A replay of a new room gives its fresh epoch, offset 0 and nothing missing."""
        self.assertEqual(
            self.successResultOf(self.broker.replay("r", None, None)), Replay("e1", 0, (), True)
        )

    def test_replaySince(self) -> None:
        """A replay with since inside history gives the later messages, recovered."""
        messages = [self.publish("r", "n", f"t{i}") for i in range(3)]
        self.assertEqual(
            self.successResultOf(self.broker.replay("r", 1, "e1")),
            Replay("e1", 3, tuple(messages[1:]), True),
        )

    def test_replayBeyondHistory(self) -> None:
        """A replay with since older than the held history is not recovered."""
        messages = [self.publish("r", "n", f"t{i}") for i in range(5)]
        self.assertEqual(
            self.successResultOf(self.broker.replay("r", 0, None)),
            Replay("e1", 5, tuple(messages[2:]), False),
        )

    def test_replayOtherEpoch(self) -> None:
        """A replay from another epoch gets everything held, not recovered."""
        messages = [self.publish("r", "n", f"t{i}") for i in range(2)]
        self.assertEqual(
            self.successResultOf(self.broker.replay("r", 2, "e0")),
            Replay("e1", 2, tuple(messages), False),
        )

    def test_epochsPerRoom(self) -> None:
        """Each room gets its own epoch from the epoch maker when first used."""
        self.publish("a", "n", "x")
        self.publish("b", "n", "x")
        self.assertEqual(
            [
                self.successResultOf(self.broker.replay(room, None, None)).epoch
                for room in ("a", "b")
            ],
            ["e1", "e2"],
        )

    def test_defaultEpochs(self) -> None:
        """Without an epoch maker, rooms get distinct random 12-hex-digit epochs."""
        broker = MemoryBroker(history=3, maxRooms=10)
        first = self.successResultOf(broker.replay("a", None, None)).epoch
        second = self.successResultOf(broker.replay("b", None, None)).epoch
        self.assertEqual((len(first), len(second)), (12, 12))
        self.assertEqual(set(first + second) - set("0123456789abcdef"), set())
        self.assertNotEqual(first, second)

    def test_history(self) -> None:
        """history gives the epoch and at most limit held messages after since."""
        messages = [self.publish("r", "n", f"t{i}") for i in range(5)]
        self.assertEqual(
            self.successResultOf(self.broker.history("r", 0, 2)), ("e1", tuple(messages[2:4]))
        )
        self.assertEqual(
            self.successResultOf(self.broker.history("r", 3, 10)), ("e1", tuple(messages[3:]))
        )

    def test_historyUnknownRoom(self) -> None:
        """history of an unknown room is empty, without an epoch, and does not create it."""
        self.assertEqual(self.successResultOf(self.broker.history("r", 0, 10)), (None, ()))
        self.assertEqual(self.successResultOf(self.broker.rooms()), [])

    def test_presenceJoinAnnounced(self) -> None:
        """A nick entering a room is announced to its listener once, however many joins."""
        self.subscribe("r")
        self.assertIsNone(self.successResultOf(self.broker.enter("r", "alice")))
        self.successResultOf(self.broker.enter("r", "alice"))
        self.assertEqual(self.listener.delivered, [Presence(room="r", event="join", nick="alice")])

    def test_presenceLeaveOnLast(self) -> None:
        """A nick's leave is announced only when its last join exits."""
        self.subscribe("r")
        self.successResultOf(self.broker.enter("r", "alice"))
        self.successResultOf(self.broker.enter("r", "alice"))
        self.assertIsNone(self.successResultOf(self.broker.exit("r", "alice")))
        self.assertEqual(len(self.listener.delivered), 1)
        self.successResultOf(self.broker.exit("r", "alice"))
        self.assertEqual(
            self.listener.delivered,
            [
                Presence(room="r", event="join", nick="alice"),
                Presence(room="r", event="leave", nick="alice"),
            ],
        )

    def test_exitUnknownNotAnnounced(self) -> None:
        """The exit of a nick that never entered announces nothing."""
        self.subscribe("r")
        self.successResultOf(self.broker.exit("r", "ghost"))
        self.assertEqual(self.listener.delivered, [])

    def test_presenceWithoutSubscriber(self) -> None:
        """Presence in a room without a listener is still counted."""
        self.successResultOf(self.broker.enter("r", "alice"))
        self.assertEqual(self.successResultOf(self.broker.members("r", None)), (("alice",), 1))

    def test_members(self) -> None:
        """members lists up to cap nicks, sorted, with the total count."""
        for nick in ("carol", "alice", "bob", "alice"):
            self.successResultOf(self.broker.enter("r", nick))
        self.assertEqual(self.successResultOf(self.broker.members("r", 2)), (("alice", "bob"), 3))
        self.assertEqual(
            self.successResultOf(self.broker.members("r", None)), (("alice", "bob", "carol"), 3)
        )
        self.assertEqual(self.successResultOf(self.broker.members("empty", 5)), ((), 0))

    def test_rooms(self) -> None:
        """rooms lists every known room by name, with its member count and last offset."""
        self.subscribe("zeta")
        self.publish("beta", "n", "x")
        self.publish("beta", "n", "y")
        self.publish("alpha", "n", "x")
        self.successResultOf(self.broker.enter("beta", "alice"))
        self.successResultOf(self.broker.enter("beta", "bob"))
        self.successResultOf(self.broker.enter("beta", "bob"))
        self.successResultOf(self.broker.enter("zeta", "carol"))
        self.assertEqual(
            self.successResultOf(self.broker.rooms()),
            [
                RoomInfo(room="alpha", members=0, offset=1),
                RoomInfo(room="beta", members=2, offset=2),
                RoomInfo(room="zeta", members=1, offset=0),
            ],
        )


class MemoryBrokerEvictionTests(MemoryBrokerTestsMixin, SynchronousTestCase):
    """Beyond maxRooms, the least recently used idle room is forgotten, or a new one refused."""

    def setUp(self) -> None:
        self.broker = self.makeBroker(maxRooms=2)

    def publish(self, room: str) -> Message:
        return self.successResultOf(self.broker.publish(room, "n", "x", 0))

    def roomNames(self) -> list[str]:
        return [info.room for info in self.successResultOf(self.broker.rooms())]

    def assertRefused(self, d: object) -> None:
        failure = self.failureResultOf(d, Unavailable)  # type: ignore[arg-type]
        self.assertEqual(
            (failure.value.code, failure.value.reason),
            ("unavailable", "the server holds 2 rooms, its limit"),
        )

    def test_evictsLeastRecentlyUsed(self) -> None:
        """A new room beyond the limit evicts the idle room used least recently."""
        self.publish("a")
        self.publish("b")
        self.publish("c")
        self.assertEqual(self.roomNames(), ["b", "c"])

    def test_useRefreshes(self) -> None:
        """Publishing to a room makes it the most recently used."""
        self.publish("a")
        self.publish("b")
        self.publish("a")
        self.publish("c")
        self.assertEqual(self.roomNames(), ["a", "c"])

    def test_historyRefreshes(self) -> None:
        """Reading a room's history makes it the most recently used."""
        self.publish("a")
        self.publish("b")
        self.successResultOf(self.broker.history("a", 0, 10))
        self.publish("c")
        self.assertEqual(self.roomNames(), ["a", "c"])

    def test_evictedRoomStartsOver(self) -> None:
        """A room used again after eviction has a new epoch and numbers from 1 again."""
        self.publish("a")
        self.publish("a")
        self.publish("b")
        self.publish("c")
        self.assertEqual(self.publish("a").offset, 1)
        self.assertEqual(
            self.successResultOf(self.broker.replay("a", 2, "e1")),
            Replay("e4", 1, (Message(room="a", offset=1, ts=0, nick="n", text="x"),), False),
        )

    def test_subscribedRoomKept(self) -> None:
        """A room with a listener is not evicted; the next idle one is."""
        self.successResultOf(self.broker.subscribe("a", RecordingListener()))
        self.publish("b")
        self.publish("c")
        self.assertEqual(self.roomNames(), ["a", "c"])

    def test_occupiedRoomKept(self) -> None:
        """A room with members is not evicted; the next idle one is."""
        self.publish("a")
        self.successResultOf(self.broker.enter("a", "alice"))
        self.publish("b")
        self.publish("c")
        self.assertEqual(self.roomNames(), ["a", "c"])

    def test_publishRefusedWhenAllBusy(self) -> None:
        """Publishing to a new room fails with Unavailable when every held room is in use."""
        self.successResultOf(self.broker.subscribe("a", RecordingListener()))
        self.publish("b")
        self.successResultOf(self.broker.enter("b", "alice"))
        self.assertRefused(self.broker.publish("c", "n", "x", 0))
        self.assertEqual(self.roomNames(), ["a", "b"])

    def test_subscribeRefusedWhenAllBusy(self) -> None:
        """Subscribing to a new room fails with Unavailable and registers no listener."""
        self.successResultOf(self.broker.subscribe("a", RecordingListener()))
        self.successResultOf(self.broker.subscribe("b", RecordingListener()))
        listener = RecordingListener()
        self.assertRefused(self.broker.subscribe("c", listener))
        self.successResultOf(self.broker.unsubscribe("a"))
        self.publish("c")
        self.assertEqual((self.roomNames(), listener.delivered), (["b", "c"], []))

    def test_replayRefusedWhenAllBusy(self) -> None:
        """A replay of a new room fails (as a Deferred) with Unavailable when all are in use."""
        self.successResultOf(self.broker.subscribe("a", RecordingListener()))
        self.successResultOf(self.broker.subscribe("b", RecordingListener()))
        self.assertRefused(self.broker.replay("c", None, None))

    def test_existingRoomNeverRefused(self) -> None:
        """A held room keeps working when the limit is reached and every room is busy."""
        self.successResultOf(self.broker.subscribe("a", RecordingListener()))
        self.successResultOf(self.broker.subscribe("b", RecordingListener()))
        self.assertEqual(self.publish("a").offset, 1)

    def test_freedRoomEvictable(self) -> None:
        """Once its listener and members are gone, a room can be evicted again."""
        self.successResultOf(self.broker.subscribe("a", RecordingListener()))
        self.successResultOf(self.broker.enter("a", "alice"))
        self.publish("b")
        self.successResultOf(self.broker.unsubscribe("a"))
        self.successResultOf(self.broker.exit("a", "alice"))
        self.publish("c")
        self.assertEqual(self.roomNames(), ["b", "c"])
