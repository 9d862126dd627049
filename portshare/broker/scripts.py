"""
The Lua scripts the Redis broker runs, read once from the C{.lua} files beside this module.

The scripts are code in another language, so they live in C{lua/} as package data, one file a
script, where they can be read, linted and diffed as Lua.  Redis is given each script as the
shared prelude (C{lua/_common.lua}: the helpers every script may call) followed by the
script's own file.  The comment above each L{Script} here says what the broker passes it
(C{KEYS}, C{ARGV}) and what it returns; the keys come from L{portshare.broker.keys}.

Theory of operation:
 - A room's messages live in a Redis Stream whose entry IDs are C{<offset>-0}: the offset
   I{is} the stream ID, so reading "everything after offset 41" is C{XRANGE log 42-0 +} with no
   scan and no secondary index.  One Lua script (L{PUBLISH}) creates the room's epoch when it is
   missing, advances the room's sequence by a batch of messages, appends their entries
   (trimmed to about C{history} entries) and publishes the batch on the room's pub/sub channel,
   all atomically: offsets are unique and gapless, and every instance receives a room's
   messages in offset order.  It does only what must be atomic: the room TTLs and the rooms
   index are refreshed by each instance's periodic upkeep (L{TOUCH}, L{INDEX}).
 - Every script of a room takes only the room's keys (all under its C{{room}} hash tag: one
   Redis Cluster slot); the generation is passed in (ARGV), read once per connection by
   L{SERVER}.  (The presence scripts still read the instances' heartbeat keys, and L{ROOMS}
   reads every listed room: those two are what a cluster mode must redesign.)
 - Presence: every instance keeps its own members of a room in its own set
   (C{P:{room}:here:<id>}) and proves it is alive by refreshing C{P:instance:<id>} (a key with
   a TTL) on a heartbeat.  A nick is present while a live instance lists it; C{join} is
   announced when the first live instance lists it and C{leave} when the last one stops, by the
   scripts themselves, on the room's channel, so presence and messages share one order.
   Instances whose key has expired are reaped (their nicks announced as leaving where no live
   instance still lists them) by any script that reads the room's presence, and by every live
   instance's periodic L{TICK} of its rooms.
 - Presence users: the user id of an authenticated member is kept in the room's users hash
   (C{P:{room}:users}, nick -> user), written by L{ENTER} and L{SYNC}, read by every script
   that announces a join or leave (C{_common.lua}'s C{announce}, reaping included: a dead
   instance's members leave with their users) and forgotten on the leave.  An authenticated
   member's event is C{u|join|["nick","user"]}; an anonymous one's stays C{p|join|nick}.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files


def _read(name: str) -> str:
    """The text of C{lua/<name>.lua}."""
    return (files("portshare.broker") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


#: the helpers every script may call
_COMMON = _read("_common")


@dataclass(frozen=True)
class Script:
    """A Lua script: its name (for logs; its file is C{lua/<name>.lua}) and its own text."""

    name: str
    body: str

    @property
    def text(self) -> str:
        """
        What Redis is given: the prelude, then the script, each after a newline.  (That is
        how the scripts were joined when they were Python strings; their SHA1s, by which Redis
        names them, are pinned in C{tests/test_broker_scripts.py}.)
        """
        return f"\n{_COMMON}\n{self.body}"


def _load(name: str) -> Script:
    return Script(name, _read(name))


#: KEYS epoch seq log gen; ARGV newEpoch maxlen generation roomTtlMs channel body, then
#: nick text ts user ('' for an anonymous sender: no C{u} field in its entry) for each of n
#: messages -> {epoch, offset of the first}.  One call per batch
#: of a room's messages (L{portshare.broker.codec.batchBody}); one PUBLISH per batch
PUBLISH = _load("publish")

#: KEYS epoch seq log gen; ARGV newEpoch generation roomTtlMs since clientEpoch history
#: -> {epoch, last, entries}; since '' reads nothing (a join without since, a subscription)
SNAPSHOT = _load("snapshot")

#: KEYS epoch seq log gen; ARGV since limit history generation -> {epoch or false, entries}
HISTORY = _load("history")

#: KEYS epoch seq log gen; ARGV knownEpoch delivered count history generation
#: -> {epoch or false, last, entries after delivered (from 1 when the epoch is not known)}
CATCH_UP = _load("catch-up")

#: KEYS a room's keys; ARGV roomTtlMs -> how many: the periodic TTL refresh of the rooms
#: an instance was active in (moved out of PUBLISH, which ran it on every message)
TOUCH = _load("touch")

#: KEYS rooms; ARGV room... -> how many: mark rooms active now (Redis time) in the rooms index,
#: a separate call (the index is a global key: no room's script may touch it in a cluster)
INDEX = _load("index")

#: KEYS here; ARGV base id nick channel gcTtlMs user ('' : anonymous) -> whether a join was
#: announced (with the user, kept in the room's users hash, when there is one)
ENTER = _load("enter")

#: KEYS here; ARGV base id nick channel -> whether a leave was announced
EXIT = _load("exit")

#: KEYS here; ARGV base id channel gcTtlMs, then nick user ('' : anonymous) for each nick:
#: make this instance's set exactly the nicks given (naming their users), announcing the
#: differences -> {joins, leaves}
SYNC = _load("sync")

#: KEYS here; ARGV base channel cap -> {count, nicks (at most cap; cap -1: all)}
MEMBERS = _load("members")

#: KEYS here epoch seq log gen; ARGV base id channel roomTtlMs gcTtlMs: the periodic upkeep of a
#: room this instance is subscribed to -> leaves announced
TICK = _load("tick")

#: KEYS rooms; ARGV base cap roomTtlMs -> {room, last offset, members, ...} (most recently
#: active first, at most cap rooms)
ROOMS = _load("rooms")

#: KEYS server generation; ARGV runId durable -> the generation.  Run by every instance when
#: it connects: a Redis that restarted (a new run_id) with a dataset (our server key survived)
#: may have lost acknowledged writes unless it persists every write (durable '1'), so the
#: generation is bumped and every room's history from before it counts as lost (new epochs).
SERVER = _load("server")

SCRIPTS = (
    SERVER,
    PUBLISH,
    SNAPSHOT,
    HISTORY,
    CATCH_UP,
    ENTER,
    EXIT,
    SYNC,
    MEMBERS,
    TICK,
    ROOMS,
    TOUCH,
    INDEX,
)
