"""
The key set of C{--jwks-url}: fetched with treq, cached, refreshed, never a wait past a timeout.

Theory of operation
===================

L{JWKSKeys} holds the last key set fetched (C{keys}) and when (C{fetchedAt}), and at most one
fetch in flight.  Every fetch is bounded: C{timeout} seconds in all (connect, headers,
body), C{maxBytes} of body, status 200 only, no redirects.

 - L{JWKSKeys.keysFor} answers from the cache at once.  A set older than C{maxAge} is still
   used, and a refresh starts in the background (stale while revalidating: an identity
   provider that is down for a while does not log every user out).  With no set yet, it
   waits for the fetch in flight (or starts one): at most C{timeout} seconds, then
   L{Unavailable}.
 - L{JWKSKeys.keysChanged} is called when a token names a C{kid} the set does not hold (a
   key rotated in at the provider).  It fetches again, but at most once per
   C{refetchInterval}: a flood of tokens with made-up C{kid}s costs one fetch per interval,
   not one per token.  Inside the interval it answers C{None} and the token is refused.
 - A failed fetch keeps the set held; the failure is logged and counted, and the next
   attempt waits C{refetchInterval}.

Each caller waits on a Deferred of its own: a handshake that gives up (its Deferred
cancelled) does not cancel the fetch the others wait on.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from portshare.errors import Unavailable
from portshare.httpclient import HTTPClient, TimedOut, TooLong, discard, readBody, within
from portshare.identity import IKeySource, KeySet, jwkSetKeys
from portshare.metrics import Metrics


class FetchFailed(Exception):
    """A JWKS fetch that did not yield a key set (the reason is the message)."""


@implementer(IKeySource)
class JWKSKeys:
    """
    The keys at a JWKS URL, as an L{IKeySource} for L{portshare.identity.Authenticator}.

    @ivar keys: the last key set fetched, or C{None}.
    @ivar fetchedAt: when it was fetched (the clock's seconds), or C{None}.
    @ivar lastError: why the last fetch failed, or C{None} if it did not.
    """

    log = Logger()

    def __init__(
        self,
        url: str,
        *,
        clock: IReactorTime,
        http: HTTPClient,
        timeout: float = 5.0,
        refetchInterval: float = 60.0,
        maxAge: float = 3600.0,
        maxBytes: int = 256 * 1024,
        metrics: Metrics | None = None,
    ) -> None:
        """
        @param url: the JWKS URL (C{https://...} in production).
        @param clock: schedules the timeout and dates the cache.
        @param http: a treq client (C{treq.HTTPClient}, or C{StubTreq} in tests).
        @param timeout: seconds a fetch may take in all.
        @param refetchInterval: the least seconds between two fetch attempts for an unknown
            C{kid}, or after a failure.
        @param maxAge: seconds after which the set is refreshed in the background.
        @param maxBytes: the largest JWKS document accepted.
        @param metrics: counts fetches by outcome, when given.
        """
        if min(timeout, refetchInterval, maxAge) <= 0 or maxBytes < 1:
            raise ValueError("the JWKS timeout, intervals and size must be positive")
        self.url = url
        self.clock = clock
        self.http = http
        self.timeout = timeout
        self.refetchInterval = refetchInterval
        self.maxAge = maxAge
        self.maxBytes = maxBytes
        self.metrics = metrics
        self.keys: KeySet | None = None
        self.fetchedAt: float | None = None
        self.lastError: str | None = None
        self._attemptedAt: float | None = None
        self._inFlight: Deferred[Any] | None = None
        self._waiters: list[Deferred[KeySet]] = []

    # IKeySource

    def keysFor(self, kid: str | None) -> Deferred[KeySet]:
        """
        The set held (refreshing it in the background when older than C{maxAge}), or, with
        none yet, the next fetch's.
        """
        if self.keys is not None:
            assert self.fetchedAt is not None
            if self.clock.seconds() - self.fetchedAt >= self.maxAge and self._mayFetch():
                self.refresh()
            return succeed(self.keys)
        if self._inFlight is None and not self._mayFetch():
            return _fail(Unavailable(f"the JWKS could not be fetched: {self.lastError}"))
        return self._wait()

    def keysChanged(self, kid: str | None) -> Deferred[KeySet] | None:
        """A fresh set when none was fetched for C{refetchInterval}; else C{None}."""
        if self._inFlight is None and not self._mayFetch():
            return None
        return self._wait()

    # fetching

    def refresh(self) -> Deferred[None]:
        """
        Fetch the set now (unless a fetch is in flight): at start, and when it is stale.

        @return: a Deferred that fires when the fetch is over; it never fails (a failure
            is logged and kept in C{lastError}).
        """
        done: Deferred[None] = Deferred()
        waiter = self._wait()
        waiter.addBoth(lambda _: done.callback(None))
        return done

    def _mayFetch(self) -> bool:
        return (
            self._attemptedAt is None
            or self.clock.seconds() - self._attemptedAt >= self.refetchInterval
        )

    def _wait(self) -> Deferred[KeySet]:
        waiter: Deferred[KeySet] = Deferred(lambda d: self._waiters.remove(d))
        self._waiters.append(waiter)
        if self._inFlight is None:
            self._fetch()
        return waiter

    def _fetch(self) -> None:
        self._attemptedAt = self.clock.seconds()
        d = self.http.get(
            self.url, headers={b"accept": [b"application/json"]}, allow_redirects=False
        )
        self._inFlight = d  # before the callbacks: an answer may come at once (and clear it)
        d.addCallback(self._read)
        within(d, self.timeout, self.clock).addCallbacks(self._fetched, self._failed)

    def _read(self, response: Any) -> Deferred[bytes]:
        if response.code != 200:
            discard(response)
            raise FetchFailed(f"it answered HTTP {response.code}")
        return readBody(response, self.maxBytes)

    def _fetched(self, body: bytes) -> None:
        try:
            keys = jwkSetKeys(json.loads(body))
        except ValueError as e:  # bad JSON included
            self._failed(Failure(FetchFailed(str(e))))
            return
        self._inFlight = None
        self.keys = keys
        self.fetchedAt = self.clock.seconds()
        self.lastError = None
        self._count("ok")
        self.log.info(
            "fetched the JWKS at {url}: keys {kids}", url=self.url, kids=sorted(keys.kids())
        )
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(keys)

    def _failed(self, failure: Failure) -> None:
        self._inFlight = None
        if failure.check(FetchFailed, TooLong, TimedOut):
            reason = str(failure.value)
        else:
            reason = failure.getErrorMessage() or repr(failure.value)
        self.lastError = reason
        self._count("failed")
        self.log.warn(
            "could not fetch the JWKS at {url}: {reason}{kept}",
            url=self.url,
            reason=reason,
            kept="; the keys fetched before are kept" if self.keys is not None else "",
        )
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if self.keys is not None:
                waiter.callback(self.keys)
            else:
                waiter.errback(Unavailable(f"the JWKS could not be fetched: {reason}"))

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.jwksFetched(outcome)


def _fail(error: Exception) -> Deferred[KeySet]:
    d: Deferred[KeySet] = Deferred()
    d.errback(error)
    return d
