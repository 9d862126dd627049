"""
A member's join of a room, as a state machine without I/O.

A join takes three broker round trips, and the member may leave during any of them: the
room's subscription (shared by the room's members here), counting the member's presence
(C{enter}), and the snapshot (the replay and the member list, fetched at once).  L{Joining}
says what to do next and is told what happened; L{portshare.hub} carries out its requests
with the broker and reports back.  Nothing here sees a Deferred, a clock or a socket, so
every order of outcomes can be tested by calling methods.

Theory of operation::

    SUBSCRIBING --subscribed()--> ENTERING --entered()--> FETCHING --fetched()--> LIVE
         |                           |                       |
         +-------------------------- failed() ---------------+----------------> DONE

 - L{Joining.subscribed} asks to L{Enter} the member's nick into the room's presence,
   L{Joining.entered} to L{Fetch} the snapshot, and L{Joining.fetched} to L{Admit} the
   member: send it C{joined} and the replay, make it live, then send what the room
   delivered meanwhile that the replay does not hold.
 - L{Joining.left} records that the member left the room (or disconnected) meanwhile.
   Nothing can be undone at once, a broker call being in flight: when it returns, a
   presence that was counted is exited (L{Exit}) instead of going on.  A subscription that
   completes after the leave still enters, then exits: the enter was asked for first.
 - L{Joining.failed} (a step's broker call failed) asks to L{Abandon} the room (the hub
   removes the member, exiting the presence if it was counted) or, after a leave, to
   L{Exit} what was counted; the hub then refuses the join.
 - While the join is in flight the room appends each event it delivers to C{backlog}, in
   order; L{newToJoiner} picks those that add to what C{joined} and the replay say.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from portshare.chat import Replay
from portshare.wire import Event, Join, Joined, Message, Outgoing, Presence


class Step(enum.Enum):
    """Where a join stands."""

    SUBSCRIBING = "subscribing"
    ENTERING = "entering"
    FETCHING = "fetching"
    LIVE = "live"
    DONE = "done"


# module globals: reading Step.X goes through EnumType.__getattr__, about a thousand
# instructions each time, a dozen times per join
SUBSCRIBING, ENTERING, FETCHING, LIVE, DONE = Step


@dataclass(slots=True)
class Enter:
    """Count C{nick} into C{room}'s presence, then report with L{Joining.entered}."""

    # The actions are values that nothing changes, yet not frozen: a frozen dataclass sets
    # each field through object.__setattr__, which made a join 3 % dearer.

    room: str
    nick: str


@dataclass(slots=True)
class Fetch:
    """
    Fetch C{room}'s replay after C{since} (of C{epoch}) and its member list, at once, then
    report with L{Joining.fetched}.
    """

    room: str
    since: int | None
    epoch: str | None


@dataclass(slots=True)
class Exit:
    """Undo the presence counted for C{nick} in C{room}; the join is over."""

    room: str
    nick: str


@dataclass(slots=True)
class Admit:
    """
    The join completed: send C{joined}, then C{replay}; make the member live; then send it
    C{backlog}.  With C{recount}, C{(entered, now)}, the member changed nick while joining:
    exit the nick that was entered and enter the one it has now.
    """

    joined: Joined
    replay: tuple[Message, ...]
    backlog: list[Outgoing]
    recount: tuple[str, str] | None


@dataclass(slots=True)
class Abandon:
    """The join failed: remove the member from C{room}, exiting C{exit} first when set."""

    room: str
    exit: str | None


class Joining:
    """
    One member's join of one room; see the module docstring.

    @ivar command: the C{join} being carried out.
    @ivar nick: the nick entered into the room's presence (the member's when it asked).
    @ivar backlog: the room's events delivered while this join is in flight, in order.
    @ivar step: where the join stands.
    """

    __slots__ = ("_entered", "_left", "backlog", "command", "nick", "step")

    def __init__(self, command: Join, nick: str) -> None:
        self.command = command
        self.nick = nick
        self.backlog: list[Outgoing] = []
        self.step = SUBSCRIBING
        self._entered = False
        self._left = False

    def subscribed(self) -> Enter:
        """The room's subscription is in place."""
        if self.step is not SUBSCRIBING:
            raise self._outOfOrder("subscribed")
        self.step = ENTERING
        return Enter(self.command.room, self.nick)

    def entered(self) -> Fetch | Exit:
        """The broker counted the member's presence."""
        if self.step is not ENTERING:
            raise self._outOfOrder("entered")
        self._entered = True
        command = self.command
        if self._left:
            self.step = DONE
            return Exit(command.room, self.nick)
        self.step = FETCHING
        return Fetch(command.room, command.since, command.epoch)

    def fetched(
        self, replay: Replay, members: tuple[str, ...], count: int, nick: str
    ) -> Admit | Exit:
        """
        The snapshot arrived.

        @param members: the room's nicks (capped), and C{count} all of them.
        @param nick: the member's nick now.
        """
        if self.step is not FETCHING:
            raise self._outOfOrder("fetched")
        if self._left:
            self.step = DONE
            return Exit(self.command.room, self.nick)
        self.step = LIVE
        joined = joinedReply(self.command, replay, members, count)
        backlog = self.backlog
        if backlog:
            last = joined.offset
            backlog = [o for o in backlog if newToJoiner(o.event, last, nick)]
            self.backlog = []
        recount = None if nick == self.nick else (self.nick, nick)
        return Admit(joined, replay.messages, backlog, recount)

    def left(self) -> None:
        """The member left the room, or disconnected, before its join completed."""
        self._left = True

    def failed(self) -> Abandon | Exit | None:
        """
        A step's broker call failed (the hub refuses the join).

        @return: what to undo, if anything.
        """
        step, self.step = self.step, DONE
        room = self.command.room
        if step is LIVE or step is DONE:
            return None
        if not self._left:
            return Abandon(room, self.nick if self._entered else None)
        if self._entered:
            return Exit(room, self.nick)
        return None

    def _outOfOrder(self, event: str) -> RuntimeError:
        return RuntimeError(f"{event}() for a join of {self.command.room} {self.step.value}")


def joinedReply(command: Join, replay: Replay, members: tuple[str, ...], count: int) -> Joined:
    """The C{joined} reply to C{command}, from the room's snapshot."""
    last = max(replay.last, replay.messages[-1].offset if replay.messages else 0)
    return Joined(
        room=command.room,
        offset=last,
        epoch=replay.epoch,
        members=members,
        count=count,
        recovered=replay.recovered,
        ref=command.ref,
    )


def newToJoiner(event: Event, last: int, nick: str) -> bool:
    """
    Whether an event the room delivered during a join adds to what the C{joined} reply
    (whose C{offset} is C{last}) and the replay already said to the joiner C{nick}.
    """
    if isinstance(event, Message):
        return event.offset > last
    if isinstance(event, Presence):
        return not (event.event == "join" and event.nick == nick)
    return True  # a presence batch may repeat what joined said; clients apply it idempotently
