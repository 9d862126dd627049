"""
The chat core, sans I/O: room history with offsets and epochs, presence, per-connection state.

Theory of operation:
 - A room's messages get offsets 1, 2, 3...; C{offset} 0 means "nothing yet".  A L{RoomLog}
   keeps the last C{history} of them.  Its C{epoch} names that sequence of offsets: a new
   epoch means older offsets mean nothing any more (the history was lost), so a client that
   resumes with C{since} from another epoch gets what is held and C{recovered: false}.
 - L{PresenceBook} counts each nick's joins per room, so the same nick from two tabs is one
   member: C{join} is announced on the first, C{leave} on the last.
 - L{PendingPresence} collects a big room's joins and leaves between two C{presence_batch}
   events; for each nick only its last event in the window counts.
 - L{TokenBucket} is the per-connection rate limit; it reads time only from its caller.

Nothing here reads a clock, touches a socket or returns a Deferred.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from typing import Any

from portshare.wire import Message, Presence, PresenceBatch


@dataclass(frozen=True, slots=True)
class Replay:
    """
    What a join with C{since} gets from history.

    @ivar epoch: the room's current epoch.
    @ivar last: the room's last offset (0 when empty), the C{offset} of the C{joined} reply.
    @ivar messages: the held messages after C{since}, oldest first.
    @ivar recovered: whether no message after C{since} is missing.
    """

    epoch: str
    last: int
    messages: tuple[Message, ...]
    recovered: bool


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """One row of C{GET /api/rooms}."""

    room: str
    members: int
    offset: int

    def toDict(self) -> dict[str, object]:
        return {"room": self.room, "members": self.members, "offset": self.offset}


class RoomLog:
    """
    The bounded, offset-numbered history of one room.

    @ivar room: the room's name.
    @ivar epoch: names this history; see the module docstring.
    @ivar last: the offset of the newest message, 0 before the first.
    """

    __slots__ = ("_held", "epoch", "last", "room")

    def __init__(self, room: str, epoch: str, history: int, last: int = 0) -> None:
        self.room = room
        self.epoch = epoch
        self.last = last
        self._held: deque[Message] = deque(maxlen=history)

    def append(self, nick: str, text: str, ts: int, user: str | None = None) -> Message:
        """Record a new message and give it the next offset."""
        self.last += 1
        message = Message(room=self.room, offset=self.last, ts=ts, nick=nick, text=text, user=user)
        self._held.append(message)
        return message

    @property
    def first(self) -> int:
        """The offset of the oldest held message (C{last + 1} when none is held)."""
        return self._held[0].offset if self._held else self.last + 1

    def after(self, since: int, limit: int | None = None) -> tuple[Message, ...]:
        """
        @return: held messages with offsets greater than C{since}, oldest first, at most
            C{limit} of them.
        """
        start = max(since + 1 - self.first, 0)
        stop = None if limit is None else start + limit
        return tuple(islice(self._held, start, stop))

    def replay(self, since: int | None, epoch: str | None = None) -> Replay:
        """
        What a client resuming after C{since} (from C{epoch}, when it says) should get.

        Offsets from another epoch, or beyond our last one (a history that was lost and
        started again), are meaningless here: such a client gets everything held and
        C{recovered=False}.
        """
        if since is None:
            return Replay(self.epoch, self.last, (), True)
        if (epoch is not None and epoch != self.epoch) or since > self.last:
            return Replay(self.epoch, self.last, tuple(self._held), False)
        return Replay(self.epoch, self.last, self.after(since), since + 1 >= self.first)


class PresenceBook:
    """
    Which nicks are in which rooms, counting repeated joins of one nick as one member.

    Each room's nicks are also kept sorted (insertion by bisection, a C{memmove} in C), so
    that a C{joined} reply lists the first C{cap} of them without sorting the whole room:
    5,000 joins to one room would otherwise sort it 5,000 times.
    """

    __slots__ = ("_rooms", "_sorted")

    def __init__(self) -> None:
        self._rooms: dict[str, Counter[str]] = {}
        self._sorted: dict[str, list[str]] = {}

    def enter(self, room: str, nick: str) -> bool:
        """
        Count one more join of C{nick} to C{room}.

        @return: whether C{nick} is new to the room (a presence C{join} to announce).
        """
        counts = self._rooms.setdefault(room, Counter())
        counts[nick] += 1
        if counts[nick] != 1:
            return False
        insort(self._sorted.setdefault(room, []), nick)
        return True

    def exit(self, room: str, nick: str) -> bool:
        """
        Count one join of C{nick} to C{room} less.

        @return: whether C{nick} is gone from the room (a presence C{leave} to announce).
        """
        counts = self._rooms.get(room)
        if counts is None or counts[nick] <= 0:
            return False
        counts[nick] -= 1
        if counts[nick]:
            return False
        del counts[nick]
        nicks = self._sorted[room]
        del nicks[bisect_left(nicks, nick)]
        if not counts:
            del self._rooms[room]
            del self._sorted[room]
        return True

    def members(self, room: str, cap: int | None = None) -> tuple[tuple[str, ...], int]:
        """
        @return: up to C{cap} nicks in C{room} (sorted), and how many there are in all.
        """
        nicks = self._sorted.get(room)
        if not nicks:
            return (), 0
        return tuple(nicks if cap is None else nicks[:cap]), len(nicks)

    def count(self, room: str) -> int:
        """How many distinct nicks are in C{room}."""
        return len(self._rooms.get(room, ()))

    def rooms(self) -> Iterable[str]:
        """Rooms with at least one member."""
        return self._rooms.keys()


class PendingPresence:
    """
    One room's presence events not sent yet, kept net: for each nick only its last event
    counts, so a nick that joined then left is only in C{left} and one that left then
    joined again is only in C{joined}.  Clients apply a batch as "these are in, those are
    out", which is right whatever they knew before the window.

    @ivar room: the room.
    @ivar cap: most nicks in each list of the batch; more sets C{truncated}.
    """

    __slots__ = ("_joined", "_left", "cap", "room")

    def __init__(self, room: str, cap: int) -> None:
        self.room = room
        self.cap = cap
        # dicts as ordered sets: nicks in the order of their last event
        self._joined: dict[str, None] = {}
        self._left: dict[str, None] = {}

    def __len__(self) -> int:
        """How many nicks the pending batch names."""
        return len(self._joined) + len(self._left)

    def add(self, presence: Presence) -> None:
        """Count one presence event of the room."""
        nick = presence.nick
        if presence.event == "join":
            self._left.pop(nick, None)
            self._joined.pop(nick, None)
            self._joined[nick] = None
        else:
            self._joined.pop(nick, None)
            self._left.pop(nick, None)
            self._left[nick] = None

    def take(self, count: int) -> PresenceBatch | None:
        """
        The batch to send now, and start an empty one.

        @param count: the room's member count, for the batch's C{count}.
        @return: the batch, or C{None} when nothing happened since the last one.
        """
        if not self:
            return None
        joined, left = self._joined, self._left
        self._joined, self._left = {}, {}
        cap = self.cap
        return PresenceBatch(
            room=self.room,
            count=count,
            joined=tuple(islice(joined, cap)),
            left=tuple(islice(left, cap)),
            truncated=len(joined) > cap or len(left) > cap,
        )


class TokenBucket:
    """
    A token bucket: C{burst} messages at once, C{rate} per second sustained.

    The caller passes C{now} (seconds); nothing here reads a clock.
    """

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one; C{False} means rate limited."""
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class KeyedBuckets:
    """
    One L{TokenBucket} per key (a client address), for at most C{maxKeys} keys: the least
    recently seen are forgotten first, so memory stays bounded whoever calls.
    """

    __slots__ = ("_buckets", "burst", "maxKeys", "rate")

    def __init__(self, rate: float, burst: int, maxKeys: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst
        self.maxKeys = maxKeys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, key: str, now: float) -> bool:
        """Spend one of C{key}'s tokens; C{False} means rate limited."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
            if len(self._buckets) > self.maxKeys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now)

    def __len__(self) -> int:
        return len(self._buckets)


#: the empty set every session shares until it needs one of its own
_NONE: frozenset[str] = frozenset()


class Session:
    """
    What the server knows about one chat connection.

    @ivar nick: the nick its messages are sent under.
    @ivar rooms: the rooms it has joined (or is joining).
    @ivar strikes: rate-limited messages in a row; reset by an accepted one.
    """

    __slots__ = (
        "address",
        "authorizing",
        "bucket",
        "closed",
        "identity",
        "member",
        "mute",
        "nick",
        "rooms",
        "says",
        "serverRooms",
        "strikes",
        "timer",
        "waitingAuth",
    )

    def __init__(self, member: Any, nick: str, bucket: TokenBucket, address: str = "") -> None:
        self.member = member
        self.nick = nick
        self.rooms: set[str] = set()
        self.bucket = bucket
        self.strikes = 0
        self.closed = False
        #: rooms joined with a token that does not allow saying there
        self.mute: set[str] = set()
        #: the client's address (through trusted proxies), for the application's rules
        self.address = address
        #: who the connection is (an L{portshare.identity.Identity}), or None: anonymous
        self.identity: Any = None
        #: with --auth required and no token yet: only an auth message is read
        self.waitingAuth = False
        #: the auth deadline, or the token's expiry (an IDelayedCall), or None
        self.timer: Any = None
        #: rooms whose join waits for the application's answer (a set once there is one:
        #: until then the shared empty one, not 216 bytes per connection)
        self.authorizing: set[str] | frozenset[str] = _NONE
        #: says waiting for the application's answer, in the order they came
        self.says: Any = None
        #: rooms the server API put it in (its token's grants do not apply to them; lazy too)
        self.serverRooms: set[str] | frozenset[str] = _NONE

    def authorizingStarted(self, room: str) -> None:
        """A join of C{room} waits for the application's answer."""
        held = self.authorizing if isinstance(self.authorizing, set) else set()
        held.add(room)
        self.authorizing = held

    def authorizingDone(self, room: str) -> None:
        if room in self.authorizing:
            self.authorizing = self.authorizing - {room} or _NONE

    def joinedByServer(self, room: str, joined: bool = True) -> None:
        """The server API put it in C{room} (C{joined}), or it left the room."""
        if joined:
            self.serverRooms = self.serverRooms | {room}
        elif room in self.serverRooms:
            self.serverRooms = self.serverRooms - {room} or _NONE

    def admit(self, now: float) -> bool:
        """Whether this message fits the rate limit; counts strikes when it does not."""
        if self.bucket.take(now):
            self.strikes = 0
            return True
        self.strikes += 1
        return False
