"""
portshare's subclasses of twisted.web's HTTP/1.1 channel and HTTP/2 connection: the one place
that overrides Twisted's private methods.

Mirrors Twisted 26.10.0 (L{twisted.web.http.HTTPChannel},
C{twisted.web.http._GenericHTTPChannelProtocol}, C{twisted.web._http2.H2Connection}) and h2
4.x.  Each private override below says what it mirrors and what happens without it (its
fallback: Twisted's own behaviour, which still enforces every limit).  Where a mirror is only
right for the Twisted it was written against, the names that Twisted's method refers to are
its fingerprint (L{SWITCH_MIRRORED}, L{DISPATCH_MIRRORED}): on a Twisted whose method differs,
portshare falls back and the site logs a warning at start.  tests/test_web.py and
tests/test_http2.py drive all of it through the real classes of the installed Twisted, and
fail when a fingerprint no longer matches: then re-read this module against Twisted's source.

    HTTP/1.1  L{PortshareHTTPChannel}: the request head's limits (L{portshare.httphead}) are
              checked line by line before twisted.web's own checks of the same limits, and
              answered 414 / 431 with a JSON reason; what twisted.web cannot parse gets a JSON
              400 instead of its bare one.
    switch    L{PortshareChannelSwitch}: on ALPN C{h2}, the connection becomes a
              L{PortshareH2Connection} (on the site's reactor) instead of Twisted's.
    HTTP/2    L{PortshareH2Connection}: the site's C{SETTINGS_MAX_CONCURRENT_STREAMS}, streams
              beyond it reset with C{REFUSED_STREAM}; a malformed request (an C{Upgrade}
              header, say) is answered 400 on its own stream, where h2 would end the whole
              connection with C{GOAWAY PROTOCOL_ERROR}.
"""

from __future__ import annotations

import contextlib
from typing import Any

from twisted.logger import Logger
from twisted.web.http import HTTPChannel, _GenericHTTPChannelProtocol, datetimeToString

from portshare.errors import BAD_REQUEST
from portshare.httphead import MALFORMED, Refusal, RequestHead, connectionSpecific, h2Refusal

#: the Twisted version whose private methods this module mirrors
MIRRORS_TWISTED = "26.10.0"


def _date(site: Any) -> bytes:
    """The C{Date} header's value, on the site's clock when it has one."""
    reactor = getattr(site, "reactor", None)
    return datetimeToString(reactor.seconds() if reactor is not None else None)


def _count(site: Any, refusal: Refusal) -> None:
    countError = getattr(site, "countError", None)
    if countError is not None:
        countError(refusal.status)


class PortshareHTTPChannel(HTTPChannel):
    """
    twisted.web's HTTP/1.1 channel with JSON refusals for request heads over the limits
    (C{maxHeaders}, C{totalHeadersSize}, C{MAX_LENGTH}, set by the site) or not parsed.
    """

    log = Logger()
    _head: RequestHead | None = None
    #: set once a refusal is sent: nothing more is read from the connection
    _refused = False

    def _limits(self) -> RequestHead:
        head = self._head
        if head is None:
            head = self._head = RequestHead(self.maxHeaders, self.totalHeadersSize)
        return head

    _host: Any = None

    def getHost(self) -> Any:
        """
        The connection's local address, asked of the socket once: twisted.web's C{Request}
        asks for it on every request, and each time it was a C{getsockname()} system call
        (7 % of a C{GET /} alone).
        """
        host = self._host
        if host is None:
            host = self._host = super().getHost()
        return host

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return  # answered and closing (TLS may still deliver what was in flight)
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        """
        Each line of a request head, checked against the limits before twisted.web reads it
        (twisted.web's own checks of the same limits come after, and never see it first).
        """
        if self._refused:
            return
        refusal = self._limits().lineReceived(line)
        if refusal is not None:
            self.refuse(refusal)
            return
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        """A line passed C{MAX_LENGTH} before its end (LineReceiver closes without a word)."""
        self.refuse(self._limits().lineTooLong())

    # -- private override (Twisted 26.10.0 HTTPChannel._respondToBadRequestAndDisconnect) ----
    # twisted.web calls it for a request line or header it cannot parse, a bad Content-Length
    # or Transfer-Encoding, malformed chunked data, and its own header limits.  Without this
    # override (a Twisted that renamed it) those answers are twisted.web's bare 400 without
    # Server header: still refused and closed.
    def _respondToBadRequestAndDisconnect(self) -> None:
        self.refuse(MALFORMED)

    def refuse(self, refusal: Refusal) -> None:
        """Answer C{refusal} (counted in C{/metrics}, logged once) and close the connection."""
        if self._refused:
            return
        self._refused = True
        site = getattr(self, "site", None)
        _count(site, refusal)
        transport = self.transport
        if transport is None:
            return
        self.log.info(
            "refused an HTTP request from {peer}: {status} {reason}",
            peer=str(transport.getPeer()),
            status=refusal.status,
            reason=refusal.reason,
        )
        transport.write(refusal.response(_date(site)))
        self.loseConnection()


try:
    import h2.errors
    import h2.exceptions
    import h2.settings
    from h2.utilities import HeaderValidationFlags, validate_headers
    from twisted.web import _http2
except ImportError:  # without twisted[http2] (h2, priority) there is no HTTP/2
    _http2 = None  # type: ignore[assignment]

#: Twisted's HTTP/2 connection class, or None without twisted[http2]
H2Connection: Any = _http2.H2Connection if _http2 is not None else None


#: Twisted's HTTP/2 stream class (a request's channel over HTTP/2), or None
H2Stream: Any = _http2.H2Stream if _http2 is not None else None


def isHTTP2Stream(channel: Any) -> bool:
    """Whether a request's channel is an HTTP/2 stream (not an HTTP/1.1 channel)."""
    return H2Stream is not None and isinstance(channel, H2Stream)


def connectionOf(request: Any) -> Any:
    """
    The transport of the connection a request came on (the connection tracker's row, when
    tracked), under an HTTP/1.1 channel or an HTTP/2 stream alike; C{None} once taken over.

    Reads C{H2Stream._conn}, the stream's connection (Twisted 26.10.0); on a Twisted without
    it, the stream's own C{transport} (C{None}): the request then counts on no tracker row
    and takes C{isSecure} from twisted.web.
    """
    channel: Any = request.channel
    if channel is None:
        return None
    if isHTTP2Stream(channel):
        connection = getattr(channel, "_conn", None)
        if connection is not None:
            return connection.transport
    return channel.transport


def _names(function: Any) -> frozenset[str]:
    """The global and attribute names a function's code refers to: its fingerprint here."""
    return frozenset(function.__code__.co_names)


#: what Twisted 26.10.0's C{_GenericHTTPChannelProtocol.dataReceived} refers to
_SWITCH_NAMES = frozenset(
    {
        "H2Connection", "H2_ENABLED", "ValueError", "_callLater", "_channel", "_factory",
        "_negotiatedProtocol", "_networkProducer", "_requestFactory", "_site", "_timeOut",
        "callLater", "dataReceived", "factory", "getattr", "makeConnection",
        "registerProducer", "requestFactory", "setTimeout", "site", "timeOut", "transport",
        "unregisterProducer",
    }
)  # fmt: skip

#: what Twisted 26.10.0's C{H2Connection.dataReceived} refers to: h2's events and a handler
#: for each
_DISPATCH_NAMES = frozenset(
    {
        "ConnectionLost", "ConnectionTerminated", "DataReceived", "Failure", "PriorityUpdated",
        "ProtocolError", "RequestReceived", "StreamEnded", "StreamReset", "WindowUpdated",
        "_handlePriorityUpdate", "_handleWindowUpdate", "_requestAborted",
        "_requestDataReceived", "_requestEnded", "_requestReceived", "_terminate",
        "_tryToWriteControlData", "conn", "connectionLost", "events", "exceptions", "h2",
        "isinstance", "loseConnection", "receive_data", "resetTimeout", "transport",
    }
)  # fmt: skip

#: whether the installed Twisted switches to HTTP/2 as the one mirrored here does
SWITCH_MIRRORED = _names(_GenericHTTPChannelProtocol.dataReceived) == _SWITCH_NAMES
#: whether the installed Twisted hands h2's events to the handlers overridden here, and no
#: other handler looks a stream up
DISPATCH_MIRRORED = H2Connection is not None and _names(H2Connection.dataReceived) == (
    _DISPATCH_NAMES
)


def fenceWarning() -> str | None:
    """What portshare's HTTP/2 falls back to on the installed Twisted, if it must."""
    if H2Connection is None:
        return None
    import twisted

    if not SWITCH_MIRRORED:
        return (
            f"Twisted {twisted.__version__} switches to HTTP/2 differently from the Twisted "
            f"{MIRRORS_TWISTED} portshare mirrors: HTTP/2 runs with Twisted's own settings "
            "(h2's 100 concurrent streams, GOAWAY for a malformed request)"
        )
    if not DISPATCH_MIRRORED:
        return (
            f"Twisted {twisted.__version__} handles HTTP/2 events differently from the Twisted "
            f"{MIRRORS_TWISTED} portshare mirrors: a malformed HTTP/2 request, or a stream "
            "beyond the limit opened before the client read it, ends its connection with "
            "GOAWAY instead of a 400 or a REFUSED_STREAM on its stream"
        )
    return None


def buildChannel(site: Any) -> _GenericHTTPChannelProtocol:
    """
    The protocol of one connection to C{site} (a L{twisted.web.server.Site}'s C{protocol},
    replacing Twisted's C{_genericHTTPChannelProtocolFactory}): HTTP/1.1 in a
    L{PortshareHTTPChannel} until ALPN says C{h2}.
    """
    return PortshareChannelSwitch(PortshareHTTPChannel())


class PortshareChannelSwitch(_GenericHTTPChannelProtocol):
    """Twisted's HTTP/1.1-or-HTTP/2 switch, switching to L{PortshareH2Connection}."""

    def dataReceived(self, data: bytes) -> None:
        if self._negotiatedProtocol is None and SWITCH_MIRRORED and H2Connection is not None:
            transport = self._channel.transport
            if getattr(transport, "negotiatedProtocol", None) == b"h2":
                self._switchToH2(transport)
        super().dataReceived(data)

    # -- mirrors the h2 branch of Twisted 26.10.0 _GenericHTTPChannelProtocol.dataReceived ---
    # with portshare's connection class on the site's reactor.  Fallback: when the installed
    # Twisted's method is not the one mirrored (SWITCH_MIRRORED), Twisted switches to its own
    # H2Connection: HTTP/2 works, with h2's default settings and GOAWAY refusals.
    def _switchToH2(self, transport: Any) -> None:
        old: Any = self._channel
        networkProducer = old._networkProducer
        networkProducer.unregisterProducer()
        old.setTimeout(None)
        site = self._site
        channel: Any = PortshareH2Connection(
            getattr(site, "reactor", None), getattr(site, "maxConcurrentStreams", None)
        )
        channel.requestFactory = self._requestFactory
        channel.site = site
        channel.factory = self._factory
        channel.timeOut = self._timeOut
        channel.callLater = self._callLater
        self._channel = channel
        channel.makeConnection(transport)
        networkProducer.registerProducer(channel, True)
        self._negotiatedProtocol = b"h2"  # type: ignore[assignment]


if H2Connection is not None:
    #: how h2 validates the headers of a request a server receives
    _REQUEST = HeaderValidationFlags(
        is_client=False, is_trailer=False, is_response_header=False, is_push_promise=False
    )

    class PortshareH2Connection(H2Connection):  # type: ignore[misc]
        """
        Twisted's HTTP/2 connection on the site's reactor, with the site's stream limit, and
        requests over that limit or malformed refused on their own stream.

        The stream limit: h2 would announce C{SETTINGS_MAX_CONCURRENT_STREAMS} in its first
        SETTINGS frame and end the connection (C{GOAWAY PROTOCOL_ERROR}) on the first stream
        beyond it, but a client may open streams before that frame reaches it (RFC 9113
        6.5.2: until then there is no limit), and most do.  So the limit is announced in a
        second SETTINGS frame, sent at once, which h2 enforces only once the client has
        acknowledged it; until then, a stream beyond the limit is reset with
        C{REFUSED_STREAM} (the client may retry it), as nghttp2 does.

        Malformed requests: h2 validates a request's headers (RFC 9113 8.2) as it decodes
        them and treats any fault as a connection error: C{GOAWAY PROTOCOL_ERROR}, every
        stream of the connection lost.  RFC 9113 8.1.1 makes a malformed request a stream
        error, after which a server may answer it.  So h2's inbound validation is off here
        and the same validation (h2's own L{validate_headers}, after the connection-specific
        fields) is run on each request as it arrives: a fault is answered C{400} with a JSON
        reason on that stream, which is then closed (reset with C{NO_ERROR} if the client
        was still sending its body); the other streams go on.
        """

        log = Logger()

        def __init__(self, reactor: Any = None, maxConcurrentStreams: int | None = None) -> None:
            super().__init__(reactor)
            #: streams one connection may have open at once (None: h2's default)
            self.maxConcurrentStreams = maxConcurrentStreams
            if maxConcurrentStreams is not None:
                # h2's settings before connectionMade announces them: without its own limit
                # of 100 when the limit is announced and enforced by connectionMade and
                # _requestReceived, with the limit otherwise
                initial = {
                    h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: (
                        self.conn.DEFAULT_MAX_HEADER_LIST_SIZE
                    )
                }
                if not DISPATCH_MIRRORED:
                    initial[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = maxConcurrentStreams
                self.conn.local_settings = h2.settings.Settings(
                    client=False, initial_values=initial
                )
            if DISPATCH_MIRRORED:
                self.conn.config.validate_inbound_headers = False  # validated in malformed()
            #: streams refused in the data being handled, whose later events are dropped
            self._refusedStreams: set[int] = set()

        def connectionMade(self) -> None:
            super().connectionMade()  # the connection preface, with h2's first SETTINGS
            if self.maxConcurrentStreams is not None and DISPATCH_MIRRORED:
                self.conn.update_settings(
                    {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.maxConcurrentStreams}
                )
                self.transport.write(self.conn.data_to_send())

        def dataReceived(self, data: bytes) -> None:
            try:
                super().dataReceived(data)
            finally:
                # a refused stream is closed (ended both ways, or reset) before the next
                # data: h2 reports no more events for it
                self._refusedStreams.clear()

        def malformed(self, headers: list[tuple[bytes, bytes]]) -> Refusal | None:
            """The refusal of a request with C{headers}, or C{None} when they are valid."""
            name = connectionSpecific(headers)
            if name is not None:
                return h2Refusal(name)
            try:
                list(validate_headers(headers, _REQUEST))
            except h2.exceptions.ProtocolError as e:
                return Refusal(400, BAD_REQUEST, f"malformed HTTP/2 request: {e}")
            return None

        def refuseStream(self, streamID: int, refusal: Refusal, ended: bool) -> None:
            """
            Answer C{refusal} on stream C{streamID} and close it, without a request object.

            @param ended: whether the client has ended its side of the stream.
            """
            self._refusedStreams.add(streamID)
            body = refusal.body()
            conn = self.conn
            try:
                conn.send_headers(streamID, refusal.h2Headers(_date(self.site)))
                if conn.local_flow_control_window(streamID) >= len(body):
                    conn.send_data(streamID, body, end_stream=True)
                    if not ended:
                        conn.reset_stream(streamID, h2.errors.ErrorCodes.NO_ERROR)
                else:  # a window smaller than the body: no answer
                    conn.reset_stream(streamID, h2.errors.ErrorCodes.PROTOCOL_ERROR)
            except h2.exceptions.ProtocolError:
                pass  # the client has reset the stream already
            _count(self.site, refusal)
            self.log.info(
                "refused an HTTP/2 request from {peer}: {status} {reason}",
                peer=str(self.transport.getPeer()) if self.transport is not None else "-",
                status=refusal.status,
                reason=refusal.reason,
            )

        # -- private overrides: Twisted 26.10.0 H2Connection's handlers of h2's events ------
        # Its dataReceived hands each event to one of these.  Fallback: when the installed
        # Twisted's dataReceived is not the one mirrored (DISPATCH_MIRRORED), h2 keeps
        # validating and ends the connection on a malformed request, as without portshare.
        def _requestReceived(self, event: Any) -> None:
            if not DISPATCH_MIRRORED:
                super()._requestReceived(event)
                return
            limit = self.maxConcurrentStreams
            if limit is not None and len(self.streams) >= limit:
                self._refusedStreams.add(event.stream_id)
                with contextlib.suppress(h2.exceptions.ProtocolError):  # reset by the client
                    self.conn.reset_stream(event.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
                return
            refusal = self.malformed(event.headers)
            if refusal is None:
                super()._requestReceived(event)
                return
            self.refuseStream(event.stream_id, refusal, event.stream_ended is not None)

        def _requestDataReceived(self, event: Any) -> None:
            if event.stream_id in self._refusedStreams:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                return
            super()._requestDataReceived(event)

        def _requestEnded(self, event: Any) -> None:
            if event.stream_id not in self._refusedStreams:
                super()._requestEnded(event)

        def _requestAborted(self, event: Any) -> None:
            if event.stream_id not in self._refusedStreams:
                super()._requestAborted(event)

        def _handlePriorityUpdate(self, event: Any) -> None:
            if event.stream_id not in self._refusedStreams:
                super()._handlePriorityUpdate(event)

else:
    PortshareH2Connection = None  # type: ignore[assignment,misc]
