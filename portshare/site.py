"""
The twisted.web site every endpoint serves, and its requests: limits on every request, the
requests in flight (for a graceful stop), a request count per tracked connection, refusals
counted, C{Server: portshare}, and a fast access log line.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.http import datetimeToString
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site
from twisted.web.server import version as TWISTED_SERVER

from portshare._twistedhttp import buildChannel, connectionOf, fenceWarning, isHTTP2Stream
from portshare.errors import TOO_LARGE
from portshare.httphead import SERVER, Refusal
from portshare.limits import Limits
from portshare.metrics import Metrics


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
        if isHTTP2Stream(self.channel):
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


def buildSite(
    root: Resource,
    reactor: IReactorTime,
    limits: Limits | None = None,
    metrics: Metrics | None = None,
) -> PortshareSite:
    """The site for C{root}, on the injected reactor, with C{limits} on every request."""
    return PortshareSite(root, reactor, limits, metrics)
