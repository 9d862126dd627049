"""
The application's rules over HTTP: C{--hook-url}, an L{IPolicy} that asks a backend.

Theory of operation
===================

Each question is one C{POST} of JSON to the hook URL (the contract's version 2):

    {"event": "connect" | "join" | "publish", "user": U or null, "nick": N,
     "room": R (join, publish), "text": T (publish), "client": ADDRESS}

and the answer must be C{200}, C{Content-Type: application/json}, at most C{maxAnswerBytes},
holding C{{"allow": true}}, C{{"allow": false, "reason": TEXT}} or, for a publish,
C{{"allow": true, "text": NEW_TEXT}}.  Fields beyond these are ignored.

Anything else is a I{failure}: another status (a redirect included: it is never followed),
another content type, a body too long or not JSON, C{allow} missing or not a boolean, a
reason or a text of the wrong type, a rewrite the server would not accept from a client
(empty, over the text limit, a lone surrogate, a control character), and no complete answer
within C{timeout} seconds.  On a failure the verdict is I{fail-closed} by default: the action
is refused with C{unavailable} (the client may try again; a connect is refused with 503);
with C{failOpen} it is allowed (a publish with its text unchanged).

At most C{maxInFlight} calls wait for their answers at once.  A question beyond that is
refused at once with C{unavailable}, never queued, and whatever C{failOpen} says: a backend
that an attacker can slow down must not become a way around its rules.  A slow backend holds
only the actions it is asked about; connections already in stay in.

With C{joinCacheSeconds}, answers to C{join} (allow and deny, never failures) are kept that
long, keyed by every field of the question (user, nick, room, client), in at most
C{joinCacheSize} entries (the oldest go first).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import orjson
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from portshare.errors import Unavailable
from portshare.httpclient import HTTPClient, TimedOut, TooLong, discard, isJSON, readBody, within
from portshare.metrics import Metrics
from portshare.policy import BadVerdict, IPolicy, Principal, Verdict, checkVerdict

CONNECT = "connect"
JOIN = "join"
PUBLISH = "publish"


#: what a failure is allowed as with failOpen (a distinct object: never kept in the join cache)
_FAILED_OPEN = Verdict(True)


class HookFailed(Exception):
    """The hook gave no valid answer (the message says what was wrong)."""


def hookRequest(event: str, principal: Principal, room: str | None, text: str | None) -> bytes:
    """The JSON body of one hook call, exactly as the contract gives it."""
    body: dict[str, Any] = {"event": event, "user": principal.user, "nick": principal.nick}
    if room is not None:
        body["room"] = room
    if text is not None:
        body["text"] = text
    body["client"] = principal.address
    return orjson.dumps(body)


def parseAnswer(body: bytes, event: str, maxText: int) -> Verdict:
    """
    The verdict of a hook's answer body.

    @raise HookFailed: when the body is not one of the answers the contract allows.
    """
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise HookFailed("the answer is not JSON") from None
    if not isinstance(answer, dict):
        raise HookFailed("the answer is not a JSON object")
    allow = answer.get("allow")
    if not isinstance(allow, bool):
        raise HookFailed('the answer has no boolean "allow"')
    reason = answer.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise HookFailed('the answer\'s "reason" is not a string')
    text = answer.get("text") if allow and event == PUBLISH else None
    if text is not None and not isinstance(text, str):
        raise HookFailed('the answer\'s "text" is not a string')
    verdict = Verdict(allow, reason=None if allow else reason, text=text)
    try:
        return checkVerdict(verdict, event == PUBLISH, maxText)
    except BadVerdict as e:
        raise HookFailed(str(e)) from None


@implementer(IPolicy)
class HookPolicy:
    """
    An L{IPolicy} that asks the application's backend at C{--hook-url}.

    @ivar inFlight: calls waiting for their answers now.
    """

    log = Logger()

    def __init__(
        self,
        url: str,
        *,
        clock: IReactorTime,
        http: HTTPClient,
        timeout: float = 2.0,
        maxInFlight: int = 64,
        failOpen: bool = False,
        joinCacheSeconds: float = 0.0,
        joinCacheSize: int = 10_000,
        maxAnswerBytes: int = 16 * 1024,
        maxText: int = 4096,
        headers: Mapping[str, str] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """
        @param url: the hook URL (C{--hook-url}).
        @param clock: times the calls and dates the join cache.
        @param http: a treq client (L{portshare.httpclient.newHTTPClient}; C{StubTreq} in
            tests).
        @param timeout: seconds a call may take in all (C{--hook-timeout}).
        @param maxInFlight: calls waiting at once; more are refused with C{unavailable}.
        @param failOpen: allow what the hook could not decide (default: refuse it).
        @param joinCacheSeconds: seconds a join's answer is kept; 0: never.
        @param joinCacheSize: the most join answers kept.
        @param maxAnswerBytes: the longest answer body read.
        @param maxText: the server's text limit (a rewrite must keep it).
        @param headers: sent with every call (for instance an C{Authorization} the backend
            checks, so that only portshare can ask it).
        @param metrics: counts decisions by event and outcome, and times the calls.
        """
        if timeout <= 0 or maxInFlight < 1 or joinCacheSeconds < 0 or maxAnswerBytes < 16:
            raise ValueError("bad hook settings: timeout, maxInFlight or sizes out of range")
        self.url = url
        self.clock = clock
        self.http = http
        self.timeout = timeout
        self.maxInFlight = maxInFlight
        self.failOpen = failOpen
        self.joinCacheSeconds = joinCacheSeconds
        self.joinCacheSize = joinCacheSize
        self.maxAnswerBytes = maxAnswerBytes
        self.maxText = maxText
        self.metrics = metrics
        self.inFlight = 0
        self._headers: dict[bytes, list[bytes]] = {
            b"content-type": [b"application/json"],
            b"accept": [b"application/json"],
        }
        for name, value in (headers or {}).items():
            self._headers[name.lower().encode("ascii")] = [value.encode("latin-1")]
        self._joins: OrderedDict[tuple[Any, ...], tuple[float, Verdict]] = OrderedDict()

    # IPolicy

    def authorizeConnect(self, principal: Principal) -> Deferred[Verdict]:
        return self._ask(CONNECT, principal, None, None)

    def authorizeJoin(self, principal: Principal, room: str) -> Deferred[Verdict]:
        if self.joinCacheSeconds <= 0:
            return self._ask(JOIN, principal, room, None)
        key = (principal.user, principal.nick, room, principal.address)
        now = self.clock.seconds()
        held = self._joins.get(key)
        if held is not None:
            if held[0] > now:
                self._count(JOIN, "cached")
                return succeed(held[1])
            del self._joins[key]
        d = self._ask(JOIN, principal, room, None)
        d.addCallback(self._keep, key)
        return d

    def authorizePublish(self, principal: Principal, room: str, text: str) -> Deferred[Verdict]:
        return self._ask(PUBLISH, principal, room, text)

    # the call

    def _ask(
        self, event: str, principal: Principal, room: str | None, text: str | None
    ) -> Deferred[Verdict]:
        if self.inFlight >= self.maxInFlight:
            self._count(event, "overloaded")
            failed: Deferred[Verdict] = Deferred()
            failed.errback(Unavailable("the application's hook is busy; try again"))
            return failed
        self.inFlight += 1
        self._gauge()
        started = self.clock.seconds()
        d = self.http.post(
            self.url,
            data=hookRequest(event, principal, room, text),
            headers=self._headers,
            allow_redirects=False,
        )
        d.addCallback(self._read)
        timed = within(d, self.timeout, self.clock)
        timed.addCallback(parseAnswer, event, self.maxText)

        def ended(outcome: object) -> object:
            self.inFlight -= 1
            self._gauge()
            if self.metrics is not None:
                self.metrics.hookSeconds.observe(self.clock.seconds() - started)
            return outcome

        timed.addBoth(ended)
        return timed.addCallbacks(
            self._decided, self._failed, callbackArgs=(event,), errbackArgs=(event,)
        )

    def _read(self, response: Any) -> Deferred[bytes]:
        if response.code != 200:
            discard(response)
            raise HookFailed(f"it answered HTTP {response.code}")
        if not isJSON(response):
            discard(response)
            raise HookFailed("its answer is not application/json")
        return readBody(response, self.maxAnswerBytes)

    def _decided(self, verdict: Verdict, event: str) -> Verdict:
        if not verdict.allowed:
            outcome = "deny"
        elif verdict.text is not None:
            outcome = "rewrite"
        else:
            outcome = "allow"
        self._count(event, outcome)
        return verdict

    def _failed(self, failure: Failure, event: str) -> Verdict:
        if failure.check(TimedOut):
            outcome, reason = "timeout", str(failure.value)
        elif failure.check(HookFailed, TooLong):
            outcome, reason = "failed", str(failure.value)
        else:
            outcome, reason = "failed", failure.getErrorMessage() or repr(failure.value)
        self._count(event, outcome)
        self.log.warn(
            "the hook at {url} failed on {event}: {reason}; {verdict}",
            url=self.url,
            event=event,
            reason=reason,
            verdict="allowed (fail-open)" if self.failOpen else "refused",
        )
        if self.failOpen:
            return _FAILED_OPEN
        raise Unavailable("the application's hook could not decide; try again")

    def _keep(self, verdict: Verdict, key: tuple[Any, ...]) -> Verdict:
        if verdict is _FAILED_OPEN:
            return verdict
        self._joins[key] = (self.clock.seconds() + self.joinCacheSeconds, verdict)
        self._joins.move_to_end(key)
        while len(self._joins) > self.joinCacheSize:
            self._joins.popitem(last=False)
        return verdict

    def _count(self, event: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.hookDecided(event, outcome)

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.hooksInFlight.set(self.inFlight)
