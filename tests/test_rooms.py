"""
Tests for L{portshare.rooms}: a room's members in their states, one framing per front end per
event, and presence batching given its collaborators directly.  The whole chat over rooms is
tested through the hub in C{tests/test_hub.py}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from portshare.broker.memory import MemoryBroker
from portshare.chat import Session, TokenBucket
from portshare.joining import Joining
from portshare.limits import Limits
from portshare.metrics import Metrics
from portshare.rooms import LIVE, PresenceBatching, RoomFanout
from portshare.testing import RecordingFrontEnd, RecordingMember
from portshare.wire import Join, Message, Presence, PresenceBatch


def message(offset: int) -> Message:
    return Message(room="r", offset=offset, ts=0, nick="x", text="hi")


class RoomFanoutTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.metrics = Metrics()
        self.fanout = RoomFanout(
            "r", MemoryBroker(5, 5), Clock(), Limits(presenceBatchAbove=10), self.metrics
        )

    def member(self, nick: str, frontEnd: RecordingFrontEnd) -> tuple[RecordingMember, Session]:
        member = RecordingMember(frontEnd=frontEnd)
        return member, Session(member, nick, TokenBucket(1, 1, 0))

    def live(self, nick: str, frontEnd: RecordingFrontEnd) -> tuple[RecordingMember, Session]:
        member, session = self.member(nick, frontEnd)
        self.fanout.startJoining(session, Joining(Join(room="r"), nick))
        self.fanout.wentLive(session)
        return member, session

    def test_states(self) -> None:
        """A member is joining (its Joining) until it goes live; removing it says where it
        stood; the room's size counts both states."""
        _, session = self.member("ann", RecordingFrontEnd())
        joining = Joining(Join(room="r"), "ann")
        self.assertIsNone(self.fanout.state(session))
        self.fanout.startJoining(session, joining)
        self.assertIs(self.fanout.state(session), joining)
        self.assertEqual(len(self.fanout), 1)
        self.fanout.wentLive(session)
        self.assertIs(self.fanout.state(session), LIVE)
        self.assertEqual(len(self.fanout), 1)
        self.assertIs(self.fanout.remove(session), LIVE)
        self.assertIsNone(self.fanout.remove(session))
        self.assertEqual(len(self.fanout), 0)

    def test_joiningMembersKeepTheEvents(self) -> None:
        """While a member joins, the room's events go to its backlog, in order, encoded
        once with the live members' copy."""
        ann, _ = self.live("ann", RecordingFrontEnd())
        _, session = self.member("bob", RecordingFrontEnd())
        joining = Joining(Join(room="r"), "bob")
        self.fanout.startJoining(session, joining)
        self.fanout.deliver(message(1))
        self.fanout.deliver(message(2))
        self.assertEqual([o.event for o in joining.backlog], [message(1), message(2)])
        self.assertEqual([e["offset"] for e in ann.take()], [1, 2])
        self.assertEqual(joining.backlog[0].payload, ann.framed[0][1])

    def test_oneFramingPerFrontEnd(self) -> None:
        """An event is framed once by each front end with live members here, whatever their
        number, and every member gets it; deliveries count every live member."""
        web, sse = RecordingFrontEnd(), RecordingFrontEnd()
        members = [self.live(f"w{i}", web)[0] for i in range(3)]
        members += [self.live(f"s{i}", sse)[0] for i in range(2)]
        before = self.metrics.messagesOut._value.get()
        self.fanout.deliver(message(1))
        self.assertEqual((web.framings, sse.framings), (1, 1))
        self.assertEqual([len(m.take()) for m in members], [1] * 5)
        self.assertIs(members[0].framed[0], members[2].framed[0])
        self.assertEqual(self.metrics.messagesOut._value.get() - before, 5)

    def test_frontEndWithoutMembersFramesNothing(self) -> None:
        """Once a front end's last member here left, the room's events are not framed for
        it any more."""
        web, sse = RecordingFrontEnd(), RecordingFrontEnd()
        self.live("w", web)
        _, gone = self.live("s", sse)
        self.fanout.remove(gone)
        self.fanout.deliver(message(1))
        self.assertEqual((web.framings, sse.framings), (1, 0))

    def test_nickCount(self) -> None:
        """The local count is of distinct nicks, joining members included."""
        frontEnd = RecordingFrontEnd()
        self.live("ann", frontEnd)
        self.live("ann", frontEnd)
        _, session = self.member("bob", frontEnd)
        self.fanout.startJoining(session, Joining(Join(room="r"), "bob"))
        self.assertEqual(self.fanout.nickCount(), 2)


class CountingBroker:
    """The broker calls a PresenceBatching makes: the room's count, or a failure."""

    def __init__(self, count: int | None) -> None:
        self.count = count
        self.asked: list[tuple[str, int | None]] = []

    def members(self, room: str, cap: int | None) -> Deferred[Any]:
        self.asked.append((room, cap))
        if self.count is None:
            return fail(RuntimeError("redis is down"))
        return succeed(((), self.count))


class PresenceBatchingTests(SynchronousTestCase):
    def batching(self, count: int | None) -> PresenceBatching:
        self.clock = Clock()
        self.broker = CountingBroker(count)
        self.sent: list[PresenceBatch] = []
        return PresenceBatching(
            "r",
            self.clock,
            self.broker,
            2.0,
            5,
            self.sent.append,
            lambda: 42,  # type: ignore[arg-type]
        )

    def test_batchAfterTheInterval(self) -> None:
        """The first event of a batch schedules it; after the interval the batch goes out
        with the broker's count of the room."""
        batching = self.batching(7)
        batching.add(Presence(room="r", event="join", nick="ann"))
        batching.add(Presence(room="r", event="leave", nick="bob"))
        self.assertFalse(batching.idle())
        self.clock.advance(1.9)
        self.assertEqual(self.sent, [])
        self.clock.advance(0.1)
        self.assertEqual(
            self.sent,
            [PresenceBatch(room="r", count=7, joined=("ann",), left=("bob",), truncated=False)],
        )
        self.assertEqual(self.broker.asked, [("r", 0)])
        self.assertTrue(batching.idle())

    def test_countHereWhenTheBrokerFails(self) -> None:
        """When the broker cannot count the room, the local count stands in."""
        batching = self.batching(None)
        batching.add(Presence(room="r", event="join", nick="ann"))
        self.clock.advance(2.0)
        self.assertEqual([b.count for b in self.sent], [42])
        self.assertEqual(len(self.flushLoggedErrors()), 0)

    def test_cancel(self) -> None:
        """A cancelled batching sends nothing and leaves no DelayedCall behind."""
        batching = self.batching(1)
        batching.add(Presence(room="r", event="join", nick="ann"))
        batching.cancel()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(5)
        self.assertEqual(self.sent, [])
