"""
THE resource tree, and the site that serves it on every endpoint.

    /                 the web client (static files, or --static DIR)
    /healthz          200 while the service accepts work, 503 and a reason otherwise
    /metrics          Prometheus text exposition
    /api/...          JSON API (rooms, history, publishing, connections)
    /ws               chat WebSocket (Upgrade: websocket; 101 Switching Protocols), and the
                      chat line protocol (Upgrade: portshare-lines; see portshare.upgrade)
    /ws/echo          echo WebSocket for compliance runs (only with --echo)
    /sse              the chat as Server-Sent Events (GET /sse?room=R), for clients without
                      WebSocket

A request for C{/ws} that carries C{Upgrade: websocket} is handed, socket and all, to the
Autobahn protocol; every other request stays with twisted.web.  Same port, same tree.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib import resources
from io import BytesIO
from pathlib import Path
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site
from twisted.web.static import File

from portshare.api import JsonResource, notFound, writeError, writeJson
from portshare.errors import METHOD_NOT_ALLOWED, TOO_LARGE, PortshareError
from portshare.limits import Limits
from portshare.metrics import Metrics
from portshare.upgrade import UpgradeDispatcher
from portshare.wire import dumps

#: The headers every page gets: no inline script, no framing, no MIME sniffing.
SECURITY_HEADERS = {
    b"content-security-policy": (
        b"default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
        b"style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
        b"form-action 'self'; frame-ancestors 'none'"
    ),
    b"x-content-type-options": b"nosniff",
    b"x-frame-options": b"DENY",
    b"referrer-policy": b"no-referrer",
}


def builtinClient() -> Path:
    """The directory of the web client shipped inside the package."""
    return Path(str(resources.files("portshare") / "static"))


class StaticFiles(File):
    """Static files with security headers, without directory listings, JSON refusals."""

    childNotFound = notFound("no such file")  # type: ignore[assignment]
    forbidden = childNotFound  # type: ignore[assignment]
    #: the real path of the served directory; nothing outside it is served
    rootPath: str = ""

    def __init__(self, path: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(path, *args, **kwargs)
        self.rootPath = os.path.realpath(path)

    def createSimilarFile(self, path: str) -> StaticFiles:
        similar = super().createSimilarFile(path)
        similar.rootPath = self.rootPath
        return similar

    def getChild(self, path: bytes, request: Request) -> IResource:
        if path.startswith(b".") or b"\x00" in path:
            return self.childNotFound  # dotfiles and NUL bytes are never served
        child = super().getChild(path, request)
        if isinstance(child, File):
            real = os.path.realpath(child.path)
            if real != self.rootPath and not real.startswith(self.rootPath + os.sep):
                return self.childNotFound  # a symlink out of the directory
        return child

    def render(self, request: Request) -> Any:
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"allow", b"GET, HEAD")
            return writeError(
                request, PortshareError("static files are read-only", METHOD_NOT_ALLOWED)
            )
        return super().render(request)

    def directoryListing(self) -> IResource:
        return notFound("no such file")


class HealthResource(JsonResource):
    """C{/healthz}: C{{"status": "ok"}} while C{unavailableReason()} is None, else 503."""

    isLeaf = True

    def __init__(self, unavailableReason: Callable[[], str | None]) -> None:
        super().__init__()
        self.unavailableReason = unavailableReason

    def render_GET(self, request: Request) -> bytes:
        reason = self.unavailableReason()
        if reason is None:
            return writeJson(request, 200, {"status": "ok"})
        return writeJson(request, 503, {"status": "unavailable", "reason": reason})


class MetricsResource(JsonResource):
    """C{/metrics}: the service's registry in Prometheus text format."""

    isLeaf = True

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")
        return self.metrics.render()


class UpgradeResource(WebSocketResource):
    """
    A WebSocket endpoint in the tree.  Requests without C{Upgrade: websocket} get a JSON 426
    instead of Autobahn's HTML; its children (C{/ws/echo}) are ordinary tree children.
    """

    isLeaf = False

    def __init__(self, factory: WebSocketServerFactory) -> None:
        super().__init__(factory)
        self.children: dict[bytes, IResource] = {}

    def getChildWithDefault(self, name: bytes, request: Request) -> IResource:
        return self.children.get(name) or notFound()

    def putChild(self, path: bytes, child: IResource) -> None:
        self.children[path] = child

    def render(self, request: Request) -> Any:
        upgrade = (request.getHeader(b"upgrade") or b"").lower()
        if upgrade != b"websocket":
            request.setHeader(b"upgrade", b"websocket")
            request.setHeader(b"connection", b"Upgrade")
            request.setResponseCode(426, b"Upgrade Required")
            request.setHeader(b"content-type", b"application/json")
            return (
                b'{"error":"upgrade_required","reason":"this is a WebSocket endpoint: '
                b'send Upgrade: websocket"}'
            )
        # Bytes that came in the same read as the handshake (a client that sends its first
        # frames at once) sit in twisted.web's buffers; Autobahn would lose them.
        channel: Any = request.channel
        leftover = b"".join(getattr(channel, "_dataBuffer", ())) + channel.clearLineBuffer()
        channel._dataBuffer = []
        socket = channel.transport
        result = super().render(request)
        if channel.transport is None:
            # upgraded: the socket is Autobahn's now and this request will never finish
            done = getattr(request.site, "requestDone", None)
            if done is not None:
                done(request)
            if leftover:
                inner = getattr(socket, "wrappedProtocol", None) or socket.protocol
                inner.dataReceived(leftover)
        return result


try:
    from twisted.web._http2 import H2Stream

    _H2_STREAMS: tuple[type, ...] = (H2Stream,)
except ImportError:  # without twisted[http2] (h2, priority) there is no HTTP/2
    _H2_STREAMS = ()


def connectionOf(request: Request) -> Any:
    """
    The transport of the connection a request came on (the connection tracker's row, when
    tracked), under an HTTP/1.1 channel or an HTTP/2 stream alike; C{None} once taken over.
    """
    channel: Any = request.channel
    if channel is None:
        return None
    if isinstance(channel, _H2_STREAMS):
        return channel._conn.transport  # type: ignore[attr-defined]
    return channel.transport


class PortshareRequest(Request):
    """
    A request that knows it came over TLS even through the connection tracker, refuses bodies
    over the site's C{maxBody} before reading them, and counts as in flight until finished.
    """

    _tooLarge = False
    _bodyBytes = 0
    _refusal: bytes | None = None

    def isSecure(self) -> bool:
        secure = getattr(connectionOf(self), "secure", None)
        return bool(secure) if secure is not None else super().isSecure()

    def gotLength(self, length: int | None) -> None:
        limit = self._portshareSite.maxBody
        if limit is not None and length is not None and length > limit:
            self._refuseBody(limit)
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._tooLarge:
            return
        self._bodyBytes += len(data)
        limit = self._portshareSite.maxBody
        if limit is not None and self._bodyBytes > limit:  # chunked: no length said upfront
            self._refuseBody(limit)
            return
        super().handleContentChunk(data)

    def _refuseBody(self, limit: int) -> None:
        """Answer 413 at once and close: the body is never read or stored."""
        self._tooLarge = True
        self.content = BytesIO()
        body = dumps({"error": TOO_LARGE, "reason": f"the body is larger than {limit} bytes"})
        head = (
            b"HTTP/1.1 413 Request Entity Too Large\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: %d\r\n\r\n" % len(body)
        )
        if isinstance(self.channel, _H2_STREAMS):
            # HTTP/2: the body's frames are dropped as they come, and the 413 goes out on this
            # stream once the request is complete (see process, counted when logged); the
            # other streams go on
            self._refusal = body
            return
        self._portshareSite.countError(413)
        transport = self.channel.transport
        assert transport is not None
        transport.write(head + body)
        transport.loseConnection()

    def process(self) -> None:
        if self._tooLarge:
            if self._refusal is not None:  # HTTP/2
                self.setResponseCode(413)
                self.setHeader(b"content-type", b"application/json")
                self.write(self._refusal)
                self.finish()
            return  # answered already
        site = self._portshareSite
        site.inflight.add(self)
        self.notifyFinish().addBoth(lambda _: site.requestDone(self))
        super().process()

    @property
    def _portshareSite(self) -> PortshareSite:
        return self.channel.site  # type: ignore[attr-defined,no-any-return]


class PortshareSite(Site):
    """
    The site: no tracebacks to clients, limits on every request, a request count per tracked
    connection, HTTP refusals counted, and the requests in flight known (for a graceful stop).
    """

    displayTracebacks = False
    requestFactory = PortshareRequest
    maxBody: int | None = None
    maxHeaders = 64
    maxHeaderBytes = 16 * 1024
    metrics: Metrics | None = None

    def __init__(
        self,
        resource: Resource,
        reactor: IReactorTime,
        limits: Limits | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__(resource, reactor=reactor)
        if limits is not None:
            self.maxBody = limits.maxBody
            self.maxHeaders = limits.maxHeaders
            self.maxHeaderBytes = limits.maxHeaderBytes
            self.timeOut = limits.httpIdleTimeout
        self.metrics = metrics
        self.inflight: set[Request] = set()
        self._idleWaiters: list[Deferred[None]] = []

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        channel = getattr(protocol, "_channel", protocol)  # HTTP/1.1 behind the h2 switch
        channel.maxHeaders = self.maxHeaders
        channel.totalHeadersSize = self.maxHeaderBytes
        channel.MAX_LENGTH = self.maxHeaderBytes
        return protocol

    def log(self, request: Request) -> None:  # type: ignore[override]
        super().log(request)
        if request.code >= 400:
            self.countError(request.code)

    def countError(self, status: int) -> None:
        if self.metrics is not None:
            self.metrics.httpErrors.labels(str(status)).inc()

    def requestDone(self, request: Request) -> None:
        self.inflight.discard(request)
        if not self.inflight:
            waiters, self._idleWaiters = self._idleWaiters, []
            for d in waiters:
                d.callback(None)

    def whenIdle(self) -> Deferred[None]:
        """Fires once no request is in flight (at once, if none is)."""
        if not self.inflight:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._idleWaiters.append(d)
        return d

    def getResourceFor(self, request: Request) -> IResource:
        request.setHeader(b"server", b"portshare")
        transport = connectionOf(request)
        if transport is not None and hasattr(transport, "requests"):
            transport.requests += 1
        return super().getResourceFor(request)


def buildTree(
    *,
    api: IResource,
    chatFactory: WebSocketServerFactory,
    echoFactory: WebSocketServerFactory | None,
    metrics: Metrics,
    unavailableReason: Callable[[], str | None],
    staticDir: Path | None = None,
    upgrades: UpgradeDispatcher | None = None,
    sse: IResource | None = None,
) -> Resource:
    """
    The one resource tree every endpoint serves.

    @param upgrades: when given, mounted at C{/ws} in front of the WebSocket resource, so that
        C{/ws} also switches to the protocols registered there (C{Upgrade: portshare-lines}).
    @param sse: the Server-Sent Events stream, mounted at C{/sse} (L{portshare.sse}).
    """
    root = StaticFiles(str(staticDir or builtinClient()))
    root.indexNames = ["index.html"]
    root.putChild(b"healthz", HealthResource(unavailableReason))
    root.putChild(b"metrics", MetricsResource(metrics))
    root.putChild(b"api", api)
    if sse is not None:
        root.putChild(b"sse", sse)
    ws = UpgradeResource(chatFactory)
    if echoFactory is not None:
        ws.putChild(b"echo", UpgradeResource(echoFactory))
    if upgrades is not None:
        upgrades.websocket = ws
        root.putChild(b"ws", upgrades)
    else:
        root.putChild(b"ws", ws)
    return root


def buildSite(
    root: Resource,
    reactor: IReactorTime,
    limits: Limits | None = None,
    metrics: Metrics | None = None,
) -> PortshareSite:
    """The site for C{root}, on the injected reactor, with C{limits} on every request."""
    return PortshareSite(root, reactor, limits, metrics)
