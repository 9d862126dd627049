"""
Doubles of the hub's collaborators: a member and front end that record what they are sent,
and a WSGI thread seam that runs each request at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import orjson
from zope.interface import implementer

from portshare.hub import IFrontEnd, IMember
from portshare.wire import Outgoing
from portshare.wsgi import IWsgiThreads


@implementer(IFrontEnd)
class RecordingFrontEnd:
    """
    The L{IFrontEnd} of L{RecordingMember}s: frames each room event once (C{framings}
    counts how many times it did) and hands every member the same framed object.
    """

    def __init__(self) -> None:
        self.framings = 0

    def deliver(self, outgoing: Outgoing, members: Sequence[IMember]) -> None:
        framed = outgoing.framed(self, self._frame)
        for member in cast("Sequence[RecordingMember]", members):
            member.delivered(outgoing, framed)

    def _frame(self, outgoing: Outgoing) -> tuple[Any, bytes]:
        self.framings += 1
        return (outgoing.event, outgoing.payload)


@implementer(IMember)
class RecordingMember:
    """
    An L{IMember} that keeps what it is sent: C{events} in order as dicts, whether sent to
    it alone or delivered to a room through its C{frontEnd} (then C{framed} keeps the framed
    objects), and C{closed} as (code, reason) once closed.
    """

    def __init__(self, peer: str = "test", frontEnd: RecordingFrontEnd | None = None) -> None:
        self.peer = peer
        self.frontEnd = frontEnd if frontEnd is not None else _RECORDING
        self.events: list[dict[str, Any]] = []
        self.framed: list[Any] = []
        self.closed: tuple[int, str] | None = None

    def send(self, outgoing: Outgoing) -> None:
        self.events.append(orjson.loads(outgoing.payload))

    def delivered(self, outgoing: Outgoing, framed: Any) -> None:
        """A room event, framed by C{frontEnd} (see L{RecordingFrontEnd})."""
        self.framed.append(framed)
        self.events.append(orjson.loads(outgoing.payload))

    def closeWith(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def take(self) -> list[dict[str, Any]]:
        """The events received since the last call."""
        events, self.events = self.events, []
        return events

    def ofType(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == kind]


#: the front end of RecordingMembers made without one
_RECORDING = RecordingFrontEnd()


@implementer(IWsgiThreads)
class SynchronousThreads:
    """
    Runs a WSGI application at once in the calling thread (L{portshare.wsgi.IWsgiThreads}):
    a request to a mounted application is answered before C{dataReceived} returns, on a
    L{MemoryReactorClock}, with no thread.  Pass it as the C{threads} of
    L{portshare.apps.WsgiApp}.

    @ivar calls: how many application calls it ran.
    """

    def __init__(self) -> None:
        self.calls = 0

    def callInThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        self.calls += 1
        f(*args, **kwargs)

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        f(*args, **kwargs)
