"""
Tests for L{portshare.broker.rediscore}: the Redis broker's sans-IO parts (parsing,
the replay rule, backoff, and the per-room delivery state), without Redis.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from portshare.broker.rediscore import (
    CATCHING_UP,
    LIVE,
    LOST,
    Backoff,
    Published,
    RoomFeed,
    historyOf,
    membersOf,
    messageBody,
    parseEntries,
    parsePayload,
    replayOf,
    roomsOf,
)
from portshare.chat import RoomLog
from portshare.wire import Message, Presence


class ParsingTests(SynchronousTestCase):
    """What Redis returns becomes messages, presence, replays and rows."""

    def test_entries(self) -> None:
        """XRANGE entries with IDs <offset>-0 become messages with those offsets."""
        raw = [
            ["7-0", ["n", "ann", "t", "hi | there\n", "ts", "1700000000000"]],
            [b"8-0", [b"n", b"b", b"t", b"", b"ts", b"5"]],
        ]
        self.assertEqual(
            parseEntries("r", raw),
            (
                Message(room="r", offset=7, ts=1700000000000, nick="ann", text="hi | there\n"),
                Message(room="r", offset=8, ts=5, nick="b", text=""),
            ),
        )
        with self.assertRaises(ValueError):
            parseEntries("r", [["9-0", ["n", "x"]]])

    def test_payloadMessage(self) -> None:
        """A published message carries its epoch; any nick and text survive the trip."""
        nick, text = "ann|x", 'say "|" \u00e9\U0001f600\n'
        payload = f"m|e1|12|99|{messageBody(nick, text)}"
        self.assertEqual(
            parsePayload("r", payload),
            Published("e1", Message(room="r", offset=12, ts=99, nick=nick, text=text)),
        )

    def test_payloadPresence(self) -> None:
        """Presence payloads become presence events; a nick may contain the separator."""
        self.assertEqual(
            parsePayload("r", b"p|join|a|b"), Presence(room="r", event="join", nick="a|b")
        )
        self.assertEqual(
            parsePayload("r", "p|leave|z"), Presence(room="r", event="leave", nick="z")
        )

    def test_badPayloads(self) -> None:
        """Anything else is refused."""
        for payload in ("", "x|y", "m|e|notanumber|1|[]", "m|e|1|1|{}", "p|wave|ann", "p|join|"):
            with self.assertRaises(ValueError, msg=payload):
                parsePayload("r", payload)

    def test_rowsAndMembers(self) -> None:
        """ROOMS rows are sorted by room; MEMBERS gives (nicks, count)."""
        self.assertEqual(roomsOf(["b", 2, 1, "a", 0, 3]), [("a", 0, 3), ("b", 2, 1)])
        self.assertEqual(membersOf([3, ["a", "b"]]), (("a", "b"), 3))
        self.assertEqual(historyOf("r", [None, []]), (None, ()))


class ReplayRuleTests(SynchronousTestCase):
    """replayOf follows RoomLog.replay exactly, for every since and epoch."""

    def test_sameAsRoomLog(self) -> None:
        """
        For a log of n messages keeping h, what the SNAPSHOT script reads (the held window
        after since, or all held on an epoch mismatch or since beyond last) gives the same
        Replay as RoomLog.
        """
        for history in (1, 3, 5):
            for n in range(0, 8):
                log = RoomLog("r", "e", history)
                for i in range(n):
                    log.append("ann", f"m{i + 1}", i)
                held = log.after(0)
                for since in (None, 0, 1, 2, n - 1, n, n + 1, n + 5):
                    if since is not None and since < 0:
                        continue
                    for epoch in (None, "e", "other"):
                        start = 1
                        if since is not None and not (
                            (epoch is not None and epoch != "e") or since > n
                        ):
                            start = since + 1
                        start = max(start, n - history + 1)
                        window = [] if since is None else [m for m in held if m.offset >= start]
                        raw = [
                            "e",
                            n,
                            [
                                [f"{m.offset}-0", ["n", m.nick, "t", m.text, "ts", str(m.ts)]]
                                for m in window
                            ],
                        ]
                        self.assertEqual(
                            replayOf("r", since, epoch, raw),
                            log.replay(since, epoch),
                            (history, n, since, epoch),
                        )


class BackoffTests(SynchronousTestCase):
    """Reconnection delays grow exponentially up to a maximum, with bounded jitter."""

    def test_grows(self) -> None:
        """Without jitter: 0.1, 0.2, 0.4, ... capped at the maximum; reset starts over."""
        backoff = Backoff(0.1, 1.0, jitter=0)
        self.assertEqual(
            [round(backoff.next(), 3) for _ in range(6)], [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
        )
        backoff.reset()
        self.assertEqual(backoff.next(), 0.1)

    def test_jitter(self) -> None:
        """Jitter spreads each delay by at most the given fraction, never past the maximum."""
        low = Backoff(1.0, 10.0, jitter=0.2, random=lambda: 0.0)
        high = Backoff(1.0, 10.0, jitter=0.2, random=lambda: 1.0)
        self.assertAlmostEqual(low.next(), 0.8)
        self.assertAlmostEqual(high.next(), 1.2)
        capped = Backoff(10.0, 10.0, jitter=0.2, random=lambda: 1.0)
        self.assertEqual(capped.next(), 10.0)


def published(offset: int, epoch: str = "e") -> Published:
    return Published(epoch, Message(room="r", offset=offset, ts=0, nick="n", text=f"m{offset}"))


def offsets(events: list[Message | Presence]) -> list[int | str]:
    return [e.offset if isinstance(e, Message) else e.event for e in events]


class RoomFeedTests(SynchronousTestCase):
    """One room's delivery state: every offset once and in order, bounded buffers."""

    def test_bufferedUntilStarted(self) -> None:
        """Events that arrive before the room's last offset is known wait for it."""
        feed = RoomFeed("r", 10)
        self.assertEqual(feed.received(published(5)).deliver, [])
        self.assertEqual(feed.received(published(6)).deliver, [])
        step = feed.started("e", 5)
        self.assertEqual((offsets(step.deliver), step.catchUp, feed.state), ([6], False, LIVE))

    def test_liveInOrderOnce(self) -> None:
        """The next offset is delivered; an old one (a duplicate) is not."""
        feed = RoomFeed("r", 10)
        feed.started("e", 0)
        self.assertEqual(offsets(feed.received(published(1)).deliver), [1])
        self.assertEqual(offsets(feed.received(published(1)).deliver), [])
        presence = Presence(room="r", event="join", nick="x")
        self.assertEqual(feed.received(presence).deliver, [presence])
        self.assertEqual(feed.delivered, 1)

    def test_gapCatchesUp(self) -> None:
        """
        A gap switches to catching up: live events are buffered, the read fills the gap,
        then the buffer goes out without what the read already delivered.
        """
        feed = RoomFeed("r", 10)
        feed.started("e", 0)
        step = feed.received(published(3))
        self.assertEqual((step.deliver, step.catchUp, feed.state), ([], True, CATCHING_UP))
        join = Presence(room="r", event="join", nick="x")
        feed.received(published(4))
        feed.received(join)
        stored = [published(i).message for i in (1, 2, 3)]
        step = feed.caughtUp("e", 3, stored)  # the read saw 1..3; 4 came live after
        self.assertEqual(offsets(step.deliver), [1, 2, 3, 4, "join"])
        self.assertEqual((step.catchUp, feed.state, feed.delivered), (False, LIVE, 4))

    def test_batches(self) -> None:
        """A read that stops short of the last offset asks for another."""
        feed = RoomFeed("r", 10)
        feed.resubscribed()
        step = feed.caughtUp("e", 5, [published(1).message, published(2).message])
        self.assertEqual((offsets(step.deliver), step.catchUp), ([1, 2], True))
        step = feed.caughtUp("e", 5, [published(i).message for i in (3, 4, 5)])
        self.assertEqual(
            (offsets(step.deliver), step.catchUp, feed.state), ([3, 4, 5], False, LIVE)
        )

    def test_trimmedGapIsAccepted(self) -> None:
        """Offsets no longer held are skipped: the read says what there is."""
        feed = RoomFeed("r", 10)
        feed.started("e", 2)
        feed.received(published(9))
        step = feed.caughtUp("e", 9, [published(8).message, published(9).message])
        self.assertEqual((offsets(step.deliver), feed.state), ([8, 9], LIVE))

    def test_bufferIsBounded(self) -> None:
        """
        Past the limit, live events are dropped while catching up, and another read follows
        (messages are in the stream): memory stays bounded, nothing is lost.
        """
        feed = RoomFeed("r", 2)
        feed.resubscribed()
        for offset in range(1, 6):
            feed.received(published(offset))
        self.assertEqual(feed.dropped, 3)
        step = feed.caughtUp("e", 2, [published(1).message, published(2).message])
        self.assertEqual((offsets(step.deliver), step.catchUp), ([1, 2], True))
        step = feed.caughtUp("e", 5, [published(i).message for i in (3, 4, 5)])
        self.assertEqual(
            (offsets(step.deliver), step.catchUp, feed.state), ([3, 4, 5], False, LIVE)
        )

    def test_epochChange(self) -> None:
        """
        A message of another epoch (the history restarted) makes the feed read the stream
        again, from offset 1 of the new epoch.
        """
        feed = RoomFeed("r", 10)
        feed.started("old", 7)
        step = feed.received(published(1, "new"))
        self.assertEqual((step.deliver, step.catchUp), ([], True))
        step = feed.caughtUp("new", 1, [published(1, "new").message])
        self.assertEqual((offsets(step.deliver), feed.epoch, feed.epochChanges), ([1], "new", 1))

    def test_staleEpochIsNotDelivered(self) -> None:
        """A buffered event older than what the read saw is dropped, not delivered twice."""
        feed = RoomFeed("r", 10)
        feed.resubscribed()
        feed.received(published(3, "old"))
        step = feed.caughtUp("new", 1, [published(1, "new").message])
        self.assertEqual((offsets(step.deliver), step.catchUp), ([1], True))
        step = feed.caughtUp("new", 1, [])
        self.assertEqual((step.deliver, step.catchUp, feed.state), ([], False, LIVE))

    def test_lostAndBack(self) -> None:
        """A lost subscription ignores events; once back it catches up after delivered."""
        feed = RoomFeed("r", 10)
        feed.started("e", 4)
        feed.lost()
        self.assertEqual(feed.state, LOST)
        self.assertEqual(feed.received(published(5)).deliver, [])
        step = feed.resubscribed()
        self.assertTrue(step.catchUp)
        step = feed.caughtUp("e", 6, [published(5).message, published(6).message])
        self.assertEqual((offsets(step.deliver), feed.delivered), ([5, 6], 6))

    def test_historyGone(self) -> None:
        """A room whose history vanished (no epoch) starts again from the next epoch."""
        feed = RoomFeed("r", 10)
        feed.started("e", 4)
        feed.resubscribed()
        step = feed.caughtUp(None, 0, [])
        self.assertEqual((feed.epoch, feed.delivered, feed.state), (None, 0, LIVE))
        step = feed.received(published(1, "e2"))
        self.assertTrue(step.catchUp)
