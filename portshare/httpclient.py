"""
What portshare's outgoing HTTP calls share: a bounded body, a JSON content type, a client.

portshare calls out over HTTP for two things (the JWKS of C{--jwks-url}, the application's
C{--hook-url}), both with treq, so never with a blocking call on the reactor.  The server
on the other end is trusted only so far: its answer is read up to a limit (a backend that
streams gigabytes must not fill portshare's memory), and it is JSON only when it says so.
"""

from __future__ import annotations

from typing import Any, TypeVar
from typing import Protocol as TypingProtocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import UNKNOWN_LENGTH, IResponse

T = TypeVar("T")


class TooLong(Exception):
    """An answer's body was longer than the caller's limit."""


class TimedOut(Exception):
    """A call that did not end within its time (the message says how long that was)."""


class HTTPClient(TypingProtocol):
    """
    What portshare needs of an HTTP client: C{treq.HTTPClient}, or C{treq.testing.StubTreq}
    in tests.
    """

    def get(self, url: Any, **kwargs: Any) -> Deferred[Any]:
        """GET C{url}; fire with the response (treq's C{_Response}, an L{IResponse})."""

    def post(self, url: Any, data: Any = None, **kwargs: Any) -> Deferred[Any]:
        """POST C{data} to C{url}; fire with the response."""


def readBody(response: IResponse, maxBytes: int) -> Deferred[bytes]:
    """
    The body of C{response}, if it is at most C{maxBytes} long.

    A body announced longer (C{Content-Length}) is refused before a byte is read; one that
    grows past the limit is cut there.  Either way, and when the caller cancels the
    Deferred (a timeout), the connection is closed: no more of the body is read.

    @return: a Deferred that fires with the body, or fails with L{TooLong}.
    """
    body = _BoundedBody(maxBytes)
    if response.length is not UNKNOWN_LENGTH and response.length > maxBytes:  # type: ignore[operator]
        body.refusal = TooLong(f"the answer announces {response.length} bytes, over {maxBytes}")
    response.deliverBody(body)  # type: ignore[arg-type]
    return body.done


class _BoundedBody(Protocol):
    """Collects a response body up to a limit; stops the transport beyond it or on cancel."""

    def __init__(self, maxBytes: int) -> None:
        self.maxBytes = maxBytes
        self.chunks: list[bytes] = []
        self.size = 0
        self.refusal: Exception | None = None
        self.done: Deferred[bytes] = Deferred(self._cancel)

    def makeConnection(self, transport: Any) -> None:
        self.transport = transport
        if self.refusal is not None:
            self._stop(self.refusal)

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        self.size += len(data)
        if self.size > self.maxBytes:
            self._stop(TooLong(f"the answer is longer than {self.maxBytes} bytes"))
            return
        self.chunks.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.chunks))
        else:
            self.done.errback(reason)

    def _stop(self, error: Exception) -> None:
        self.chunks = []
        self.done.errback(error)
        self.transport.stopProducing()  # type: ignore[union-attr]

    def _cancel(self, d: Deferred[bytes]) -> None:
        # the Deferred fails with CancelledError (Deferred.cancel does that); stop reading
        self.chunks = []
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[union-attr,attr-defined]


def within(d: Deferred[T], seconds: float, clock: IReactorTime) -> Deferred[T]:
    """
    C{d}, or L{TimedOut} after C{seconds} on C{clock} (and C{d} cancelled, which aborts its
    connection).

    Unlike C{Deferred.addTimeout}, the failure is L{TimedOut} whatever error the cancelled
    call ends with (an Agent's is C{ResponseNeverReceived}, not C{CancelledError}).
    """
    result: Deferred[T] = Deferred(lambda _: d.cancel())

    def expire() -> None:
        result.errback(TimedOut(f"no answer within {seconds:g} s"))
        d.cancel()

    timer = clock.callLater(seconds, expire)

    def ended(outcome: object) -> None:
        if timer.active():
            timer.cancel()
        if not result.called:
            if isinstance(outcome, Failure):
                result.errback(outcome)
            else:
                result.callback(outcome)  # type: ignore[arg-type]

    d.addBoth(ended)
    return result


def discard(response: IResponse) -> None:
    """Read none of C{response}'s body: close its connection (an answer refused by status)."""
    body = _BoundedBody(0)
    body.refusal = TooLong("not read")
    body.done.addErrback(lambda _: None)
    response.deliverBody(body)  # type: ignore[arg-type]


def isJSON(response: IResponse) -> bool:
    """Whether C{response} says its body is JSON (C{application/json}, any parameters)."""
    values = response.headers.getRawHeaders(b"content-type") or []
    if len(values) != 1:
        return False
    kind = values[0].split(b";", 1)[0].strip().lower()
    return kind == b"application/json" or (
        kind.startswith(b"application/") and kind.endswith(b"+json")
    )


def newHTTPClient(reactor: Any, maxPerHost: int) -> tuple[Any, Any]:
    """
    A treq client over a pool of persistent connections, for calls that repeat to one host.

    @param reactor: the reactor (L{twisted.internet.interfaces.IReactorTCP} and time).
    @param maxPerHost: connections kept open per host (the cap on calls in flight fits).
    @return: C{(client, pool)}; call C{pool.closeCachedConnections()} at stop.
    """
    from treq.client import HTTPClient as TreqClient
    from twisted.web.client import Agent, HTTPConnectionPool

    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = maxPerHost
    pool.retryAutomatically = False  # a hook call is not idempotent: never sent twice
    return TreqClient(Agent(reactor, pool=pool)), pool
