"""
The socket hand-over after C{101 Switching Protocols}: the one place where a connection is
taken away from twisted.web's HTTP/1.1 channel and given to another protocol (a WebSocket,
the line protocol, anything registered with L{portshare.upgrade.UpgradeDispatcher}).

Mirrors Twisted 26.10.0 (C{twisted.web.http.HTTPChannel}: C{_dataBuffer}, C{_networkProducer},
and C{LineReceiver.clearLineBuffer}) and the hand-over of Autobahn 26.11.1's
C{autobahn.twisted.resource.WebSocketResource.render}, which it replaces: Autobahn's loses the
bytes a client sent in the same read as its handshake.

Theory of operation: twisted.web has read the request head (and body) and paused reading
while the resource renders.  The channel may already hold bytes that came after the request
(a client that sends its first frames at once): in its line buffer, or in C{_dataBuffer} while
a request is in progress.  L{takeOver} collects those bytes, lets the channel go
(C{channel.transport = None}: twisted.web then never writes to or closes the socket), puts the
new protocol under the connection tracker or TLS wrapper (or the raw transport), starts it,
resumes reading, and tells the site that this request is done (it never finishes: it is not
in flight any more).  The caller feeds the collected bytes to the new protocol.

Fallback: where C{_dataBuffer} or C{_networkProducer} is missing (another Twisted), the bytes
in the line buffer are still collected (C{clearLineBuffer} is public), and reading is resumed
on the transport itself.  tests/test_takeover.py checks these names against the installed
Twisted and both paths through the real C{HTTPChannel}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IProtocol
from twisted.protocols.policies import ProtocolWrapper
from twisted.web.server import Request

#: the Twisted version whose private names this module reads
MIRRORS_TWISTED = "26.10.0"
#: the private attributes of C{HTTPChannel} read here (checked by the tests)
CHANNEL_PRIVATE = ("_dataBuffer", "_networkProducer")


def pendingBytes(channel: Any) -> bytes:
    """
    Take the bytes the HTTP channel has read past the current request out of its buffers.

    @param channel: twisted.web's C{HTTPChannel}.
    @return: those bytes, in the order they came; the channel's buffers are left empty.
    """
    buffered = getattr(channel, "_dataBuffer", None)
    early = b"".join(buffered) if buffered else b""
    if buffered:
        channel._dataBuffer = []
    return early + channel.clearLineBuffer()


def takeOver(
    request: Request, protocol: IProtocol, preamble: bytes = b"", releaseProducer: bool = True
) -> bytes:
    """
    Give C{request}'s connection to C{protocol}.

    @param request: an HTTP/1.1 request whose channel still has its transport.
    @param protocol: the protocol the socket belongs to from now on (not yet connected).
    @param preamble: bytes to write before the hand-over (the C{101} response of a protocol
        that does not answer the handshake itself).
    @param releaseProducer: unregister the HTTP channel as the socket's producer, for a
        protocol that registers its own when connected.  An Autobahn protocol does that only
        once its handshake succeeds, and unregisters whatever is there when it drops the
        connection, so it keeps the channel registered until then (C{False}).
    @return: the bytes the client sent after the request, for C{protocol.dataReceived}.
    """
    channel: Any = request.channel
    transport: Any = channel.transport
    leftover = pendingBytes(channel)
    if preamble:
        transport.write(preamble)
    channel.transport = None  # twisted.web lets go: it never writes or closes it again
    if releaseProducer:
        transport.unregisterProducer()  # the HTTP channel was its producer
    if isinstance(transport, ProtocolWrapper):  # the connection tracker, or TLS
        transport.wrappedProtocol = protocol
    elif isinstance(getattr(transport, "protocol", None), ProtocolWrapper):
        transport.protocol.wrappedProtocol = protocol
    else:
        transport.protocol = protocol
    protocol.makeConnection(transport)
    # twisted.web paused reading while it served this request; nothing else will resume it
    producer = getattr(channel, "_networkProducer", None) or transport
    producer.resumeProducing()
    done = getattr(request.site, "requestDone", None)
    if done is not None:
        done(request)
    return leftover
