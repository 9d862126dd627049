"""
C{/ws/echo}: every text and binary message back unchanged, for Autobahn testsuite runs.

Off unless C{--echo}.  It shares the origin policy, timeouts and failure mode of the chat
endpoint (L{portshare.ws.configureFactory}: bad frames are failed with a close frame carrying
1002, 1007 or 1009 I{after} whatever was already queued, instead of dropping TCP) but has its
own, larger message limit and accepts permessage-deflate with bounded memory.

Theory of operation (see compliance/FINDINGS.md for the measurements):

  - permessage-deflate: the client's offer is accepted with both LZ77 windows capped at
    L{DEFLATE_WINDOW_BITS} (lower if the client asks), zlib C{memLevel} L{DEFLATE_MEM_LEVEL},
    and inflation stopped at the echo message limit (Autobahn's C{max_message_size}, on top
    of C{maxMessagePayloadSize}, which also bounds inflated size).  Memory per compressing
    connection is about C{2**(wbits+2) + 2**(memLevel+9)} for the compressor plus
    C{2**wbits} for the decompressor: ~300 KiB at 15/8.
  - Compression level: Autobahn always compresses at zlib level 6; compression is ~70% of
    the server's CPU in the testsuite's 12.x/13.x cases, so the echo endpoint compresses at
    L{DEFLATE_LEVEL} (1) instead, by swapping in L{LevelledPerMessageDeflate} in C{onOpen},
    before the first message is compressed.
  - Keepalive: the testsuite counts any unsolicited ping as an event and ends a 12.x case
    when one arrives; those cases run up to 40 s here (and may take up to the suite's own
    480 s limit), so the echo endpoint pings no more often than every
    L{ECHO_MIN_PING_INTERVAL} seconds.  The handshake timeouts still apply.
"""

from __future__ import annotations

import zlib
from typing import Any

from autobahn.websocket.compress import (
    PerMessageDeflate,
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
)
from twisted.internet.interfaces import IReactorTime

from portshare._autobahn import FastPaths, mirrored
from portshare.limits import Limits
from portshare.origins import OriginPolicy
from portshare.ws import EndpointProtocol, PortshareFactory, configureFactory

#: Upper bound of both LZ77 windows, in bits (permessage-deflate allows 9..15).
DEFLATE_WINDOW_BITS = 15
#: zlib C{memLevel} of our compressor (1..9; zlib's default is 8).
DEFLATE_MEM_LEVEL = 8
#: zlib level of our compressor; Autobahn's own is fixed at 6 (C{Z_DEFAULT_COMPRESSION}).
DEFLATE_LEVEL = 1
#: Seconds between keepalive pings on /ws/echo at least: longer than the testsuite's
#: longest case timeout (480 s), since the suite ends a case on an unsolicited ping.
ECHO_MIN_PING_INTERVAL = 600.0


class LevelledPerMessageDeflate(PerMessageDeflate):
    """
    Server-side permessage-deflate whose compressor uses a chosen zlib level; everything
    else (windows, context takeover, inflation limits) is Autobahn's.

    @ivar compressLevel: the zlib level, 0..9.
    """

    compressLevel: int = zlib.Z_DEFAULT_COMPRESSION

    @classmethod
    def fromNegotiated(cls, pmce: PerMessageDeflate, level: int) -> LevelledPerMessageDeflate:
        """
        The same negotiated parameters as C{pmce}, compressing at C{level}.

        @param pmce: what Autobahn made from the accepted offer.
        @param level: the zlib level.
        """
        new = cls(
            True,
            pmce.server_no_context_takeover,
            pmce.client_no_context_takeover,
            pmce.server_max_window_bits,
            pmce.client_max_window_bits,
            pmce.mem_level,
            pmce.max_message_size,
        )
        new.compressLevel = level
        return new

    def start_compress_message(self) -> None:
        if self._compressor is None or self.server_no_context_takeover:
            self._compressor = zlib.compressobj(
                self.compressLevel, zlib.DEFLATED, -self.server_max_window_bits, self.mem_level
            )


class PlainEchoProtocol(EndpointProtocol):
    """Sends every message back as it came (Autobahn's own frame handling)."""

    def onOpen(self) -> None:
        super().onOpen()
        level = getattr(self.factory, "compressLevel", None)
        pmce = self._perMessageCompress
        if level is not None and type(pmce) is PerMessageDeflate:
            self._perMessageCompress = LevelledPerMessageDeflate.fromNegotiated(pmce, level)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload, isBinary)


class EchoProtocol(FastPaths, PlainEchoProtocol):  # type: ignore[misc]
    """The echo with Autobahn's hot paths done faster (L{portshare._autobahn})."""


def acceptDeflate(
    offers: list[Any],
    *,
    windowBits: int = DEFLATE_WINDOW_BITS,
    memLevel: int = DEFLATE_MEM_LEVEL,
    maxMessageSize: int | None = None,
) -> PerMessageDeflateOfferAccept | None:
    """
    Accept the first permessage-deflate offer with bounded memory.

    @param offers: the client's offers, parsed by Autobahn.
    @param windowBits: the largest LZ77 window, in bits, for either direction; we ask the
        client for it too when it is below 15 and the client lets us.
    @param memLevel: zlib C{memLevel} of our compressor.
    @param maxMessageSize: the most bytes one message may inflate to.
    @return: the acceptance, or C{None} (no compression) if nothing was offered.
    """
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            serverBits = windowBits
            if offer.request_max_window_bits:
                serverBits = min(serverBits, offer.request_max_window_bits)
            askClient = offer.accept_max_window_bits and windowBits < 15
            return PerMessageDeflateOfferAccept(
                offer,
                request_max_window_bits=windowBits if askClient else 0,
                window_bits=serverBits,
                mem_level=memLevel,
                max_message_size=maxMessageSize,
            )
    return None


class EchoFactory(PortshareFactory):
    """
    The factory of C{/ws/echo}.

    @ivar compressLevel: the zlib level of permessage-deflate compression.
    """

    protocol: type[PlainEchoProtocol] = EchoProtocol
    compressLevel: int = DEFLATE_LEVEL


def buildEchoFactory(
    limits: Limits,
    reactor: IReactorTime,
    origins: OriginPolicy | None = None,
    fastPaths: bool | None = None,
) -> EchoFactory:
    """
    The factory of C{/ws/echo}.

    @param fastPaths: use L{portshare._autobahn}'s fast paths (default: when the installed
        Autobahn has what they read).
    """
    factory = EchoFactory(reactor=reactor, server="portshare")
    if not (mirrored() if fastPaths is None else fastPaths):
        factory.protocol = PlainEchoProtocol
    maxMessageSize = limits.echoMaxMessageSize

    def accept(offers: list[Any]) -> PerMessageDeflateOfferAccept | None:
        return acceptDeflate(offers, maxMessageSize=maxMessageSize)

    configureFactory(
        factory,
        limits,
        maxMessageSize,
        origins or OriginPolicy(),
        perMessageCompressionAccept=accept,
    )
    factory.setProtocolOptions(
        autoPingInterval=max(limits.pingInterval, ECHO_MIN_PING_INTERVAL),
    )
    return factory
