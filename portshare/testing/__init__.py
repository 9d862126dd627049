"""
Testing code built on portshare: in memory, no sockets, no sleeps (docs/testing.md).

For an application's tests:
 - L{MemoryChat}: the whole service (L{portshare.Chat}, every option) on a
   C{MemoryReactorClock}; its L{MemoryChat.websocket}, L{MemoryChat.lines} and
   L{MemoryChat.sse} clients speak the contract and read typed events; L{MemoryChat.request}
   sends HTTP to the same tree (the application's pages, a WSGI app run synchronously);
   L{MemoryChat.advance} moves time.
 - L{MemoryBackplane}: one in-memory broker for several L{MemoryChat}s, to test what crosses
   instances without Redis.
 - L{MemoryChat.token} and L{signToken}: user tokens as the application signs them;
   L{FakeHookBackend}: the application's C{--hook-url} backend, in process.
 - L{ChatError} (a refused command), L{NoReply} (nothing answered yet), L{HTTPResponse}.

For tests of the hub's collaborators: L{RecordingMember}, L{RecordingFrontEnd},
L{SynchronousThreads}; raw frames (L{handshakeRequest}, L{clientFrame}, L{serverFrames}) over
a L{MemoryConnection}; L{connectChat}, a real WebSocket client over loopback.
"""

from portshare.testing._doubles import RecordingFrontEnd, RecordingMember, SynchronousThreads
from portshare.testing._kit import (
    ChatClient,
    ChatError,
    FakeHookBackend,
    HTTPResponse,
    LinesClient,
    MemoryBackplane,
    MemoryChat,
    NoReply,
    SseClient,
    WebSocketClient,
    parseResponse,
    signToken,
)
from portshare.testing._loopback import ChatClientProtocol, connectChat
from portshare.testing._memory import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    MemoryConnection,
    clientFrame,
    closeCode,
    handshakeRequest,
    serverFrames,
    splitResponse,
    startedService,
)

__all__ = [
    "BINARY",
    "CLOSE",
    "CONTINUATION",
    "PING",
    "PONG",
    "TEXT",
    "ChatClient",
    "ChatClientProtocol",
    "ChatError",
    "FakeHookBackend",
    "HTTPResponse",
    "LinesClient",
    "MemoryBackplane",
    "MemoryChat",
    "MemoryConnection",
    "NoReply",
    "RecordingFrontEnd",
    "RecordingMember",
    "SseClient",
    "SynchronousThreads",
    "WebSocketClient",
    "clientFrame",
    "closeCode",
    "connectChat",
    "handshakeRequest",
    "parseResponse",
    "serverFrames",
    "signToken",
    "splitResponse",
    "startedService",
]
