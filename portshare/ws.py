"""
Thin Autobahn protocols over the chat hub, and each endpoint's limits.

Every Autobahn callback maps one-to-one onto a L{portshare.hub.Hub} call; nothing here knows
what a room is.  The factories set every limit deliberately (Autobahn's defaults accept
anything): message and frame sizes, handshake timeouts, keepalive pings, and no compression
on the chat endpoint, whose frames are prepared once for all members.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeGuard, TypeVar, cast

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from portshare import errors
from portshare._autobahn import MIRRORS_AUTOBAHN, FastPaths, mirrored
from portshare.backpressure import CLOSE, DROP, Backpressure
from portshare.errors import RemoteError
from portshare.hub import Hub, IFrontEnd, IMember
from portshare.limits import Limits
from portshare.origins import OriginPolicy
from portshare.wire import SUBPROTOCOL, Outgoing, binaryFrameError, parseCommand


class EndpointProtocol(WebSocketServerProtocol):
    """
    The base of every portshare WebSocket endpoint's protocol: the factory's origin policy
    decides the handshake (a refused origin gets HTTP 403), and once open every write is a
    whole frame, sent at once (L{portshare.sendnow}).  The per-frame fast paths are a mixin
    of their own (L{portshare._autobahn.FastPaths}), put in front of each endpoint's protocol.
    """

    # not `log`: Autobahn's own `log` is a txaio logger that drops its debug chatter
    events = Logger()

    def onConnect(self, request: ConnectionRequest) -> Any:
        origin = request.headers.get("origin")
        if not self.factory.origins.allowsHandshake(origin, request.headers.get("host")):
            self.events.info(
                "{peer} refused: origin {origin} not allowed", peer=request.peer, origin=origin
            )
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "origin not allowed")
        return self.selectSubprotocol(request.protocols)

    def selectSubprotocol(self, offered: list[str]) -> str | None:
        return None

    def onOpen(self) -> None:
        # every write from here on is a whole frame: send it now instead of next turn
        sendImmediately = getattr(self.transport, "sendImmediately", None)
        if sendImmediately is not None:
            sendImmediately()

    def writePrepared(self, prepared: Any) -> None:
        """Write a frame prepared once for all members (L{FastPaths} does it faster)."""
        self.sendPreparedMessage(prepared)


@implementer(IMember)
class PlainChatProtocol(EndpointProtocol):
    """
    One chat connection on C{/ws}: frames in and out, everything else in the hub.  Autobahn's
    own frame handling: L{ChatProtocol} is the same with the fast paths in front.
    """

    session: Any = None
    backpressure: Backpressure | None = None
    cut = False
    #: set by the endpoint before the handshake (L{portshare.admission}): who connects
    identity: Any = None
    address = ""

    def selectSubprotocol(self, offered: list[str]) -> str | None:
        return SUBPROTOCOL if SUBPROTOCOL in offered else None

    def onOpen(self) -> None:
        super().onOpen()
        hub: Hub = self.factory.hub
        self.session = hub.connected(self, identity=self.identity, address=self.address)
        hub.metrics.wsOpened.labels("/ws").inc()
        self.events.info("{peer} opened /ws", peer=self.peer)
        limits = hub.limits
        self.backpressure = Backpressure(
            self.factory.reactor,
            limits.slowConsumerBytes,
            limits.slowConsumerSeconds,
            self.tooSlow,
        )
        # twisted.web registered its HTTP channel as the socket's producer; the socket is ours now
        transport: Any = self.transport
        transport.unregisterProducer()
        transport.registerProducer(self.backpressure, True)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        hub: Hub = self.factory.hub
        try:
            if isBinary:
                hub.receivedInvalid(self.session, binaryFrameError(payload))
                return
            try:
                command = parseCommand(payload, hub.limits.maxText)
            except RemoteError as e:
                hub.receivedInvalid(self.session, e)
            else:
                hub.received(self.session, command)
        except Exception:
            self.events.failure("chat message from {peer} failed", peer=self.peer)
            closeWithCode(self, errors.CLOSE_SERVER_ERROR, "internal error")

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.session is not None:
            hub: Hub = self.factory.hub
            hub.disconnected(self.session)
            ended = closedWith(self, code)
            hub.metrics.wsClosed.labels(str(ended)).inc()
            self.session = None
            self.events.info("{peer} closed /ws ({code})", peer=self.peer, code=ended)

    # IMember

    @property
    def frontEnd(self) -> ChatFactory:
        return self.factory  # type: ignore[no-any-return]

    def send(self, outgoing: Outgoing) -> None:
        if self.state != WebSocketProtocol.STATE_OPEN:
            return  # closing: a late reply (the broker answered after the close) has no reader
        payload = outgoing.payload
        self.sendMessage(payload)
        backpressure = self.backpressure
        if backpressure is not None and backpressure.paused:
            backpressure.wrote(len(payload))

    def sendPrepared(self, prepared: Any) -> None:
        """Write a room event, prepared once for all members (L{ChatFactory.deliver})."""
        if self.cut or self.state != WebSocketProtocol.STATE_OPEN:
            return
        backpressure = self.backpressure
        if backpressure is None or not backpressure.paused:
            self.writePrepared(prepared)
        elif backpressure.slow:
            self.factory.hub.metrics.drops.inc()
        else:
            self.sendPreparedMessage(prepared)
            backpressure.wrote(len(prepared.payload))

    def tooSlow(self) -> None:
        """This client cannot keep up: cut it (1013), or drop its events until it drains."""
        if self.cut:
            return
        hub: Hub = self.factory.hub
        hub.metrics.slowConsumers.inc()
        if self.factory.slowPolicy == DROP:
            self.events.info("{peer} too slow: dropping its events", peer=self.peer)
            return
        self.events.info("{peer} too slow: closing with 1013", peer=self.peer)
        self.cut = True  # nothing more is queued for it
        if self.session is not None:
            # out of its rooms right after the fan-out that found it slow (which is iterating
            # over the room's members now)
            self.factory.reactor.callLater(0, hub.disconnected, self.session)
        closeWithCode(self, errors.CLOSE_TRY_AGAIN_LATER, "too slow to keep up")

    def closeWith(self, code: int, reason: str) -> None:
        closeWithCode(self, code, reason)


# (mypy sees two routes to Autobahn's protocol and trips on Autobahn's own annotations)
class ChatProtocol(FastPaths, PlainChatProtocol):  # type: ignore[misc]
    """A chat connection with Autobahn's hot paths done faster (L{portshare._autobahn})."""


def plainFramesWarning(factory: ChatFactory) -> str | None:
    """What to warn about when C{factory}'s protocols run on Autobahn's own frame handling
    (an Autobahn that L{portshare._autobahn} does not mirror), or C{None}."""
    if issubclass(factory.protocol, FastPaths):
        return None
    return (
        "the installed Autobahn lacks what portshare's WebSocket fast paths read (they "
        f"mirror Autobahn {MIRRORS_AUTOBAHN}): using Autobahn's own frame handling, slower"
    )


def isWebSocket(protocol: object) -> TypeGuard[WebSocketProtocol]:
    """Whether C{protocol} is a WebSocket connection, of any endpoint."""
    return isinstance(protocol, WebSocketProtocol)


def closedWith(protocol: WebSocketProtocol, code: int | None) -> int:
    """
    The code a connection ended with, as counted in C{/metrics} and logged: the code of
    whoever closed first, ours (1001, 1008, 1009, 1013...) or the client's.

    @param code: the code Autobahn's C{onClose} got: the client's, C{None} when its close
        frame had none, 1006 when no closing handshake happened.
    @return: that code, or 1005 for a close frame without one (RFC 6455 section 7.1.5).
    """
    if protocol.closedByMe and protocol.localCloseCode is not None:
        return protocol.localCloseCode
    return errors.CLOSE_NO_STATUS if code is None else code


def closeWithCode(protocol: WebSocketProtocol, code: int, reason: str) -> None:
    """
    Start the closing handshake with any RFC 6455 code.  Autobahn's public C{sendClose} only
    lets applications send 1000 and 3000-4999; a server also needs 1001 (going away), 1008
    (policy) and 1013 (try again later), which its own protocol code sends this way.
    """
    if protocol.state in (WebSocketProtocol.STATE_OPEN, WebSocketProtocol.STATE_CONNECTING):
        # at most 123 bytes (RFC 6455 5.5), cut on a character boundary: the client rejects a
        # close reason that is not valid UTF-8
        reasonUtf8 = reason.encode("utf-8")[:123].decode("utf-8", "ignore").encode("utf-8")
        protocol.sendCloseFrame(code=code, reasonUtf8=reasonUtf8, isReply=False)


class PortshareFactory(WebSocketServerFactory):
    """A WebSocket endpoint's factory: Autobahn's, plus the origins it allows."""

    origins: OriginPolicy = OriginPolicy()

    # keyword-only (every caller names its options), hence narrower than Autobahn's signature
    def setProtocolOptions(  # type: ignore[override]
        self, *, allowNullOrigin: bool = True, **options: Any
    ) -> None:
        """
        Autobahn's C{setProtocolOptions}, except that C{allowNullOrigin} stays C{True} unless
        given.  Autobahn checks origins before C{onConnect}; its C{allowedOrigins} stay
        C{"*"}, but every call of its C{setProtocolOptions} resets C{allowNullOrigin} to
        C{False} unless told otherwise, and then it refuses C{Origin: null} (and C{file:}
        origins, which it reads as C{null}) itself, with a C{400}.  Let through, they reach
        L{EndpointProtocol.onConnect}, where the L{OriginPolicy} refuses them as it refuses
        every foreign origin (C{403}): the origin policy is portshare's alone.
        """
        super().setProtocolOptions(allowNullOrigin=allowNullOrigin, **options)


@implementer(IFrontEnd)
class ChatFactory(PortshareFactory):
    """
    The factory of C{/ws}; its protocols reach the chat through C{hub}, and it is their
    L{IFrontEnd}: a room event is framed once for all of them.
    """

    protocol: type[PlainChatProtocol] = ChatProtocol
    hub: Hub
    #: what happens to a client too slow to keep up: L{CLOSE} (1013) or L{DROP}
    slowPolicy: str = CLOSE

    def deliver(self, outgoing: Outgoing, members: Sequence[IMember]) -> None:
        prepared = outgoing.framed(self, self._prepare)
        # the function, not each member's bound method: a lookup less per member
        send = self.protocol.sendPrepared
        for member in cast("Sequence[ChatProtocol]", members):
            send(member, prepared)

    def _prepare(self, outgoing: Outgoing) -> Any:
        return self.prepareMessage(outgoing.payload)


def _refuseCompression(offers: list[Any]) -> None:
    return None


_F = TypeVar("_F", bound=PortshareFactory)


def configureFactory(
    factory: _F,
    limits: Limits,
    maxMessageSize: int,
    origins: OriginPolicy,
    **options: Any,
) -> _F:
    """Set the limits every portshare WebSocket endpoint shares, plus C{options}."""
    factory.origins = origins
    factory.setProtocolOptions(
        maxFramePayloadSize=maxMessageSize,
        maxMessagePayloadSize=maxMessageSize,
        openHandshakeTimeout=limits.openHandshakeTimeout,
        closeHandshakeTimeout=limits.closeHandshakeTimeout,
        autoPingInterval=limits.pingInterval,
        autoPingTimeout=limits.pingTimeout,
        utf8validateIncoming=True,
        # send a close frame with the reason's code (1002, 1007, 1009) instead of dropping TCP,
        # after what was already queued: clients learn why, and earlier replies still arrive
        failByDrop=False,
        requireMaskedClientFrames=True,
        webStatus=False,
        # answer a client's close with its own code and reason (RFC 6455 section 5.5.1: "the
        # endpoint typically echos the status code it received"), not always 1000; a close
        # without a code is answered without one, an invalid code is a protocol error (1002)
        echoCloseCodeReason=True,
        **options,
    )
    return factory


def buildChatFactory(
    limits: Limits,
    reactor: IReactorTime,
    origins: OriginPolicy | None = None,
    hub: Hub | None = None,
    fastPaths: bool | None = None,
) -> ChatFactory:
    """
    The factory of C{/ws}: chat-sized limits, no compression, its protocols members of
    C{hub} (or set its C{hub} before use).

    @param fastPaths: use L{portshare._autobahn}'s fast paths (default: when the installed
        Autobahn has what they read).
    """
    factory = ChatFactory(reactor=reactor, protocols=[SUBPROTOCOL], server="portshare")
    if not (mirrored() if fastPaths is None else fastPaths):
        factory.protocol = PlainChatProtocol
    if hub is not None:
        factory.hub = hub
    return configureFactory(
        factory,
        limits,
        limits.maxMessageSize,
        origins or OriginPolicy(),
        perMessageCompressionAccept=_refuseCompression,
    )
