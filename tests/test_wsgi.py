"""
Tests for L{portshare.wsgi}: the pool's lifecycle with real threads, on a clock whose
C{callFromThread} queues what the threads send back (the test runs it, as a reactor would).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from portshare.testing import SynchronousThreads
from portshare.wsgi import IWsgiThreads, WsgiPool

WAIT = 5.0  # seconds a test waits for a thread before failing


class ThreadedClock(Clock):
    """A clock that also takes calls from other threads, run by L{runQueued}."""

    def __init__(self) -> None:
        super().__init__()
        self.fromThreads: queue.Queue[
            tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]
        ] = queue.Queue()

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.fromThreads.put((f, args, kwargs))

    def runQueued(self, atLeast: int = 1) -> int:
        """Run what the threads sent, waiting for at least C{atLeast} calls."""
        ran = 0
        while True:
            try:
                f, args, kwargs = self.fromThreads.get(timeout=WAIT if ran < atLeast else 0.05)
            except queue.Empty:
                if ran < atLeast:
                    raise AssertionError(f"only {ran} calls came back from the threads") from None
                return ran
            f(*args, **kwargs)
            ran += 1


class WsgiPoolTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = ThreadedClock()
        self.pool = WsgiPool(self.clock, size=2, shutdownTimeout=3.0)

    def poolThreads(self) -> list[threading.Thread]:
        """The threads this test's pool has started (its ThreadPool lists them)."""
        return list(self.pool.pool.threads)

    def test_interfaces(self) -> None:
        """The pool and the synchronous double both provide the seam."""
        verifyObject(IWsgiThreads, self.pool)
        verifyObject(IWsgiThreads, SynchronousThreads())

    def test_callsRunOffTheCallingThread(self) -> None:
        """A call runs on a pool thread, and its result comes back through callFromThread."""
        self.pool.startService()
        self.addCleanup(self.pool.stopService)
        results: list[str] = []
        self.pool.callInThread(
            lambda: self.pool.callFromThread(results.append, threading.current_thread().name)
        )
        self.clock.runQueued(2)  # the call's own, then the pool's bookkeeping
        self.assertEqual(len(results), 1)
        self.assertIn("portshare-wsgi", results[0])
        self.assertEqual(self.pool.inflight, 0)

    def test_noThreadsBeforeStart(self) -> None:
        """Nothing runs, and no thread exists, before the service starts (twistd may fork to
        daemonize in between)."""
        ran = threading.Event()
        self.pool.callInThread(ran.set)
        self.assertFalse(ran.wait(0.1))
        self.assertEqual(self.poolThreads(), [])
        self.pool.startService()
        self.assertTrue(ran.wait(WAIT))
        self.clock.runQueued()
        self.successResultOf(self.pool.stopService())

    def test_bounded(self) -> None:
        """No more than --wsgi-threads calls run at once; the others wait their turn."""
        self.pool.startService()
        release = threading.Event()
        running: list[int] = []
        lock = threading.Lock()
        peak = [0]

        def work() -> None:
            with lock:
                running.append(1)
                peak[0] = max(peak[0], len(running))
            release.wait(WAIT)
            with lock:
                running.pop()

        for _ in range(5):
            self.pool.callInThread(work)
        self.assertEqual(self.pool.inflight, 5)
        for _ in range(int(WAIT / 0.01)):
            if len(running) == 2:
                break
            threading.Event().wait(0.01)
        threading.Event().wait(0.1)  # time for a third to start, if it could
        self.assertEqual(len(running), 2)
        release.set()
        self.clock.runQueued(5)
        self.assertEqual(peak[0], 2)
        self.successResultOf(self.pool.stopService())

    def test_stopWaitsForCallsInFlight(self) -> None:
        """Stopping waits for the calls in flight to finish (no thread left after), and not
        longer."""
        self.pool.startService()
        release = threading.Event()
        self.pool.callInThread(release.wait, WAIT)
        stopped = self.pool.stopService()
        self.assertNoResult(stopped)
        self.clock.advance(2.9)
        self.assertNoResult(stopped)
        release.set()
        self.clock.runQueued()
        self.successResultOf(stopped)
        self.assertEqual([t for t in self.poolThreads() if t.is_alive()], [])

    def test_stopGivesUpAfterTheTimeout(self) -> None:
        """A call still running after the shutdown timeout is abandoned and logged; its
        thread is a daemon thread, so it does not keep the process alive."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.pool.startService()
        release = threading.Event()
        self.addCleanup(release.set)
        started = threading.Event()
        self.pool.callInThread(lambda: (started.set(), release.wait(WAIT)))
        self.assertTrue(started.wait(WAIT))
        stopped = self.pool.stopService()
        self.clock.advance(3.0)
        self.successResultOf(stopped)
        self.assertTrue(all(t.daemon for t in self.poolThreads()))
        abandoned = [e for e in events if "abandoned" in e.get("log_format", "")]
        self.assertEqual([e["count"] for e in abandoned], [1])

    def test_idleStopIsImmediate(self) -> None:
        """With nothing in flight, stopping is done at once and joins every thread."""
        self.pool.startService()
        for _ in range(3):
            self.pool.callInThread(lambda: None)
        self.clock.runQueued(3)
        self.successResultOf(self.pool.stopService())
        self.assertEqual([t for t in self.poolThreads() if t.is_alive()], [])

    def test_atLeastOneThread(self) -> None:
        """A pool of no thread is refused."""
        self.assertRaises(ValueError, WsgiPool, self.clock, 0)
