"""
Any Twisted protocol behind C{Upgrade:}: the HTTP/1.1 protocol switch, as a resource.

An HTTP/1.1 client asks to switch protocols with two headers (RFC 9110 section 7.8)::

    GET /ws HTTP/1.1
    Upgrade: portshare-lines
    Connection: Upgrade

L{UpgradeDispatcher} is a resource that reads the C{Upgrade} tokens and picks the first one
it knows: C{websocket} goes to the Autobahn resource (the WebSocket handshake has its own
headers), and any other registered token gets C{101 Switching Protocols} with that token,
after which the socket belongs to a protocol built by the registered factory, handed over as
the WebSocket endpoint's is (L{portshare._takeover}).  Bytes the client sent right after its request
(in the same TCP segment) are passed on, not lost.

Mounting your own protocol on the shared port::

    from portshare.upgrade import UpgradeDispatcher
    dispatcher = UpgradeDispatcher()
    dispatcher.registerUpgrade("amp", Factory.forProtocol(MyAMP))
    root.putChild(b"switch", dispatcher)

In the portshare service the dispatcher is C{service.upgrades}, mounted at C{/ws}.

Refusals are JSON, never a page: no C{Upgrade} header at all, or only tokens nobody
registered, is C{426 Upgrade Required} with the tokens on offer in the C{Upgrade} header; an
C{Upgrade} without C{Connection: upgrade}, on a method other than GET, or over HTTP/2 (which
has no Upgrade) is C{400}.  C{Upgrade} on requests for other paths is ignored, as HTTP/1.1
allows: twisted.web serves them as plain requests.
"""

from __future__ import annotations

import re
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.internet.interfaces import IProtocolFactory
from twisted.logger import Logger
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request

from portshare._takeover import takeOver
from portshare.admission import addressOf, identityOf
from portshare.httpjson import notFound
from portshare.hub import IMember
from portshare.wire import dumps

WEBSOCKET = "websocket"

# RFC 9110 token characters; a protocol may carry a version: "name/version"
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+(/[!#$%&'*+.^_`|~0-9A-Za-z-]+)?\Z")


_PHRASES = {400: b"Bad Request", 426: b"Upgrade Required", 503: b"Service Unavailable"}


def upgradeTokens(header: bytes | None) -> list[str]:
    """
    The protocols an C{Upgrade} header asks for, in the client's order of preference,
    lowercased (C{b"WebSocket, foo/2"} -> C{["websocket", "foo/2"]}); malformed ones are left out.
    """
    if not header:
        return []
    tokens = []
    for part in header.decode("latin-1").split(","):
        token = part.strip().lower()
        if _TOKEN.match(token):
            tokens.append(token)
    return tokens


def connectionTokens(request: Request) -> set[str]:
    """The C{Connection} header's options, lowercased (every C{Connection} line counted)."""
    values = request.requestHeaders.getRawHeaders(b"connection") or []
    return {t.strip().lower() for v in values for t in v.decode("latin-1").split(",")}


def _refuse(request: Request, status: int, error: str, reason: str, offered: list[str]) -> bytes:
    request.setResponseCode(status, _PHRASES.get(status))
    if status == 426 and offered:
        request.setHeader(b"upgrade", ", ".join(offered).encode("ascii"))
        request.setHeader(b"connection", b"Upgrade")
    request.setHeader(b"content-type", b"application/json")
    return dumps({"error": error, "reason": reason})


def _introduce(protocol: object, request: Request) -> None:
    """Tell a chat protocol who connects (L{portshare.admission}), before it starts."""
    if not IMember.providedBy(protocol):
        return  # another protocol sharing the port: not the chat's business
    chat: Any = protocol
    identity = identityOf(request)
    if identity is not None:
        chat.identity = identity
    chat.address = addressOf(request)


class UpgradeDispatcher(Resource):
    """
    A resource that switches an HTTP/1.1 connection to the protocol its C{Upgrade} header
    names.

    @ivar websocket: the resource that answers C{Upgrade: websocket} (a
        L{WebSocketEndpoint}), or C{None}.  It also
        answers requests without any C{Upgrade} header, and its children are this resource's.
    """

    isLeaf = False
    log = Logger()

    def __init__(self, websocket: IResource | None = None) -> None:
        super().__init__()
        self.websocket = websocket
        self._factories: dict[str, IProtocolFactory] = {}

    # -- the registry -----------------------------------------------------------------------

    def registerUpgrade(self, token: str, factory: IProtocolFactory) -> None:
        """
        Switch C{Upgrade: token} requests to protocols built by C{factory}.

        @param token: an HTTP token (C{"amp"}, C{"my-proto/2"}), compared case-insensitively;
            not C{"websocket"}, which is the C{websocket} resource's.
        @param factory: builds one protocol per switched connection; its C{buildProtocol}
            gets the client's address and may return C{None} to refuse (503).
        @raise ValueError: for a malformed, reserved or already registered token.
        """
        name = token.strip().lower()
        if not _TOKEN.match(name):
            raise ValueError(f"{token!r} is not an HTTP token")
        if name == WEBSOCKET:
            raise ValueError("websocket is served by the WebSocket resource")
        if name in self._factories:
            raise ValueError(f"{name} is registered already")
        self._factories[name] = factory

    def unregisterUpgrade(self, token: str) -> None:
        """Stop switching to C{token}; connections switched already are not affected."""
        self._factories.pop(token.strip().lower(), None)

    def tokens(self) -> list[str]:
        """The tokens this resource switches to, C{websocket} first when it has one."""
        return ([WEBSOCKET] if self.websocket is not None else []) + sorted(self._factories)

    # -- the tree -----------------------------------------------------------------------------

    def getChildWithDefault(self, name: bytes, request: Request) -> IResource:
        if self.websocket is not None:
            return self.websocket.getChildWithDefault(name, request)
        return notFound()

    def render(self, request: Request) -> Any:
        asked = upgradeTokens(request.getHeader(b"upgrade"))
        offered = self.tokens()
        if not asked:
            if request.getHeader(b"upgrade") is None and self.websocket is not None:
                return self.websocket.render(request)  # its own 426, as before
            return _refuse(
                request,
                426,
                "upgrade_required",
                "this endpoint switches protocols: send Upgrade: "
                f"{' or '.join(offered) or '(nothing registered)'} with Connection: Upgrade",
                offered,
            )
        if request.clientproto != b"HTTP/1.1" or request.channel.transport is None:
            return _refuse(
                request,
                400,
                "bad_request",
                "Upgrade needs HTTP/1.1 (HTTP/2 has no protocol switch here; "
                "connect without h2 for WebSocket)",
                offered,
            )
        if "upgrade" not in connectionTokens(request):
            return _refuse(
                request,
                400,
                "bad_request",
                "Upgrade needs Connection: Upgrade (a proxy may have dropped it)",
                offered,
            )
        if request.method != b"GET":
            return _refuse(request, 400, "bad_request", "switch protocols with GET", offered)
        for token in asked:
            if token == WEBSOCKET and self.websocket is not None:
                return self.websocket.render(request)
            factory = self._factories.get(token)
            if factory is not None:
                return self.switch(request, token, factory)
        return _refuse(
            request,
            426,
            "upgrade_required",
            f"no protocol here for Upgrade: {', '.join(asked)}; "
            f"this endpoint speaks {', '.join(offered) or 'nothing yet'}",
            offered,
        )

    def switch(self, request: Request, token: str, factory: IProtocolFactory) -> Any:
        """Answer C{101 Switching Protocols} and give the socket to a new protocol."""
        transport: Any = request.channel.transport
        protocol = factory.buildProtocol(transport.getPeer())
        if protocol is None:
            return _refuse(request, 503, "unavailable", f"{token} is not accepting connections", [])
        _introduce(protocol, request)
        if hasattr(transport, "upgradedTo"):
            transport.upgradedTo = token  # the connections view shows the new protocol
        leftover = takeOver(
            request,
            protocol,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n\r\n"
            % token.encode("ascii"),
        )
        self.log.info("{peer} switched to {token}", peer=str(transport.getPeer()), token=token)
        if leftover:
            protocol.dataReceived(leftover)
        return NOT_DONE_YET


class WebSocketEndpoint(Resource):
    """
    A WebSocket endpoint in the tree, for an Autobahn server factory: C{Upgrade: websocket}
    gets the socket handed to a protocol of the factory (L{portshare._takeover}), which reads
    the handshake itself and answers C{101}; requests without it get a JSON 426.  Its children
    (C{/ws/echo}) are ordinary tree children.
    """

    isLeaf = False

    def __init__(self, factory: WebSocketServerFactory) -> None:
        super().__init__()
        self.factory = factory

    def getChild(self, path: bytes, request: Request) -> IResource:
        return notFound()

    def render(self, request: Request) -> Any:
        upgrade = (request.getHeader(b"upgrade") or b"").lower()
        transport: Any = request.channel.transport
        if upgrade != b"websocket" or transport is None:  # transport: None over HTTP/2
            request.setHeader(b"upgrade", b"websocket")
            request.setHeader(b"connection", b"Upgrade")
            request.setResponseCode(426, b"Upgrade Required")
            request.setHeader(b"content-type", b"application/json")
            return (
                b'{"error":"upgrade_required","reason":"this is a WebSocket endpoint: '
                b'send Upgrade: websocket"}'
            )
        protocol = self.factory.buildProtocol(transport.getPeer())
        if protocol is None:
            return _refuse(request, 503, "unavailable", "not accepting WebSockets", [])
        _introduce(protocol, request)
        leftover = takeOver(request, protocol, releaseProducer=False)
        # Autobahn reads the handshake itself: the request again, as it came, then whatever
        # the client sent after it
        handshake = [request.method, b" ", request.uri, b" HTTP/1.1\r\n"]
        for name, values in request.requestHeaders.getAllRawHeaders():
            handshake += [name, b": ", b",".join(values), b"\r\n"]
        handshake.append(b"\r\n")
        content = request.content
        protocol.dataReceived(b"".join(handshake) + (content.read() if content else b"") + leftover)
        return NOT_DONE_YET
