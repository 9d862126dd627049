"""
The embedded broker: everything in this process's memory, nothing to install.

History is lost when the process stops; every room gets a fresh epoch then, so clients that
resume with offsets from before learn that recovery was incomplete.  Rooms are kept in
least-recently-used order and idle ones are forgotten beyond C{maxRooms}.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from zope.interface import implementer

from portshare.broker import IBroker, IRoomListener
from portshare.broker.commands import LocalCommands
from portshare.chat import PresenceBook, Replay, RoomInfo, RoomLog
from portshare.errors import Unavailable
from portshare.wire import Message, Presence


def _newEpoch() -> str:
    return secrets.token_hex(6)


@implementer(IBroker)
class MemoryBroker(LocalCommands):
    """
    An L{IBroker} for one process.

    @param history: messages kept per room.
    @param maxRooms: rooms kept at most; a new room beyond it evicts the least recently used
        room that no one is subscribed to, or is refused with L{Unavailable}.
    @param newEpoch: makes epochs (injectable for tests).
    """

    log = Logger()

    def __init__(
        self, history: int, maxRooms: int, newEpoch: Callable[[], str] = _newEpoch
    ) -> None:
        self._history = history
        self._maxRooms = maxRooms
        self._newEpoch = newEpoch
        self._logs: OrderedDict[str, RoomLog] = OrderedDict()
        self._listeners: dict[str, IRoomListener] = {}
        self._presence = PresenceBook()
        #: the user id of each authenticated (room, nick) present, for its leave event
        self._users: dict[tuple[str, str], str] = {}
        self.unavailableReason: str | None = None

    # lifecycle

    def start(self) -> Deferred[None]:
        return succeed(None)

    def stop(self) -> Deferred[None]:
        return succeed(None)

    # rooms

    def _log(self, room: str, create: bool) -> RoomLog | None:
        log = self._logs.get(room)
        if log is not None:
            self._logs.move_to_end(room)
            return log
        if not create:
            return None
        if len(self._logs) >= self._maxRooms:
            self._evictIdleRoom()
        log = self._logs[room] = RoomLog(room, self._newEpoch(), self._history)
        return log

    def _evictIdleRoom(self) -> None:
        for name in self._logs:
            if name not in self._listeners and not self._presence.count(name):
                del self._logs[name]
                return
        raise Unavailable(f"the server holds {self._maxRooms} rooms, its limit")

    def subscribe(self, room: str, listener: IRoomListener) -> Deferred[None]:
        try:
            self._log(room, create=True)
        except Unavailable as e:
            return fail(e)
        self._listeners[room] = listener
        return succeed(None)

    def unsubscribe(self, room: str) -> Deferred[None]:
        self._listeners.pop(room, None)
        return succeed(None)

    def publish(
        self, room: str, nick: str, text: str, ts: int, user: str | None = None
    ) -> Deferred[Message]:
        try:
            log = self._log(room, create=True)
        except Unavailable as e:
            return fail(e)
        assert log is not None
        message = log.append(nick, text, ts, user)
        listener = self._listeners.get(room)
        if listener is not None:
            listener.messagePublished(message)
        return succeed(message)

    def replay(self, room: str, since: int | None, epoch: str | None) -> Deferred[Replay]:
        try:
            log = self._log(room, create=True)
        except Unavailable as e:
            return fail(e)
        assert log is not None
        return succeed(log.replay(since, epoch))

    def history(
        self, room: str, since: int, limit: int
    ) -> Deferred[tuple[str | None, tuple[Message, ...]]]:
        log = self._log(room, create=False)
        if log is None:
            return succeed((None, ()))
        return succeed((log.epoch, log.after(since, limit)))

    # presence

    def enter(self, room: str, nick: str, user: str | None = None) -> Deferred[None]:
        if self._presence.enter(room, nick):
            self._announce(Presence(room=room, event="join", nick=nick, user=user))
            if user is not None:
                self._users[(room, nick)] = user
        return succeed(None)

    def exit(self, room: str, nick: str) -> Deferred[None]:
        if self._presence.exit(room, nick):
            user = self._users.pop((room, nick), None)
            self._announce(Presence(room=room, event="leave", nick=nick, user=user))
        return succeed(None)

    def _announce(self, presence: Presence) -> None:
        listener = self._listeners.get(presence.room)
        if listener is not None:
            listener.presenceChanged(presence)

    def members(self, room: str, cap: int | None) -> Deferred[tuple[tuple[str, ...], int]]:
        return succeed(self._presence.members(room, cap))

    def rooms(self) -> Deferred[list[RoomInfo]]:
        return succeed(
            [
                RoomInfo(room=name, members=self._presence.count(name), offset=log.last)
                for name, log in sorted(self._logs.items())
            ]
        )
