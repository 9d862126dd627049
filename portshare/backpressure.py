"""
Slow consumers, told apart by the socket's own flow-control signals.

Theory of operation: once a connection speaks WebSocket, a L{Backpressure} is its transport's
streaming producer.  The transport calls C{pauseProducing} when its write buffer is full (the
client reads slower than we write) and C{resumeProducing} when it has drained.  While paused,
every byte still queued for the client is counted; past C{maxBytes}, or when the socket stays
full longer than C{maxSeconds}, the client is too slow and C{tooSlow} is called, once per
pause.  What happens then (close 1013, or drop and count) is the caller's policy.  Memory per
client is therefore bounded by the transport's buffer plus C{maxBytes}, whatever it does.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from zope.interface import implementer

CLOSE = "close"
DROP = "drop"
POLICIES = (CLOSE, DROP)


@implementer(IPushProducer)
class Backpressure:
    """
    @ivar paused: whether the socket's buffer is full now.
    @ivar queued: bytes queued since it filled.
    @ivar slow: whether C{tooSlow} was called during this pause.
    """

    __slots__ = (
        "_clock",
        "_timer",
        "maxBytes",
        "maxSeconds",
        "paused",
        "queued",
        "slow",
        "tooSlow",
    )

    def __init__(
        self, clock: IReactorTime, maxBytes: int, maxSeconds: float, tooSlow: Callable[[], None]
    ) -> None:
        self._clock = clock
        self.maxBytes = maxBytes
        self.maxSeconds = maxSeconds
        self.tooSlow = tooSlow
        self.paused = False
        self.queued = 0
        self.slow = False
        self._timer: IDelayedCall | None = None

    def pauseProducing(self) -> None:
        if self.paused:
            return
        self.paused = True
        self.queued = 0
        self._timer = self._clock.callLater(self.maxSeconds, self._tooSlow)

    def resumeProducing(self) -> None:
        self.paused = False
        self.queued = 0
        self.slow = False
        self._cancel()

    def stopProducing(self) -> None:
        self._cancel()

    def wrote(self, size: int) -> None:
        """Count C{size} bytes queued for the client; call only while L{paused}."""
        self.queued += size
        if self.queued > self.maxBytes:
            self._tooSlow()

    def _tooSlow(self) -> None:
        self._timer = None
        if not self.slow:
            self.slow = True
            self._cancel()
            self.tooSlow()

    def _cancel(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
