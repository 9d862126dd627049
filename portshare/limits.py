"""
Every limit of the service, in one place.

Autobahn's and twisted.web's defaults accept everything (unlimited payloads, any origin, no
keepalive, no handshake timeout).  Each number here is chosen deliberately, shown in
C{twistd portshare --help} and documented in docs/security.md; L{portshare.tap} builds one
L{Limits} from the command line and every layer reads from it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """
    Tunables of the chat and echo endpoints and the HTTP API.

    @ivar maxMessageSize: largest WebSocket message (and frame) on C{/ws}, in bytes; more
        closes the socket with 1009.
    @ivar maxText: largest C{text} of a chat message, in characters; more is refused with
        error C{too_large}.
    @ivar history: messages kept per room for recovery with C{since}.
    @ivar maxRooms: rooms the in-memory broker keeps; idle ones are forgotten first.
    @ivar roomsPerConnection: rooms one WebSocket may have joined at once.
    @ivar rate: sustained chat messages per second per connection (token bucket refill).
    @ivar burst: chat messages a connection may send at once (token bucket size).
    @ivar floodStrikes: rate-limited messages in a row after which the socket is closed 1008.
    @ivar apiRate: messages per second one client address may publish over HTTP.
    @ivar apiBurst: messages one client address may publish over HTTP at once.
    @ivar historyPageLimit: most messages returned by one history request.
    @ivar maxBody: largest HTTP API request body, in bytes (413 beyond).
    @ivar staticCacheFileBytes: largest static file held in memory after its first request
        (larger ones are streamed from disk each time).
    @ivar staticCacheBytes: most bytes of static files held in memory in all.
    @ivar echoMaxMessageSize: largest message on C{/ws/echo}, also after inflation.
    @ivar openHandshakeTimeout: seconds a client has to complete the WebSocket handshake.
    @ivar closeHandshakeTimeout: seconds we wait for the peer's close frame.
    @ivar pingInterval: seconds between keepalive pings on idle sockets.
    @ivar pingTimeout: seconds a pong may take before the socket is dropped.
    @ivar presenceMembersCap: most nicks listed in a C{joined} reply (C{count} has them all),
        and in each list of a C{presence_batch}.
    @ivar presenceBatchAbove: a room with more local members than this gets its presence as
        one C{presence_batch} per C{presenceBatchInterval} instead of one C{presence} per join
        or leave; 0 batches every room.  The only field that may be 0.
    @ivar presenceBatchInterval: seconds a big room's presence is collected before it is sent.
    @ivar maxConnections: open TCP connections on all endpoints together.
    @ivar maxConnectionsPerAddress: open TCP connections from one client address.
    @ivar adminMaxConnections: open connections on the admin endpoints together (their own
        cap, apart from the public one, so a flood on the public port leaves room for health
        checks and control).
    @ivar requestTimeout: seconds a new connection has to send its first complete request
        (headers and body): slowloris clients that trickle bytes are cut here.
    @ivar httpIdleTimeout: seconds an idle HTTP keep-alive connection is kept.
    @ivar maxHeaderBytes: bytes of request line and headers together (line endings not
        counted), so also the longest request line (414 beyond) and header line (431 beyond).
    @ivar maxHeaders: headers per HTTP/1.1 request (431 beyond).
    @ivar maxConcurrentStreams: HTTP/2 streams one connection may have open at once, announced
        as C{SETTINGS_MAX_CONCURRENT_STREAMS}: clients queue the requests beyond it, and a
        stream opened beyond it before the client read the announcement is reset with
        C{REFUSED_STREAM}.
    @ivar slowConsumerBytes: bytes queued for one WebSocket beyond the socket's own buffer
        before it counts as too slow.
    @ivar slowConsumerSeconds: seconds a WebSocket's socket may stay full before it counts as
        too slow.
    """

    maxMessageSize: int = 64 * 1024
    maxText: int = 4096
    history: int = 1000
    maxRooms: int = 10_000
    roomsPerConnection: int = 64
    rate: float = 20.0
    burst: int = 40
    floodStrikes: int = 20
    apiRate: float = 20.0
    apiBurst: int = 40
    historyPageLimit: int = 1000
    maxBody: int = 64 * 1024
    staticCacheFileBytes: int = 1024 * 1024
    staticCacheBytes: int = 32 * 1024 * 1024
    echoMaxMessageSize: int = 16 * 1024 * 1024
    openHandshakeTimeout: float = 10.0
    closeHandshakeTimeout: float = 5.0
    pingInterval: float = 30.0
    pingTimeout: float = 10.0
    presenceMembersCap: int = 100
    presenceBatchAbove: int = 100
    presenceBatchInterval: float = 1.0
    maxConnections: int = 10_000
    maxConnectionsPerAddress: int = 256
    adminMaxConnections: int = 64
    requestTimeout: float = 10.0
    httpIdleTimeout: float = 60.0
    maxHeaders: int = 64
    maxHeaderBytes: int = 16 * 1024
    maxConcurrentStreams: int = 100
    slowConsumerBytes: int = 1024 * 1024
    slowConsumerSeconds: float = 10.0

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if name in _MAY_BE_ZERO:
                if value < 0:
                    raise ValueError(f"{name} must be 0 or more, not {value!r}")
            elif value <= 0:
                raise ValueError(f"{name} must be positive, not {value!r}")


#: fields for which 0 means something (see their descriptions)
_MAY_BE_ZERO = frozenset({"presenceBatchAbove"})
