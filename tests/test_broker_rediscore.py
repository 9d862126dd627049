"""
Tests for L{portshare.broker.rediscore}: the reconnect backoff.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from portshare.broker.rediscore import Backoff


class BackoffTests(SynchronousTestCase):
    """Reconnection delays grow exponentially up to a maximum, with bounded jitter."""

    def test_grows(self) -> None:
        """Without jitter: 0.1, 0.2, 0.4, ... capped at the maximum; reset starts over."""
        backoff = Backoff(0.1, 1.0, jitter=0)
        self.assertEqual(
            [round(backoff.next(), 3) for _ in range(6)], [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
        )
        backoff.reset()
        self.assertEqual(backoff.next(), 0.1)

    def test_jitter(self) -> None:
        """Jitter spreads each delay by at most the given fraction, never past the maximum."""
        low = Backoff(1.0, 10.0, jitter=0.2, random=lambda: 0.0)
        high = Backoff(1.0, 10.0, jitter=0.2, random=lambda: 1.0)
        self.assertAlmostEqual(low.next(), 0.8)
        self.assertAlmostEqual(high.next(), 1.2)
        capped = Backoff(10.0, 10.0, jitter=0.2, random=lambda: 1.0)
        self.assertEqual(capped.next(), 10.0)
