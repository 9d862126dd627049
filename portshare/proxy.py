"""
C{--proxy URL}: every path portshare does not serve itself, relayed to an HTTP application in
any language (the backend), on twisted.web's L{Agent} and the service's reactor.

Theory of operation, one request:

 1. Refused here, before anything reaches the backend: a request target that is not a path
    (absolute-form, C{*}), bytes outside visible ASCII in the target, a method that is not an
    HTTP token, more than one C{Host}.  twisted.web has already refused what a desync needs
    (both C{Content-Length} and C{Transfer-Encoding}, two lengths, an unknown transfer
    coding, CR, LF or NUL in a header value: 400), and the site has refused a body over
    C{--max-body} (413) before reading it: such requests never get here.
 2. The backend's request head is built, never copied: the client's method and target, its
    headers without the hop-by-hop ones (RFC 9110 7.6.1: C{Connection} and every field it
    names, C{Keep-Alive}, C{Proxy-Connection}, C{TE}, C{Trailer}, C{Transfer-Encoding},
    C{Upgrade}, C{Proxy-Authorization}, C{Proxy-Authenticate}) and without its framing
    (C{Content-Length}, C{Expect}); the body's length is the one portshare read.  The
    forwarding headers are portshare's own (L{forwardingHeaders}): what a client wrote there
    is believed only from a C{--trusted-proxy}.
 3. The body, already read whole by twisted.web (at most C{--max-body}; kept in a temporary
    file beyond 100 kB), is streamed to the backend by a L{FileBodyProducer} that pauses
    while the backend's socket is full.
 4. Timers on the reactor: C{connectTimeout} to connect (504), C{responseTimeout} for the
    response head (504), and again between two pieces of its body (the client's connection
    is then cut, so that it cannot take a truncated body for a whole one).  A refused
    connection, a reset or a malformed answer is a 502.  Refusals are JSON, like every
    refusal of portshare's; the backend's address is in the log, never in the answer.
 5. The response head is copied without the hop-by-hop fields; the body streams back as it
    arrives: the backend's socket is paused while the client's is full (the client's
    request is the consumer, the backend's response the producer), so a huge or endless
    answer never piles up in portshare.  A client that goes away aborts the backend's
    request.

The backend is always the one configured: the endpoint factory ignores the URL it is given,
so nothing a client sends can make portshare connect anywhere else.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.task import Cooperator
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory, IResponse
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from portshare import errors
from portshare._twistedhttp import isHTTP2Stream
from portshare.connections import describeAddress
from portshare.errors import BadGateway, GatewayTimeout, PortshareError
from portshare.httpjson import writeError
from portshare.proxies import Network, isTrusted

#: header fields that belong to one connection, never relayed (RFC 9110 7.6.1, RFC 2616 13.5.1)
HOP_BY_HOP = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-authenticate",
    )
)

#: the request's framing and forwarding, which portshare writes itself
_REWRITTEN = frozenset(
    (
        b"content-length",
        b"expect",
        b"host",
        b"forwarded",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-real-ip",
    )
)

_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_TARGET = re.compile(rb"/[\x21-\x7e]*\Z")
_BAD_VALUE = re.compile(rb"[\x00\r\n]")


@dataclass(frozen=True)
class Backend:
    """
    Where C{--proxy} relays to.

    @ivar scheme: C{http} or C{https}.
    @ivar host: a name or an address (IPv6 without brackets).
    @ivar base: a path prefixed to every request's target (C{""}, or C{/app} without its
        trailing slash).
    """

    scheme: str
    host: str
    port: int
    base: str = ""

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parseBackend(url: str) -> Backend:
    """
    @param url: C{http://host:port[/base]} or C{https://...}.
    @raise ValueError: anything else (another scheme, no host, a query, a fragment,
        credentials), with the reason.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"{url!r} is not a URL: {e}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{url!r} must start with http:// or https://")
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{url!r} must not carry credentials")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ValueError(f"{url!r} must not have a query or a fragment")
    if not _TARGET.match((parts.path or "/").encode("latin-1", "replace")):
        raise ValueError(f"{url!r} has a path with characters a URL cannot hold")
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return Backend(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))


def _forwardedNode(host: str) -> str:
    """A host as an RFC 7239 node: IPv6 quoted in brackets, C{unknown} for no address."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return "unknown"
    return f'"[{address}]"' if address.version == 6 else str(address)


def _forwardedValue(value: str) -> str:
    """An RFC 7239 value: a token as it is, anything else quoted."""
    if _TOKEN.match(value.encode("latin-1", "replace")):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def forwardingHeaders(
    request: Request, trusted: Sequence[Network]
) -> list[tuple[bytes, list[bytes]]]:
    """
    The forwarding headers the backend gets for C{request}.

    From a peer that is not a C{--trusted-proxy}, whatever the client wrote in
    C{X-Forwarded-For}, C{-Proto}, C{-Host}, C{Forwarded} and C{X-Real-IP} is dropped and
    replaced: C{X-Forwarded-For} is the peer's address alone, so that a backend reading its
    first or its last address reads the same, true one.  From a trusted proxy, its
    C{X-Forwarded-For} and C{Forwarded} are kept and the peer is appended (each hop adds
    the one it heard from), and its C{X-Forwarded-Proto} and C{-Host} (the scheme and host
    the client used, in front of it) are kept.  C{X-Real-IP} is the client as
    L{portshare.proxies.clientHost} finds it.
    """
    from portshare.proxies import clientHost

    peer, _ = describeAddress(request.getClientAddress())
    fromProxy = bool(trusted) and isTrusted(peer, trusted)
    raw = request.requestHeaders.getRawHeaders
    isAddress = _forwardedNode(peer) != "unknown"
    proto = b"https" if request.isSecure() else b"http"
    hosts = raw(b"host") or []
    host = hosts[0] if hosts else None

    forwardedFor = [v for v in raw(b"x-forwarded-for", []) if v.strip()] if fromProxy else []
    if isAddress:
        forwardedFor = [b", ".join([*forwardedFor, peer.encode("ascii")])]
    elif forwardedFor:
        forwardedFor = [b", ".join(forwardedFor)]

    element = [f"for={_forwardedNode(peer)}"]
    if host is not None:
        element.append(f"host={_forwardedValue(host.decode('latin-1'))}")
    element.append(f"proto={proto.decode('ascii')}")
    forwarded = [v for v in raw(b"forwarded", []) if v.strip()] if fromProxy else []
    forwarded = [b", ".join([*forwarded, ";".join(element).encode("latin-1")])]

    headers: list[tuple[bytes, list[bytes]]] = []
    if forwardedFor:
        headers.append((b"x-forwarded-for", forwardedFor))
    theirProto = raw(b"x-forwarded-proto") if fromProxy else None
    headers.append((b"x-forwarded-proto", [theirProto[0]] if theirProto else [proto]))
    theirHost = raw(b"x-forwarded-host") if fromProxy else None
    if theirHost:
        headers.append((b"x-forwarded-host", [theirHost[0]]))
    elif host is not None:
        headers.append((b"x-forwarded-host", [host]))
    headers.append((b"forwarded", forwarded))
    client = clientHost(peer, [v.decode("latin-1") for v in raw(b"x-forwarded-for", [])], trusted)
    if _forwardedNode(client) != "unknown":
        headers.append((b"x-real-ip", [client.encode("latin-1")]))
    return headers


def _connectionNamed(headers: Headers) -> set[bytes]:
    """The fields a C{Connection} header names (hop-by-hop too, RFC 9110 7.6.1)."""
    named = set()
    for value in headers.getRawHeaders(b"connection", []):
        for token in value.split(b","):
            token = token.strip().lower()
            if token:
                named.add(token)
    return named


def backendRequestHeaders(request: Request, trusted: Sequence[Network]) -> Headers:
    """The headers of the backend's request for C{request} (see the module's step 2)."""
    incoming = request.requestHeaders
    dropped = HOP_BY_HOP | _REWRITTEN | _connectionNamed(incoming)
    headers = Headers()
    for name, values in incoming.getAllRawHeaders():
        if name.lower() not in dropped:
            headers.setRawHeaders(name, list(values))
    host = incoming.getRawHeaders(b"host")
    if host:
        headers.setRawHeaders(b"host", [host[0]])
    for name, values in forwardingHeaders(request, trusted):
        headers.setRawHeaders(name, values)
    return headers


def copyResponseHead(response: IResponse, request: Request) -> None:
    """
    The backend's status and headers onto C{request}, without the hop-by-hop fields and
    without any header that is not a token or holds CR, LF or NUL (a backend cannot split
    the client's response); the body's length is the backend's, as twisted.web parsed it.
    """
    request.setResponseCode(response.code, response.phrase or None)
    request.defaultContentType = None  # the backend's Content-Type, or none
    dropped = HOP_BY_HOP | {b"content-length"} | _connectionNamed(response.headers)
    for name, values in response.headers.getAllRawHeaders():
        lowered = name.lower()
        if lowered in dropped or not _TOKEN.match(name):
            continue
        clean = [v for v in values if not _BAD_VALUE.search(v)]
        if clean:
            request.responseHeaders.setRawHeaders(name, clean)
    bodiless = request.method == b"HEAD" or response.code in (204, 304)
    if bodiless:
        # the length of the representation, as the backend said it (RFC 9110 8.6)
        lengths = response.headers.getRawHeaders(b"content-length", [])
        if response.code != 204 and len(lengths) == 1 and lengths[0].strip().isdigit():
            request.responseHeaders.setRawHeaders(b"content-length", [lengths[0].strip()])
    elif isinstance(response.length, int):
        request.responseHeaders.setRawHeaders(b"content-length", [b"%d" % response.length])


class ConnectTimeout(Exception):
    """The backend did not accept the connection within the connect timeout."""


@implementer(IStreamClientEndpoint)
class _TimedEndpoint:
    """An endpoint whose connection attempt is given up after C{timeout} seconds."""

    def __init__(self, endpoint: IStreamClientEndpoint, timeout: float, clock: Any) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.clock = clock

    def connect(self, factory: Any) -> Deferred[Any]:
        attempt = self.endpoint.connect(factory)
        late: list[bool] = []

        def giveUp() -> None:
            late.append(True)
            attempt.cancel()

        timer = self.clock.callLater(self.timeout, giveUp)

        def settled(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            if late and isinstance(result, Failure):
                return Failure(ConnectTimeout(f"no connection within {self.timeout} s"))
            return result

        return attempt.addBoth(settled)


@implementer(IAgentEndpointFactory)
class BackendEndpoints:
    """
    The Agent's endpoints: always the configured backend, whatever URL it is asked for.
    """

    def __init__(self, reactor: Any, backend: Backend, connectTimeout: float) -> None:
        self.reactor = reactor
        self.backend = backend
        self.connectTimeout = connectTimeout

    def endpointForURI(self, uri: Any) -> IStreamClientEndpoint:
        backend = self.backend
        endpoint: IStreamClientEndpoint
        version: int
        try:
            version = ipaddress.ip_address(backend.host).version
        except ValueError:
            version = 0
        # the reactor's own connect timeout is a backstop behind the timer below
        timeout = self.connectTimeout + 1
        if version == 4:
            endpoint = TCP4ClientEndpoint(self.reactor, backend.host, backend.port, timeout)
        elif version == 6:
            endpoint = TCP6ClientEndpoint(self.reactor, backend.host, backend.port, timeout)
        else:
            endpoint = HostnameEndpoint(self.reactor, backend.host, backend.port, timeout)
        if backend.scheme == "https":
            endpoint = wrapClientTLS(optionsForClientTLS(backend.host), endpoint)
        return _TimedEndpoint(endpoint, self.connectTimeout, self.reactor)


def _cut(request: Request) -> None:
    """End C{request}'s response abruptly, so that the client sees it is incomplete."""
    channel: Any = request.channel
    if channel is None:
        return
    if isHTTP2Stream(channel):
        channel.abortConnection()  # RST_STREAM: the other streams go on
        return
    transport = channel.transport
    if transport is None:
        return
    abort = getattr(transport, "abortConnection", None)
    if abort is not None:
        abort()
    else:
        transport.loseConnection()


@implementer(IPushProducer)
class _BodyPump(Protocol):
    """
    Copies the backend's response body to the client as it arrives, pausing the backend
    while the client's socket is full (it is the client request's producer), and cuts it
    off if the backend stalls for C{responseTimeout}.
    """

    def __init__(self, relay: _Relay) -> None:
        self.relay = relay
        self.paused = False
        self.ended = False
        self._idle: IDelayedCall | None = None

    def connectionMade(self) -> None:
        request = self.relay.request
        if request.channel is None:  # gone already
            self.stopProducing()
            return
        request.registerProducer(self, True)
        self._wait()

    def _wait(self) -> None:
        self._stopWaiting()
        if not self.paused and not self.ended:
            self._idle = self.relay.proxy.reactor.callLater(
                self.relay.proxy.responseTimeout, self._stalled
            )

    def _stopWaiting(self) -> None:
        idle, self._idle = self._idle, None
        if idle is not None and idle.active():
            idle.cancel()

    def _stalled(self) -> None:
        self._idle = None
        self.relay.proxy.log.warn(
            "{backend} stalled for {timeout} s in the body of {method} {uri}: cut",
            backend=self.relay.proxy.backend.origin,
            timeout=self.relay.proxy.responseTimeout,
            method=self.relay.method,
            uri=self.relay.uri,
        )
        self.stopProducing()
        _cut(self.relay.request)

    def dataReceived(self, data: bytes) -> None:
        request = self.relay.request
        if request.channel is not None and not self.relay.clientGone:
            request.write(data)
        self._wait()

    def connectionLost(self, reason: Failure = ResponseDone) -> None:  # type: ignore[assignment]
        self.ended = True
        self._stopWaiting()
        relay = self.relay
        request = relay.request
        if relay.clientGone or request.channel is None:
            return
        request.unregisterProducer()
        complete = reason.check(ResponseDone) or (
            reason.check(PotentialDataLoss) and relay.lengthUnknown
        )
        if complete:
            request.finish()
        elif not request.finished:
            relay.proxy.log.warn(
                "{backend} broke off the body of {method} {uri}: {why}",
                backend=relay.proxy.backend.origin,
                method=relay.method,
                uri=relay.uri,
                why=_describe(reason),
            )
            _cut(request)

    # IPushProducer: the client's socket says when to pause the backend's
    def pauseProducing(self) -> None:
        self.paused = True
        self._stopWaiting()  # the client is slow, not the backend
        if self.transport is not None:
            self.transport.pauseProducing()  # type: ignore[attr-defined]

    def resumeProducing(self) -> None:
        self.paused = False
        if self.transport is not None:
            self.transport.resumeProducing()  # type: ignore[attr-defined]
        self._wait()

    def stopProducing(self) -> None:
        self.ended = True
        self._stopWaiting()
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]


def _describe(reason: Failure) -> str:
    """A failure in one line for the log, the reasons inside Twisted's wrappers included."""
    inner = getattr(reason.value, "reasons", None)
    if inner:
        return "; ".join(_describe(f) for f in inner if isinstance(f, Failure))
    return f"{type(reason.value).__name__}: {reason.value}"


class _Relay:
    """One client request relayed to the backend, and its response relayed back."""

    def __init__(self, proxy: ReverseProxy, request: Request) -> None:
        self.proxy = proxy
        self.request = request
        self.method = request.method.decode("ascii", "replace")
        self.uri = request.uri.decode("ascii", "replace")
        self.clientGone = False
        self.timedOut = False
        self.lengthUnknown = True
        self.pump: _BodyPump | None = None
        self.waiting: Deferred[IResponse] | None = None
        self._timer: IDelayedCall | None = None

    def start(self) -> None:
        request, proxy = self.request, self.proxy
        request.notifyFinish().addErrback(self._clientLost)
        body = None
        content = request.content
        if content is not None:
            producer = FileBodyProducer(content, cooperator=proxy.cooperator)
            if producer.length or request.method in (b"POST", b"PUT", b"PATCH"):
                body = producer
        target = (proxy.backend.base + self.uri).encode("ascii")
        url = proxy.backend.origin.encode("ascii") + target
        headers = backendRequestHeaders(request, proxy.trustedProxies)
        self._timer = proxy.reactor.callLater(proxy.responseTimeout, self._late)
        try:
            self.waiting = proxy.agent.request(request.method, url, headers, body)
        except ValueError as e:  # what the Agent itself refuses to write
            self._cancelTimer()
            self._answer(PortshareError(f"cannot relay this request: {e}", errors.BAD_REQUEST))
            return
        self.waiting.addCallbacks(self._head, self._failed)

    def _cancelTimer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _late(self) -> None:
        self._timer = None
        self.timedOut = True
        if self.waiting is not None:
            self.waiting.cancel()

    def _clientLost(self, reason: Failure) -> None:
        self.clientGone = True
        self._cancelTimer()
        if self.pump is not None:
            self.pump.stopProducing()
        elif self.waiting is not None:  # (chained to the Agent's, so "called" already)
            self.waiting.cancel()

    def _head(self, response: IResponse) -> None:
        self.waiting = None
        self._cancelTimer()
        request = self.request
        if self.clientGone:
            response.deliverBody(_Discard())
            return
        copyResponseHead(response, request)
        self.lengthUnknown = not isinstance(response.length, int)
        self.pump = _BodyPump(self)
        response.deliverBody(self.pump)

    def _failed(self, reason: Failure) -> None:
        self.waiting = None
        self._cancelTimer()
        proxy = self.proxy
        if self.clientGone:
            return
        if self.timedOut:
            error: PortshareError = GatewayTimeout(
                f"the application did not answer within {proxy.responseTimeout} s"
            )
        elif reason.check(ConnectTimeout):
            error = GatewayTimeout(
                f"the application did not accept a connection within {proxy.connectTimeout} s"
            )
        else:
            error = BadGateway("the application is not available")
        proxy.log.warn(
            "{method} {uri} to {backend}: {status} ({why})",
            method=self.method,
            uri=self.uri,
            backend=proxy.backend.origin,
            status=error.httpStatus,
            why=_describe(reason),
        )
        self._answer(error)

    def _answer(self, error: PortshareError) -> None:
        request = self.request
        if self.clientGone or request.finished or request.channel is None:
            return
        request.write(writeError(request, error))
        request.finish()


class _Discard(Protocol):
    """Reads a response body nobody wants any more, and drops the connection."""

    def connectionMade(self) -> None:
        self.transport.stopProducing()  # type: ignore[union-attr]


class ProxyResource(Resource):
    """Relays every request below it to the backend (see the module's docstring)."""

    isLeaf = True

    def __init__(self, proxy: ReverseProxy) -> None:
        super().__init__()
        self.proxy = proxy

    def render(self, request: Request) -> bytes | int:
        refusal = self.refusal(request)
        if refusal is not None:
            return writeError(request, PortshareError(refusal, errors.BAD_REQUEST))
        _Relay(self.proxy, request).start()
        return NOT_DONE_YET

    def refusal(self, request: Request) -> str | None:
        """Why C{request} must not be relayed, or C{None} (the module's step 1)."""
        if not _TARGET.match(request.uri):
            return "the request target must be a path (origin-form, RFC 9112 3.2.1)"
        if not _TOKEN.match(request.method):
            return "the method is not an HTTP token"
        if len(request.requestHeaders.getRawHeaders(b"host", [])) > 1:
            return "more than one Host header (RFC 9112 3.2)"
        return None


class ReverseProxy(Service):
    """
    The relay to one backend: its Agent, its pool of persistent connections (closed when
    the service stops) and the resource the tree falls back to.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        url: str,
        *,
        connectTimeout: float = 5.0,
        responseTimeout: float = 60.0,
        trustedProxies: Sequence[Network] = (),
        persistentPerHost: int = 10,
        idleTimeout: int = 30,
    ) -> None:
        """
        @param reactor: the service's reactor (TCP, time, and name resolution for a backend
            named by host name).
        @param url: the backend (see L{parseBackend}).
        @param connectTimeout: seconds to connect (then 504).
        @param responseTimeout: seconds for the response head, and between two pieces of the
            body (then 504, or the client's connection cut).
        @param trustedProxies: the peers whose forwarding headers are kept.
        @param persistentPerHost: idle connections to the backend kept for reuse.
        @param idleTimeout: seconds an idle connection to the backend is kept.
        @raise ValueError: a URL L{parseBackend} refuses.
        """
        self.reactor = reactor
        self.backend = parseBackend(url)
        self.connectTimeout = connectTimeout
        self.responseTimeout = responseTimeout
        self.trustedProxies = tuple(trustedProxies)
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = persistentPerHost
        self.pool.cachedConnectionTimeout = idleTimeout
        self.agent = Agent.usingEndpointFactory(
            reactor, BackendEndpoints(reactor, self.backend, connectTimeout), pool=self.pool
        )
        #: schedules the request bodies' reads on the service's reactor, not the global one
        self.cooperator = Cooperator(scheduler=lambda work: reactor.callLater(0, work))
        self.resource = ProxyResource(self)

    def startService(self) -> None:
        super().startService()
        self.log.info("relaying the other paths to {backend}", backend=self.backend.origin)

    def stopService(self) -> Deferred[None]:
        """Close the idle connections to the backend (requests in flight finish first)."""
        super().stopService()
        return self.pool.closeCachedConnections()  # type: ignore[no-any-return]
