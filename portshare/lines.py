"""
C{Upgrade: portshare-lines}: the chat as a line protocol, on the same port and the same hub.

After C{101 Switching Protocols} every line (LF or CRLF terminated, UTF-8) is one command:
either the JSON object the WebSocket carries in a text frame (C{{"type": "say", ...}}), or a
short form for typing by hand (verbs are case-insensitive)::

    NICK nick            {"type": "nick", "nick": nick}
    JOIN room            {"type": "join", "room": room}
    JOIN room since      ... with "since": since (an offset)
    JOIN room since ep   ... and "epoch": ep
    SAY room text...     {"type": "say", "room": room, "text": "text..."}
    LEAVE room           {"type": "leave", "room": room}
    QUIT                 the server closes the connection

Every server line is one JSON object, exactly the events of the WebSocket contract
(C{joined}, C{message}, C{presence}, C{left}, C{ack}, C{error}, and the extension
C{presence_batch}), plus C{{"type": "close",
"code": C, "reason": R}} right before the server closes the connection (C uses the WebSocket
close codes: 1001 going away, 1008 policy, 1009 line too long, 1013 too slow).  Blank lines are
ignored.  Limits are the WebSocket's: line length (C{--max-message-size}), rate, rooms per
connection, and the same slow-consumer policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import orjson
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, connectionDone
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from portshare import errors
from portshare.backpressure import CLOSE, DROP, Backpressure
from portshare.errors import RemoteError
from portshare.hub import Hub, IFrontEnd, IMember
from portshare.wire import Command, Outgoing, commandFrom, parseCommand

TOKEN = "portshare-lines"


def parseLine(line: bytes, maxText: int = 4096) -> Command:
    """
    One client line as a command: the line is a frame's JSON object, or a short form,
    validated as that JSON object would be (L{portshare.wire.commandFrom}).

    @param maxText: the longest C{text} accepted in a C{say}.
    @raise RemoteError: as for a frame: an incomplete short form or an unknown verb is
        refused with a clear reason.
    """
    stripped = line.strip()
    if stripped.startswith(b"{"):
        return parseCommand(stripped, maxText)
    return commandFrom(shortForm(stripped), maxText)


def shortForm(line: bytes) -> dict[str, Any]:
    """
    The fields of the JSON command a short form stands for (see the module docstring),
    missing ones left out.
    """
    text = line.strip().decode("utf-8", "replace")
    verb, _, rest = text.partition(" ")
    verb = verb.lower()
    command: dict[str, Any] = {"type": verb}
    if verb == "nick":
        command["nick"] = rest.strip() or None
    elif verb == "say":
        room, _, said = rest.lstrip().partition(" ")
        command.update(room=room or None, text=said or None)
    elif verb in ("join", "leave"):
        args = rest.split()
        command["room"] = args[0] if args else None
        if verb == "join" and len(args) > 1:
            command["since"] = _offset(args[1])
            if len(args) > 2:
                command["epoch"] = args[2]
    return {k: v for k, v in command.items() if v is not None}


def _offset(text: str) -> int | str:
    """An offset's digits as the number; anything else as is, which validation refuses."""
    try:
        return int(text) if text.isdigit() else text
    except ValueError:  # digits int() does not read, such as superscripts
        return text


@implementer(IMember)
class LinesProtocol(LineOnlyReceiver):
    """One chat connection speaking C{portshare-lines}; everything else is in the hub."""

    delimiter = b"\n"
    log = Logger()
    session: Any = None
    backpressure: Backpressure | None = None
    closing = False

    def __init__(self, factory: LinesFactory, peer: str) -> None:
        self.factory = factory
        self.peer = peer
        self.MAX_LENGTH = factory.hub.limits.maxMessageSize

    def connectionMade(self) -> None:
        hub = self.factory.hub
        self.session = hub.connected(
            self, identity=getattr(self, "identity", None), address=getattr(self, "address", "")
        )
        limits = hub.limits
        self.backpressure = Backpressure(
            self.factory.clock, limits.slowConsumerBytes, limits.slowConsumerSeconds, self.tooSlow
        )
        self.transport.registerProducer(self.backpressure, True)  # type: ignore[union-attr]
        self.log.info("{peer} opened {token}", peer=self.peer, token=TOKEN)

    def lineReceived(self, line: bytes) -> None:
        if self.closing or not line.strip():
            return
        if line.strip().lower() == b"quit":
            self.closeWith(1000, "bye")
            return
        hub = self.factory.hub
        try:
            try:
                command = parseLine(line, hub.limits.maxText)
            except RemoteError as e:
                hub.receivedInvalid(self.session, e)
            else:
                hub.received(self.session, command)
        except Exception:
            self.log.failure("line from {peer} failed", peer=self.peer)
            self.closeWith(errors.CLOSE_SERVER_ERROR, "internal error")

    def lineLengthExceeded(self, line: bytes) -> None:
        self.closeWith(errors.CLOSE_TOO_BIG, f"a line is longer than {self.MAX_LENGTH} bytes")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.backpressure is not None:
            self.backpressure.stopProducing()
        if self.session is not None:
            self.factory.hub.disconnected(self.session)
            self.session = None
            self.log.info("{peer} closed {token}", peer=self.peer, token=TOKEN)

    # IMember

    @property
    def frontEnd(self) -> LinesFactory:
        return self.factory

    def send(self, outgoing: Outgoing) -> None:
        if self.closing:
            return
        payload = outgoing.payload
        self.transport.writeSequence([payload, b"\n"])  # type: ignore[union-attr]
        backpressure = self.backpressure
        if backpressure is not None and backpressure.paused:
            backpressure.wrote(len(payload) + 1)

    def writeEvent(self, line: bytes) -> None:
        """Write a room event's line, made once for all connections (L{LinesFactory})."""
        if self.closing:
            return
        backpressure = self.backpressure
        if backpressure is None or not backpressure.paused:
            self.transport.write(line)  # type: ignore[union-attr]
        elif backpressure.slow:
            self.factory.hub.metrics.drops.inc()
        else:
            self.transport.write(line)  # type: ignore[union-attr]
            backpressure.wrote(len(line))

    def closeWith(self, code: int, reason: str) -> None:
        """Say why in a C{close} line, then close the connection once it is written."""
        if self.closing:
            return
        self.closing = True
        self.transport.write(  # type: ignore[union-attr]
            orjson.dumps({"type": "close", "code": code, "reason": reason}) + b"\n"
        )
        self.transport.loseConnection()  # type: ignore[union-attr]

    def tooSlow(self) -> None:
        """This client cannot keep up: cut it, or drop its events until it drains."""
        hub = self.factory.hub
        hub.metrics.slowConsumers.inc()
        if self.factory.slowPolicy == DROP:
            self.log.info("{peer} too slow: dropping its events", peer=self.peer)
            return
        self.log.info("{peer} too slow: closing", peer=self.peer)
        session, self.session = self.session, None
        if session is not None:
            # out of its rooms after the fan-out that found it slow (it iterates over them now)
            self.factory.clock.callLater(0, hub.disconnected, session)
        self.closeWith(errors.CLOSE_TRY_AGAIN_LATER, "too slow to keep up")
        self.transport.abortConnection()  # type: ignore[union-attr]


@implementer(IFrontEnd)
class LinesFactory(Factory):
    """
    Builds L{LinesProtocol}s for L{portshare.upgrade.UpgradeDispatcher}, and is their
    L{IFrontEnd}: a room event's line is made once for all of them.

    @param hub: the chat.
    @param clock: for the slow-consumer timer.
    @param slowPolicy: L{CLOSE} or L{DROP}, as for the WebSocket.
    """

    def __init__(self, hub: Hub, clock: IReactorTime, slowPolicy: str = CLOSE) -> None:
        self.hub = hub
        self.clock = clock
        self.slowPolicy = slowPolicy

    def deliver(self, outgoing: Outgoing, members: Sequence[IMember]) -> None:
        line = outgoing.framed(self, _line)
        write = LinesProtocol.writeEvent  # a lookup less per connection than the bound method
        for protocol in cast("Sequence[LinesProtocol]", members):
            write(protocol, line)

    def buildProtocol(self, addr: Any) -> LinesProtocol:
        host = getattr(addr, "host", None)
        peer = f"{host}:{getattr(addr, 'port', '')}" if host else str(addr)
        return LinesProtocol(self, peer)


def _line(outgoing: Outgoing) -> bytes:
    return outgoing.payload + b"\n"
