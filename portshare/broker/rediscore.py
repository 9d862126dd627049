"""
The Redis broker's logic, sans I/O: the parsing of what Redis returns, the reconnect backoff
and the per-room delivery state.

Nothing here touches a socket, reads a clock or returns a Deferred; L{portshare.broker.redis}
is the thin Twisted layer that feeds it.

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
from typing import Any

import orjson

from portshare.chat import Replay
from portshare.wire import Message, Presence

# -- what Redis returns -----------------------------------------------------------------------


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def offsetOfId(entryId: Any) -> int:
    """The offset a stream entry ID (C{"42-0"}) stands for."""
    return int(_text(entryId).split("-", 1)[0])


def parseEntries(room: str, raw: Any) -> tuple[Message, ...]:
    """
    Turn an C{XRANGE} reply (C{[[id, [field, value, ...]], ...]}) into messages.

    @raise ValueError: for an entry that is not one of ours.
    """
    messages = []
    for entry in raw or ():
        entryId, flat = entry
        fields = {_text(flat[i]): flat[i + 1] for i in range(0, len(flat) - 1, 2)}
        try:
            messages.append(
                Message(
                    room=room,
                    offset=offsetOfId(entryId),
                    ts=int(_text(fields["ts"])),
                    nick=_text(fields["n"]),
                    text=_text(fields["t"]),
                )
            )
        except (KeyError, ValueError) as e:
            raise ValueError(f"stream entry {entryId!r} of {room} is not a message: {e}") from e
    return tuple(messages)


def messageBody(nick: str, text: str) -> str:
    """The part of a published message's payload that the publisher encodes."""
    return orjson.dumps([nick, text]).decode("utf-8")


@dataclass(frozen=True, slots=True)
class Published:
    """A message as it arrives on a room's channel: the message and its epoch."""

    epoch: str
    message: Message


def parsePayload(room: str, payload: Any) -> Published | Presence:
    """
    Parse what a room's channel carries: C{m|epoch|offset|ts|["nick","text"]} or
    C{p|join|nick} / C{p|leave|nick}.

    @raise ValueError: for anything else.
    """
    text = _text(payload)
    kind = text[:2]
    if kind == "m|":
        try:
            _, epoch, offset, ts, body = text.split("|", 4)
            nick, said = orjson.loads(body)
            message = Message(room=room, offset=int(offset), ts=int(ts), nick=nick, text=said)
        except (ValueError, TypeError) as e:
            raise ValueError(f"bad message payload on {room}: {text[:80]!r}") from e
        return Published(epoch, message)
    if kind == "p|":
        _, event, nick = ([*text.split("|", 2), "", ""])[:3]
        if event in ("join", "leave") and nick:
            return Presence(room=room, event=event, nick=nick)  # type: ignore[arg-type]
    raise ValueError(f"bad payload on {room}: {text[:80]!r}")


def replayOf(room: str, since: int | None, clientEpoch: str | None, raw: Sequence[Any]) -> Replay:
    """
    The L{Replay} for a join, from the L{SNAPSHOT} script's reply; the same rule as
    L{portshare.chat.RoomLog.replay}.
    """
    epoch, last = _text(raw[0]), int(raw[1])
    messages = parseEntries(room, raw[2])
    if since is None:
        return Replay(epoch, last, (), True)
    if (clientEpoch is not None and clientEpoch != epoch) or since > last:
        return Replay(epoch, last, messages, False)
    first = messages[0].offset if messages else last + 1
    return Replay(epoch, last, messages, since + 1 >= first)


def historyOf(room: str, raw: Sequence[Any]) -> tuple[str | None, tuple[Message, ...]]:
    """C{(epoch, messages)} from the L{HISTORY} script's reply."""
    if raw[0] is None:
        return None, ()
    return _text(raw[0]), parseEntries(room, raw[1])


def membersOf(raw: Sequence[Any]) -> tuple[tuple[str, ...], int]:
    """C{(nicks, count)} from the L{MEMBERS} script's reply."""
    return tuple(_text(n) for n in raw[1] or ()), int(raw[0])


def roomsOf(raw: Sequence[Any]) -> list[tuple[str, int, int]]:
    """C{(room, offset, members)} rows from the L{ROOMS} script's reply, sorted by room."""
    rows = [(_text(raw[i]), int(raw[i + 1]), int(raw[i + 2])) for i in range(0, len(raw) - 2, 3)]
    return sorted(rows)


# -- reconnecting -----------------------------------------------------------------------------


class Backoff:
    """
    Exponential backoff between reconnection attempts: C{initial}, doubled after each
    failure up to C{maximum}, each delay spread by up to C{jitter} (a fraction) with the
    C{random} the caller injects; L{reset} once connected.
    """

    def __init__(
        self,
        initial: float = 0.1,
        maximum: float = 5.0,
        jitter: float = 0.2,
        random: Any = None,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self._random = random or (lambda: 0.5)
        self.attempts = 0

    def next(self) -> float:
        """The delay before the next attempt."""
        base = min(self.maximum, self.initial * (2**self.attempts))
        self.attempts += 1
        spread = 1 + self.jitter * (2 * self._random() - 1)
        return max(0.0, min(self.maximum, base * spread))

    def reset(self) -> None:
        self.attempts = 0


# -- delivery: one room's feed ----------------------------------------------------------------

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
