"""
Tests for L{portshare.httphead}: the request head's limits line by line, the refusals' bytes,
and the header fields HTTP/2 forbids, without any connection.
"""

from __future__ import annotations

import orjson
from twisted.trial.unittest import SynchronousTestCase

from portshare.httphead import Refusal, RequestHead, connectionSpecific, h2Refusal


class RequestHeadTests(SynchronousTestCase):
    """RequestHead follows the heads of one connection and names the first line over a limit."""

    def feed(self, head: RequestHead, *lines: bytes) -> list[Refusal | None]:
        return [head.lineReceived(line) for line in lines]

    def test_underTheLimits(self) -> None:
        """Heads within the limits, one after the other, are never refused."""
        head = RequestHead(maxHeaders=2, maxBytes=40)
        for _ in range(3):
            self.assertEqual(
                self.feed(head, b"GET / HTTP/1.1", b"Host: x", b"X-A: " + b"y" * 10, b""),
                [None] * 4,
            )

    def test_headerCount(self) -> None:
        """The header after the last one allowed is refused 431; continuation lines do not
        count as headers."""
        head = RequestHead(maxHeaders=2, maxBytes=1000)
        results = self.feed(head, b"GET / HTTP/1.1", b"A: 1", b" continued", b"\tmore", b"B: 2")
        self.assertEqual(results, [None] * 5)
        refusal = head.lineReceived(b"C: 3")
        self.assertEqual(refusal, Refusal(431, "too_large", "more than 2 headers"))

    def test_bytes(self) -> None:
        """The line that takes the head over maxBytes (line endings not counted) is refused."""
        head = RequestHead(maxHeaders=10, maxBytes=20)
        self.assertEqual(self.feed(head, b"GET / HTTP/1.1", b"A: 12"), [None, None])  # 19
        refusal = head.lineReceived(b"BB")
        assert refusal is not None
        self.assertEqual(refusal.status, 431)
        self.assertIn("larger than 20 bytes", refusal.reason)

    def test_tooLongLine(self) -> None:
        """A line over the limit before its end is the request line (414) until one was read,
        a header line (431) after; the next head starts over."""
        head = RequestHead(maxHeaders=10, maxBytes=20)
        self.assertEqual(head.lineTooLong().status, 414)
        head.lineReceived(b"GET / HTTP/1.1")
        self.assertEqual(head.lineTooLong().status, 431)
        head.lineReceived(b"")
        self.assertEqual(head.lineTooLong().status, 414)

    def test_emptyLinesBetweenRequests(self) -> None:
        """An empty line before a request line (a CRLF after a body) starts no head."""
        head = RequestHead(maxHeaders=1, maxBytes=20)
        self.assertEqual(self.feed(head, b"", b""), [None, None])
        self.assertFalse(head.reading)
        self.assertEqual(head.lineTooLong().status, 414)


class RefusalTests(SynchronousTestCase):
    def test_response(self) -> None:
        """A refusal is a whole HTTP/1.1 response: JSON body, Server, Connection: close."""
        refusal = Refusal(431, "too_large", "more than 2 headers")
        data = refusal.response(b"Thu, 01 Jan 1970 00:00:00 GMT")
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertEqual(
            head.split(b"\r\n"),
            [
                b"HTTP/1.1 431 Request Header Fields Too Large",
                b"Server: portshare",
                b"Date: Thu, 01 Jan 1970 00:00:00 GMT",
                b"Content-Type: application/json",
                b"Cache-Control: no-store",
                b"X-Content-Type-Options: nosniff",
                b"Connection: close",
                b"Content-Length: %d" % len(body),
            ],
        )
        self.assertEqual(
            orjson.loads(body), {"error": "too_large", "reason": "more than 2 headers"}
        )

    def test_h2Headers(self) -> None:
        """The HTTP/2 form carries the same status and headers, without Connection."""
        refusal = Refusal(400, "bad_request", "no")
        headers = dict(refusal.h2Headers(b"now"))
        self.assertEqual(headers[b":status"], b"400")
        self.assertEqual(headers[b"server"], b"portshare")
        self.assertEqual(int(headers[b"content-length"]), len(refusal.body()))
        self.assertNotIn(b"connection", headers)


class ConnectionSpecificTests(SynchronousTestCase):
    def test_forbidden(self) -> None:
        """The connection-specific fields and TE other than trailers are named (RFC 9113)."""
        for name, value in [
            (b"connection", b"close"),
            (b"upgrade", b"websocket"),
            (b"transfer-encoding", b"chunked"),
            (b"keep-alive", b"5"),
            (b"proxy-connection", b"keep-alive"),
            (b"te", b"gzip"),
        ]:
            self.assertEqual(connectionSpecific([(b":path", b"/"), (name, value)]), name)

    def test_allowed(self) -> None:
        """TE: trailers and ordinary fields pass."""
        self.assertIsNone(connectionSpecific([(b"te", b"Trailers"), (b"accept", b"*/*")]))

    def test_upgradeReason(self) -> None:
        """An Upgrade header's refusal says where WebSockets go instead."""
        refusal = h2Refusal(b"upgrade")
        self.assertEqual((refusal.status, refusal.code), (400, "bad_request"))
        self.assertIn("HTTP/1.1", refusal.reason)
