"""Tests for L{portshare.deferreds}."""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail
from twisted.trial.unittest import SynchronousTestCase

from portshare.deferreds import both


class BothTests(SynchronousTestCase):
    def test_resultsInOrderWhicheverComesFirst(self) -> None:
        """The results come as [first, second], whichever Deferred fires first."""
        first: Deferred[str] = Deferred()
        second: Deferred[str] = Deferred()
        d = both(first, second)
        second.callback("b")
        self.assertNoResult(d)
        first.callback("a")
        self.assertEqual(self.successResultOf(d), ["a", "b"])

    def test_firstFailureWinsAndTheLaterOneIsConsumed(self) -> None:
        """The first failure fails the pair; a later failure is not left unhandled."""
        first: Deferred[str] = Deferred()
        second: Deferred[str] = Deferred()
        d = both(first, second)
        second.errback(ValueError("second"))
        first.errback(KeyError("first"))
        self.assertIsInstance(self.failureResultOf(d).value, ValueError)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_failureAfterASuccess(self) -> None:
        """One success and one failure fail the pair with that failure."""
        d = both(Deferred.fromCoroutine(_value("a")), fail(RuntimeError("down")))
        self.assertIsInstance(self.failureResultOf(d).value, RuntimeError)


async def _value(value: str) -> str:
    return value
