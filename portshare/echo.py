"""
C{/ws/echo}: every text and binary message back unchanged, for Autobahn testsuite runs.

Off unless C{--echo}.  It shares the origin policy and timeouts of the chat endpoint but has
its own, larger message limit and accepts permessage-deflate with bounded memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory
from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept
from twisted.internet.interfaces import IReactorTime

from portshare.limits import Limits
from portshare.ws import OriginCheckingProtocol, configureFactory


class EchoProtocol(OriginCheckingProtocol):
    """Sends every message back as it came."""

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload, isBinary)


def acceptDeflate(offers: list[Any]) -> PerMessageDeflateOfferAccept | None:
    """Accept the first permessage-deflate offer, with the client's window bits."""
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)
    return None


def buildEchoFactory(
    limits: Limits, reactor: IReactorTime, originPatterns: Sequence[str] = ()
) -> WebSocketServerFactory:
    """The factory of C{/ws/echo}."""
    factory = WebSocketServerFactory(reactor=reactor, server="portshare")
    factory.protocol = EchoProtocol
    return configureFactory(
        factory,
        limits,
        limits.echoMaxMessageSize,
        originPatterns,
        perMessageCompressionAccept=acceptDeflate,
    )
