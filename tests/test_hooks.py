"""
Tests for L{portshare.hooks}: C{--hook-url}, from the backend's hostile side (huge,
malformed, mistyped, redirecting answers) in memory on a L{Clock}, and against a real HTTP
backend on loopback (slow, failing, denying, rewriting).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface.verify import verifyObject

from portshare.errors import Forbidden, Unavailable
from portshare.hooks import HookPolicy, hookRequest, parseAnswer
from portshare.httpclient import newHTTPClient
from portshare.metrics import Metrics
from portshare.policy import ALLOW, Authorization, IPolicy, Principal, Verdict

URL = "http://app.test/portshare-hook"
ANON = Principal(user=None, nick="guest", address="192.0.2.7")
ADA = Principal(user="u-ada", nick="Ada", address="192.0.2.8")

#: (status, headers, body) of an answer
Answer = tuple[int, dict[bytes, bytes], bytes]


def ok(body: Any) -> Answer:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return 200, {b"content-type": b"application/json"}, raw


class Backend(Resource):
    """The application's hook endpoint, in memory: its answer a test sets; records calls."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.answer: Answer | Callable[[dict[str, Any]], Answer] = ok({"allow": True})
        self.chunked = False
        self.hang = False
        self.calls: list[dict[str, Any]] = []
        self.headers: list[Any] = []
        self.pending: list[Request] = []
        self.elsewhere = 0

    def render_POST(self, request: Request) -> bytes | int:
        if request.path != b"/portshare-hook":
            self.elsewhere += 1
            request.setHeader(b"content-type", b"application/json")
            return b'{"allow": true}'
        body = json.loads(request.content.read())
        self.calls.append(body)
        self.headers.append(request.requestHeaders)
        if self.hang:
            self.pending.append(request)
            return NOT_DONE_YET
        answer = self.answer(body) if callable(self.answer) else self.answer
        status, headers, raw = answer
        request.setResponseCode(status)
        for name, value in headers.items():
            request.setHeader(name, value)
        if self.chunked:
            request.write(raw)
            request.finish()
            return NOT_DONE_YET
        return raw

    render_GET = render_POST


class HookTestMixin:
    def setUp(self) -> None:
        self.clock = Clock()
        self.backend = Backend()
        self.http = StubTreq(self.backend)
        self.metrics = Metrics()

    def hook(self, **settings: Any) -> HookPolicy:
        defaults: dict[str, Any] = {"timeout": 2.0, "maxInFlight": 4, "maxText": 100}
        defaults.update(settings)
        return HookPolicy(URL, clock=self.clock, http=self.http, metrics=self.metrics, **defaults)

    def decided(self, d: Deferred[Any]) -> Deferred[Any]:
        self.http.flush()
        return d

    def count(self, event: str, outcome: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "portshare_hook_calls_total", {"event": event, "outcome": outcome}
        )
        return value or 0.0


class RequestTests(HookTestMixin, SynchronousTestCase):
    def test_interface(self) -> None:
        """HookPolicy is an IPolicy."""
        verifyObject(IPolicy, self.hook())

    def test_bodiesAsTheContractGives(self) -> None:
        """Each event POSTs exactly the contract's fields, user null when anonymous."""
        hook = self.hook()
        self.successResultOf(self.decided(hook.authorizeConnect(ANON)))
        self.successResultOf(self.decided(hook.authorizeJoin(ADA, "lobby")))
        self.successResultOf(self.decided(hook.authorizePublish(ADA, "lobby", "hi")))
        self.assertEqual(
            self.backend.calls,
            [
                {"event": "connect", "user": None, "nick": "guest", "client": "192.0.2.7"},
                {
                    "event": "join",
                    "user": "u-ada",
                    "nick": "Ada",
                    "room": "lobby",
                    "client": "192.0.2.8",
                },
                {
                    "event": "publish",
                    "user": "u-ada",
                    "nick": "Ada",
                    "room": "lobby",
                    "text": "hi",
                    "client": "192.0.2.8",
                },
            ],
        )
        self.assertEqual(
            self.backend.headers[0].getRawHeaders(b"content-type"), [b"application/json"]
        )
        self.assertEqual(hookRequest("connect", ANON, None, None)[:18], b'{"event":"connect"')

    def test_extraHeaders(self) -> None:
        """Configured headers (a secret the backend checks) go with every call."""
        hook = self.hook(headers={"Authorization": "Bearer hook-secret"})
        self.successResultOf(self.decided(hook.authorizeConnect(ANON)))
        self.assertEqual(
            self.backend.headers[0].getRawHeaders(b"authorization"), [b"Bearer hook-secret"]
        )


class AnswerTests(HookTestMixin, SynchronousTestCase):
    def test_allow(self) -> None:
        """{"allow": true} allows."""
        verdict = self.successResultOf(self.decided(self.hook().authorizeJoin(ADA, "lobby")))
        self.assertEqual(verdict, ALLOW)
        self.assertEqual(self.count("join", "allow"), 1)

    def test_denyWithReason(self) -> None:
        """{"allow": false, "reason": R} denies; through Authorization, forbidden with R."""
        self.backend.answer = ok({"allow": False, "reason": "banned from lobby"})
        auth = Authorization(self.hook(), 100)
        failure = self.failureResultOf(self.decided(auth.join(ADA, "lobby")), Forbidden)
        self.assertEqual(failure.value.reason, "banned from lobby")
        self.assertEqual(self.count("join", "deny"), 1)

    def test_rewrite(self) -> None:
        """{"allow": true, "text": T} on a publish rewrites the text."""
        self.backend.answer = ok({"allow": True, "text": "h*llo"})
        auth = Authorization(self.hook(), 100)
        self.assertEqual(
            self.successResultOf(self.decided(auth.publish(ADA, "r", "hello"))), "h*llo"
        )
        self.assertEqual(self.count("publish", "rewrite"), 1)

    def test_textIgnoredOutsidePublish(self) -> None:
        """A text in the answer to a join is ignored (the contract has none there)."""
        self.backend.answer = ok({"allow": True, "text": "x"})
        self.assertEqual(
            self.successResultOf(self.decided(self.hook().authorizeJoin(ADA, "r"))), ALLOW
        )

    def test_extraFieldsIgnored(self) -> None:
        """Fields beyond the contract's are ignored (a backend may add its own)."""
        self.backend.answer = ok({"allow": True, "trace": "abc", "n": 1})
        self.assertEqual(
            self.successResultOf(self.decided(self.hook().authorizeConnect(ANON))), ALLOW
        )

    HOSTILE: dict[str, Answer] = {
        "server error": (500, {b"content-type": b"application/json"}, b'{"allow": true}'),
        "no content": (204, {}, b""),
        "redirect": (302, {b"location": b"http://app.test/elsewhere"}, b""),
        "see other": (303, {b"location": b"http://app.test/elsewhere"}, b""),
        "temporary redirect": (307, {b"location": b"http://app.test/elsewhere"}, b""),
        "html": (200, {b"content-type": b"text/html"}, b'{"allow": true}'),
        "no content type": (200, {}, b'{"allow": true}'),
        "not json": ok(b"allow"),
        "truncated json": ok(b'{"allow": tr'),
        "array": ok([{"allow": True}]),
        "allow as string": ok({"allow": "true"}),
        "allow as number": ok({"allow": 1}),
        "allow missing": ok({"text": "x"}),
        "reason as number": ok({"allow": False, "reason": 403}),
        "reason with newline": ok({"allow": False, "reason": "a\nb"}),
        "reason too long": ok({"allow": False, "reason": "r" * 300}),
        "text as number": ok({"allow": True, "text": 5}),
        "text empty": ok({"allow": True, "text": ""}),
        "text over the limit": ok({"allow": True, "text": "x" * 101}),
        "text with escape": ok({"allow": True, "text": "\x1b[31mred"}),
        "text with NUL": ok({"allow": True, "text": "a\x00b"}),
        "text with lone surrogate": ok(b'{"allow": true, "text": "\\ud800"}'),
        "huge": ok(b'{"allow": true, "pad": "' + b"x" * 20_000 + b'"}'),
    }

    def test_hostileAnswersFailClosed(self) -> None:
        """Every answer outside the contract refuses the publish with unavailable."""
        for name, answer in self.HOSTILE.items():
            with self.subTest(answer=name):
                self.setUp()
                self.backend.answer = answer
                auth = Authorization(self.hook(maxAnswerBytes=16 * 1024), 100)
                failure = self.failureResultOf(
                    self.decided(auth.publish(ADA, "lobby", "hi")), Unavailable
                )
                self.assertEqual(failure.value.httpStatus, 503)
                self.assertEqual(self.count("publish", "failed"), 1)
                self.assertEqual(self.backend.elsewhere, 0)  # a redirect is never followed

    def test_hugeChunkedAnswer(self) -> None:
        """An answer with no Content-Length that grows past the limit is cut and refused."""
        self.backend.chunked = True
        self.backend.answer = ok(b'{"allow": true, "pad": "' + b"x" * 20_000 + b'"}')
        hook = self.hook(maxAnswerBytes=1024)
        self.failureResultOf(self.decided(hook.authorizeConnect(ANON)), Unavailable)
        self.assertEqual(hook.inFlight, 0)

    def test_hostileAnswersFailOpen(self) -> None:
        """With failOpen, a broken answer allows, a publish with its text unchanged."""
        for name in ("server error", "text with escape", "html"):
            with self.subTest(answer=name):
                self.setUp()
                self.backend.answer = self.HOSTILE[name]
                auth = Authorization(self.hook(failOpen=True), 100)
                text = self.successResultOf(self.decided(auth.publish(ADA, "lobby", "hi")))
                self.assertEqual(text, "hi")

    def test_parseAnswer(self) -> None:
        """parseAnswer reads the three answers the contract has."""
        self.assertEqual(parseAnswer(b'{"allow":true}', "join", 10), ALLOW)
        self.assertEqual(
            parseAnswer(b'{"allow":false,"reason":"no"}', "join", 10), Verdict.deny("no")
        )
        self.assertEqual(
            parseAnswer(b'{"allow":true,"text":"t"}', "publish", 10), Verdict.allow("t")
        )


class LimitsTests(HookTestMixin, SynchronousTestCase):
    def test_timeout(self) -> None:
        """A backend that does not answer within the timeout fails the call then, not later."""
        self.backend.hang = True
        hook = self.hook(timeout=2.0)
        d = self.decided(hook.authorizeJoin(ADA, "lobby"))
        self.clock.advance(1.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.failureResultOf(d, Unavailable)
        self.assertEqual((hook.inFlight, self.count("join", "timeout")), (0, 1))

    def test_capInFlight(self) -> None:
        """Beyond maxInFlight, a call is refused at once and never reaches the backend."""
        self.backend.hang = True
        hook = self.hook(maxInFlight=2, failOpen=True)
        waiting = [self.decided(hook.authorizeJoin(ADA, f"r{i}")) for i in range(2)]
        refused = hook.authorizeJoin(ADA, "r2")
        failure = self.failureResultOf(refused, Unavailable)
        self.assertIn("busy", failure.value.reason)
        self.assertEqual(len(self.backend.calls), 2)
        self.assertEqual(self.count("join", "overloaded"), 1)
        # the calls in flight end (here: time out, allowed by failOpen); room again after
        self.clock.advance(2)
        for d in waiting:
            self.assertEqual(self.successResultOf(d), ALLOW)
        self.backend.hang = False
        self.successResultOf(self.decided(hook.authorizeJoin(ADA, "r3")))

    def test_joinCache(self) -> None:
        """A join's answer is reused for its TTL, then asked again; other rooms are asked."""
        self.backend.answer = ok({"allow": False, "reason": "no"})
        hook = self.hook(joinCacheSeconds=10)
        first = self.successResultOf(self.decided(hook.authorizeJoin(ADA, "lobby")))
        self.clock.advance(9)
        second = self.successResultOf(hook.authorizeJoin(ADA, "lobby"))
        self.assertEqual((first, second), (Verdict.deny("no"), Verdict.deny("no")))
        self.assertEqual(len(self.backend.calls), 1)
        self.assertEqual(self.count("join", "cached"), 1)
        self.successResultOf(self.decided(hook.authorizeJoin(ANON, "lobby")))
        self.clock.advance(1)
        self.successResultOf(self.decided(hook.authorizeJoin(ADA, "lobby")))
        self.assertEqual(len(self.backend.calls), 3)

    def test_failuresNotCached(self) -> None:
        """A failed call (allowed by failOpen) is not kept: the next join asks again."""
        self.backend.answer = (500, {}, b"")
        hook = self.hook(joinCacheSeconds=10, failOpen=True)
        self.successResultOf(self.decided(hook.authorizeJoin(ADA, "lobby")))
        self.successResultOf(self.decided(hook.authorizeJoin(ADA, "lobby")))
        self.assertEqual(len(self.backend.calls), 2)

    def test_cacheBounded(self) -> None:
        """The join cache holds at most joinCacheSize answers, dropping the oldest."""
        hook = self.hook(joinCacheSeconds=60, joinCacheSize=3)
        for i in range(5):
            self.successResultOf(self.decided(hook.authorizeJoin(ADA, f"r{i}")))
        self.assertEqual(len(hook._joins), 3)
        self.successResultOf(self.decided(hook.authorizeJoin(ADA, "r0")))
        self.assertEqual(len(self.backend.calls), 6)

    def test_publishNeverCached(self) -> None:
        """Publishes are asked every time, whatever the join cache says."""
        hook = self.hook(joinCacheSeconds=60)
        for _ in range(3):
            self.successResultOf(self.decided(hook.authorizePublish(ADA, "r", "hi")))
        self.assertEqual(len(self.backend.calls), 3)

    def test_badSettings(self) -> None:
        """Impossible settings are refused."""
        for settings in ({"timeout": 0}, {"maxInFlight": 0}, {"joinCacheSeconds": -1}):
            self.assertRaises(ValueError, self.hook, **settings)


class _RealBackend(Resource):
    """A backend on a real socket: slow, failing, denying or rewriting by the room."""

    isLeaf = True

    def __init__(self, reactor: Any) -> None:
        super().__init__()
        self.reactor = reactor
        self.calls = 0

    def render_POST(self, request: Request) -> bytes | int:
        self.calls += 1
        body = json.loads(request.content.read())
        request.setHeader(b"content-type", b"application/json")
        room = body.get("room")
        if room == "slow":
            call = self.reactor.callLater(5, lambda: None)
            request.notifyFinish().addBoth(lambda _: call.cancel() if call.active() else None)
            return NOT_DONE_YET
        if room == "failing":
            request.setResponseCode(500)
            return b'{"error": "boom"}'
        if room == "private":
            return json.dumps({"allow": False, "reason": "invite only"}).encode()
        if body["event"] == "publish":
            return json.dumps(
                {"allow": True, "text": body["text"].replace("darn", "d**n")}
            ).encode()
        return b'{"allow": true}'


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_realBackendOnLoopback() -> None:
    """Against a real HTTP backend: allow, deny, rewrite, a 500, and a slow one timed out."""
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint

    backend = _RealBackend(reactor)
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        Site(backend, reactor=reactor)
    )
    client, pool = newHTTPClient(reactor, maxPerHost=4)
    try:
        url = f"http://127.0.0.1:{port.getHost().port}/hook"
        hook = HookPolicy(url, clock=reactor, http=client, timeout=0.5)  # type: ignore[arg-type]
        auth = Authorization(hook, 4096)
        await auth.connect(ADA)
        await auth.join(ADA, "lobby")
        assert await auth.publish(ADA, "lobby", "darn it") == "d**n it"
        with pytest.raises(Forbidden, match="invite only"):
            await auth.join(ADA, "private")
        with pytest.raises(Unavailable):
            await auth.join(ADA, "failing")
        started = time.monotonic()
        with pytest.raises(Unavailable):
            await auth.join(ADA, "slow")
        elapsed = time.monotonic() - started
        assert 0.4 < elapsed < 2.0, elapsed
        assert hook.inFlight == 0
        assert backend.calls == 6
    finally:
        await pool.closeCachedConnections()
        await port.stopListening()
