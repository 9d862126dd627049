"""
The live connections view: every TCP connection on the shared port, upgraded or not.

L{TrackingFactory} wraps the site's factory, so each accepted connection passes through a
L{TrackingProtocol} that counts bytes both ways.  When C{/ws} takes a connection over,
Autobahn swaps the wrapper's inner protocol from the HTTP channel to the WebSocket protocol,
so the same row (same socket, same client port) then reads "websocket": the port-sharing
question, shown live.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IProtocolNegotiationFactory,
    IReactorTime,
    ISSLTransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementer, providedBy

from portshare.proxies import Network, describeAddress, isTrusted
from portshare.sendnow import ImmediateWriter, Turns, immediateWriter

HTTP = "http/1.1"
H2 = "h2"
WEBSOCKET = "websocket"


class TrackingProtocol(ProtocolWrapper):
    """Counts the bytes of one connection and says what it speaks now."""

    def __init__(self, factory: TrackingFactory, wrappedProtocol: Any) -> None:
        super().__init__(factory, wrappedProtocol)  # type: ignore[arg-type]
        self.id = next(factory.ids)
        self.openedAt = factory.clock.seconds()
        self.bytesIn = 0
        self.bytesOut = 0
        self.requests = 0
        self.secure = False
        self.host = ""
        #: the C{Upgrade} token this connection switched to (L{portshare.upgrade}), if any
        self.upgradedTo: str | None = None
        self._requestDeadline: IDelayedCall | None = None
        self._lostWaiters: list[Deferred[None]] = []
        #: set by sendImmediately(): this connection's writes go through it
        self._immediate: ImmediateWriter | None = None
        #: whether the client's address is known for good (after the first data)
        self._placed = False
        #: whether this connection counts against C{host}'s cap
        self.counted = False

    def makeConnection(self, transport: Any) -> None:
        # Provide what the transport provides, except ISSLTransport: Autobahn takes any
        # ISSLTransport to be Twisted's TLS protocol itself and fails on a wrapper.  Whether
        # the connection is secure is kept in `secure` for twisted.web (PortshareRequest).
        self.secure = ISSLTransport.providedBy(transport)
        provided = providedBy(transport).flattened()
        directlyProvides(self, *[i for i in provided if not i.isOrExtends(ISSLTransport)])
        Protocol.makeConnection(self, transport)
        # behind the PROXY protocol (a haproxy: endpoint) the client's address is in the
        # header the proxy sends first, which the endpoint's wrapper reads before passing
        # anything on: the connection is placed again at its first data (once; for a plain
        # connection the address is the same)
        self._placed = False
        self.factory.registerProtocol(self)
        self.wrappedProtocol.makeConnection(self)  # type: ignore[arg-type]
        timeout = self.factory.requestTimeout
        if timeout is not None:
            self._requestDeadline = self.factory.clock.callLater(timeout, self._requestLate)

    def _requestLate(self) -> None:
        """Still no complete first request: a slowloris client, or a dead one."""
        self._requestDeadline = None
        if getattr(self.transport, "negotiatedProtocol", None) == b"h2":
            return  # HTTP/2 streams are not counted here; h2 has its own timeouts
        if self.requests == 0 and self.protocolName == HTTP:
            self.factory.refused("request-timeout")
            self.transport.abortConnection()  # type: ignore[union-attr]

    def notifyLost(self) -> Deferred[None]:
        """A Deferred that fires once this connection is closed."""
        d: Deferred[None] = Deferred()
        self._lostWaiters.append(d)
        return d

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        deadline, self._requestDeadline = self._requestDeadline, None
        if deadline is not None and deadline.active():
            deadline.cancel()
        self.factory.forget(self)
        super().connectionLost(reason)
        waiters, self._lostWaiters = self._lostWaiters, []
        for d in waiters:
            d.callback(None)

    def dataReceived(self, data: bytes) -> None:
        if not self._placed:
            self._placed = True
            if not self.factory.place(self):
                return
        self.bytesIn += len(data)
        self.wrappedProtocol.dataReceived(data)

    def write(self, data: bytes) -> None:
        self.bytesOut += len(data)
        immediate = self._immediate
        if immediate is not None:
            immediate(data)
        else:
            self.transport.write(data)  # type: ignore[union-attr]

    def sendImmediately(self) -> None:
        """
        From now on, write to the socket at once while nothing is buffered
        (L{portshare.sendnow}): the protocol above writes whole frames, not pieces of a
        response that are better merged into one C{send()}.
        """
        self._immediate = immediateWriter(self.transport, self.factory.turns)

    def writeSequence(self, data: Any) -> None:
        data = list(data)
        if self._immediate is not None:
            self.write(b"".join(data))  # behind any corked frames
            return
        self.bytesOut += sum(map(len, data))
        self.transport.writeSequence(data)  # type: ignore[union-attr]

    def loseConnection(self) -> None:
        if self._immediate is not None:
            self._immediate.flush()  # corked frames first: a close frame may be among them
        super().loseConnection()

    @property
    def protocolName(self) -> str:
        if isinstance(self.wrappedProtocol, WebSocketProtocol):
            return WEBSOCKET
        if self.upgradedTo is not None:
            return self.upgradedTo
        if getattr(self.transport, "negotiatedProtocol", None) == b"h2":
            return H2  # ALPN on a TLS endpoint: one connection, many HTTP/2 streams
        return HTTP

    def describe(self, now: float) -> dict[str, Any]:
        """One row of C{GET /api/connections}."""
        host, port = describeAddress(self.getPeer())
        inner = self.wrappedProtocol
        isWebSocket = isinstance(inner, WebSocketProtocol)
        return {
            "id": self.id,
            "peer": f"{host}:{port}" if port is not None else host,
            "host": host,
            "port": port,
            "protocol": self.protocolName,
            "path": getattr(inner, "http_request_path", None) if isWebSocket else None,
            "subprotocol": getattr(inner, "websocket_protocol_in_use", None)
            if isWebSocket
            else None,
            "bytes_in": self.bytesIn,
            "bytes_out": self.bytesOut,
            "age": round(now - self.openedAt, 3),
            "requests": self.requests,
        }


@implementer(IProtocolNegotiationFactory)
class TrackingFactory(WrappingFactory):
    """
    Wraps the site so that every connection it accepts is listed.

    @ivar listening: the addresses the service listens on (set by the service).
    """

    protocol = TrackingProtocol

    log = Logger()

    def __init__(
        self,
        wrappedFactory: Any,
        clock: IReactorTime,
        maxConnections: int | None = None,
        maxPerAddress: int | None = None,
        requestTimeout: float | None = None,
        refused: Callable[[str], None] | None = None,
        trustedProxies: Sequence[Network] = (),
    ) -> None:
        super().__init__(wrappedFactory)
        #: the proxies whose PROXY headers are believed (none: a haproxy: port's own)
        self.trustedProxies = tuple(trustedProxies)
        self.clock = clock
        self.ids = itertools.count(1)
        self.listening: list[str] = []
        self.maxConnections = maxConnections
        self.maxPerAddress = maxPerAddress
        self.requestTimeout = requestTimeout
        self._refused = refused
        self._perAddress: Counter[str] = Counter()
        self.turns = Turns(clock)

    def buildProtocol(  # type: ignore[override]
        self, addr: IAddress | None, behindProxy: bool = False
    ) -> Any:
        """
        Accept the connection, unless it is over the total or per-address limit.

        @param behindProxy: it comes through the PROXY protocol (L{BehindProxy}): C{addr}
            is the proxy's, so the per-address cap waits for the client's (L{place}).
        """
        host = describeAddress(addr)[0] if addr is not None else ""
        if self.maxConnections is not None and len(self.protocols) >= self.maxConnections:
            self.log.warn(
                "refused {host}: {limit} connections open", host=host, limit=self.maxConnections
            )
            self.refused("max-connections")
            return None
        if (
            not behindProxy
            and self.maxPerAddress is not None
            and self._perAddress[host] >= self.maxPerAddress
        ):
            self.log.warn(
                "refused {host}: {limit} connections open from it",
                host=host,
                limit=self.maxPerAddress,
            )
            self.refused("max-connections-per-address")
            return None
        protocol: Any = super().buildProtocol(addr)
        if protocol is not None:
            protocol.host = host
            if not behindProxy:
                protocol.counted = True
                self._perAddress[host] += 1
        return protocol

    def place(self, protocol: TrackingProtocol) -> bool:
        """
        A connection behind the PROXY protocol sent its first data: the header told the
        client's address, which counts against the per-address cap from now on (in place
        of the proxy's).  @return: whether it may stay (else it is aborted).
        """
        host = describeAddress(protocol.transport.getPeer())[0]  # type: ignore[union-attr]
        if host == protocol.host:
            return True
        proxy = protocol.host
        self.forget(protocol)
        if self.trustedProxies and not isTrusted(proxy, self.trustedProxies):
            self.log.warn("refused {proxy}: a PROXY header from an untrusted peer", proxy=proxy)
            return self._refuse(protocol, "untrusted-proxy")
        protocol.host = host
        if self.maxPerAddress is not None and self._perAddress[host] >= self.maxPerAddress:
            self.log.warn(
                "refused {host} (through {proxy}): {limit} connections open from it",
                host=host,
                proxy=proxy,
                limit=self.maxPerAddress,
            )
            return self._refuse(protocol, "max-connections-per-address")
        protocol.counted = True
        self._perAddress[host] += 1
        return True

    def _refuse(self, protocol: TrackingProtocol, reason: str) -> bool:
        self.refused(reason)
        protocol.transport.abortConnection()  # type: ignore[union-attr]
        return False

    def forget(self, protocol: TrackingProtocol) -> None:
        """A connection closed (or moved): it no longer counts against its address."""
        if not protocol.counted:
            return
        protocol.counted = False
        count = self._perAddress[protocol.host] - 1
        if count > 0:
            self._perAddress[protocol.host] = count
        else:
            del self._perAddress[protocol.host]

    def refused(self, reason: str) -> None:
        if self._refused is not None:
            self._refused(reason)

    def acceptableProtocols(self) -> list[bytes]:
        """Pass the site's ALPN protocols through, so TLS endpoints can negotiate them."""
        return list(self.wrappedFactory.acceptableProtocols())

    def connections(self) -> list[TrackingProtocol]:
        return sorted(self.protocols, key=lambda p: p.id)

    def rows(self) -> list[dict[str, Any]]:
        """Every open connection, oldest first."""
        now = self.clock.seconds()
        return [p.describe(now) for p in self.connections()]

    def counts(self) -> dict[str, float]:
        """Open connections by protocol, for C{/metrics}."""
        counts = {HTTP: 0.0, H2: 0.0, WEBSOCKET: 0.0}
        for p in self.protocols:
            counts[p.protocolName] = counts.get(p.protocolName, 0.0) + 1
        return counts


class BehindProxy:
    """
    What a C{haproxy:} endpoint listens with: the tracker, told that each connection's
    address is the proxy's until the PROXY header names the client's
    (L{TrackingFactory.place}).  Everything else is the tracker's.
    """

    def __init__(self, tracker: TrackingFactory) -> None:
        self.tracker = tracker

    def buildProtocol(self, addr: IAddress | None) -> Any:
        return self.tracker.buildProtocol(addr, behindProxy=True)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tracker, name)
