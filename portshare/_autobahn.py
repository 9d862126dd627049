"""
Autobahn's per-frame hot paths, rewritten for portshare's WebSockets: the one module that
overrides Autobahn methods and reads its private fields.

Mirrors Autobahn 26.11.1 (C{autobahn.websocket.protocol.WebSocketProtocol}: C{onFrameBegin},
C{onFrameData}, C{sendMessage}, C{onMessageEnd}, C{sendData}, C{sendPreparedMessage}, and the
fields they read, L{MIRRORED}).  L{FastPaths} is a mixin put in front of an Autobahn server
protocol; each method does the common case in fewer steps (docs/performance.md) and hands
every other case to Autobahn's own method:

 - an incoming frame that is a whole message (FIN, no RSV bit, text or binary, masked,
   payload under 64 KiB and within the limits, all of it read) is parsed, unmasked,
   validated and handed to C{onMessage} in one step, without Autobahn's C{FrameHeader} and
   its chain of C{onFrame*} / C{onMessage*} callbacks (L{FastPaths.processData}); any other
   frame, and any frame whose text is not valid UTF-8, goes through Autobahn's parser;
 - small incoming frames (below L{SMALL_FRAME}) are unmasked with one integer XOR instead of
   setting up Autobahn's native masker per frame;
 - a whole unfragmented, uncompressed message is framed in one step;
 - Autobahn's C{"message"} signal (a Deferred and a gather per message) fires only when
   somebody listens to it;
 - writes skip Autobahn's per-write debug-log formatting;
 - a frame prepared once for all members is written in one call per member;
 - a new connection copies the factory's options without Autobahn's
   C{log.debug(pformat(...))} of all of them, which is formatted with debug logging off
   too and was a fifth of a handshake's CPU time.

Fallback: L{mirrored} is false when the installed Autobahn lacks any name read here; then
L{portshare.ws} and L{portshare.echo} use their plain protocols (Autobahn's own paths, only
slower), and the service logs which.  tests/test_autobahn.py checks every name against the
real installed classes and runs the chat and the echo on both paths.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.xormasker import create_xor_masker

#: the Autobahn version whose internals this module mirrors
MIRRORS_AUTOBAHN = "26.11.1"

#: what the fast paths read of an open Autobahn protocol (methods and fields)
MIRRORED = (
    "current_frame",
    "state",
    "send_queue",
    "trafficStats",
    "trackedTimings",
    "_perMessageCompress",
    "_listeners",
    "failedByMe",
    "message_data",
    "message_is_binary",
    "_onMessage",
    "logOctets",
    "logTxOctets",
    "autoFragmentSize",
    "logFrames",
    "maskServerFrames",
    "maxMessagePayloadSize",
    "sendPreparedMessage",
    "CONFIG_ATTRS",
    "_connectionMade",
    "data",
    "inside_message",
    "processData",
    "maxFramePayloadSize",
    "utf8validateIncoming",
    "autoPingTimeoutCall",
    "autoPingRestartOnAnyTraffic",
    "_cancelAutoPingTimeoutCall",
)
#: what an Autobahn C{PreparedMessage} carries that L{FastPaths.writePrepared} writes
PREPARED_MIRRORED = ("payload", "payloadHybi")


def mirrored(protocol: type = WebSocketServerProtocol) -> bool:
    """Whether the installed Autobahn has what the fast paths read (class-level names)."""
    return (
        all(
            hasattr(protocol, name)
            for name in (
                "_onMessage",
                "sendPreparedMessage",
                "logTxOctets",
                "onFrameBegin",
                "_connectionMade",
            )
        )
        and bool(getattr(protocol, "CONFIG_ATTRS", None))
        and hasattr(WebSocketProtocol, "STATE_OPEN")
    )


#: the options Autobahn copies from the factory onto each new server protocol
_SERVER_CONFIG_ATTRS: tuple[str, ...] = tuple(getattr(WebSocketServerProtocol, "CONFIG_ATTRS", ()))

#: frames shorter than this are unmasked in Python; longer ones by Autobahn's masker (NVX)
SMALL_FRAME = 128


def unmaskSmall(mask: bytes, offset: int, data: bytes) -> bytes:
    """
    RFC 6455 unmasking of C{data}, which starts C{offset} bytes into its frame's payload, as
    one integer XOR.  For small frames this is several times cheaper than setting up
    Autobahn's native masker (two CFFI allocations and a C object per frame).
    """
    n = len(data)
    r = offset & 3
    key = (mask[r:] + mask[:r]) * ((n >> 2) + 1)
    return (int.from_bytes(data, "little") ^ int.from_bytes(key[:n], "little")).to_bytes(
        n, "little"
    )


if TYPE_CHECKING:  # what the mixin is put in front of
    _Protocol = WebSocketServerProtocol
else:
    _Protocol = object


class FastPaths(_Protocol):
    """
    The fast paths, as a mixin in front of an Autobahn C{WebSocketServerProtocol} subclass
    (C{class P(FastPaths, MyProtocol)}).
    """

    # Autobahn copies applyMask from the factory unless the protocol has it: incoming frames
    # are unmasked here, in onFrameData (a server never masks what it sends)
    applyMask = False
    _unmasker: Any = None
    _unmaskedSoFar = 0
    # Autobahn's _connectionMade copies these options from the factory, then formats all of
    # them with pprint for a debug line (done with debug logging off too): the copy is done
    # here instead (the same rule: an option the protocol has already is kept), and the
    # pprint gets an empty list
    CONFIG_ATTRS: Any = ()

    def _connectionMade(self) -> None:
        factory = self.factory
        for name in _SERVER_CONFIG_ATTRS:
            if not hasattr(self, name):
                setattr(self, name, getattr(factory, name))
        super()._connectionMade()

    def processData(self) -> bool:
        """
        Autobahn's C{processData} for a frame that is a whole message, in one step; Autobahn's
        own for everything else (and for any frame this refuses to judge: it then finds the
        fault and answers it exactly as it always did).
        """
        data = self.data
        options: Any = self
        if (
            self.current_frame is not None
            or self.inside_message
            or self.state != WebSocketProtocol.STATE_OPEN
            or len(data) < 6
        ):
            return super().processData()
        first = data[0]
        n = data[1] ^ 0x80  # the MASK bit must be set: then this is the length
        if (first != 0x81 and first != 0x82) or n > 126:
            return super().processData()
        if n < 126:
            start = 6
        else:
            if len(data) < 8:
                return super().processData()
            n = (data[2] << 8) | data[3]
            if n < 126:  # not the minimal length encoding: Autobahn's protocol error
                return super().processData()
            start = 8
        end = start + n
        if (
            len(data) < end
            or self.failedByMe
            or 0 < options.maxFramePayloadSize < n
            or 0 < options.maxMessagePayloadSize < n
            or options.logFrames
            or self.trackedTimings
        ):
            return super().processData()
        listeners: Any = self._listeners
        if listeners and listeners.get("message"):
            return super().processData()
        mask = data[start - 4 : start]
        payload = data[start:end]
        if n < SMALL_FRAME:
            payload = unmaskSmall(mask, 0, payload)
        elif n:
            payload = create_xor_masker(mask, n).process(payload)
        isBinary = first == 0x82
        if not isBinary and options.utf8validateIncoming and not payload.isascii():
            try:
                payload.decode("utf-8")  # strict: what RFC 3629 (and Autobahn's validator) allows
            except UnicodeDecodeError:
                return super().processData()  # Autobahn fails it with 1007, as before
        self.data = data[end:]
        stats = self.trafficStats
        stats.incomingOctetsWebSocketLevel += n
        stats.incomingOctetsAppLevel += n
        stats.incomingWebSocketFrames += 1
        stats.incomingWebSocketMessages += 1
        if options.autoPingTimeoutCall and options.autoPingRestartOnAnyTraffic:
            self._cancelAutoPingTimeoutCall()  # type: ignore[no-untyped-call]
        self._onMessage(payload, isBinary)
        return len(self.data) > 0

    def onFrameBegin(self) -> None:
        frame = self.current_frame
        if frame.mask is not None and frame.length >= SMALL_FRAME:
            self._unmasker = create_xor_masker(frame.mask, frame.length)
        else:
            self._unmasker = None
        self._unmaskedSoFar = 0
        super().onFrameBegin()

    def onFrameData(self, payload: bytes) -> bool | None:
        mask: Any = self.current_frame.mask  # bytes (typed str in Autobahn)
        if mask is not None and payload:
            unmasker = self._unmasker
            if unmasker is not None:
                payload = unmasker.process(payload)
            else:
                payload = unmaskSmall(mask, self._unmaskedSoFar, payload)
                self._unmaskedSoFar += len(payload)
        return super().onFrameData(payload)

    def sendMessage(
        self,
        payload: bytes,
        isBinary: bool = False,
        fragmentSize: int | None = None,
        sync: bool = False,
        doNotCompress: bool = False,
    ) -> None:
        """
        Autobahn's C{sendMessage}, with the common case (open, uncompressed, unfragmented,
        within the size limit) framed here in one step; everything else is Autobahn's.
        """
        n = len(payload)
        options: Any = self  # Autobahn sets these from the factory (CONFIG_ATTRS)
        if (
            fragmentSize is not None
            or sync
            or type(payload) is not bytes
            or self.state != WebSocketProtocol.STATE_OPEN
            or (self._perMessageCompress is not None and not doNotCompress)
            or options.autoFragmentSize
            or self.trackedTimings
            or options.logFrames
            or options.maskServerFrames
            or 0 < options.maxMessagePayloadSize < n
        ):
            super().sendMessage(payload, isBinary, fragmentSize, sync, doNotCompress)
            return
        stats = self.trafficStats
        stats.outgoingWebSocketMessages += 1
        stats.outgoingOctetsAppLevel += n
        stats.outgoingOctetsWebSocketLevel += n
        stats.outgoingWebSocketFrames += 1
        first = 0x82 if isBinary else 0x81
        if n <= 125:
            self.sendData(bytes((first, n)) + payload)
        elif n <= 0xFFFF:
            self.sendData(struct.pack("!BBH", first, 126, n) + payload)
        else:
            self.sendData(struct.pack("!BBQ", first, 127, n) + payload)

    def onMessageEnd(self) -> None:
        """
        Autobahn's C{onMessageEnd}, minus firing its C{"message"} signal when nobody listens
        to it (nothing here does): that made a Deferred and a gather per message, about a
        tenth of an echo's CPU time (docs/performance.md).
        """
        listeners: Any = self._listeners
        if listeners and listeners.get("message"):
            super().onMessageEnd()
            return
        if not self.failedByMe:
            payload = b"".join(self.message_data)
            if self.trackedTimings:
                self.trackedTimings.track("onMessage")
            self._onMessage(payload, self.message_is_binary)
        self.message_data = None  # type: ignore[assignment]

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        """
        Autobahn's C{sendData} without its per-write C{log.debug}: that call's arguments
        (C{hltype(...)}, C{hlval(...)}) are formatted on every write even when debug logging
        is off, which was over half of a fan-out's CPU time (docs/performance.md).
        """
        transport: Any = self.transport
        if chopsize or sync or self.send_queue or transport is None:
            super().sendData(data, sync, chopsize)
            return
        transport.write(data)
        state = self.state
        if state == WebSocketProtocol.STATE_OPEN:
            self.trafficStats.outgoingOctetsWireLevel += len(data)
        elif state in (
            WebSocketProtocol.STATE_CONNECTING,
            WebSocketProtocol.STATE_PROXY_CONNECTING,
        ):
            self.trafficStats.preopenOutgoingOctetsWireLevel += len(data)
        if self.logOctets:  # type: ignore[attr-defined]
            self.logTxOctets(data, False)

    def writePrepared(self, prepared: Any) -> None:
        """
        Write a frame prepared once for all members (Autobahn's C{PreparedMessage}): what
        C{sendPreparedMessage} then C{sendData} come to, in one call per member.
        """
        protocol: Any = self
        if protocol.send_queue or protocol._perMessageCompress is not None:
            protocol.sendPreparedMessage(prepared)
            return
        data = prepared.payloadHybi
        transport: Any = self.transport
        transport.write(data)
        protocol.trafficStats.outgoingOctetsWireLevel += len(data)
