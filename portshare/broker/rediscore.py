"""
The Redis broker's logic, sans I/O: the broker URL, the key layout, the Lua scripts, the
parsing of what Redis returns, the reconnect backoff and the per-room delivery state.

Nothing here touches a socket, reads a clock or returns a Deferred; L{portshare.broker.redis}
is the thin Twisted layer that feeds it.

Theory of operation:
 - A room's messages live in a Redis Stream whose entry IDs are C{<offset>-0}: the offset
   I{is} the stream ID, so reading "everything after offset 41" is C{XRANGE log 42-0 +} with no
   scan and no secondary index.  One Lua script (L{PUBLISH}) creates the room's epoch when it is
   missing, increments the room's sequence, appends the entry (trimmed to about C{history}
   entries) and publishes it on the room's pub/sub channel, all atomically: offsets are unique
   and gapless, and every instance receives a room's messages in offset order.
 - Each instance subscribes once per room.  L{RoomFeed} is the per-room delivery state: the
   epoch and the last offset handed to the listener.  A live message that is not the next
   offset (a reconnect, a lost pub/sub message) switches the feed to catching up: the missing
   offsets are read from the stream (L{CATCH_UP}), live messages are buffered meanwhile (at most
   C{limit} of them; past that they are dropped and read from the stream again), and the feed
   hands each offset to the listener exactly once and in order.
 - Presence: every instance keeps its own members of a room in its own set
   (C{P:{room}:here:<id>}) and proves it is alive by refreshing C{P:instance:<id>} (a key with
   a TTL) on a heartbeat.  A nick is present while a live instance lists it; C{join} is
   announced when the first live instance lists it and C{leave} when the last one stops, by the
   scripts themselves, on the room's channel, so presence and messages share one order.
   Instances whose key has expired are reaped (their nicks announced as leaving where no live
   instance still lists them) by any script that reads the room's presence, and by every live
   instance's periodic L{TICK} of its rooms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from portshare.chat import Replay
from portshare.wire import Message, Presence

# -- the scripts ------------------------------------------------------------------------------

_COMMON = """
local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- keep a key for ttl ms more (ttl 0: forever)
local function touch(key, ttl)
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
end

-- the room's epoch; nil when the room has none, or lacks its sequence (a history without
-- both means nothing any more), or when its history is from before the current generation
-- (Redis restarted from a dataset that may have lost writes: see KeyLayout.generation)
local function current(epochKey, seqKey, genKey, generationKey)
  local epoch = redis.call('GET', epochKey)
  if not epoch or redis.call('EXISTS', seqKey) == 0 then return nil end
  local generation = redis.call('GET', generationKey) or '0'
  if (redis.call('GET', genKey) or '0') ~= generation then return nil end
  return epoch
end

-- the room's epoch, a new one (with sequence 0 and no history) when it has no current one
local function ensure(epochKey, seqKey, logKey, genKey, generationKey, newEpoch)
  local epoch = current(epochKey, seqKey, genKey, generationKey)
  if epoch then return epoch, false end
  redis.call('DEL', logKey)
  redis.call('SET', epochKey, newEpoch)
  redis.call('SET', seqKey, 0)
  redis.call('SET', genKey, redis.call('GET', generationKey) or '0')
  return newEpoch, true
end

-- the stream entries with offsets from..last, at most count (count 0: all)
local function entries(logKey, from, last, count)
  if from > last then return {} end
  if count > 0 then
    return redis.call('XRANGE', logKey, from .. '-0', last .. '-0', 'COUNT', count)
  end
  return redis.call('XRANGE', logKey, from .. '-0', last .. '-0')
end

local function alive(base, id)
  return redis.call('EXISTS', base .. 'instance:' .. id) == 1
end

-- whether a live instance other than `self` lists nick in the room
local function elsewhere(here, base, self, nick)
  for _, id in ipairs(redis.call('SMEMBERS', here)) do
    if id ~= self and alive(base, id)
        and redis.call('SISMEMBER', here .. ':' .. id, nick) == 1 then
      return true
    end
  end
  return false
end

-- forget the instances whose heartbeat expired; announce the nicks they leave
local function reap(here, base, channel)
  local gone = {}
  for _, id in ipairs(redis.call('SMEMBERS', here)) do
    if not alive(base, id) then
      local key = here .. ':' .. id
      for _, nick in ipairs(redis.call('SMEMBERS', key)) do gone[nick] = true end
      redis.call('DEL', key)
      redis.call('SREM', here, id)
    end
  end
  local left = {}
  for nick in pairs(gone) do
    if not elsewhere(here, base, '', nick) then table.insert(left, nick) end
  end
  table.sort(left)
  for _, nick in ipairs(left) do redis.call('PUBLISH', channel, 'p|leave|' .. nick) end
  return #left
end

-- the nicks listed by live instances, sorted
local function present(here, base)
  local keys = {}
  for _, id in ipairs(redis.call('SMEMBERS', here)) do
    if alive(base, id) then table.insert(keys, here .. ':' .. id) end
  end
  if #keys == 0 then return {} end
  local nicks = redis.call('SUNION', unpack(keys))
  table.sort(nicks)
  return nicks
end
"""


@dataclass(frozen=True)
class Script:
    """A Lua script: its name (for logs) and its full text."""

    name: str
    body: str

    @property
    def text(self) -> str:
        return _COMMON + self.body


#: KEYS epoch seq log rooms gen generation;
#: ARGV newEpoch maxlen roomTtlMs room channel nick text ts body -> {epoch, offset}
PUBLISH = Script(
    "publish",
    """
local epoch = ensure(KEYS[1], KEYS[2], KEYS[3], KEYS[5], KEYS[6], ARGV[1])
local offset = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], offset .. '-0',
           'n', ARGV[6], 't', ARGV[7], 'ts', ARGV[8])
local ttl = tonumber(ARGV[3])
touch(KEYS[1], ttl); touch(KEYS[2], ttl); touch(KEYS[3], ttl); touch(KEYS[5], ttl)
redis.call('ZADD', KEYS[4], nowMs(), ARGV[4])
redis.call('PUBLISH', ARGV[5], 'm|' .. epoch .. '|' .. offset .. '|' .. ARGV[8] .. '|' .. ARGV[9])
return {epoch, offset}
""",
)

#: KEYS epoch seq log rooms gen generation;
#: ARGV newEpoch roomTtlMs room since clientEpoch history
#: -> {epoch, last, entries}; since '' reads nothing (a join without since, a subscription)
SNAPSHOT = Script(
    "snapshot",
    """
local epoch = ensure(KEYS[1], KEYS[2], KEYS[3], KEYS[5], KEYS[6], ARGV[1])
local ttl = tonumber(ARGV[2])
touch(KEYS[1], ttl); touch(KEYS[2], ttl); touch(KEYS[3], ttl); touch(KEYS[5], ttl)
redis.call('ZADD', KEYS[4], nowMs(), ARGV[3])
local last = tonumber(redis.call('GET', KEYS[2]))
if ARGV[4] == '' then return {epoch, last, {}} end
local since = tonumber(ARGV[4])
local from = since + 1
if (ARGV[5] ~= '' and ARGV[5] ~= epoch) or since > last then from = 1 end
from = math.max(from, last - tonumber(ARGV[6]) + 1)
return {epoch, last, entries(KEYS[3], from, last, 0)}
""",
)

#: KEYS epoch seq log gen generation; ARGV since limit history -> {epoch or false, entries}
HISTORY = Script(
    "history",
    """
local epoch = current(KEYS[1], KEYS[2], KEYS[4], KEYS[5])
if not epoch then return {false, {}} end
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local from = math.max(tonumber(ARGV[1]) + 1, last - tonumber(ARGV[3]) + 1)
return {epoch, entries(KEYS[3], from, last, tonumber(ARGV[2]))}
""",
)

#: KEYS epoch seq log gen generation; ARGV knownEpoch delivered count history
#: -> {epoch or false, last, entries after delivered (from 1 when the epoch is not known)}
CATCH_UP = Script(
    "catch-up",
    """
local epoch = current(KEYS[1], KEYS[2], KEYS[4], KEYS[5])
if not epoch then return {false, 0, {}} end
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local from = tonumber(ARGV[2]) + 1
if epoch ~= ARGV[1] then from = 1 end
from = math.max(from, last - tonumber(ARGV[4]) + 1)
return {epoch, last, entries(KEYS[3], from, last, tonumber(ARGV[3]))}
""",
)

#: KEYS here; ARGV base id nick channel gcTtlMs -> whether a join was announced
ENTER = Script(
    "enter",
    """
reap(KEYS[1], ARGV[1], ARGV[4])
local mine = KEYS[1] .. ':' .. ARGV[2]
local added = redis.call('SADD', mine, ARGV[3])
redis.call('SADD', KEYS[1], ARGV[2])
touch(mine, tonumber(ARGV[5])); touch(KEYS[1], tonumber(ARGV[5]))
if added == 1 and not elsewhere(KEYS[1], ARGV[1], ARGV[2], ARGV[3]) then
  redis.call('PUBLISH', ARGV[4], 'p|join|' .. ARGV[3])
  return 1
end
return 0
""",
)

#: KEYS here; ARGV base id nick channel -> whether a leave was announced
EXIT = Script(
    "exit",
    """
local mine = KEYS[1] .. ':' .. ARGV[2]
local removed = redis.call('SREM', mine, ARGV[3])
if redis.call('SCARD', mine) == 0 then redis.call('SREM', KEYS[1], ARGV[2]) end
if removed == 1 and not elsewhere(KEYS[1], ARGV[1], ARGV[2], ARGV[3]) then
  redis.call('PUBLISH', ARGV[4], 'p|leave|' .. ARGV[3])
  return 1
end
return 0
""",
)

#: KEYS here; ARGV base id channel gcTtlMs nick... : make this instance's set exactly the
#: nicks given, announcing the differences -> {joins, leaves}
SYNC = Script(
    "sync",
    """
reap(KEYS[1], ARGV[1], ARGV[3])
local mine = KEYS[1] .. ':' .. ARGV[2]
local old = {}
for _, nick in ipairs(redis.call('SMEMBERS', mine)) do old[nick] = true end
local new = {}
for i = 5, #ARGV do new[ARGV[i]] = true end
redis.call('DEL', mine)
local n = 0
for i = 5, #ARGV, 1000 do
  redis.call('SADD', mine, unpack(ARGV, i, math.min(i + 999, #ARGV)))
  n = n + 1
end
if n > 0 then
  redis.call('SADD', KEYS[1], ARGV[2])
  touch(mine, tonumber(ARGV[4])); touch(KEYS[1], tonumber(ARGV[4]))
else
  redis.call('SREM', KEYS[1], ARGV[2])
end
local joins, leaves = {}, {}
for nick in pairs(new) do
  if not old[nick] and not elsewhere(KEYS[1], ARGV[1], ARGV[2], nick) then
    table.insert(joins, nick)
  end
end
for nick in pairs(old) do
  if not new[nick] and not elsewhere(KEYS[1], ARGV[1], ARGV[2], nick) then
    table.insert(leaves, nick)
  end
end
table.sort(joins); table.sort(leaves)
for _, nick in ipairs(leaves) do redis.call('PUBLISH', ARGV[3], 'p|leave|' .. nick) end
for _, nick in ipairs(joins) do redis.call('PUBLISH', ARGV[3], 'p|join|' .. nick) end
return {#joins, #leaves}
""",
)

#: KEYS here; ARGV base channel cap -> {count, nicks (at most cap; cap -1: all)}
MEMBERS = Script(
    "members",
    """
reap(KEYS[1], ARGV[1], ARGV[2])
local nicks = present(KEYS[1], ARGV[1])
local cap = tonumber(ARGV[3])
local shown = {}
for i, nick in ipairs(nicks) do
  if cap >= 0 and i > cap then break end
  shown[i] = nick
end
return {#nicks, shown}
""",
)

#: KEYS here epoch seq log gen; ARGV base id channel roomTtlMs gcTtlMs: the periodic upkeep of a
#: room this instance is subscribed to -> leaves announced
TICK = Script(
    "tick",
    """
local left = reap(KEYS[1], ARGV[1], ARGV[3])
local roomTtl, gcTtl = tonumber(ARGV[4]), tonumber(ARGV[5])
touch(KEYS[2], roomTtl); touch(KEYS[3], roomTtl); touch(KEYS[4], roomTtl)
touch(KEYS[5], roomTtl)
local mine = KEYS[1] .. ':' .. ARGV[2]
if redis.call('EXISTS', mine) == 1 then touch(mine, gcTtl); touch(KEYS[1], gcTtl) end
return left
""",
)

#: KEYS rooms; ARGV base cap roomTtlMs -> {room, last offset, members, ...} (most recently
#: active first, at most cap rooms)
ROOMS = Script(
    "rooms",
    """
local ttl = tonumber(ARGV[3])
if ttl > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', nowMs() - ttl) end
local out = {}
for _, room in ipairs(redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)) do
  local tag = ARGV[1] .. '{' .. room .. '}:'
  local last = tonumber(redis.call('GET', tag .. 'seq') or '0')
  table.insert(out, room)
  table.insert(out, last)
  table.insert(out, #present(tag .. 'here', ARGV[1]))
end
return out
""",
)

#: KEYS server generation; ARGV runId durable -> the generation.  Run by every instance when
#: it connects: a Redis that restarted (a new run_id) with a dataset (our server key survived)
#: may have lost acknowledged writes unless it persists every write (durable '1'), so the
#: generation is bumped and every room's history from before it counts as lost (new epochs).
SERVER = Script(
    "server",
    """
local seen = redis.call('GET', KEYS[1])
if seen ~= ARGV[1] then
  if seen and ARGV[2] ~= '1' then redis.call('INCR', KEYS[2]) end
  redis.call('SET', KEYS[1], ARGV[1])
end
return tonumber(redis.call('GET', KEYS[2]) or '0')
""",
)

SCRIPTS = (SERVER, PUBLISH, SNAPSHOT, HISTORY, CATCH_UP, ENTER, EXIT, SYNC, MEMBERS, TICK, ROOMS)


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
