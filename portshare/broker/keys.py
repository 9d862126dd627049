"""
Where the Redis broker keeps everything: the names of its keys and channels.

One place for the layout, written out in L{KeyLayout}'s docstring.  The broker passes the
scripts their keys from here (as C{KEYS}); the keys a script builds itself (instance
heartbeats, C{here:<id>} sets, the rooms that C{rooms.lua} lists) follow the same layout from
L{KeyLayout.base} and a room's C{here} key, so a change of the layout is a change of the
scripts too.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RoomKeys:
    """
    The keys and the channel of one room.  All carry the room as a hash tag (C{{room}}) so a
    room's keys live in one Redis Cluster slot.
    """

    epoch: str
    seq: str
    log: str
    gen: str
    here: str
    channel: str
    users: str

    @property
    def history(self) -> list[str]:
        """The room's keys the history scripts take, in their KEYS order."""
        return [self.epoch, self.seq, self.log, self.gen]


@dataclass(frozen=True)
class KeyLayout:
    """
    Where everything lives, under C{prefix} (P)::

        P:rooms                ZSET    room -> last activity (ms, Redis time)
        P:server               STRING  the run_id of the Redis process last seen
        P:generation           STRING  bumped when Redis restarted from a dataset that may
                                       have lost writes; older histories count as lost
        P:instance:<id>        STRING  an instance's heartbeat (expires after the presence TTL)
        P:{room}:epoch         STRING  the room's epoch
        P:{room}:seq           STRING  the room's last offset
        P:{room}:log           STREAM  the history; entry ID <offset>-0, fields n, t, ts
                                       and u (the sender's user id, if any)
        P:{room}:gen           STRING  the generation the room's epoch belongs to
        P:{room}:here          SET     instances with members in the room
        P:{room}:here:<id>     SET     the nicks instance <id> has in the room
        P:{room}:users         HASH    nick -> user id, for the authenticated members present
                                       (the scripts build it from the here key: usersOf)
        P:{room}:events        channel messages and presence of the room
        P:control              channel the server API's commands, to every instance
        P:reply:<id>           channel the answers to instance <id>'s commands
    """

    prefix: str = "portshare"

    @property
    def base(self) -> str:
        """The prefix with its separator, as the scripts build instance keys from it."""
        return self.prefix + ":"

    @property
    def rooms(self) -> str:
        """The index of rooms by last activity."""
        return f"{self.prefix}:rooms"

    @property
    def server(self) -> str:
        """The run_id of the Redis process last seen."""
        return f"{self.prefix}:server"

    @property
    def generation(self) -> str:
        """The generation counter (see the layout above)."""
        return f"{self.prefix}:generation"

    @property
    def control(self) -> str:
        """The channel of the server API's commands (L{portshare.broker.control})."""
        return f"{self.prefix}:control"

    def reply(self, instanceId: str) -> str:
        """The channel where instance C{instanceId} gathers the answers to its commands."""
        return f"{self.prefix}:reply:{instanceId}"

    def instance(self, instanceId: str) -> str:
        """The heartbeat key of instance C{instanceId}."""
        return f"{self.prefix}:instance:{instanceId}"

    def room(self, room: str) -> RoomKeys:
        """The keys and the channel of C{room}."""
        tag = f"{self.prefix}:{{{room}}}"
        return RoomKeys(
            epoch=f"{tag}:epoch",
            seq=f"{tag}:seq",
            log=f"{tag}:log",
            gen=f"{tag}:gen",
            here=f"{tag}:here",
            channel=f"{tag}:events",
            users=f"{tag}:users",
        )

    def roomOfChannel(self, channel: str) -> str | None:
        """The room a channel belongs to, or C{None} for a channel that is not ours."""
        head, tail = f"{self.prefix}:{{", "}:events"
        if channel.startswith(head) and channel.endswith(tail):
            return channel[len(head) : -len(tail)]
        return None
