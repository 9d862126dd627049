"""
The chat application: sessions, commands, the broker and the rooms, tied together.

Theory of operation:
 - Each front end (L{portshare.ws}, L{portshare.sse}, L{portshare.lines}) reads its own
   input into the typed commands of L{portshare.wire} and calls L{Hub.connected},
   L{Hub.received} (a command), L{Hub.receivedInvalid} (a frame that is none: unreadable,
   invalid, or binary) and L{Hub.disconnected}; the HTTP API calls L{Hub.publish}.  What a
   client sees goes back through its L{IMember}, as typed events with their encoding
   (L{portshare.wire.Outgoing}); no transport's framing is known here.
 - Every frame counts against the connection's rate limit, valid or not; a persistent flood
   closes the connection.
 - This instance subscribes to a room at the broker when its first local member joins and
   unsubscribes when the last one leaves: one subscription per room per instance, whose
   events L{portshare.rooms.RoomFanout} delivers to the local members.
 - A join is asynchronous (the broker may be remote): L{portshare.joining.Joining} decides
   each step, the hub carries them out.  While the join is in flight the member's live
   events are buffered, and once the C{joined} reply and the replayed history have been
   sent, buffered events the replay does not hold go out, so nothing is lost or sent twice.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from portshare import errors
from portshare.auth import JoinTokens
from portshare.broker import IBroker
from portshare.chat import Replay, RoomInfo, Session, TokenBucket
from portshare.deferreds import both
from portshare.errors import BadRequest, NotJoined, RemoteError, TooLarge, Unavailable
from portshare.joining import Abandon, Exit, Joining, joinedReply
from portshare.limits import Limits
from portshare.metrics import Metrics
from portshare.rooms import LIVE, IFrontEnd, IMember, RoomEvent, RoomFanout
from portshare.users import Gatekeeper
from portshare.wire import (
    Ack,
    Auth,
    Authed,
    Command,
    Error,
    Event,
    Join,
    Leave,
    Left,
    Message,
    Nick,
    Outgoing,
    Ref,
    Say,
    validRoom,
)

__all__ = ["Hub", "IFrontEnd", "IMember", "Subscription"]

#: commands kept while a connection's first auth is checked (beyond: refused and closed)
MAX_WAITING_FOR_AUTH = 32


def memberRows(counts: dict[tuple[str | None, str], int]) -> list[dict[str, Any]]:
    """Connection counts by (user, nick) as the server API lists members: by nick."""
    return [
        {"user": user, "nick": nick, "connections": n}
        for (user, nick), n in sorted(counts.items(), key=lambda kv: (kv[0][1], kv[0][0] or ""))
    ]


class Subscription:
    """
    An in-process subscriber's hold on one room (L{Hub.subscribe}).

    @ivar room: the room.
    @ivar ready: fires with C{None} once the broker delivers the room's events (at once with
        the memory broker; once subscribed with Redis), or fails with the reason it could not
        subscribe, after which the subscription is cancelled.
    @ivar active: whether events still reach the callback.
    """

    def __init__(
        self, room: str, hub: Hub, fanout: RoomFanout, onEvent: Callable[[RoomEvent], None]
    ) -> None:
        self.room = room
        self._hub = hub
        self._fanout = fanout
        self._onEvent = onEvent
        self.active = True
        self.ready: Deferred[None] = fanout.whenSubscribed()

    def cancel(self) -> None:
        """No more events; the instance stops serving the room if nobody else needs it."""
        if self.active:
            self.active = False
            self._hub._unwatch(self._fanout, self._onEvent)

    def _failed(self, failure: Failure) -> Failure:
        self.cancel()
        return failure


class Hub:
    """
    The chat service of one instance.

    @param broker: where offsets, history and presence live.
    @param clock: the time source for message timestamps and rate limits.
    @param joinTokens: when given, joins need a signed token (see L{portshare.auth}).
    """

    log = Logger()

    def __init__(
        self,
        broker: IBroker,
        clock: IReactorTime,
        limits: Limits,
        metrics: Metrics,
        joinTokens: JoinTokens | None = None,
        gate: Gatekeeper | None = None,
    ) -> None:
        self.broker = broker
        self.clock = clock
        self.limits = limits
        self.metrics = metrics
        self._joinTokens = joinTokens
        #: tokens and the application's rules (L{portshare.users})
        self.gate = gate if gate is not None else Gatekeeper()
        #: the open sessions of each authenticated user
        self._users: dict[str, set[Session]] = {}
        #: what sessions sent after their first auth, while it is checked (L{_waitForAuth})
        self._authWaiting: dict[Session, list[Callable[[], None]]] = {}
        broker.answerCommands(self.answerCommand)
        self._rooms: dict[str, RoomFanout] = {}
        self.sessions: set[Session] = set()
        self._noSessions: list[Deferred[None]] = []
        self._guests = itertools.count(1)
        self._handlers: dict[type, Callable[[Session, Any], None]] = {
            Join: self._join,
            Leave: self._leave,
            Say: self._say,
            Nick: self._nick,
            Auth: self._auth,
        }

    # -- connection lifecycle -------------------------------------------------------------

    def connected(self, member: IMember, identity: Any = None, address: str = "") -> Session:
        """
        A chat connection opened; @return: its session, to pass to later calls.

        @param identity: who its handshake's token says it is (L{portshare.identity.Identity}),
            or C{None}: anonymous, or (with C{--auth required}) to send C{auth} first.
        @param address: the client's address, for the application's rules.
        """
        limits = self.limits
        session = Session(
            member,
            nick=f"guest-{next(self._guests)}",
            bucket=TokenBucket(limits.rate, limits.burst, self.clock.seconds()),
            address=address,
        )
        self.sessions.add(session)
        if identity is not None:
            self._authenticated(session, identity)
        elif self.gate.waitsForAuth(None):
            session.waitingAuth = True
            session.timer = self.clock.callLater(self.gate.authTimeout, self._authTimedOut, session)
        return session

    def disconnected(self, session: Session) -> None:
        """A chat connection closed: leave every room it was in."""
        if session not in self.sessions:
            return
        session.closed = True
        self.sessions.discard(session)
        if session.timer is not None and session.timer.active():
            session.timer.cancel()
        session.timer = None
        self._authWaiting.pop(session, None)
        self._forgetUser(session)
        for room in list(session.rooms):
            self._removeFromRoom(session, room)
        if not self.sessions and self._noSessions:
            waiters, self._noSessions = self._noSessions, []
            for d in waiters:
                d.callback(None)

    def whenNoSessions(self) -> Deferred[None]:
        """A Deferred that fires once no chat connection is open (at once if none is)."""
        d: Deferred[None] = Deferred(lambda cancelled: self._noSessions.remove(cancelled))
        if not self.sessions:
            d.callback(None)
        else:
            self._noSessions.append(d)
        return d

    def received(self, session: Session, command: Command) -> None:
        """C{session} sent C{command} (one frame or line, parsed by its front end)."""
        if session.closed:
            return  # closing: what still arrives is not read
        if not session.admit(self.clock.seconds()):
            self._limited(session, command.ref)
            return
        if session.waitingAuth and type(command) is not Auth:
            if self._waitForAuth(session, lambda: self._dispatch(session, command)):
                return
            self._unauthorized(session, "send an auth message with your token first", command.ref)
            return
        self._dispatch(session, command)

    def _dispatch(self, session: Session, command: Command) -> None:
        try:
            self._handlers[type(command)](session, command)
        except RemoteError as e:
            self._refuse(session, e, command.ref)

    def _waitForAuth(self, session: Session, later: Callable[[], None]) -> bool:
        """
        With C{--auth required}, what a client sends after its first C{auth} and before
        that auth's check completed (a JWKS fetch, the connect hook) waits for it, bounded
        (a client need not wait for C{authed}: auth was first); @return: whether C{later}
        waits (C{False}: no auth in flight, or too much waiting: refuse and close).
        """
        waiting = self._authWaiting.get(session)
        if waiting is None:
            return False
        if len(waiting) >= MAX_WAITING_FOR_AUTH:
            del self._authWaiting[session]
            return False
        waiting.append(later)
        return True

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
        if session.waitingAuth:
            if self._waitForAuth(session, lambda: self._refuse(session, error, error.ref)):
                return
            self._unauthorized(session, "send an auth message with your token first", error.ref)
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
            session.member.send(Outgoing(event))

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
        if room in session.authorizing:
            raise BadRequest(f"already joining {room}")
        joined = len(session.rooms) + len(session.authorizing)
        if room not in session.rooms and joined >= self.limits.roomsPerConnection:
            raise TooLarge(f"a connection may join at most {self.limits.roomsPerConnection} rooms")
        if command.nick is not None:
            self._checkNick(session, command.nick)
        check = self.gate.join(  # raises Forbidden for the token's grants
            session.identity, command.nick or session.nick, session.address, room
        )
        if check is None:
            self._joinAllowed(session, command)
            return
        session.authorizingStarted(room)

        def answered(result: object) -> object:
            session.authorizingDone(room)
            return result

        check.addBoth(answered)
        check.addCallback(lambda _: None if session.closed else self._joinAllowed(session, command))
        check.addErrback(self._refuseFailure, session, command.ref)

    def _joinAllowed(self, session: Session, command: Join) -> None:
        """A join the token's grants and the application allow: carry it out."""
        try:
            self._joinNow(session, command)
        except RemoteError as e:
            self._refuse(session, e, command.ref)

    def _joinNow(self, session: Session, command: Join, byServer: bool = False) -> None:
        """
        Carry out a join that is allowed.

        @param byServer: the server API's join (L{joinUser}): the application put the user
            there, so no join token (C{--join-secret}) is asked for, and none mutes it.
        """
        room = command.room
        if byServer:
            session.mute.discard(room)
        elif self._joinTokens is not None:
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
        if fanout is not None:
            state = fanout.state(session)
            if state is LIVE:
                self._rejoin(session, fanout, command)
                return
            if state is not None:
                raise BadRequest(f"already joining {room}")
        else:
            fanout = self._open(room)
        session.rooms.add(room)
        joining = Joining(command, session.nick)
        fanout.startJoining(session, joining)
        if fanout.subscribed:  # most joins: no Deferred to wait on
            d = self._subscribed(None, session, fanout, joining)
        else:
            d = fanout.whenSubscribed().addCallback(self._subscribed, session, fanout, joining)
        d.addErrback(self._joinFailed, session, joining)

    # a join's steps: each tells the Joining what happened and carries out what it says next

    def _subscribed(
        self, _: object, session: Session, fanout: RoomFanout, joining: Joining
    ) -> Deferred[Any]:
        enter = joining.subscribed()
        d = self._enter(enter.room, enter.nick, self._userOf(session))
        return d.addCallback(self._entered, session, fanout, joining)

    def _entered(
        self, _: object, session: Session, fanout: RoomFanout, joining: Joining
    ) -> Deferred[Any] | None:
        step = joining.entered()
        if isinstance(step, Exit):
            self._exit(step.room, step.nick)
            return None
        d = self._snapshot(step.room, step.since, step.epoch)
        return d.addCallback(self._fetched, session, fanout, joining)

    def _fetched(
        self, snapshot: list[Any], session: Session, fanout: RoomFanout, joining: Joining
    ) -> None:
        replay, (members, count) = snapshot
        step = joining.fetched(replay, members, count, session.nick)
        if isinstance(step, Exit):
            self._exit(step.room, step.nick)
            return
        self._send(session, step.joined)
        for message in step.replay:
            self._send(session, message)
        fanout.wentLive(session)
        if step.backlog:
            member = session.member
            frontEnd, just = member.frontEnd, (member,)
            for outgoing in step.backlog:
                frontEnd.deliver(outgoing, just)
        if step.recount is not None:  # renamed while joining
            entered, nick = step.recount
            room = step.joined.room
            self._exit(room, entered)
            self._enter(room, nick, self._userOf(session)).addErrback(self._logFailure, "enter")

    def _joinFailed(self, failure: Failure, session: Session, joining: Joining) -> None:
        step = joining.failed()
        if isinstance(step, Abandon):
            if step.exit is not None:
                self._exit(step.room, step.exit)
            self._removeFromRoom(session, step.room)
        elif isinstance(step, Exit):
            self._exit(step.room, step.nick)
        self._refuseFailure(failure, session, joining.command.ref)

    def _snapshot(self, room: str, since: int | None, epoch: str | None) -> Deferred[Any]:
        return both(
            self.broker.replay(room, since, epoch),
            self.broker.members(room, self.limits.presenceMembersCap),
        )

    def _rejoin(self, session: Session, fanout: RoomFanout, command: Join) -> None:
        """A live member joins its room again: the replay, without presence."""

        def fetched(snapshot: list[Any]) -> None:
            if fanout.state(session) is None:
                return  # left meanwhile
            replay: Replay = snapshot[0]
            members, count = snapshot[1]
            self._send(session, joinedReply(command, replay, members, count))
            for message in replay.messages:
                self._send(session, message)

        d = self._snapshot(command.room, command.since, command.epoch)
        d.addCallback(fetched)
        d.addErrback(self._refuseFailure, session, command.ref)

    def _leave(self, session: Session, command: Leave) -> None:
        if command.room not in session.rooms:
            raise NotJoined(f"not in room {command.room}")
        self._removeFromRoom(session, command.room)
        self._send(session, Left(room=command.room, ref=command.ref))

    def _removeFromRoom(self, session: Session, room: str) -> None:
        session.rooms.discard(room)
        session.joinedByServer(room, joined=False)
        session.mute.discard(room)
        fanout = self._rooms.get(room)
        if fanout is None:
            return
        state = fanout.remove(session)
        if state is LIVE:
            # only a member whose join completed has its presence counted
            self._exit(room, session.nick)
        elif state is not None:
            state.left()  # its join undoes what it counted
        self._closeIfUnused(fanout)

    def _open(self, room: str) -> RoomFanout:
        """This instance starts serving C{room}: its fan-out, subscribed at the broker."""
        fanout = self._rooms[room] = RoomFanout(
            room, self.broker, self.clock, self.limits, self.metrics
        )
        self.metrics.rooms.set(len(self._rooms))
        self.broker.subscribe(room, fanout).addBoth(fanout.subscribeDone)
        return fanout

    def _closeIfUnused(self, fanout: RoomFanout) -> None:
        """The room has no member or subscriber here any more: stop serving it."""
        if not fanout.unused() or self._rooms.get(fanout.room) is not fanout:
            return
        del self._rooms[fanout.room]
        fanout.closed()
        self.metrics.rooms.set(len(self._rooms))
        self.broker.unsubscribe(fanout.room).addErrback(self._logFailure, "unsubscribe")

    def _say(self, session: Session, command: Say) -> None:
        room = command.room
        if room not in session.rooms:
            raise NotJoined(f"join {room} before saying anything there")
        if room in session.mute:
            raise errors.Forbidden(f"your token does not allow saying anything in {room}")
        check = self.gate.publish(  # raises Forbidden for the token's grants
            session.identity, session.nick, session.address, room, command.text
        )
        if check is None and not session.says:
            self._publishSaid(session, command, command.text)
            return
        # the application decides: its answers may come in any order, the says go out in
        # the order they came (each with its ack or its error)
        if session.says is None:
            session.says = deque()
        entry: list[Any] = [command, None, False]
        session.says.append(entry)

        def decided(result: Any) -> None:
            entry[1], entry[2] = result, True
            self._drainSays(session)

        (check if check is not None else succeed(command.text)).addBoth(decided)

    def _drainSays(self, session: Session) -> None:
        says = session.says
        while says and says[0][2]:
            command, result, _ = says.popleft()
            if session.closed:
                continue
            if isinstance(result, Failure):
                self._refuseFailure(result, session, command.ref)
            else:
                self._publishSaid(session, command, result)

    def _publishSaid(self, session: Session, command: Say, text: str) -> None:
        room = command.room
        self.metrics.messagesIn.inc()
        d = self._brokerPublish(room, session.nick, text, self._userOf(session))
        if command.ref is not None:
            ref = command.ref
            d.addCallback(
                lambda message: self._send(session, Ack(ref=ref, offset=message.offset, room=room))
            )
        d.addErrback(self._refuseFailure, session, command.ref)

    def _brokerPublish(
        self, room: str, nick: str, text: str, user: str | None
    ) -> Deferred[Message]:
        return self.broker.publish(room, nick, text, self.now(), user)

    def _nick(self, session: Session, command: Nick) -> None:
        self._checkNick(session, command.nick)
        self._renick(session, command.nick)

    def _checkNick(self, session: Session, nick: str) -> None:
        """A user's nick is its token's: another would let it pass for someone else."""
        if session.identity is not None and nick != session.nick:
            raise errors.Forbidden("your nick comes from your token")

    # -- users ------------------------------------------------------------------------------

    @staticmethod
    def _userOf(session: Session) -> str | None:
        return session.identity.user if session.identity is not None else None

    def _auth(self, session: Session, command: Auth) -> None:
        if session.waitingAuth:
            self._authWaiting.setdefault(session, [])
        d = self.gate.authenticate(command.token)
        d.addCallback(self._authChecked, session, command)
        d.addErrback(self._authFailed, session, command.ref)

    def _authChecked(self, identity: Any, session: Session, command: Auth) -> Any:
        if session.closed:
            return None
        current = session.identity
        if current is not None and identity.user != current.user:
            raise errors.Unauthorized("a refreshed token must name the same user")
        if current is not None:  # a refresh: the connect rule allowed this user already
            self._authenticated(session, identity)
            self._sendAuthed(session, identity, command.ref)
            return None
        # the first token of a connection that had none: the application's connect rule,
        # as at a handshake with the token (or a user it refuses would connect anonymously,
        # then auth); with --auth optional a refusal leaves the connection anonymous
        d = self.gate.connect(identity, session.address)

        def allowed(_: object) -> None:
            waiting = self._authWaiting.pop(session, [])
            if session.closed:
                return
            session.waitingAuth = False
            self._authenticated(session, identity)
            self._sendAuthed(session, identity, command.ref)
            for later in waiting:  # in the order they came
                if session.closed:
                    break
                later()

        return d.addCallback(allowed)

    def _sendAuthed(self, session: Session, identity: Any, ref: Ref | None) -> None:
        self._send(session, Authed(user=identity.user, exp=int(identity.expires), ref=ref))

    def _authFailed(self, failure: Failure, session: Session, ref: Ref | None) -> None:
        if session.closed:
            return
        if session.waitingAuth:
            self._authWaiting.pop(session, None)  # dropped with the connection
            error: Any = failure.value
            reason = getattr(error, "reason", "the token was refused")
            code = getattr(error, "code", errors.UNAUTHORIZED)
            if code == errors.FORBIDDEN:
                self._refuse(session, error, ref)
                self._close(session, errors.CLOSE_POLICY, "forbidden")
                return
            self._unauthorized(session, reason, ref)
            return
        self._refuseFailure(failure, session, ref)

    def _authenticated(self, session: Session, identity: Any) -> None:
        """C{session} is C{identity} from now on, until its token's deadline."""
        first = session.identity is None
        session.identity = identity
        self._users.setdefault(identity.user, set()).add(session)
        if session.timer is not None and session.timer.active():
            session.timer.cancel()
        delay = max(0.0, self.gate.deadline(identity) - self.clock.seconds())
        session.timer = self.clock.callLater(delay, self._expired, session)
        if first:
            self._renick(session, identity.nick)
            return
        # a refresh may grant less: the rooms the new token no longer allows are left (those
        # the server API put it in stay: the application decided them)
        for room in sorted(session.rooms - session.serverRooms):
            if not identity.mayJoin(room):
                self._removeFromRoom(session, room)
                self._send(session, Left(room=room))

    def _forgetUser(self, session: Session) -> None:
        user = self._userOf(session)
        if user is not None:
            sessions = self._users.get(user)
            if sessions is not None:
                sessions.discard(session)
                if not sessions:
                    del self._users[user]

    def _expired(self, session: Session) -> None:
        session.timer = None
        self.log.info("{peer}: token expired", peer=session.member.peer)
        self._close(session, errors.CLOSE_TOKEN_EXPIRED, "token expired")

    def _authTimedOut(self, session: Session) -> None:
        session.timer = None
        if session.waitingAuth and not session.closed:
            self._unauthorized(
                session, f"no auth message within {self.gate.authTimeout:g} seconds", None
            )

    def _unauthorized(self, session: Session, reason: str, ref: Ref | None) -> None:
        """Error C{unauthorized}, then the connection closes (C{--auth required})."""
        self._refuse(session, errors.Unauthorized(reason), ref)
        self._close(session, errors.CLOSE_POLICY, "unauthorized")

    def _close(self, session: Session, code: int, reason: str) -> None:
        if session.closed:
            return
        session.closed = True
        session.member.closeWith(code, reason)

    def userSessions(self, user: str) -> list[Session]:
        """This instance's open sessions of C{user} (not those closing: a second disconnect
        while the first one's close handshakes run counts none of them again)."""
        return [s for s in self._users.get(user, ()) if not s.closed]

    # -- the server API, on every instance (through the broker's commands) ----------------

    def command(self, message: dict[str, Any]) -> Deferred[list[dict[str, Any]]]:
        """
        Carry out a server API command on every instance the broker links (this one too):
        C{{"op": "disconnect", "user": U, "reason": R, "refuseFor": S}}, C{{"op": "join" |
        "leave", "user": U, "room": R}}, C{{"op": "members", "room": R}}; @return: a
        Deferred of each instance's answer (L{answerCommand}).
        """
        return self.broker.command(message)

    def answerCommand(self, message: dict[str, Any]) -> dict[str, Any]:
        """This instance's part of a server API command (see L{command})."""
        op = message.get("op")
        if op == "disconnect":
            return {
                "connections": self.disconnectUser(
                    message["user"], message.get("reason"), message.get("refuseFor")
                )
            }
        if op == "join":
            return {"connections": self.joinUser(message["user"], message["room"])}
        if op == "leave":
            return {"connections": self.removeUser(message["user"], message["room"])}
        if op == "members":
            return {"members": self.localMembers(message["room"])}
        return {"error": f"unknown op {op!r}"}

    def disconnectUser(
        self, user: str, reason: str | None = None, refuseFor: float | None = None
    ) -> int:
        """Close every connection of C{user} here (4000); with C{refuseFor}, refuse the
        user's tokens here for that many seconds.  @return: how many were closed."""
        if refuseFor:
            self.gate.refuse(user, self.clock.seconds() + refuseFor)
        sessions = self.userSessions(user)
        for session in sessions:
            self._close(session, errors.CLOSE_DISCONNECTED, reason or "disconnected by the server")
        return len(sessions)

    def joinUser(self, user: str, room: str) -> int:
        """Put C{user}'s open connections here into C{room}; @return: how many."""
        sessions = [s for s in self.userSessions(user) if not s.closed and not s.waitingAuth]
        most = self.limits.roomsPerConnection
        for session in sessions:
            if room in session.rooms or room in session.authorizing:
                continue
            try:
                if len(session.rooms) + len(session.authorizing) >= most:
                    # the limit holds for the server's joins too: it bounds each
                    # connection's subscriptions and presence, whoever asks
                    raise TooLarge(f"a connection may join at most {most} rooms")
                self._joinNow(session, Join(room=room), byServer=True)
                session.joinedByServer(room)
            except RemoteError as e:
                self._refuse(session, e, None)
        return len(sessions)

    def removeUser(self, user: str, room: str) -> int:
        """Take C{user}'s connections here out of C{room} (they get C{left}); @return: how
        many were in it."""
        sessions = [s for s in self.userSessions(user) if room in s.rooms]
        for session in sessions:
            self._removeFromRoom(session, room)
            self._send(session, Left(room=room))
        return len(sessions)

    def localMembers(self, room: str) -> list[dict[str, Any]]:
        """This instance's members of C{room}: user, nick, and how many connections."""
        fanout = self._rooms.get(room)
        counts: dict[tuple[str | None, str], int] = {}
        if fanout is not None:
            for session in fanout.sessions():
                key = (self._userOf(session), session.nick)
                counts[key] = counts.get(key, 0) + 1
        return memberRows(counts)

    def _renick(self, session: Session, nick: str) -> None:
        old, session.nick = session.nick, nick
        if old == nick:
            return
        for room in session.rooms:
            fanout = self._rooms.get(room)
            if fanout is not None and fanout.state(session) is LIVE:
                self._exit(room, old)
                self._enter(room, nick, self._userOf(session)).addErrback(self._logFailure, "enter")

    def _exit(self, room: str, nick: str) -> None:
        self.broker.exit(room, nick).addErrback(self._logFailure, "exit")

    def _enter(self, room: str, nick: str, user: str | None) -> Deferred[Any]:
        return self.broker.enter(room, nick, user)

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

    def publish(
        self, room: str, nick: str, text: str, user: str | None = None
    ) -> Deferred[Message]:
        """
        Publish a message that did not come from a chat connection (the HTTP API, the
        application's code); C{user}: on behalf of that user.
        """
        self.metrics.messagesIn.inc()
        return self._brokerPublish(room, nick, text, user)

    def subscribe(self, room: str, onEvent: Callable[[RoomEvent], None]) -> Subscription:
        """
        Call C{onEvent} in-process with each event of C{room} (a L{Message}, L{Presence} or
        L{PresenceBatch}) from now on, on every instance the broker links, as the room's
        members see them; the subscriber is not a member (no presence, no nick).

        @raise BadRequest: C{room} is not a valid room name.
        """
        room = validRoom(room)
        fanout = self._rooms.get(room)
        if fanout is None:  # (not "or": an empty fanout is falsy, it has a __len__)
            fanout = self._open(room)
        fanout.watch(onEvent)
        subscription = Subscription(room, self, fanout, onEvent)
        subscription.ready.addErrback(subscription._failed)
        return subscription

    def _unwatch(self, fanout: RoomFanout, onEvent: Callable[[RoomEvent], None]) -> None:
        fanout.unwatch(onEvent)
        self._closeIfUnused(fanout)

    def rooms(self) -> Deferred[list[RoomInfo]]:
        return self.broker.rooms()

    def history(self, room: str, since: int, limit: int) -> Deferred[Any]:
        return self.broker.history(room, since, limit)
