"""Tests for L{portshare.backpressure}: slow consumers told apart by the socket's signals."""

from __future__ import annotations

from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from portshare.backpressure import Backpressure


class BackpressureTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.calls: list[float] = []
        self.bp = Backpressure(
            self.clock,
            maxBytes=100,
            maxSeconds=10,
            tooSlow=lambda: self.calls.append(self.clock.seconds()),
        )

    def test_isAPushProducer(self) -> None:
        """It is what transports expect of a streaming producer."""
        self.assertTrue(verifyObject(IPushProducer, self.bp))

    def test_tooManyBytesWhilePaused(self) -> None:
        """Past maxBytes queued while the socket is full, the consumer is too slow, once."""
        self.bp.pauseProducing()
        self.bp.wrote(60)
        self.assertEqual(self.calls, [])
        self.bp.wrote(60)
        self.bp.wrote(60)
        self.assertEqual(self.calls, [0])
        self.assertTrue(self.bp.slow)

    def test_fullForTooLong(self) -> None:
        """A socket that stays full for maxSeconds makes its consumer too slow."""
        self.bp.pauseProducing()
        self.clock.advance(9.9)
        self.assertEqual(self.calls, [])
        self.clock.advance(0.1)
        self.assertEqual(self.calls, [10])

    def test_drainResets(self) -> None:
        """A socket that drains in time resets the count and the clock."""
        self.bp.pauseProducing()
        self.bp.wrote(90)
        self.clock.advance(5)
        self.bp.resumeProducing()
        self.clock.advance(20)
        self.bp.pauseProducing()
        self.bp.wrote(90)
        self.assertEqual(self.calls, [])
        self.assertEqual(self.clock.getDelayedCalls()[0].getTime(), 35)

    def test_stopCancelsTimer(self) -> None:
        """A stopped producer leaves no timer behind."""
        self.bp.pauseProducing()
        self.bp.stopProducing()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_slowAgainAfterDrain(self) -> None:
        """After draining, a consumer that falls behind again is reported again."""
        self.bp.pauseProducing()
        self.bp.wrote(101)
        self.bp.resumeProducing()
        self.assertFalse(self.bp.slow)
        self.bp.pauseProducing()
        self.bp.wrote(101)
        self.assertEqual(len(self.calls), 2)
