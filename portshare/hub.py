"""
The chat application: sessions, commands, the broker and local fan-out, tied together.

Theory of operation:
 - Each front end (L{portshare.ws}, L{portshare.sse}, L{portshare.lines}) reads its own
   input into the typed commands of L{portshare.wire} and calls L{Hub.connected},
   L{Hub.received} (a command), L{Hub.receivedInvalid} (a frame that is none: unreadable,
   invalid, or binary) and L{Hub.disconnected}; the HTTP API calls L{Hub.publish}.
   Everything a client sees goes back through its L{IMember}.
 - Every frame counts against the connection's rate limit, valid or not; a persistent flood
   closes the connection.
 - This instance subscribes to a room at the broker when its first local member joins and
   unsubscribes when the last one leaves: one subscription per room per instance.  Each event
   the broker delivers is encoded and framed once (C{prepare}) and the same frame goes to every
   member.
 - A join is asynchronous (the broker may be remote): while it is in flight the member's live
   events are buffered, and once the C{joined} reply and the replayed history have been sent,
   buffered messages newer than the replay go out, so nothing is lost or sent twice.
 - Presence in a room with more local members than C{presenceBatchAbove} is not sent per
   event (that costs room-size frames per join) but collected (L{PresenceBatching}) and sent
   as one C{presence_batch} per C{presenceBatchInterval}.  Once a room has a batch pending,
   every presence event of the room joins it until it is sent, so the order is kept; the
   room goes back to single events at its first presence event after a batch was sent while
   it is no bigger than the threshold.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface, implementer

from portshare import errors
from portshare.auth import JoinTokens
from portshare.broker import IBroker, IRoomListener
from portshare.chat import PendingPresence, Replay, RoomInfo, Session, TokenBucket
from portshare.deferreds import both
from portshare.errors import BadRequest, NotJoined, RemoteError, TooLarge, Unavailable
from portshare.limits import Limits
from portshare.metrics import Metrics
from portshare.wire import (
    Ack,
    Command,
    Error,
    Event,
    Join,
    Joined,
    Leave,
    Left,
    Message,
    Nick,
    Presence,
    PresenceBatch,
    Ref,
    Say,
    encode,
)


class IMember(Interface):
    """One chat connection, as the hub sees it."""

    peer = Attribute("A short text naming the client, for logs.")

    def sendPayload(payload: bytes) -> None:
        """Send one text frame to this member alone."""

    def sendPrepared(prepared: Any) -> None:
        """Send a frame prepared once for every member (see C{Hub(prepare=...)})."""

    def closeWith(code: int, reason: str) -> None:
        """Close the connection with a WebSocket close code."""


@implementer(IRoomListener)
class RoomFanout:
    """
    This instance's members of one room, and the delivery of the room's events to them.

    @ivar members: each member's session, mapped to C{None} once live or to a list buffering
        C{(offset, frame)} pairs while its join is in flight.
    """

    __slots__ = (
        "_batching",
        "_failure",
        "_hub",
        "_live",
        "_waiters",
        "members",
        "room",
        "subscribed",
    )

    def __init__(self, hub: Hub, room: str) -> None:
        self._hub = hub
        self.room = room
        self.members: dict[
            Session, list[tuple[Message | Presence | PresenceBatch, Any]] | None
        ] = {}
        # the live members' sendPrepared: a delivery is one call per member
        self._live: dict[Session, Callable[[Any], None]] = {}
        self.subscribed = False
        self._failure: Failure | None = None
        self._waiters: list[Deferred[None]] = []
        self._batching: PresenceBatching | None = None

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

    def messagePublished(self, message: Message) -> None:
        self._deliver(message)

    def presenceChanged(self, presence: Presence) -> None:
        small = len(self.members) <= self._hub.limits.presenceBatchAbove
        batching = self._batching
        if batching is not None and small and batching.idle():
            self._batching = batching = None
        if batching is None:
            if small:
                self._deliver(presence)
                return
            batching = self._batching = PresenceBatching(self)
        batching.add(presence)

    def wentLive(self, session: Session) -> None:
        """C{session}'s join completed: events go to it directly from now on."""
        self.members[session] = None
        self._live[session] = session.member.sendPrepared

    def remove(self, session: Session) -> bool:
        """Forget C{session}; whether its join had completed (its presence counted)."""
        self.members.pop(session, None)
        return self._live.pop(session, None) is not None

    def closed(self) -> None:
        """This instance no longer serves the room: drop what presence is pending."""
        if self._batching is not None:
            self._batching.cancel()
            self._batching = None

    def _deliver(self, event: Message | Presence | PresenceBatch) -> None:
        prepared = self._hub.prepare(encode(event))
        live = self._live
        if len(live) != len(self.members):
            for pending in self.members.values():
                if pending is not None:  # still joining: after its snapshot, in order
                    pending.append((event, prepared))
        for send in list(live.values()):
            send(prepared)
        self._hub.metrics.messagesOut.inc(len(live))


class PresenceBatching:
    """
    The presence of one big room, collected in a L{PendingPresence} and sent to the room's
    local members as one C{presence_batch} frame, C{presenceBatchInterval} seconds after the
    first event of the batch.  Its C{count} is the broker's, as in C{joined}, looked up when
    the batch is due (events arriving during the lookup join the batch); if the broker
    fails, the number of distinct nicks here stands in.
    """

    __slots__ = ("_call", "_cancelled", "_fanout", "_lookingUp", "pending")

    log = Logger()

    def __init__(self, fanout: RoomFanout) -> None:
        self._fanout = fanout
        self.pending = PendingPresence(fanout.room, fanout._hub.limits.presenceMembersCap)
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
            hub = self._fanout._hub
            self._call = hub.clock.callLater(hub.limits.presenceBatchInterval, self._due)

    def cancel(self) -> None:
        """Drop the pending batch and its scheduled sending."""
        self._cancelled = True
        if self._call is not None:
            self._call.cancel()
            self._call = None

    def _due(self) -> None:
        self._call = None
        self._lookingUp = True
        fanout = self._fanout
        d = fanout._hub.broker.members(fanout.room, 0)
        d.addCallbacks(lambda found: found[1], self._localCount)
        d.addCallback(self._send)
        d.addErrback(lambda f: self.log.failure("sending presence of {room}", f, room=fanout.room))

    def _localCount(self, failure: Failure) -> int:
        self.log.warn(
            "no member count for {room}'s presence: {why}",
            room=self._fanout.room,
            why=failure.getErrorMessage(),
        )
        return len({session.nick for session in self._fanout.members})

    def _send(self, count: int) -> None:
        self._lookingUp = False
        if self._cancelled:
            return
        batch = self.pending.take(count)
        if batch is not None:
            self._fanout._deliver(batch)


def _newToJoiner(event: Message | Presence | PresenceBatch, last: int, nick: str) -> bool:
    """Whether a buffered event adds to what the C{joined} reply and replay already said."""
    if isinstance(event, Message):
        return event.offset > last
    if isinstance(event, PresenceBatch):
        return True  # it may repeat what joined said; clients apply it idempotently
    return not (event.event == "join" and event.nick == nick)


def _identity(payload: bytes) -> bytes:
    return payload


class Hub:
    """
    The chat service of one instance.

    @param broker: where offsets, history and presence live.
    @param clock: the time source for message timestamps and rate limits.
    @param prepare: frames an encoded event once for all members (the WebSocket factory's
        C{prepareMessage}); members get its result in L{IMember.sendPrepared}.
    @param joinTokens: when given, joins need a signed token (see L{portshare.auth}).
    """

    log = Logger()

    def __init__(
        self,
        broker: IBroker,
        clock: IReactorTime,
        limits: Limits,
        metrics: Metrics,
        prepare: Callable[[bytes], Any] = _identity,
        joinTokens: JoinTokens | None = None,
    ) -> None:
        self.broker = broker
        self.clock = clock
        self.limits = limits
        self.metrics = metrics
        self.prepare = prepare
        self._joinTokens = joinTokens
        self._rooms: dict[str, RoomFanout] = {}
        self.sessions: set[Session] = set()
        self._guests = itertools.count(1)
        self._handlers: dict[type, Callable[[Session, Any], None]] = {
            Join: self._join,
            Leave: self._leave,
            Say: self._say,
            Nick: self._nick,
        }

    # -- connection lifecycle -------------------------------------------------------------

    def connected(self, member: IMember) -> Session:
        """A chat connection opened; @return: its session, to pass to later calls."""
        limits = self.limits
        session = Session(
            member,
            nick=f"guest-{next(self._guests)}",
            bucket=TokenBucket(limits.rate, limits.burst, self.clock.seconds()),
        )
        self.sessions.add(session)
        return session

    def disconnected(self, session: Session) -> None:
        """A chat connection closed: leave every room it was in."""
        if session not in self.sessions:
            return
        session.closed = True
        self.sessions.discard(session)
        for room in list(session.rooms):
            self._removeFromRoom(session, room)

    def received(self, session: Session, command: Command) -> None:
        """C{session} sent C{command} (one frame or line, parsed by its front end)."""
        if session.closed:
            return  # closing: what still arrives is not read
        if not session.admit(self.clock.seconds()):
            self._limited(session, command.ref)
            return
        try:
            self._handlers[type(command)](session, command)
        except RemoteError as e:
            self._refuse(session, e, command.ref)

    def receivedInvalid(self, session: Session, error: RemoteError) -> None:
        """
        C{session} sent a frame that is no command: C{error} says why (with the client's
        C{ref} when it could be read; see L{portshare.wire.parseCommand} and
        L{portshare.wire.binaryFrameError}).  It is refused, and rate limited like any frame.
        """
        if session.closed:
            return
        if not session.admit(self.clock.seconds()):
            self._limited(session, error.ref)
            return
        self._refuse(session, error, error.ref)

    def _limited(self, session: Session, ref: Ref | None) -> None:
        """
        A frame of C{session} beyond its rate (every frame counts, valid or not): refused
        with C{ref}, or, once the strikes pass C{floodStrikes}, the connection is closed.
        """
        if session.strikes > self.limits.floodStrikes:
            self.log.info("{peer} closed for flooding", peer=session.member.peer)
            session.closed = True
            session.member.closeWith(errors.CLOSE_POLICY, "message rate limit exceeded")
            return
        self._refuse(
            session,
            errors.RateLimited(f"more than {self.limits.rate:g} messages per second"),
            ref,
        )

    # -- replies ----------------------------------------------------------------------------

    def _send(self, session: Session, event: Event) -> None:
        if not session.closed:
            session.member.sendPayload(encode(event))

    def _refuse(self, session: Session, error: Exception, ref: Ref | None) -> None:
        reply = Error.fromException(error, ref)
        self.metrics.refused(reply.code)
        self.log.info(
            "{peer} refused ({code}): {reason}",
            peer=session.member.peer,
            code=reply.code,
            reason=reply.reason,
        )
        self._send(session, reply)

    def _refuseFailure(self, failure: Failure, session: Session, ref: Ref | None) -> None:
        if isinstance(failure.value, errors.PortshareError):
            self._refuse(session, failure.value, ref)
            return
        self.log.failure("broker call failed", failure)
        self._refuse(session, Unavailable("the message broker is not available"), ref)

    # -- commands ---------------------------------------------------------------------------

    def _join(self, session: Session, command: Join) -> None:
        room = command.room
        if room not in session.rooms and len(session.rooms) >= self.limits.roomsPerConnection:
            raise TooLarge(f"a connection may join at most {self.limits.roomsPerConnection} rooms")
        if self._joinTokens is not None:
            grant = self._joinTokens.verify(command.token, self.clock.seconds())
            if not grant.mayJoin(room):
                raise errors.Forbidden(f"your token does not allow joining {room}")
            if grant.maySay(room):
                session.mute.discard(room)
            else:
                session.mute.add(room)
        if command.nick is not None:
            self._renick(session, command.nick)
        fanout = self._rooms.get(room)
        if fanout is not None and session in fanout.members:
            if fanout.members[session] is not None:
                raise BadRequest(f"already joining {room}")
            self._rejoin(session, command)
            return
        if fanout is None:
            fanout = self._rooms[room] = RoomFanout(self, room)
            self.metrics.rooms.set(len(self._rooms))
            self.broker.subscribe(room, fanout).addBoth(fanout.subscribeDone)
        session.rooms.add(room)
        fanout.members[session] = []
        nick = session.nick
        entered = False

        def enter(_: object) -> Deferred[None]:
            return self.broker.enter(room, nick)

        def snapshot(_: object) -> Deferred[Any] | None:
            nonlocal entered
            entered = True
            if session not in fanout.members:
                # left, or disconnected, while joining: undo the presence just counted
                self.broker.exit(room, nick).addErrback(self._logFailure, "exit")
                return None
            return self._snapshot(room, command)

        def joined(snapshot: list[Any] | None) -> None:
            if snapshot is None:
                return
            if session not in fanout.members:
                self.broker.exit(room, nick).addErrback(self._logFailure, "exit")
                return
            self._joined(snapshot, session, fanout, command)
            if session.nick != nick:  # renamed while joining
                self.broker.exit(room, nick).addErrback(self._logFailure, "exit")
                self.broker.enter(room, session.nick).addErrback(self._logFailure, "enter")

        def failed(failure: Failure) -> None:
            if fanout.members.get(session) is not None:  # still joining
                if entered:
                    fanout.wentLive(session)  # so that the removal undoes the presence
                self._removeFromRoom(session, room)
            self._refuseFailure(failure, session, command.ref)

        d = fanout.whenSubscribed()
        d.addCallback(enter)
        d.addCallback(snapshot)
        d.addCallback(joined)
        d.addErrback(failed)

    def _snapshot(self, room: str, command: Join) -> Deferred[Any]:
        return both(
            self.broker.replay(room, command.since, command.epoch),
            self.broker.members(room, self.limits.presenceMembersCap),
        )

    def _joined(
        self, snapshot: list[Any], session: Session, fanout: RoomFanout, command: Join
    ) -> None:
        replay: Replay = snapshot[0]
        nicks, count = snapshot[1]
        last = max(replay.last, replay.messages[-1].offset if replay.messages else 0)
        self._send(
            session,
            Joined(
                room=command.room,
                offset=last,
                epoch=replay.epoch,
                members=nicks,
                count=count,
                recovered=replay.recovered,
                ref=command.ref,
            ),
        )
        for message in replay.messages:
            self._send(session, message)
        pending = fanout.members.get(session)
        if pending is None:
            return
        fanout.wentLive(session)
        for event, prepared in pending:
            if _newToJoiner(event, last, session.nick):
                session.member.sendPrepared(prepared)

    def _rejoin(self, session: Session, command: Join) -> None:
        fanout = self._rooms[command.room]

        def joined(snapshot: list[Any]) -> None:
            if session in fanout.members:
                self._joined(snapshot, session, fanout, command)

        d = self._snapshot(command.room, command)
        d.addCallback(joined)
        d.addErrback(self._refuseFailure, session, command.ref)

    def _leave(self, session: Session, command: Leave) -> None:
        if command.room not in session.rooms:
            raise NotJoined(f"not in room {command.room}")
        self._removeFromRoom(session, command.room)
        self._send(session, Left(room=command.room, ref=command.ref))

    def _removeFromRoom(self, session: Session, room: str) -> None:
        session.rooms.discard(room)
        session.mute.discard(room)
        fanout = self._rooms.get(room)
        if fanout is None:
            return
        if fanout.remove(session):
            # only a member whose join completed has its presence counted
            self.broker.exit(room, session.nick).addErrback(self._logFailure, "exit")
        if not fanout.members:
            del self._rooms[room]
            fanout.closed()
            self.metrics.rooms.set(len(self._rooms))
            self.broker.unsubscribe(room).addErrback(self._logFailure, "unsubscribe")

    def _say(self, session: Session, command: Say) -> None:
        room = command.room
        if room not in session.rooms:
            raise NotJoined(f"join {room} before saying anything there")
        if room in session.mute:
            raise errors.Forbidden(f"your token does not allow saying anything in {room}")
        self.metrics.messagesIn.inc()
        d = self.broker.publish(room, session.nick, command.text, self.now())
        if command.ref is not None:
            ref = command.ref
            d.addCallback(
                lambda message: self._send(session, Ack(ref=ref, offset=message.offset, room=room))
            )
        d.addErrback(self._refuseFailure, session, command.ref)

    def _nick(self, session: Session, command: Nick) -> None:
        self._renick(session, command.nick)

    def _renick(self, session: Session, nick: str) -> None:
        old, session.nick = session.nick, nick
        if old == nick:
            return
        for room in session.rooms:
            fanout = self._rooms.get(room)
            if fanout is not None and fanout.members.get(session, ()) is None:
                self.broker.exit(room, old).addErrback(self._logFailure, "exit")
                self.broker.enter(room, nick).addErrback(self._logFailure, "enter")

    def _logFailure(self, failure: Failure, what: str) -> None:
        self.log.failure("broker {what} failed", failure, what=what)

    def stop(self) -> None:
        """The service stops: cancel the presence batches still pending."""
        for fanout in self._rooms.values():
            fanout.closed()

    # -- the HTTP API's entry points ------------------------------------------------------

    def now(self) -> int:
        """Milliseconds since the epoch, by the injected clock."""
        return int(self.clock.seconds() * 1000)

    def publish(self, room: str, nick: str, text: str) -> Deferred[Message]:
        """Publish a message that did not come from a chat connection (the HTTP API)."""
        self.metrics.messagesIn.inc()
        return self.broker.publish(room, nick, text, self.now())

    def rooms(self) -> Deferred[list[RoomInfo]]:
        return self.broker.rooms()

    def history(self, room: str, since: int, limit: int) -> Deferred[Any]:
        return self.broker.history(room, since, limit)
