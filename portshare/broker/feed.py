"""
The delivery state of one subscribed room: L{RoomFeed}, a sans-IO state machine.

The Redis broker feeds it what arrives on a room's channel and what it reads from the room's
stream; it answers with a L{Step} (what to deliver to the listener, whether to read the
stream).  It touches no socket, reads no clock and returns no Deferred, so every ordering of
events can be tested without Redis.

Theory of operation:
 - Each instance subscribes once per room.  L{RoomFeed} is the per-room delivery state: the
   epoch and the last offset handed to the listener.  A live message that is not the next
   offset (a reconnect, a lost pub/sub message) switches the feed to catching up: the missing
   offsets are read from the stream (L{portshare.broker.scripts.CATCH_UP}), live messages are
   buffered meanwhile (at most C{limit} of them; past that they are dropped and read from the
   stream again), and the feed hands each offset to the listener exactly once and in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from portshare.broker.codec import Published
from portshare.wire import Message, Presence

#: the states of a feed (L{RoomFeed.state})
STARTING = "starting"
LIVE = "live"
CATCHING_UP = "catching-up"
LOST = "lost"


@dataclass
class Step:
    """
    What a L{RoomFeed} wants done: C{deliver} these events to the listener, in order; then,
    when C{catchUp}, read the stream after L{RoomFeed.delivered}.
    """

    deliver: list[Message | Presence] = field(default_factory=list)
    catchUp: bool = False


class RoomFeed:
    """
    The delivery state of one subscribed room on one instance.

    @ivar epoch: the epoch of the offsets delivered (C{None} before the first).
    @ivar delivered: the last offset handed to the listener.
    @ivar state: L{STARTING} (subscribed, waiting for the room's last offset), L{LIVE},
        L{CATCHING_UP} (reading the stream; live events are buffered) or L{LOST} (the
        subscription is gone until the connection is back).
    @ivar epochChanges: how many times the room's history restarted under this feed.
    """

    def __init__(self, room: str, limit: int) -> None:
        self.room = room
        self.limit = limit
        self.epoch: str | None = None
        self.delivered = 0
        self.state = STARTING
        self.epochChanges = 0
        self.dropped = 0
        self._pending: list[Published | Presence] = []
        self._overflowed = False

    def received(self, event: Published | Presence) -> Step:
        """An event arrived on the room's channel."""
        if self.state != LIVE:
            if self.state == LOST:
                return Step()
            if len(self._pending) >= self.limit:
                self._overflowed = True  # messages are read from the stream again
                self.dropped += 1
            else:
                self._pending.append(event)
            return Step()
        step = Step()
        self._live(event, step)
        return step

    def receivedBatch(self, epoch: str, messages: Sequence[Message]) -> Step:
        """
        Consecutive messages arrived as one batch on the room's channel: the same as each
        L{received} in turn, without the per-message work when they are simply the next
        offsets of a live feed.
        """
        if (
            self.state == LIVE
            and epoch == self.epoch
            and messages
            and messages[0].offset == self.delivered + 1
        ):
            self.delivered = messages[-1].offset
            return Step(list(messages))
        step = Step()
        for message in messages:
            more = self.received(Published(epoch, message))
            step.deliver.extend(more.deliver)
            step.catchUp = step.catchUp or more.catchUp
        return step

    def _live(self, event: Published | Presence, step: Step) -> None:
        if self.state != LIVE:
            self._pending.append(event)
            return
        if isinstance(event, Presence):
            step.deliver.append(event)
            return
        if event.epoch != self.epoch:
            # the history restarted (or this event is older than what the last read saw):
            # the stream says which; the event itself is in it, or stale
            self.state = CATCHING_UP
            step.catchUp = True
            return
        offset = event.message.offset
        if offset <= self.delivered:
            return
        if offset == self.delivered + 1:
            self.delivered = offset
            step.deliver.append(event.message)
            return
        # a gap: read what is missing from the stream first
        self.state = CATCHING_UP
        self._pending.append(event)
        step.catchUp = True

    def _restart(self, epoch: str | None) -> None:
        if self.epoch is not None:
            self.epochChanges += 1
        self.epoch = epoch
        self.delivered = 0

    def started(self, epoch: str, last: int) -> Step:
        """The subscription is live and the room's last offset was C{last} after it was."""
        self.epoch = epoch
        self.delivered = last
        self.state = LIVE
        return self._flush(Step())

    def lost(self) -> None:
        """The subscription is gone (the connection was lost)."""
        self.state = LOST
        self._pending = []
        self._overflowed = False

    def resubscribed(self) -> Step:
        """The subscription is back: catch up with what was published meanwhile."""
        self.state = CATCHING_UP
        self._pending = []
        self._overflowed = False
        return Step(catchUp=True)

    def caughtUp(self, epoch: str | None, last: int, messages: Sequence[Message]) -> Step:
        """
        The reply of a catch-up read: the room's C{epoch} and C{last} offset, and the held
        messages after L{delivered} (after 0 if the epoch changed), at most a batch of them.
        """
        step = Step()
        if epoch != self.epoch:
            self._restart(epoch)
        for message in messages:
            if message.offset > self.delivered:
                self.delivered = message.offset
                step.deliver.append(message)
        if messages and self.delivered < last:
            step.catchUp = True  # a batch: read on
            return step
        if self._overflowed:
            self._overflowed = False
            self._pending = [e for e in self._pending if isinstance(e, Presence)]
            step.catchUp = True
            return step
        self.state = LIVE
        return self._flush(step)

    def _flush(self, step: Step) -> Step:
        pending, self._pending = self._pending, []
        for i, event in enumerate(pending):
            self._live(event, step)
            if self.state != LIVE:
                self._pending.extend(pending[i + 1 :])
                break
        return step
