"""
portshare's subclass of twisted.web's HTTP/1.1 channel: the one place that overrides Twisted's
private methods.

Mirrors Twisted 26.10.0 (L{twisted.web.http.HTTPChannel}).  Each private override below says
what it mirrors and what happens without it (its fallback: Twisted's own behaviour, which still
enforces every limit).  tests/test_web.py drives it through the real channel of the installed
Twisted: re-read this module against Twisted's source when upgrading it.

    HTTP/1.1  L{PortshareHTTPChannel}: the request head's limits (L{portshare.httphead}) are
              checked line by line before twisted.web's own checks of the same limits, and
              answered 414 / 431 with a JSON reason; what twisted.web cannot parse gets a JSON
              400 instead of its bare one.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.web.http import HTTPChannel, _GenericHTTPChannelProtocol, datetimeToString

from portshare.httphead import MALFORMED, Refusal, RequestHead

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


def buildChannel(site: Any) -> _GenericHTTPChannelProtocol:
    """
    The protocol of one connection to C{site} (a L{twisted.web.server.Site}'s C{protocol},
    replacing Twisted's C{_genericHTTPChannelProtocolFactory}): HTTP/1.1 in a
    L{PortshareHTTPChannel} until ALPN says C{h2}.
    """
    return _GenericHTTPChannelProtocol(PortshareHTTPChannel())
