"""
Tests for L{portshare.broker.feed}: one room's delivery state, without Redis.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from portshare.broker.codec import Published
from portshare.broker.feed import CATCHING_UP, LIVE, LOST, RoomFeed
from portshare.wire import Message, Presence


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

    def test_batchNextOffsets(self) -> None:
        """A live feed's next offsets, as one batch, are delivered at once, in order."""
        feed = RoomFeed("r", 10)
        feed.started("e", 2)
        batch = [published(i).message for i in (3, 4, 5)]
        step = feed.receivedBatch("e", batch)
        self.assertEqual(
            (offsets(step.deliver), step.catchUp, feed.delivered), ([3, 4, 5], False, 5)
        )

    def test_batchAfterAGap(self) -> None:
        """A batch past a gap is held and the stream read, as its messages one by one would."""
        feed = RoomFeed("r", 10)
        feed.started("e", 2)
        step = feed.receivedBatch("e", [published(i).message for i in (5, 6)])
        self.assertEqual((step.deliver, step.catchUp, feed.state), ([], True, CATCHING_UP))
        caught = feed.caughtUp("e", 4, [published(i).message for i in (3, 4)])
        self.assertEqual(offsets(caught.deliver), [3, 4, 5, 6])

    def test_batchOfAnotherEpoch(self) -> None:
        """A batch under another epoch is not delivered: the stream says what happened."""
        feed = RoomFeed("r", 10)
        feed.started("e", 2)
        step = feed.receivedBatch("f", [published(3, "f").message])
        self.assertEqual((step.deliver, step.catchUp), ([], True))
