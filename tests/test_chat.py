"""
Tests for L{portshare.chat}, the sans-IO chat core: every time is an explicit C{now}.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from portshare.chat import (
    PendingPresence,
    PresenceBook,
    Replay,
    RoomInfo,
    RoomLog,
    Session,
    TokenBucket,
)
from portshare.wire import Message, Presence, PresenceBatch


def filled(count: int, history: int = 3, epoch: str = "e1") -> RoomLog:
    """A log of room C{r} holding the last C{history} of C{count} messages C{m1}, C{m2}..."""
    log = RoomLog("r", epoch, history)
    for i in range(1, count + 1):
        log.append(f"n{i}", f"m{i}", 1000 + i)
    return log


def msg(offset: int) -> Message:
    """The message that L{filled} gives offset C{offset}."""
    return Message(room="r", offset=offset, ts=1000 + offset, nick=f"n{offset}", text=f"m{offset}")


def offsets(messages: tuple[Message, ...]) -> list[int]:
    return [m.offset for m in messages]


class RoomLogTests(SynchronousTestCase):
    """RoomLog numbers a room's messages and holds a bounded history of them."""

    def test_empty(self) -> None:
        """A new log has last offset 0, would hold offset 1 first, and holds nothing."""
        log = RoomLog("r", "e1", 10)
        self.assertEqual((log.room, log.epoch, log.last, log.first), ("r", "e1", 0, 1))
        self.assertEqual(log.after(0), ())

    def test_offsetsStartAtOne(self) -> None:
        """The first message gets offset 1 and carries the room, time, nick and text given."""
        log = RoomLog("lobby", "e1", 10)
        message = log.append("alice", "hi", 1234)
        self.assertEqual(message, Message(room="lobby", offset=1, ts=1234, nick="alice", text="hi"))
        self.assertEqual(log.last, 1)

    def test_offsetsIncreaseByOne(self) -> None:
        """Each message gets the offset after the previous one."""
        log = RoomLog("r", "e1", 10)
        self.assertEqual([log.append("n", "t", 0).offset for _ in range(4)], [1, 2, 3, 4])
        self.assertEqual(log.last, 4)

    def test_startFromLast(self) -> None:
        """A log created with a last offset continues after it and holds nothing yet."""
        log = RoomLog("r", "e1", 10, last=41)
        self.assertEqual((log.first, log.after(0)), (42, ()))
        self.assertEqual(log.append("n", "t", 0).offset, 42)
        self.assertEqual(log.first, 42)

    def test_bounded(self) -> None:
        """Only the newest C{history} messages are held; offsets keep counting."""
        log = filled(5, history=3)
        self.assertEqual(log.after(0), (msg(3), msg(4), msg(5)))
        self.assertEqual((log.first, log.last), (3, 5))

    def test_afterInsideRange(self) -> None:
        """after(since) gives the held messages with offsets greater than since, oldest first."""
        log = filled(5, history=3)
        self.assertEqual(log.after(3), (msg(4), msg(5)))
        self.assertEqual(log.after(4), (msg(5),))

    def test_afterFirstBoundary(self) -> None:
        """after(first - 1) gives every held message."""
        self.assertEqual(offsets(filled(5, history=3).after(2)), [3, 4, 5])

    def test_afterBelowRange(self) -> None:
        """A since older than the held range gives every held message."""
        log = filled(5, history=3)
        self.assertEqual(offsets(log.after(1)), [3, 4, 5])
        self.assertEqual(offsets(log.after(-7)), [3, 4, 5])

    def test_afterLast(self) -> None:
        """after(last) gives nothing."""
        self.assertEqual(filled(5, history=3).after(5), ())

    def test_afterBeyondRange(self) -> None:
        """A since beyond the last offset gives nothing."""
        self.assertEqual(filled(5, history=3).after(99), ())

    def test_afterLimit(self) -> None:
        """after(since, limit) gives at most limit messages, the oldest ones after since."""
        log = filled(10, history=10)
        self.assertEqual(offsets(log.after(0, 2)), [1, 2])
        self.assertEqual(offsets(log.after(4, 3)), [5, 6, 7])
        self.assertEqual(offsets(log.after(8, 5)), [9, 10])
        self.assertEqual(log.after(0, 0), ())

    def test_afterLimitBelowRange(self) -> None:
        """With since older than the held range, the limit counts from the oldest held."""
        self.assertEqual(offsets(filled(10, history=4).after(1, 2)), [7, 8])


class RoomLogReplayTests(SynchronousTestCase):
    """RoomLog.replay tells a resuming client what it missed and whether all of it is held."""

    def test_noSince(self) -> None:
        """Without since, nothing is replayed and nothing counts as missing."""
        self.assertEqual(filled(5).replay(None), Replay("e1", 5, (), True))

    def test_noSinceOtherEpoch(self) -> None:
        """Without since, an epoch alone asks for nothing and reports nothing missing."""
        self.assertEqual(filled(5).replay(None, "e0"), Replay("e1", 5, (), True))

    def test_sinceInsideRange(self) -> None:
        """A since inside the held range gets the messages after it, recovered."""
        self.assertEqual(filled(5).replay(3), Replay("e1", 5, (msg(4), msg(5)), True))

    def test_sinceJustBeforeFirst(self) -> None:
        """A since of first - 1 gets every held message and misses nothing."""
        self.assertEqual(filled(5).replay(2), Replay("e1", 5, (msg(3), msg(4), msg(5)), True))

    def test_sinceOlderThanHeld(self) -> None:
        """A since older than the held range gets everything held, not recovered."""
        self.assertEqual(filled(5).replay(1), Replay("e1", 5, (msg(3), msg(4), msg(5)), False))
        self.assertEqual(filled(5).replay(0), Replay("e1", 5, (msg(3), msg(4), msg(5)), False))

    def test_sinceEqualsLast(self) -> None:
        """A since equal to the last offset gets nothing and missed nothing."""
        self.assertEqual(filled(5).replay(5), Replay("e1", 5, (), True))

    def test_sinceZeroEmpty(self) -> None:
        """A since of 0 on an empty room misses nothing."""
        self.assertEqual(RoomLog("r", "e1", 3).replay(0), Replay("e1", 0, (), True))

    def test_sinceBeyondLast(self) -> None:
        """A since past the last offset means history was lost: everything held, not recovered."""
        self.assertEqual(filled(5).replay(6), Replay("e1", 5, (msg(3), msg(4), msg(5)), False))

    def test_sinceBeyondLastEmpty(self) -> None:
        """A since past the last offset of an empty room is not recovered."""
        self.assertEqual(RoomLog("r", "e2", 3).replay(7), Replay("e2", 0, (), False))

    def test_sameEpoch(self) -> None:
        """Naming the current epoch resumes normally."""
        self.assertEqual(filled(5).replay(4, "e1"), Replay("e1", 5, (msg(5),), True))

    def test_epochMismatch(self) -> None:
        """A since from another epoch gets everything held, not recovered."""
        self.assertEqual(
            filled(5).replay(4, "e0"), Replay("e1", 5, (msg(3), msg(4), msg(5)), False)
        )


class RoomInfoTests(SynchronousTestCase):
    """RoomInfo is one row of the room listing."""

    def test_toDict(self) -> None:
        """toDict gives the API's room, members and offset fields."""
        self.assertEqual(
            RoomInfo(room="lobby", members=3, offset=17).toDict(),
            {"room": "lobby", "members": 3, "offset": 17},
        )


def join(nick: str) -> Presence:
    return Presence(room="r", event="join", nick=nick)


def leave(nick: str) -> Presence:
    return Presence(room="r", event="leave", nick=nick)


class PendingPresenceTests(SynchronousTestCase):
    """PendingPresence keeps a room's presence net per nick and makes one batch of it."""

    def setUp(self) -> None:
        self.pending = PendingPresence("r", cap=3)

    def test_emptyTakesNothing(self) -> None:
        """With no event since the last batch there is no batch to send."""
        self.assertEqual(len(self.pending), 0)
        self.assertIsNone(self.pending.take(7))

    def test_joinsAndLeaves(self) -> None:
        """Joins and leaves land in their lists in arrival order, with the count given."""
        for event in (join("bob"), leave("alice"), join("carol")):
            self.pending.add(event)
        self.assertEqual(len(self.pending), 3)
        self.assertEqual(
            self.pending.take(12),
            PresenceBatch(
                room="r", count=12, joined=("bob", "carol"), left=("alice",), truncated=False
            ),
        )

    def test_takeEmpties(self) -> None:
        """After take, the next batch starts empty."""
        self.pending.add(join("bob"))
        self.pending.take(1)
        self.assertEqual(len(self.pending), 0)
        self.assertIsNone(self.pending.take(1))

    def test_joinThenLeaveIsLeft(self) -> None:
        """A nick that joined and then left within the window is only in left."""
        self.pending.add(join("bob"))
        self.pending.add(leave("bob"))
        batch = self.pending.take(0)
        assert batch is not None
        self.assertEqual((batch.joined, batch.left), ((), ("bob",)))

    def test_leaveThenRejoinIsJoined(self) -> None:
        """A nick that left and joined again within the window is only in joined."""
        self.pending.add(leave("bob"))
        self.pending.add(join("bob"))
        batch = self.pending.take(1)
        assert batch is not None
        self.assertEqual((batch.joined, batch.left), (("bob",), ()))

    def test_repeatedEventCountedOnce(self) -> None:
        """A nick is listed once however many times its last event repeats, at its last place."""
        for event in (join("bob"), join("carol"), leave("bob"), join("bob")):
            self.pending.add(event)
        batch = self.pending.take(2)
        assert batch is not None
        self.assertEqual((batch.joined, batch.left), (("carol", "bob"), ()))

    def test_capped(self) -> None:
        """Each list holds at most cap nicks (the first ones), and truncated says one was cut."""
        for i in range(5):
            self.pending.add(join(f"j{i}"))
        self.pending.add(leave("x"))
        self.assertEqual(
            self.pending.take(99),
            PresenceBatch(
                room="r", count=99, joined=("j0", "j1", "j2"), left=("x",), truncated=True
            ),
        )

    def test_capReachedNotTruncated(self) -> None:
        """Lists of exactly cap nicks are whole: truncated stays false."""
        for i in range(3):
            self.pending.add(leave(f"l{i}"))
        batch = self.pending.take(0)
        assert batch is not None
        self.assertEqual((batch.left, batch.truncated), (("l0", "l1", "l2"), False))


class PresenceBookTests(SynchronousTestCase):
    """PresenceBook counts nicks per room, repeated joins of one nick as one member."""

    def setUp(self) -> None:
        self.book = PresenceBook()

    @given(
        st.lists(
            st.tuples(st.booleans(), st.sampled_from(["a", "b"]), st.sampled_from("pqrstu")),
            max_size=60,
        ),
        st.integers(min_value=0, max_value=7),
    )
    @settings(max_examples=200)
    def test_membersAfterAnyJoinsAndLeaves(
        self, steps: list[tuple[bool, str, str]], cap: int
    ) -> None:
        """After any sequence of joins and leaves, members() lists the first C{cap} of the
        sorted distinct nicks still in the room, and counts them all."""
        book = PresenceBook()
        model: dict[str, Counter[str]] = {"a": Counter(), "b": Counter()}
        for entering, room, nick in steps:
            if entering:
                book.enter(room, nick)
                model[room][nick] += 1
            else:
                book.exit(room, nick)
                if model[room][nick] > 0:
                    model[room][nick] -= 1
        for room, counts in model.items():
            present = sorted(n for n, c in counts.items() if c > 0)
            self.assertEqual(book.members(room, cap), (tuple(present[:cap]), len(present)))
            self.assertEqual(book.members(room), (tuple(present), len(present)))

    def test_firstEnterAnnounced(self) -> None:
        """The first join of a nick is new to the room."""
        self.assertIs(self.book.enter("r", "alice"), True)
        self.assertEqual(self.book.members("r"), (("alice",), 1))

    def test_sameNickTwiceIsOneMember(self) -> None:
        """A second join of the same nick is not new and does not add a member."""
        self.book.enter("r", "alice")
        self.assertIs(self.book.enter("r", "alice"), False)
        self.assertEqual(self.book.members("r"), (("alice",), 1))
        self.assertEqual(self.book.count("r"), 1)

    def test_leaveOnlyOnLast(self) -> None:
        """A nick joined twice is gone only after its second exit."""
        self.book.enter("r", "alice")
        self.book.enter("r", "alice")
        self.assertIs(self.book.exit("r", "alice"), False)
        self.assertEqual(self.book.members("r"), (("alice",), 1))
        self.assertIs(self.book.exit("r", "alice"), True)
        self.assertEqual(self.book.members("r"), ((), 0))

    def test_exitUnknownNick(self) -> None:
        """The exit of a nick that is not in the room is not a leave and changes nothing."""
        self.book.enter("r", "alice")
        self.assertIs(self.book.exit("r", "bob"), False)
        self.assertEqual(self.book.members("r"), (("alice",), 1))

    def test_exitUnknownRoom(self) -> None:
        """The exit from a room with no members is not a leave."""
        self.assertIs(self.book.exit("nowhere", "alice"), False)
        self.assertEqual(list(self.book.rooms()), [])

    def test_exitTwiceAfterGone(self) -> None:
        """Exits beyond the joins are not leaves, and do not swallow a later join."""
        self.book.enter("r", "alice")
        self.book.enter("r", "bob")
        self.assertIs(self.book.exit("r", "alice"), True)
        self.assertIs(self.book.exit("r", "alice"), False)
        self.assertIs(self.book.enter("r", "alice"), True)
        self.assertEqual(self.book.members("r"), (("alice", "bob"), 2))

    def test_membersSortedAndCapped(self) -> None:
        """members(room, cap) lists at most cap nicks, sorted, with the full count."""
        for nick in ("carol", "alice", "dave", "bob"):
            self.book.enter("r", nick)
        self.assertEqual(self.book.members("r"), (("alice", "bob", "carol", "dave"), 4))
        self.assertEqual(self.book.members("r", 2), (("alice", "bob"), 4))
        self.assertEqual(self.book.members("r", 10), (("alice", "bob", "carol", "dave"), 4))
        self.assertEqual(self.book.members("r", 0), ((), 4))

    def test_roomsSeparate(self) -> None:
        """Members of one room are not members of another."""
        self.book.enter("a", "alice")
        self.book.enter("b", "bob")
        self.book.enter("b", "carol")
        self.assertEqual(
            (self.book.members("a"), self.book.count("b"), self.book.count("c")),
            ((("alice",), 1), 2, 0),
        )
        self.assertIs(self.book.exit("a", "bob"), False)

    def test_rooms(self) -> None:
        """rooms() lists the rooms with members, and forgets a room when its last one leaves."""
        self.book.enter("a", "alice")
        self.book.enter("b", "bob")
        self.assertEqual(sorted(self.book.rooms()), ["a", "b"])
        self.book.exit("a", "alice")
        self.assertEqual(sorted(self.book.rooms()), ["b"])


class TokenBucketTests(SynchronousTestCase):
    """TokenBucket allows a burst, then refills at its rate, reading time only from callers."""

    def test_burst(self) -> None:
        """A full bucket allows exactly burst messages at once."""
        bucket = TokenBucket(rate=1.0, burst=3, now=0.0)
        self.assertEqual([bucket.take(0.0) for _ in range(4)], [True, True, True, False])

    def test_refillAtRate(self) -> None:
        """An empty bucket gains rate tokens per second."""
        bucket = TokenBucket(rate=4.0, burst=2, now=10.0)
        bucket.take(10.0)
        bucket.take(10.0)
        self.assertIs(bucket.take(10.125), False)  # half a token
        self.assertIs(bucket.take(10.25), True)  # one whole token
        self.assertIs(bucket.take(10.25), False)

    def test_refillSeveral(self) -> None:
        """Half a second at rate 4 refills exactly two tokens."""
        bucket = TokenBucket(rate=4.0, burst=5, now=0.0)
        for _ in range(5):
            bucket.take(0.0)
        self.assertEqual([bucket.take(0.5) for _ in range(3)], [True, True, False])

    def test_neverAboveBurst(self) -> None:
        """However long the bucket idles, it holds at most burst tokens."""
        bucket = TokenBucket(rate=100.0, burst=2, now=0.0)
        self.assertEqual([bucket.take(1000.0) for _ in range(3)], [True, True, False])

    def test_rateLimitedTakeSpendsNothing(self) -> None:
        """A refused take does not consume the partial token that has built up."""
        bucket = TokenBucket(rate=2.0, burst=1, now=0.0)
        bucket.take(0.0)
        self.assertIs(bucket.take(0.25), False)
        self.assertIs(bucket.take(0.5), True)

    def test_clockBackwards(self) -> None:
        """A now earlier than the previous one adds no tokens."""
        bucket = TokenBucket(rate=1.0, burst=1, now=100.0)
        bucket.take(100.0)
        self.assertIs(bucket.take(50.0), False)
        self.assertIs(bucket.take(50.5), False)
        self.assertIs(bucket.take(51.0), True)


class SessionTests(SynchronousTestCase):
    """Session tracks one connection's nick, rooms and rate-limit strikes."""

    def test_initial(self) -> None:
        """A new session has its member and nick, no rooms, no strikes, and is open."""
        member = object()
        bucket = TokenBucket(1.0, 1, 0.0)
        session = Session(member, "guest-1", bucket)
        self.assertEqual(
            (session.member, session.nick, session.rooms, session.mute, session.strikes),
            (member, "guest-1", set(), set(), 0),
        )
        self.assertIs(session.bucket, bucket)
        self.assertIs(session.closed, False)

    def test_admitCountsStrikes(self) -> None:
        """Each rate-limited message in a row adds one strike."""
        session = Session(object(), "n", TokenBucket(rate=1.0, burst=2, now=0.0))
        results = [session.admit(0.0) for _ in range(5)]
        self.assertEqual(results, [True, True, False, False, False])
        self.assertEqual(session.strikes, 3)

    def test_admitResetsStrikes(self) -> None:
        """An accepted message resets the strikes to zero."""
        session = Session(object(), "n", TokenBucket(rate=1.0, burst=1, now=0.0))
        session.admit(0.0)
        session.admit(0.0)
        session.admit(0.5)
        self.assertEqual(session.strikes, 2)
        self.assertIs(session.admit(1.0), True)
        self.assertEqual(session.strikes, 0)
        self.assertIs(session.admit(1.0), False)
        self.assertEqual(session.strikes, 1)
