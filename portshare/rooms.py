"""
The rooms this instance serves: each room's local members, and the delivery of the room's
events to them.

Theory of operation:
 - A L{RoomFanout} is the broker's listener for one room while this instance has members
   there (one subscription per room per instance).
 - Each of its members is joining (a L{Joining} in flight, which keeps the room's events in
   its C{backlog}, in order) or L{LIVE} (the room's events go to it directly).
 - Each event is encoded once (an L{Outgoing}) and handed to each L{IFrontEnd} with live
   members here, with all of its members at once: the front end frames it once (one
   prepared WebSocket frame, one SSE block, one line) and writes it to each of them.
   Asking the L{Outgoing} for the framing per member instead would cost a call and a lookup
   per delivery (some 800 instructions, an eighth of what a delivery costs now).
 - Presence in a room with more local members than C{presenceBatchAbove} is not sent per
   event (that costs room-size frames per join) but collected (L{PresenceBatching}) and sent
   as one C{presence_batch} per C{presenceBatchInterval}.  Once a room has a batch pending,
   every presence event of the room joins it until it is sent, so the order is kept; the
   room goes back to single events at its first presence event after a batch was sent while
   it is no bigger than the threshold.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface, implementer

from portshare.broker import IBroker, IRoomListener
from portshare.chat import PendingPresence, Session
from portshare.joining import Joining
from portshare.limits import Limits
from portshare.metrics import Metrics
from portshare.wire import Message, Outgoing, Presence, PresenceBatch

#: what a room delivers: to members as frames, to in-process subscribers as these values
RoomEvent = Message | Presence | PresenceBatch


class IFrontEnd(Interface):
    """
    The part of a front end (the WebSocket endpoint's factory, the SSE resource, the line
    protocol's factory) that all its members share, and that writes room events to them, so
    that an event is framed once for all of them.
    """

    def deliver(outgoing: Outgoing, members: Sequence[IMember]) -> None:
        """
        Write one room event to C{members}, all of them this front end's: framed once (see
        L{Outgoing.framed}), and dropped for members too slow to keep up when the
        slow-consumer policy says so.
        """


class IMember(Interface):
    """One chat connection, as the hub sees it."""

    peer = Attribute("A short text naming the client, for logs.")
    frontEnd = Attribute("The L{IFrontEnd} that writes room events to this member.")

    def send(outgoing: Outgoing) -> None:
        """
        Send one event to this member alone: a reply (C{joined}, C{left}, C{ack},
        C{error}) or a replayed message, never dropped for being slow.
        """

    def closeWith(code: int, reason: str) -> None:
        """Close the connection with a WebSocket close code."""


class Live(enum.Enum):
    """The state of a member whose join completed: the room's events go to it directly."""

    LIVE = "live"


#: see L{Live}
LIVE = Live.LIVE


@implementer(IRoomListener)
class RoomFanout:
    """
    This instance's members of one room, and the delivery of the room's events to them.

    @param broker: for the member count of presence batches.
    @param clock: schedules presence batches.
    @param limits: C{presenceBatchAbove}, C{presenceBatchInterval}, C{presenceMembersCap}.
    @param metrics: counts deliveries (C{messagesOut}).
    """

    __slots__ = (
        "_batching",
        "_broker",
        "_clock",
        "_failure",
        "_frontEnds",
        "_joining",
        "_limits",
        "_live",
        "_metrics",
        "_waiters",
        "_watchers",
        "room",
        "subscribed",
    )

    log = Logger()

    def __init__(
        self, room: str, broker: IBroker, clock: IReactorTime, limits: Limits, metrics: Metrics
    ) -> None:
        self.room = room
        self._broker = broker
        self._clock = clock
        self._limits = limits
        self._metrics = metrics
        self._joining: dict[Session, Joining] = {}
        # the live members, and the front end each was filed under
        self._live: dict[Session, IFrontEnd] = {}
        # the live members by front end: what a delivery walks
        self._frontEnds: dict[IFrontEnd, dict[Session, IMember]] = {}
        self.subscribed = False
        self._failure: Failure | None = None
        self._waiters: list[Deferred[None]] = []
        self._batching: PresenceBatching | None = None
        # in-process subscribers (L{portshare.hub.Hub.subscribe}): not members, no presence
        self._watchers: list[Callable[[RoomEvent], None]] = []

    def __len__(self) -> int:
        """How many members the room has here, joining or live."""
        return len(self._joining) + len(self._live)

    def whenSubscribed(self) -> Deferred[None]:
        """A Deferred that fires once the broker delivers this room (or failed to)."""
        if self.subscribed:
            return succeed(None)
        if self._failure is not None:
            return fail(self._failure)
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        return d

    def subscribeDone(self, result: Failure | None) -> None:
        """The broker's subscription to the room completed, or failed."""
        if isinstance(result, Failure):
            self._failure = result
        else:
            self.subscribed = True
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(None)

    # -- IRoomListener

    def messagePublished(self, message: Message) -> None:
        self.deliver(message)

    def presenceChanged(self, presence: Presence) -> None:
        small = len(self) <= self._limits.presenceBatchAbove
        batching = self._batching
        if batching is not None and small and batching.idle():
            self._batching = batching = None
        if batching is None:
            if small:
                self.deliver(presence)
                return
            limits = self._limits
            batching = self._batching = PresenceBatching(
                self.room,
                self._clock,
                self._broker,
                limits.presenceBatchInterval,
                limits.presenceMembersCap,
                self.deliver,
                self.nickCount,
            )
        batching.add(presence)

    # -- members

    def state(self, session: Session) -> Joining | Live | None:
        """Where C{session} stands in the room: its join in flight, L{LIVE}, or not here."""
        joining = self._joining.get(session)
        if joining is not None:
            return joining
        return LIVE if session in self._live else None

    def startJoining(self, session: Session, joining: Joining) -> None:
        """C{session} starts joining: the room's events go to C{joining}'s backlog."""
        self._joining[session] = joining

    def wentLive(self, session: Session) -> None:
        """C{session}'s join completed: events go to it directly from now on."""
        del self._joining[session]
        member = session.member
        frontEnd = member.frontEnd
        self._live[session] = frontEnd
        members = self._frontEnds.get(frontEnd)
        if members is None:
            members = self._frontEnds[frontEnd] = {}
        members[session] = member

    def remove(self, session: Session) -> Joining | Live | None:
        """Forget C{session}; @return: where it stood (only a live member's presence counts)."""
        joining = self._joining.pop(session, None)
        if joining is not None:
            return joining
        frontEnd = self._live.pop(session, None)
        if frontEnd is None:
            return None
        members = self._frontEnds[frontEnd]
        del members[session]
        if not members:
            del self._frontEnds[frontEnd]
        return LIVE

    def unused(self) -> bool:
        """Whether nobody here needs the room: no member, joining or live, and no watcher."""
        return not (self._joining or self._live or self._watchers)

    # -- in-process subscribers

    def watch(self, onEvent: Callable[[RoomEvent], None]) -> None:
        """Call C{onEvent} with each of the room's events from now on (see L{deliver})."""
        self._watchers.append(onEvent)

    def unwatch(self, onEvent: Callable[[RoomEvent], None]) -> None:
        """Stop calling C{onEvent}; a callable not watching is ignored."""
        if onEvent in self._watchers:
            self._watchers.remove(onEvent)

    def sessions(self) -> list[Session]:
        """The room's members here whose join completed."""
        return list(self._live)

    def nickCount(self) -> int:
        """How many distinct nicks the room's members here have."""
        return len({session.nick for session in (*self._joining, *self._live)})

    def closed(self) -> None:
        """This instance no longer serves the room: drop what presence is pending."""
        if self._batching is not None:
            self._batching.cancel()
            self._batching = None

    def deliver(self, event: RoomEvent) -> None:
        """Send one of the room's events to every member and watcher here."""
        outgoing = Outgoing(event)
        for joining in self._joining.values():  # after their snapshot, in order
            joining.backlog.append(outgoing)
        delivered = 0
        for frontEnd, members in list(self._frontEnds.items()):
            live = list(members.values())
            frontEnd.deliver(outgoing, live)
            delivered += len(live)
        self._metrics.messagesOut.inc(delivered)
        if self._watchers:
            self._tellWatchers(event)

    def _tellWatchers(self, event: RoomEvent) -> None:
        for onEvent in list(self._watchers):
            try:
                onEvent(event)
            except Exception:
                # the application's callback: its bug must not stop the room's deliveries
                self.log.failure("subscriber of {room} failed", room=self.room)


class PresenceBatching:
    """
    The presence of one big room, collected in a L{PendingPresence} and sent to the room's
    local members as one C{presence_batch} event, C{interval} seconds after the first event
    of the batch.  Its C{count} is the broker's, as in C{joined}, looked up when the batch
    is due (events arriving during the lookup join the batch); if the broker fails, the
    number of distinct nicks here (C{countHere}) stands in.

    @param deliver: sends a batch to the room's members.
    """

    __slots__ = (
        "_broker",
        "_call",
        "_cancelled",
        "_clock",
        "_countHere",
        "_deliver",
        "_interval",
        "_lookingUp",
        "pending",
        "room",
    )

    log = Logger()

    def __init__(
        self,
        room: str,
        clock: IReactorTime,
        broker: IBroker,
        interval: float,
        cap: int,
        deliver: Callable[[PresenceBatch], None],
        countHere: Callable[[], int],
    ) -> None:
        self.room = room
        self._clock = clock
        self._broker = broker
        self._interval = interval
        self._deliver = deliver
        self._countHere = countHere
        self.pending = PendingPresence(room, cap)
        self._call: IDelayedCall | None = None
        self._lookingUp = False
        self._cancelled = False

    def idle(self) -> bool:
        """Whether nothing is pending: the room may go back to single presence events."""
        return not self.pending and self._call is None and not self._lookingUp

    def add(self, presence: Presence) -> None:
        """Count one presence event; the first of a batch schedules its sending."""
        self.pending.add(presence)
        if self._call is None and not self._lookingUp:
            self._call = self._clock.callLater(self._interval, self._due)

    def cancel(self) -> None:
        """Drop the pending batch and its scheduled sending."""
        self._cancelled = True
        if self._call is not None:
            self._call.cancel()
            self._call = None

    def _due(self) -> None:
        self._call = None
        self._lookingUp = True
        d = self._broker.members(self.room, 0)
        d.addCallbacks(lambda found: found[1], self._localCount)
        d.addCallback(self._send)
        d.addErrback(lambda f: self.log.failure("sending presence of {room}", f, room=self.room))

    def _localCount(self, failure: Failure) -> int:
        self.log.warn(
            "no member count for {room}'s presence: {why}",
            room=self.room,
            why=failure.getErrorMessage(),
        )
        return self._countHere()

    def _send(self, count: int) -> None:
        self._lookingUp = False
        if self._cancelled:
            return
        batch = self.pending.take(count)
        if batch is not None:
            self._deliver(batch)
