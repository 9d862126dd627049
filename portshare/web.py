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

import hashlib
import os
import stat
from collections.abc import Callable
from importlib import resources
from io import BytesIO
from pathlib import Path
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.http import NOT_MODIFIED, datetimeToString, stringToDatetime
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from twisted.web.server import version as TWISTED_SERVER
from twisted.web.static import File, getTypeAndEncoding

from portshare._twistedhttp import buildChannel, fenceWarning
from portshare.api import JsonResource, notFound, writeError, writeJson
from portshare.errors import METHOD_NOT_ALLOWED, TOO_LARGE, PortshareError
from portshare.httphead import SERVER, Refusal
from portshare.limits import Limits
from portshare.metrics import Metrics
from portshare.upgrade import UpgradeDispatcher

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


class MemoryFile(Resource):
    """
    One static file held in memory, its response headers built once: what
    L{StaticFiles} answers C{GET} and C{HEAD} with while the file on disk is unchanged.

    The body carries the same headers L{File} would send (C{Content-Type}, C{Content-Encoding},
    C{Content-Length}, C{Last-Modified}, C{Accept-Ranges}), the security headers, and a strong
    C{ETag} (a hash of the content, the same in every worker).  C{If-None-Match} and then
    C{If-Modified-Since} are answered 304; a C{Range} request is handed to the L{File} it was
    read from, which re-reads the disk.
    """

    isLeaf = True

    def __init__(self, file: StaticFiles, identity: tuple[int, ...], body: bytes) -> None:
        super().__init__()
        #: the L{File} this was read from (for C{Range} requests and refusals)
        self.file = file
        #: the file's path on disk
        self.path: str = file.path
        #: C{(st_dev, st_ino, st_size, st_mtime_ns)} of the file when it was read
        self.identity = identity
        self.body = body
        #: whole seconds, rounded up as File's C{setLastModified} does
        self.mtime = -(-identity[3] // 1_000_000_000)
        self.etag = b'"%s"' % hashlib.blake2b(body, digest_size=16).hexdigest().encode("ascii")
        common = [
            *SECURITY_HEADERS.items(),
            (b"last-modified", datetimeToString(self.mtime)),
            (b"etag", self.etag),
        ]
        self.notModifiedHeaders = common
        kind, encoding = getTypeAndEncoding(
            file.basename(), file.contentTypes, file.contentEncodings, file.defaultType
        )
        headers = [*common, (b"accept-ranges", b"bytes")]
        if kind:
            headers.append((b"content-type", kind.encode("ascii")))
        if encoding:
            headers.append((b"content-encoding", encoding.encode("ascii")))
        headers.append((b"content-length", b"%d" % len(body)))
        self.headers = headers

    def render(self, request: Request) -> Any:
        method = request.method
        if (method != b"GET" and method != b"HEAD") or request.getHeader(b"range") is not None:
            return self.file.render(request)  # a 405, or File's byte ranges from the disk
        setHeader = request.responseHeaders.setRawHeaders
        if self.notModified(request):
            request.setResponseCode(NOT_MODIFIED)
            for name, value in self.notModifiedHeaders:
                setHeader(name, [value])
            request.write(b"")  # no body, and no Content-Length: 0 for the representation
            request.finish()
            return NOT_DONE_YET
        for name, value in self.headers:
            setHeader(name, [value])
        request.write(b"" if method == b"HEAD" else self.body)
        request.finish()
        return NOT_DONE_YET

    def notModified(self, request: Request) -> bool:
        """
        Whether the client's copy is current (RFC 9110 13.2.2): C{If-None-Match} decides when
        sent, else C{If-Modified-Since}.
        """
        match = request.getHeader(b"if-none-match")
        if match is not None:
            for tag in match.split(b","):
                tag = tag.strip()
                if tag == b"*" or tag.removeprefix(b"W/") == self.etag:
                    return True
            return False
        since = request.getHeader(b"if-modified-since")
        if since is None:
            return False
        try:
            return stringToDatetime(since.split(b";", 1)[0]) >= self.mtime
        except ValueError:
            return False


class StaticCache:
    """
    The static files served so far, in memory, by request path (the segments under the
    static root).  Each hit costs one C{os.stat} to check that the file is still the one read
    (same device, inode, size and modification time); a file changed, replaced or removed on
    disk is dropped and read again by the ordinary L{File} lookup, with every check.
    Only regular files up to C{maxFileSize} are held, up to C{maxBytes} in all; the rest are
    streamed by L{File} as before.
    """

    def __init__(self, maxFileSize: int = 1024 * 1024, maxBytes: int = 32 * 1024 * 1024) -> None:
        self.maxFileSize = maxFileSize
        self.maxBytes = maxBytes
        self.size = 0
        self.entries: dict[tuple[bytes, ...], MemoryFile] = {}

    def lookup(self, key: tuple[bytes, ...]) -> MemoryFile | None:
        """The file held for C{key}, if it is still the one on disk."""
        entry = self.entries.get(key)
        if entry is None:
            return None
        try:
            st = os.stat(entry.path)
        except OSError:
            self.evict(key)
            return None
        if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != entry.identity:
            self.evict(key)
            return None
        return entry

    def evict(self, key: tuple[bytes, ...]) -> None:
        """Forget what is held for C{key}."""
        entry = self.entries.pop(key, None)
        if entry is not None:
            self.size -= len(entry.body)

    def load(self, key: tuple[bytes, ...], file: StaticFiles) -> MemoryFile | None:
        """
        Read C{file} (already found and checked by L{StaticFiles.getChild}) into memory for
        C{key}; C{None} when it is not a regular file, is too large, or changed while read.
        """
        try:
            with open(file.path, "rb") as f:
                before = os.fstat(f.fileno())
                if (
                    not stat.S_ISREG(before.st_mode)
                    or before.st_size > self.maxFileSize
                    or self.size + before.st_size > self.maxBytes
                ):
                    return None
                body = f.read(before.st_size + 1)
                after = os.fstat(f.fileno())
        except OSError:
            return None  # File answers it (404, 403) as before
        identity = (before.st_dev, before.st_ino, before.st_size, before.st_mtime_ns)
        if (
            len(body) != before.st_size
            or (
                after.st_dev,
                after.st_ino,
                after.st_size,
                after.st_mtime_ns,
            )
            != identity
        ):
            return None  # being written: stream it this time
        self.evict(key)
        entry = MemoryFile(file, identity, body)
        self.entries[key] = entry
        self.size += len(body)
        return entry


class StaticFiles(File):
    """
    Static files with security headers, without directory listings, JSON refusals; small
    files are answered from memory (L{StaticCache}) after the first request.
    """

    childNotFound = notFound("no such file")  # type: ignore[assignment]
    forbidden = childNotFound  # type: ignore[assignment]
    #: the real path of the served directory; nothing outside it is served
    rootPath: str = ""
    #: the files held in memory, shared by the root and the directories under it
    cache: StaticCache | None = None
    #: this directory's path segments under the root (the root's are empty)
    segments: tuple[bytes, ...] = ()

    def __init__(self, path: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(path, *args, **kwargs)
        self.rootPath = os.path.realpath(path)

    def createSimilarFile(self, path: str) -> StaticFiles:
        similar = super().createSimilarFile(path)
        similar.rootPath = self.rootPath
        similar.cache = self.cache
        return similar

    def getChild(self, path: bytes, request: Request) -> IResource:
        if path.startswith(b".") or b"\x00" in path:
            return self.childNotFound  # dotfiles and NUL bytes are never served
        cache = self.cache
        rest = request.postpath or []
        if cache is not None:
            held = cache.lookup((*self.segments, path, *rest))
            if held is not None:  # the whole rest of the path at once
                request.prepath = (request.prepath or []) + rest
                request.postpath = []
                return held
        child = super().getChild(path, request)
        if isinstance(child, File):
            real = os.path.realpath(child.path)
            if real != self.rootPath and not real.startswith(self.rootPath + os.sep):
                return self.childNotFound  # a symlink out of the directory
            if isinstance(child, StaticFiles):
                child.segments = (*self.segments, path)
                if cache is not None and not rest and child.isfile():
                    return cache.load(child.segments, child) or child
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


def _escaped(value: bytes | str) -> str:
    """
    C{value} as twisted.web's access log writes it: Python's C{repr} of the bytes, as if
    between double quotes.  Plain printable ASCII (nearly every request) is taken as it is.
    """
    text = value if isinstance(value, str) else value.decode("latin-1")
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return text
    quoted = repr(text.encode("latin-1") if isinstance(value, str) else value)[1:]
    if quoted.startswith("'"):
        return quoted[1:-1].replace('"', '\\"').replace("\\'", "'")
    return quoted[1:-1]


def accessLogLine(timestamp: str, request: Request) -> str:
    """
    The access log line for C{request}: the same line as twisted.web's
    C{combinedLogFormatter} (NCSA combined, the TCP peer's address), built in a fraction of
    its time.

    @param timestamp: the site's cached C{[day/month/year:h:m:s +0000]}.
    """
    address = request.getClientAddress()
    ip = _escaped(address.host) if isinstance(address, IPv4Address | IPv6Address) else "-"
    getHeader = request.getHeader
    referrer = getHeader(b"referer")
    agent = getHeader(b"user-agent")
    return (
        f'"{ip}" - - {timestamp} "{_escaped(request.method)} {_escaped(request.uri)} '
        f'{_escaped(request.clientproto)}" {request.code:d} {request.sentLength or "-"} '
        f'"{_escaped(referrer) if referrer else "-"}" "{_escaped(agent) if agent else "-"}"'
    )


class PortshareRequest(Request):
    """
    A request that knows it came over TLS even through the connection tracker, refuses bodies
    over the site's C{maxBody} before reading them, counts as in flight until finished, and
    says C{Server: portshare}.
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
        refusal = Refusal(413, TOO_LARGE, f"the body is larger than {limit} bytes")
        if isinstance(self.channel, _H2_STREAMS):
            # HTTP/2: the body's frames are dropped as they come, and the 413 goes out on this
            # stream once the request is complete (see process, counted when logged); the
            # other streams go on
            self._refusal = refusal.body()
            return
        site = self._portshareSite
        site.countError(413)
        transport = self.channel.transport
        assert transport is not None
        transport.write(refusal.response(datetimeToString(site.reactor.seconds())))
        transport.loseConnection()

    def write(self, data: bytes) -> None:
        if not self.startedWriting:
            # Every response says Server: portshare, also those twisted.web answers itself
            # (OPTIONS *) and errors; a resource that names itself (an application behind
            # --resource or --proxy) keeps its name.
            headers = self.responseHeaders
            server = headers.getRawHeaders(b"server")
            if server is None or server == [TWISTED_SERVER]:
                headers.setRawHeaders(b"server", [SERVER])
        super().write(data)

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
    #: each connection's protocol: portshare's HTTP/1.1 channel, and HTTP/2 after ALPN
    protocol = buildChannel
    maxBody: int | None = None
    maxHeaders = 64
    maxHeaderBytes = 16 * 1024
    maxConcurrentStreams: int | None = 100
    metrics: Metrics | None = None
    _log = Logger()  # (Site.log is the access log)

    def __init__(
        self,
        resource: Resource,
        reactor: IReactorTime,
        limits: Limits | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__(resource, reactor=reactor, logFormatter=accessLogLine)
        if limits is not None:
            self.maxBody = limits.maxBody
            self.maxHeaders = limits.maxHeaders
            self.maxHeaderBytes = limits.maxHeaderBytes
            self.maxConcurrentStreams = limits.maxConcurrentStreams
            self.timeOut = limits.httpIdleTimeout
        self.metrics = metrics
        self.inflight: set[Request] = set()
        self._idleWaiters: list[Deferred[None]] = []

    def startFactory(self) -> None:
        super().startFactory()
        warning = fenceWarning()
        if warning is not None:
            # not "warning": twisted's legacy log bridge takes that key for a Python warning
            self._log.warn("{fence}", fence=warning)

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        channel = getattr(protocol, "_channel", protocol)  # HTTP/1.1 behind the h2 switch
        # portshare's checks (PortshareHTTPChannel) and twisted.web's own read these
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
    limits: Limits | None = None,
) -> Resource:
    """
    The one resource tree every endpoint serves.

    @param limits: the static files' memory cache sizes (and the defaults when not given).

    @param upgrades: when given, mounted at C{/ws} in front of the WebSocket resource, so that
        C{/ws} also switches to the protocols registered there (C{Upgrade: portshare-lines}).
    @param sse: the Server-Sent Events stream, mounted at C{/sse} (L{portshare.sse}).
    """
    root = StaticFiles(str(staticDir or builtinClient()))
    root.indexNames = ["index.html"]
    limits = limits or Limits()
    root.cache = StaticCache(limits.staticCacheFileBytes, limits.staticCacheBytes)
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
