"""
Requests refused before any resource sees them, sans-IO: the limits of an HTTP/1.1 request
head (read line by line), the bytes of such a refusal, and the header fields that HTTP/2
forbids in a request.

Theory of operation: L{RequestHead} follows the lines of one connection.  Between requests it
waits for a request line (an empty line there is the extra CRLF some clients send after a body,
and is left to twisted.web); from the request line to the empty line that ends the head, it
counts the bytes of every line (without line endings, as twisted.web does) and the header
fields (a line starting with a space or tab continues the previous field).  The first line
over a limit is answered: C{414} for the request line, C{431} for the headers.  twisted.web
keeps its own checks of the same limits behind these (L{portshare._twistedhttp}), so a limit
holds even if these checks were bypassed; only the answer would be its bare C{400}.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from portshare.errors import BAD_REQUEST, TOO_LARGE
from portshare.wire import dumps

#: the reason phrase of each status a refusal may carry
PHRASES = {
    400: b"Bad Request",
    413: b"Request Entity Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
}

#: the C{Server} header of every response
SERVER = b"portshare"


@dataclass(frozen=True)
class Refusal:
    """
    A request answered with an error before it reaches the tree.

    @ivar status: the HTTP status.
    @ivar code: the contract's error code for the JSON body.
    @ivar reason: the human-readable reason for the JSON body.
    """

    status: int
    code: str
    reason: str

    def body(self) -> bytes:
        """The JSON body, C{{"error": CODE, "reason": TEXT}}."""
        return dumps({"error": self.code, "reason": self.reason})

    def response(self, date: bytes) -> bytes:
        """
        The whole HTTP/1.1 response, C{Connection: close} (the connection is closed after it).

        @param date: the C{Date} header's value.
        """
        body = self.body()
        return b"".join(
            (
                b"HTTP/1.1 %d %s\r\n" % (self.status, PHRASES.get(self.status, b"Error")),
                b"Server: %s\r\nDate: %s\r\n" % (SERVER, date),
                b"Content-Type: application/json\r\nCache-Control: no-store\r\n"
                b"X-Content-Type-Options: nosniff\r\nConnection: close\r\n",
                b"Content-Length: %d\r\n\r\n" % len(body),
                body,
            )
        )

    def h2Headers(self, date: bytes) -> list[tuple[bytes, bytes]]:
        """The same answer's HTTP/2 header block (for a body of L{body})."""
        return [
            (b":status", b"%d" % self.status),
            (b"server", SERVER),
            (b"date", date),
            (b"content-type", b"application/json"),
            (b"cache-control", b"no-store"),
            (b"x-content-type-options", b"nosniff"),
            (b"content-length", b"%d" % len(self.body())),
        ]


#: the answer to a request that twisted.web cannot parse
MALFORMED = Refusal(400, BAD_REQUEST, "malformed HTTP request")


class RequestHead:
    """
    The limits of HTTP/1.1 request heads on one connection, fed line by line.

    @ivar maxHeaders: header fields one request may have.
    @ivar maxBytes: bytes of the request line and header lines together (line endings not
        counted), also the longest any one line may be.
    """

    def __init__(self, maxHeaders: int, maxBytes: int) -> None:
        self.maxHeaders = maxHeaders
        self.maxBytes = maxBytes
        #: whether a request line has been read and the head's empty line not yet
        self.reading = False
        self._bytes = 0
        self._headers = 0

    def lineReceived(self, line: bytes) -> Refusal | None:
        """
        One complete line (without its line ending) from the connection, while it is read as
        lines; @return: the refusal, when this line takes the head over a limit.
        """
        if not self.reading:
            if not line:
                return None  # before a request line: twisted.web's to judge
            self.reading = True
            self._bytes = len(line)
            self._headers = 0
            if self._bytes > self.maxBytes:
                return self.requestLineTooLong()
            return None
        if not line:
            self.reading = False  # the end of this head
            return None
        self._bytes += len(line)
        if line[0] not in b" \t":
            self._headers += 1
        if self._headers > self.maxHeaders:
            return Refusal(431, TOO_LARGE, f"more than {self.maxHeaders} headers")
        if self._bytes > self.maxBytes:
            return Refusal(
                431,
                TOO_LARGE,
                f"the request line and headers are larger than {self.maxBytes} bytes",
            )
        return None

    def lineTooLong(self) -> Refusal:
        """The line being read has passed C{maxBytes} before its end: the refusal."""
        if not self.reading:
            return self.requestLineTooLong()
        return Refusal(431, TOO_LARGE, f"a header line is longer than {self.maxBytes} bytes")

    def requestLineTooLong(self) -> Refusal:
        return Refusal(414, TOO_LARGE, f"the request line is longer than {self.maxBytes} bytes")


#: header fields that only mean something for one HTTP/1.1 connection (RFC 9113 8.2.2)
CONNECTION_SPECIFIC = frozenset(
    (b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding", b"upgrade")
)


def connectionSpecific(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """
    The first header field of an HTTP/2 request that HTTP/2 forbids (RFC 9113 8.2.2: the
    connection-specific fields, and C{TE} other than C{trailers}); C{None} when there is none.
    """
    for name, value in headers:
        if name in CONNECTION_SPECIFIC or (name == b"te" and value.lower() != b"trailers"):
            return name
    return None


def h2Refusal(name: bytes) -> Refusal:
    """The answer to an HTTP/2 request that carries the connection-specific field C{name}."""
    field = name.decode("ascii", "replace")
    if name == b"upgrade":
        reason = (
            "HTTP/2 has no Upgrade (RFC 9113 8.2.2): open WebSockets and other protocol "
            "switches on an HTTP/1.1 connection"
        )
    else:
        reason = f"HTTP/2 forbids the connection-specific header field {field} (RFC 9113 8.2.2)"
    return Refusal(400, BAD_REQUEST, reason)
