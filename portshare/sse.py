"""
C{GET /sse?room=R&room=S}: the chat as Server-Sent Events, for clients without WebSocket.

One SSE stream is one chat member of the hub (an L{IMember}), joined to every C{room} of the
query; it only reads (publishing is C{POST /api/rooms/R/messages}).  Every event is the
WebSocket's JSON event as C{data}, its C{type} as the SSE C{event} name, and an C{id}::

    id: 3f9a1c2b7d4e:12
    event: message
    data: {"type":"message","room":"lobby","offset":12,...}

Theory of operation: the stream keeps each room's position, C{(epoch, offset)}, and every
event's C{id} encodes all of them, so that the C{Last-Event-ID} a browser's C{EventSource}
sends when it reconnects (to this instance or any other sharing the broker) resumes every
room at once.  With one room the id is C{EPOCH:OFFSET}; with several it is
C{ROOM=EPOCH:OFFSET} pairs joined by commas (rooms and epochs never contain C{=}, C{,} or
C{:}).  A room's position is set by its C{joined} event (the offset replayed from, or the
room's last offset on a fresh join) and advanced by each C{message}.  On reconnection each room
is joined with C{since} and C{epoch} from the id, so the C{joined} event says C{recovered}
exactly as on the WebSocket, and the messages missed follow it.  An unreadable id is ignored
(a fresh join).  C{?since=O} (or C{?lastEventId=ID}) does the same for clients that cannot
set headers on the first request.

Limits are the WebSocket's: at most C{roomsPerConnection} rooms (413 before streaming), the
connection caps of the shared port, the hub's rate limit, and the same slow-consumer policy
(L{Backpressure} is the request's producer); over HTTP/2, at most C{maxStreamsPerConnection}
streams share one connection (429 beyond).  A comment line (C{: keep-alive}) is sent every
C{keepAlive} seconds on the injected clock, so that proxies and browsers keep idle streams.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, cast

import orjson
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from portshare._twistedhttp import connectionOf
from portshare.admission import addressOf, identityOf
from portshare.backpressure import CLOSE, DROP, Backpressure
from portshare.errors import BadRequest, PortshareError, RateLimited, RemoteError, TooLarge
from portshare.httpjson import JsonResource, writeError
from portshare.hub import Hub, IFrontEnd, IMember
from portshare.wire import (
    Ack,
    Error,
    Event,
    Joined,
    Left,
    Message,
    Outgoing,
    Presence,
    PresenceBatch,
    commandFrom,
    validRoom,
)

#: seconds between keep-alive comments
KEEP_ALIVE = 15.0
#: milliseconds a browser waits before reconnecting (the stream's C{retry:})
RETRY_MS = 2000

Position = tuple[str, int]


def formatId(rooms: list[str], positions: dict[str, Position]) -> str:
    """The event id for the rooms' positions (rooms without one yet are left out)."""
    if len(rooms) == 1:
        position = positions.get(rooms[0])
        return f"{position[0]}:{position[1]}" if position else ""
    return ",".join(f"{r}={positions[r][0]}:{positions[r][1]}" for r in rooms if r in positions)


def parseId(text: str, rooms: list[str]) -> dict[str, Position]:
    """
    The positions an event id holds for C{rooms}; unreadable parts are left out.

    @param text: C{EPOCH:OFFSET} (for a single room) or C{ROOM=EPOCH:OFFSET,...}.
    """
    positions: dict[str, Position] = {}
    for part in text.strip().split(","):
        room, equals, position = part.strip().rpartition("=")
        if not equals:
            if len(rooms) != 1:
                continue
            room = rooms[0]
        epoch, colon, offset = position.rpartition(":")
        if room in rooms and colon and epoch and offset.isdigit() and len(epoch) <= 64:
            positions[room] = (epoch, int(offset))
    return positions


#: each event's C{event:} name, its C{type}
EVENT_NAMES: dict[type, bytes] = {
    Message: b"message",
    Joined: b"joined",
    Left: b"left",
    Ack: b"ack",
    Presence: b"presence",
    PresenceBatch: b"presence_batch",
    Error: b"error",
}


def eventBlock(outgoing: Outgoing) -> bytes:
    """What follows an event's C{id:} line: its C{event:} name and its JSON as C{data:}."""
    return b"event: %s\ndata: %s\n\n" % (EVENT_NAMES[type(outgoing.event)], outgoing.payload)


def _field(request: Request, name: bytes) -> str | None:
    values = request.args.get(name) if request.args else None
    return values[-1].decode("utf-8", "replace") if values else None


@implementer(IMember)
class SseStream:
    """One C{/sse} response: a member of the hub that writes events to the request."""

    log = Logger()

    def __init__(
        self,
        resource: SseResource,
        request: Request,
        rooms: list[str],
        resumeFrom: dict[str, Position],
    ) -> None:
        self.resource = resource
        self.request = request
        self.rooms = rooms
        # a resumed room keeps the position it resumes from until its joined event
        self.positions = {r: p for r, p in resumeFrom.items() if p[0]}
        self.resumeFrom = resumeFrom
        self.closing = False
        peer = request.getClientAddress()
        self.peer = f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"
        hub = resource.hub
        limits = hub.limits
        self.backpressure = Backpressure(
            resource.clock, limits.slowConsumerBytes, limits.slowConsumerSeconds, self.tooSlow
        )
        self._keepAlive: IDelayedCall | None = None
        self.session: Any = None
        #: the connection this stream is on (HTTP/2 carries several on one)
        self.connection = connectionOf(request)

    def start(self, nick: str | None, token: str | None) -> None:
        """Send the stream's head, and join every room."""
        request = self.request
        request.registerProducer(self.backpressure, True)
        request.notifyFinish().addBoth(self._finished)
        request.write(b"retry: %d\n: portshare sse\n\n" % RETRY_MS)
        hub = self.resource.hub
        self.session = hub.connected(self, identity=identityOf(request), address=addressOf(request))
        self.log.info("{peer} opened /sse {rooms}", peer=self.peer, rooms=",".join(self.rooms))
        for room in self.rooms:
            join: dict[str, Any] = {"type": "join", "room": room, "ref": room}
            if nick is not None:
                join["nick"] = nick
            if token is not None:
                join["token"] = token
            position = self.resumeFrom.get(room)
            if position is not None:
                epoch, join["since"] = position
                if epoch:
                    join["epoch"] = epoch
            try:
                command = commandFrom(join, hub.limits.maxText)
            except RemoteError as e:
                hub.receivedInvalid(self.session, e)
            else:
                hub.received(self.session, command)
            if self.session is None:
                return  # closed while joining (flood)
        self._schedule()

    def _schedule(self) -> None:
        self._keepAlive = self.resource.clock.callLater(self.resource.keepAlive, self._ping)

    def _ping(self) -> None:
        self._keepAlive = None
        if not self.closing:
            self._write(b": keep-alive\n\n")
            self._schedule()

    # IMember

    @property
    def frontEnd(self) -> SseResource:
        return self.resource

    def send(self, outgoing: Outgoing) -> None:
        self._send(outgoing.event, eventBlock(outgoing))

    def sendEvent(self, event: Event, block: bytes) -> None:
        """Write a room event, its L{eventBlock} made once for all streams."""
        backpressure = self.backpressure
        if backpressure.paused and backpressure.slow:
            self.resource.hub.metrics.drops.inc()
            return
        self._send(event, block)

    def _send(self, event: Event, block: bytes) -> None:
        if self.closing:
            return
        if isinstance(event, Joined):
            room = event.room
            resumed = self.resumeFrom.get(room)
            if resumed is None:
                self.positions[room] = (event.epoch, event.offset)
            elif resumed[0] in ("", event.epoch) and resumed[1] <= event.offset:
                self.positions[room] = (event.epoch, resumed[1])  # the replay follows
            else:
                self.positions[room] = (event.epoch, 0)  # all of the new history follows
        elif isinstance(event, Message) and event.room in self.positions:
            self.positions[event.room] = (self.positions[event.room][0], event.offset)
        self._write(b"id: %s\n%s" % (formatId(self.rooms, self.positions).encode(), block))

    def _write(self, data: bytes) -> None:
        self.request.write(data)
        if self.backpressure.paused:
            self.backpressure.wrote(len(data))

    def closeWith(self, code: int, reason: str) -> None:
        """Say why in a C{close} event and end the stream (a browser then reconnects)."""
        if self.closing:
            return
        self.request.write(
            b"event: close\ndata: %s\n\n" % orjson.dumps({"code": code, "reason": reason})
        )
        self.closing = True
        self._leave()
        self.request.unregisterProducer()
        self.request.finish()

    def tooSlow(self) -> None:
        """This client cannot keep up: cut it, or drop its events until it drains."""
        hub = self.resource.hub
        hub.metrics.slowConsumers.inc()
        if self.resource.slowPolicy == DROP:
            self.log.info("{peer} too slow: dropping its events", peer=self.peer)
            return
        self.log.info("{peer} too slow: closing /sse", peer=self.peer)
        self.closing = True
        session, self.session = self.session, None
        if session is not None:
            self.resource.clock.callLater(0, hub.disconnected, session)
        channel: Any = self.request.channel
        abort = getattr(channel, "forceAbortClient", None)
        if abort is not None:
            abort()
        else:
            self.request.loseConnection()

    def _leave(self) -> None:
        timer, self._keepAlive = self._keepAlive, None
        if timer is not None and timer.active():
            timer.cancel()
        self.backpressure.stopProducing()
        session, self.session = self.session, None
        if session is not None:
            self.resource.hub.disconnected(session)
        self.resource.forget(self)

    def _finished(self, result: object) -> None:
        if not self.closing:
            self.log.info("{peer} closed /sse", peer=self.peer)
        self.closing = True
        self._leave()


@implementer(IFrontEnd)
class SseResource(JsonResource):
    """
    C{/sse}: see the module docstring.  Refusals (and other methods than GET) are JSON.  It
    is its streams' L{IFrontEnd}: a room event's block is made once for all of them.
    """

    isLeaf = True
    #: event streams one connection may carry at once: HTTP/1.1 carries one, but HTTP/2
    #: multiplexes, and Twisted's HTTP/2 does not limit concurrent streams
    maxStreamsPerConnection = 8

    def __init__(
        self,
        hub: Hub,
        clock: IReactorTime,
        keepAlive: float = KEEP_ALIVE,
        slowPolicy: str = CLOSE,
    ) -> None:
        super().__init__()
        self.hub = hub
        self.clock = clock
        self.keepAlive = keepAlive
        self.slowPolicy = slowPolicy
        self.streams: set[SseStream] = set()
        self._perConnection: Counter[int] = Counter()

    def render_GET(self, request: Request) -> Any:
        try:
            rooms = self._rooms(request)
        except PortshareError as e:
            return writeError(request, e)
        resume = request.getHeader(b"last-event-id")
        text = resume.decode("utf-8", "replace") if resume else _field(request, b"lastEventId")
        positions = parseId(text, rooms) if text else {}
        since = _field(request, b"since")
        if since is not None and since.isdigit():
            for room in rooms:
                positions.setdefault(room, ("", int(since)))
        request.setResponseCode(200)
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache, no-store")
        request.setHeader(b"x-accel-buffering", b"no")  # nginx: do not buffer the stream
        if request.method == b"HEAD":
            return b""  # the headers a stream would have; no stream
        key = id(connectionOf(request))
        if self._perConnection[key] >= self.maxStreamsPerConnection:
            return writeError(
                request,
                RateLimited(
                    f"at most {self.maxStreamsPerConnection} event streams on one connection"
                ),
            )
        stream = SseStream(self, request, rooms, positions)
        self.streams.add(stream)
        self._perConnection[key] += 1
        # a user's nick is its token's: the nick= a client sends anyway (the web client's
        # fallback, portshare-cli) is not a request to pass for someone else, just unneeded
        nick = None if identityOf(request) is not None else _field(request, b"nick")
        stream.start(nick, _field(request, b"token"))
        return NOT_DONE_YET

    def _rooms(self, request: Request) -> list[str]:
        raw = request.args.get(b"room", []) if request.args else []
        rooms = list(dict.fromkeys(r.decode("utf-8", "replace") for r in raw))
        if not rooms:
            raise BadRequest("name at least one room: /sse?room=R")
        limit = self.hub.limits.roomsPerConnection
        if len(rooms) > limit:
            raise TooLarge(f"a stream may follow at most {limit} rooms")
        return [validRoom(r) for r in rooms]

    def deliver(self, outgoing: Outgoing, members: Sequence[IMember]) -> None:
        block = outgoing.framed(self, eventBlock)
        event = outgoing.event
        send = SseStream.sendEvent  # a lookup less per stream than the bound method
        for stream in cast("Sequence[SseStream]", members):
            send(stream, event, block)

    def forget(self, stream: SseStream) -> None:
        """A stream ended."""
        if stream in self.streams:
            self.streams.discard(stream)
            key = id(stream.connection)
            self._perConnection[key] -= 1
            if self._perConnection[key] <= 0:
                del self._perConnection[key]

    def closeAll(self, code: int, reason: str) -> None:
        """End every stream with a C{close} event (at shutdown)."""
        for stream in list(self.streams):
            stream.closeWith(code, reason)
