"""
A WSGI application on the shared port (C{--wsgi}): twisted.web's L{WSGIResource} on a bounded
pool of threads that the service owns.

Why a pool of its own rather than the reactor's: the reactor's pool also resolves host names
and runs every C{deferToThread} of every library in the process.  A WSGI application blocks
(that is what WSGI is), and it must neither starve those nor be starved by them; its size is
the operator's choice (C{--wsgi-threads}).  Requests beyond that many wait in the pool's
queue, each already read whole (at most C{--max-body}).

Lifecycle: the threads start with the service, not at import or construction (twistd may
fork to daemonize in between, and threads do not survive a fork).  At shutdown the calls in
flight get up to the shutdown timeout to finish their responses; then the threads are
stopped and joined, so that twistd exits with no thread of portshare's left.  A call still
running after the timeout (an application stuck in a blocking call) cannot be killed in
Python: it is abandoned, logged, and its thread is a daemon thread, so it does not keep the
process alive.

The seam: a WSGI request needs two things, a way to run the application off the reactor
thread and a way to come back to it.  L{IWsgiThreads} names both.  L{WsgiPool} is the real
one; L{portshare.testing.SynchronousThreads} runs both at once in the calling thread, so that
a test drives a real WSGI application through the real tree, in memory and without threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.web.resource import IResource
from twisted.web.wsgi import WSGIResource
from zope.interface import Interface, implementer

#: a WSGI application: C{application(environ, start_response)} (PEP 3333)
WsgiApplication = Callable[[dict[str, Any], Callable[..., Any]], Any]


class IWsgiThreads(Interface):
    """
    Where a WSGI application runs: the two calls twisted.web's L{WSGIResource} makes (it takes
    this one object both as its C{threadpool} and as its C{reactor}).
    """

    def callInThread(f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run C{f(*args, **kwargs)} off the reactor thread (the WSGI application's call)."""

    def callFromThread(f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run C{f(*args, **kwargs)} in the reactor thread (each write, and the finish)."""


def _daemonThread(*args: Any, **kwargs: Any) -> threading.Thread:
    return threading.Thread(*args, daemon=True, **kwargs)


class _DaemonThreadPool(ThreadPool):
    """A ThreadPool whose threads do not keep the process alive if abandoned at shutdown."""

    threadFactory = staticmethod(_daemonThread)  # type: ignore[assignment]


@implementer(IWsgiThreads)
class WsgiPool(Service):
    """
    The WSGI application's threads, started and stopped with the service.

    @ivar inflight: calls handed to the pool and not yet finished (queued or running).
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        size: int = 10,
        shutdownTimeout: float = 5.0,
        name: str = "portshare-wsgi",
    ) -> None:
        """
        @param reactor: provides C{callFromThread} and C{callLater} (the service's reactor).
        @param size: the most threads running the application at once.
        @param shutdownTimeout: seconds the calls in flight get to finish at shutdown.
        """
        if size < 1:
            raise ValueError(f"a WSGI pool needs at least one thread, not {size}")
        self.reactor = reactor
        self.size = size
        self.shutdownTimeout = shutdownTimeout
        self.pool = _DaemonThreadPool(minthreads=0, maxthreads=size, name=name)
        self.inflight = 0
        self._idleWaiters: list[Deferred[None]] = []

    def callInThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.inflight += 1
        self.pool.callInThreadWithCallback(self._ended, f, *args, **kwargs)

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.reactor.callFromThread(f, *args, **kwargs)

    def _ended(self, success: bool, result: Any) -> None:
        """In the worker thread, after the call (whose own writes were queued before this)."""
        self.reactor.callFromThread(self._done, success, result)

    def _done(self, success: bool, result: Any) -> None:
        if not success and isinstance(result, Failure):
            # WSGIResource answers the application's own exceptions; this is a bug of ours
            self.log.failure("WSGI call failed", result)
        self.inflight -= 1
        if self.inflight == 0:
            waiters, self._idleWaiters = self._idleWaiters, []
            for d in waiters:
                d.callback(None)

    def whenIdle(self) -> Deferred[None]:
        """Fires once no call is queued or running (at once, if none is)."""
        if self.inflight == 0:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._idleWaiters.append(d)
        return d

    def startService(self) -> None:
        super().startService()
        self.pool.start()
        self.log.info("WSGI application on {size} threads", size=self.size)

    def stopService(self) -> Deferred[None]:
        """
        Let the calls in flight finish, at most C{shutdownTimeout} seconds, then stop the
        threads.
        """
        super().stopService()
        finished = Deferred[None]()
        idle = self.whenIdle()
        timer: list[IDelayedCall] = []

        def stop(_: object = None) -> None:
            if finished.called:
                return
            if timer and timer[0].active():
                timer[0].cancel()
            if self.inflight:
                self.log.warn(
                    "{count} WSGI calls still running after {timeout} s: abandoned",
                    count=self.inflight,
                    timeout=self.shutdownTimeout,
                )
                # joining them would block the reactor for as long as they run: stop the
                # pool from a thread of its own; theirs are daemon threads
                threading.Thread(target=self.pool.stop, daemon=True).start()
            else:
                self.pool.stop()  # idle threads: they quit at once
            finished.callback(None)

        if not idle.called:
            timer.append(self.reactor.callLater(self.shutdownTimeout, stop))
        idle.addCallback(stop)
        return finished


def wsgiResource(application: WsgiApplication, threads: IWsgiThreads) -> IResource:
    """
    The resource that answers every request below it with C{application}.

    @param threads: where the application runs: a started L{WsgiPool}, or for tests
        L{portshare.testing.SynchronousThreads} (at once, in the calling thread).
    """
    return WSGIResource(threads, threads, application)
