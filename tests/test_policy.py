"""
Tests for L{portshare.policy}: the in-process policy interface, its verdicts, and
L{Authorization}, the service's side of it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from portshare.errors import Forbidden, Unavailable
from portshare.identity import Identity, RoomGrants
from portshare.policy import (
    ALLOW,
    DEFAULT_REASON,
    AllOf,
    AllowAll,
    Authorization,
    BadVerdict,
    ClaimsPolicy,
    IPolicy,
    Principal,
    Verdict,
    checkVerdict,
)

ANON = Principal(user=None, nick="guest", address="192.0.2.1")
ADA = Principal(
    user="u-ada",
    nick="Ada",
    address="192.0.2.2",
    identity=Identity(
        user="u-ada",
        nick="Ada",
        expires=2e9,
        rooms=RoomGrants(frozenset({"lobby"}), ("team-",)),
        publish=RoomGrants(frozenset({"team-a"}), ()),
    ),
)


@implementer(IPolicy)
class Scripted:
    """A policy whose answers a test sets, and which records the questions."""

    def __init__(self, answer: Any = ALLOW) -> None:
        self.answer = answer
        self.asked: list[tuple[Any, ...]] = []

    def _answer(self) -> Any:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def authorizeConnect(self, principal: Principal) -> Any:
        self.asked.append(("connect", principal.nick))
        return self._answer()

    def authorizeJoin(self, principal: Principal, room: str) -> Any:
        self.asked.append(("join", room))
        return self._answer()

    def authorizePublish(self, principal: Principal, room: str, text: str) -> Any:
        self.asked.append(("publish", room, text))
        return self._answer()


class InterfaceTests(SynchronousTestCase):
    def test_policiesProvideIPolicy(self) -> None:
        """The shipped policies, and the test's fake, provide IPolicy."""
        for policy in (AllowAll(), ClaimsPolicy(), AllOf(), Scripted()):
            verifyObject(IPolicy, policy)

    def test_verdictConstructors(self) -> None:
        """allow() and deny() build the verdicts they say."""
        self.assertEqual(Verdict.allow(), ALLOW)
        self.assertEqual(Verdict.allow("x"), Verdict(True, text="x"))
        self.assertEqual(Verdict.deny("no"), Verdict(False, reason="no"))


class AuthorizationTests(SynchronousTestCase):
    def auth(self, answer: Any, maxText: int = 100) -> tuple[Authorization, Scripted]:
        policy = Scripted(answer)
        return Authorization(policy, maxText), policy

    def test_allowAll(self) -> None:
        """With the default policy every action goes ahead and texts are unchanged."""
        auth = Authorization(AllowAll(), 100)
        self.assertIsNone(self.successResultOf(auth.connect(ANON)))
        self.assertIsNone(self.successResultOf(auth.join(ANON, "lobby")))
        self.assertEqual(self.successResultOf(auth.publish(ANON, "lobby", "hi")), "hi")

    def test_denyBecomesForbidden(self) -> None:
        """A denial is Forbidden with the policy's reason, or a default one."""
        auth, _ = self.auth(Verdict.deny("members only"))
        failure = self.failureResultOf(auth.join(ANON, "lobby"), Forbidden)
        self.assertEqual((failure.value.reason, failure.value.httpStatus), ("members only", 403))
        auth, _ = self.auth(Verdict.deny())
        self.assertEqual(
            self.failureResultOf(auth.connect(ANON), Forbidden).value.reason, DEFAULT_REASON
        )

    def test_raisingForbiddenDenies(self) -> None:
        """A policy may deny by raising Forbidden."""
        auth, _ = self.auth(Forbidden("not today"))
        failure = self.failureResultOf(auth.publish(ANON, "lobby", "hi"), Forbidden)
        self.assertEqual(failure.value.reason, "not today")

    def test_deferredAnswer(self) -> None:
        """A Deferred verdict is waited for; nothing is decided before it fires."""
        pending: Deferred[Verdict] = Deferred()
        auth, _ = self.auth(pending)
        d = auth.publish(ANON, "lobby", "hi")
        self.assertNoResult(d)
        pending.callback(Verdict.allow("hello"))
        self.assertEqual(self.successResultOf(d), "hello")

    def test_brokenPolicyIsUnavailableAndLogged(self) -> None:
        """A policy that raises a bug refuses with unavailable, and the bug is logged."""
        auth, _ = self.auth(ZeroDivisionError("oops"))
        self.failureResultOf(auth.join(ANON, "lobby"), Unavailable)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_notAVerdict(self) -> None:
        """An answer that is no Verdict (True, None, a dict) is refused as unavailable."""
        for answer in (True, None, {"allow": True}):
            auth, _ = self.auth(answer)
            self.failureResultOf(auth.join(ANON, "lobby"), Unavailable)

    def test_hostileRewrites(self) -> None:
        """A rewrite that is empty, too long, or holds control characters is refused."""
        for text in ("", "x" * 101, "ring\x07", "esc\x1b[2J", "nul\x00", "c1\x9b", "\ud800"):
            with self.subTest(text=text):
                auth, _ = self.auth(Verdict.allow(text))
                self.failureResultOf(auth.publish(ANON, "lobby", "hi"), Unavailable)

    def test_multilineRewriteAllowed(self) -> None:
        """A rewrite may hold tabs and line breaks, as a client's text may."""
        auth, _ = self.auth(Verdict.allow("line 1\nline\t2\r\n"))
        self.assertEqual(
            self.successResultOf(auth.publish(ANON, "lobby", "hi")), "line 1\nline\t2\r\n"
        )

    def test_textOutsidePublish(self) -> None:
        """A verdict with a text answering a join is a broken answer."""
        auth, _ = self.auth(Verdict(True, text="x"))
        self.failureResultOf(auth.join(ANON, "lobby"), Unavailable)

    def test_badReasons(self) -> None:
        """A denial's reason must be short printable text."""
        for reason in ("", "x" * 257, "two\nlines", 42):
            self.assertRaises(BadVerdict, checkVerdict, Verdict(False, reason), False, 100)  # type: ignore[arg-type]

    def test_eventLogged(self) -> None:
        """A refused answer is logged once as an error, with why."""
        from twisted.logger import globalLogPublisher

        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        auth, _ = self.auth(Verdict.allow("x" * 500))
        self.failureResultOf(auth.publish(ANON, "lobby", "hi"), Unavailable)
        errors = [e for e in events if e.get("log_level") == LogLevel.error]
        self.assertEqual(len(errors), 1)
        self.assertIn("longer than 100", errors[0]["why"])


class ClaimsPolicyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.auth = Authorization(ClaimsPolicy(), 100)

    def test_grants(self) -> None:
        """A user's token grants decide joins and publishes."""
        self.successResultOf(self.auth.join(ADA, "lobby"))
        self.successResultOf(self.auth.join(ADA, "team-x"))
        failure = self.failureResultOf(self.auth.join(ADA, "secret"), Forbidden)
        self.assertIn("secret", failure.value.reason)
        self.successResultOf(self.auth.publish(ADA, "team-a", "hi"))
        self.failureResultOf(self.auth.publish(ADA, "lobby", "hi"), Forbidden)

    def test_anonymousNotConcerned(self) -> None:
        """Without a token, the grants policy does not refuse."""
        self.successResultOf(self.auth.join(ANON, "secret"))


class AllOfTests(SynchronousTestCase):
    def test_firstDenialWins(self) -> None:
        """Policies are asked in order; after a denial the rest are not asked."""
        first, second = Scripted(Verdict.deny("first")), Scripted()
        auth = Authorization(AllOf(first, second), 100)
        failure = self.failureResultOf(auth.join(ANON, "lobby"), Forbidden)
        self.assertEqual(failure.value.reason, "first")
        self.assertEqual(second.asked, [])

    def test_grantsBeforeTheBackend(self) -> None:
        """With AllOf(ClaimsPolicy(), backend), a join the token forbids never reaches it."""
        backend = Scripted()
        auth = Authorization(AllOf(ClaimsPolicy(), backend), 100)
        self.failureResultOf(auth.join(ADA, "secret"), Forbidden)
        self.successResultOf(auth.join(ADA, "lobby"))
        self.assertEqual(backend.asked, [("join", "lobby")])

    def test_rewritesChain(self) -> None:
        """Each policy is asked about the text the one before it produced."""

        @implementer(IPolicy)
        class Upper(AllowAll):
            def authorizePublish(self, principal: Principal, room: str, text: str) -> Any:
                return succeed(Verdict.allow(text.upper()))

        last = Scripted()
        auth = Authorization(AllOf(Upper(), last), 100)
        self.assertEqual(self.successResultOf(auth.publish(ANON, "lobby", "hi")), "HI")
        self.assertEqual(last.asked, [("publish", "lobby", "HI")])

    def test_rewriteKeepsTheLimit(self) -> None:
        """A chain's final rewrite is held to the server's limit."""

        @implementer(IPolicy)
        class Longer(AllowAll):
            def authorizePublish(self, principal: Principal, room: str, text: str) -> Any:
                return Verdict.allow(text * 100)

        auth = Authorization(AllOf(Longer()), 100)
        self.failureResultOf(auth.publish(ANON, "lobby", "hi"), Unavailable)
