"""
Tests for L{portshare.httpclient}: bounded bodies, the timeout, the content-type check.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH

from portshare.httpclient import TimedOut, TooLong, discard, isJSON, readBody, within


class FakeTransport:
    stopped = False

    def stopProducing(self) -> None:
        self.stopped = True


class FakeResponse:
    """Just enough of an IResponse: a length, headers, and a body delivered by the test."""

    def __init__(self, length: Any = UNKNOWN_LENGTH, contentType: list[bytes] | None = None):
        self.length = length
        self.headers = Headers({b"content-type": contentType} if contentType else {})
        self.transport = FakeTransport()
        self.protocol: Any = None

    def deliverBody(self, protocol: Any) -> None:
        self.protocol = protocol
        protocol.makeConnection(self.transport)

    def send(self, *chunks: bytes) -> None:
        for chunk in chunks:
            if not self.transport.stopped:
                self.protocol.dataReceived(chunk)
        self.protocol.connectionLost(Failure(ResponseDone()))


class ReadBodyTests(SynchronousTestCase):
    def test_withinLimit(self) -> None:
        """A body up to the limit is returned whole."""
        response = FakeResponse()
        d = readBody(response, 10)  # type: ignore[arg-type]
        response.send(b"01234", b"56789")
        self.assertEqual(self.successResultOf(d), b"0123456789")

    def test_announcedTooLong(self) -> None:
        """A Content-Length over the limit is refused before any byte, the connection closed."""
        response = FakeResponse(length=11)
        d = readBody(response, 10)  # type: ignore[arg-type]
        self.failureResultOf(d, TooLong)
        self.assertTrue(response.transport.stopped)

    def test_streamedTooLong(self) -> None:
        """A body of unknown length is cut as soon as it passes the limit."""
        response = FakeResponse()
        d = readBody(response, 10)  # type: ignore[arg-type]
        response.send(b"0123456789", b"x", b"more")
        self.failureResultOf(d, TooLong)
        self.assertTrue(response.transport.stopped)

    def test_cancelStopsReading(self) -> None:
        """Cancelling the read (a timeout) closes the connection, and late data is ignored."""
        response = FakeResponse()
        d = readBody(response, 10)  # type: ignore[arg-type]
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(response.transport.stopped)
        response.protocol.dataReceived(b"late")
        response.protocol.connectionLost(Failure(ResponseDone()))  # no AlreadyCalledError

    def test_discard(self) -> None:
        """discard() reads nothing and closes the connection."""
        response = FakeResponse(length=5)
        discard(response)  # type: ignore[arg-type]
        self.assertTrue(response.transport.stopped)


class WithinTests(SynchronousTestCase):
    def test_inTime(self) -> None:
        """A result before the deadline passes through, and the timer is cancelled."""
        clock = Clock()
        inner: Deferred[str] = Deferred()
        d = within(inner, 2, clock)
        inner.callback("ok")
        self.assertEqual(self.successResultOf(d), "ok")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_late(self) -> None:
        """Past the deadline the result is TimedOut, whatever error the cancelled call gives."""
        clock = Clock()
        cancelled: list[bool] = []

        def cancel(d: Deferred[str]) -> None:
            cancelled.append(True)
            d.errback(ValueError("the agent's own cancellation error"))

        inner: Deferred[str] = Deferred(cancel)
        d = within(inner, 2, clock)
        clock.advance(1.99)
        self.assertNoResult(d)
        clock.advance(0.01)
        failure = self.failureResultOf(d, TimedOut)
        self.assertEqual(str(failure.value), "no answer within 2 s")
        self.assertEqual(cancelled, [True])

    def test_failurePassesThrough(self) -> None:
        """A failure in time is the result."""
        clock = Clock()
        inner: Deferred[str] = Deferred()
        d = within(inner, 2, clock)
        inner.errback(KeyError("x"))
        self.failureResultOf(d, KeyError)


class IsJSONTests(SynchronousTestCase):
    def test_types(self) -> None:
        """application/json (with parameters) and +json types are JSON; others are not."""
        yes = [b"application/json", b"Application/JSON; charset=utf-8", b"application/jwk-set+json"]
        no = [b"text/html", b"text/json", b"application/jsonp", b""]
        for value in yes:
            self.assertTrue(isJSON(FakeResponse(contentType=[value])), value)  # type: ignore[arg-type]
        for value in no:
            self.assertFalse(isJSON(FakeResponse(contentType=[value])), value)  # type: ignore[arg-type]
        self.assertFalse(isJSON(FakeResponse()))  # type: ignore[arg-type]
        two = FakeResponse(contentType=[b"application/json", b"text/html"])
        self.assertFalse(isJSON(two))  # type: ignore[arg-type]
