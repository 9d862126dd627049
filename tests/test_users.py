"""
Tests for L{portshare.users} and the hub's users: auth messages and refreshes, the token's
deadline (4001), users on events, fixed nicks, room grants, and the application's policy
asked for joins and says (its refusals, rewrites, late answers and bugs), from the client's
side with the whole service in memory.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from portshare.auth import JoinTokens
from portshare.errors import Forbidden, Unauthorized
from portshare.identity import Authenticator, StaticKeys, TokenRules, secretKeys
from portshare.policy import ALLOW, IPolicy, Verdict
from portshare.testing import ChatError, MemoryChat
from portshare.users import Gatekeeper
from portshare.wire import Ack, Authed, Close, Error, Joined, Message, Presence
from tests.jwts import SECRET, bearer, token


def chat(testCase: SynchronousTestCase, **options: Any) -> MemoryChat:
    memory = MemoryChat(**options)
    testCase.addCleanup(memory.stop)
    return memory


class GatekeeperTests(SynchronousTestCase):
    """L{Gatekeeper} on its own."""

    def gate(self, mode: str = "optional") -> tuple[Gatekeeper, Clock]:
        clock = Clock()
        auth = Authenticator(StaticKeys(secretKeys(SECRET)), TokenRules(), clock)
        return Gatekeeper(mode, auth), clock

    def test_badMode(self) -> None:
        """An unknown mode, or a mode that reads tokens without a key, is refused."""
        self.assertRaises(ValueError, Gatekeeper, "sometimes")
        self.assertRaises(ValueError, Gatekeeper, "required")

    def test_refusedUntil(self) -> None:
        """A refused user's good token is Forbidden until the refusal passes, then fine."""
        gate, clock = self.gate()
        gate.refuse("ann", 10.0)
        self.failureResultOf(gate.authenticate(token("ann")), Forbidden)
        self.assertEqual(self.successResultOf(gate.authenticate(token("bob"))).user, "bob")
        clock.advance(10.0)
        self.assertEqual(self.successResultOf(gate.authenticate(token("ann"))).user, "ann")

    def test_refusalsBounded(self) -> None:
        """The refusals kept are bounded: past the bound the expired ones are dropped."""
        gate, clock = self.gate()
        for n in range(100_001):
            gate.refuse(f"u{n}", 5.0)
        clock.advance(6.0)
        gate.refuse("last", 100.0)
        self.assertEqual(set(gate._refused), {"last"})

    def test_admitOff(self) -> None:
        """With auth off a token is not even looked at: anonymous."""
        self.assertIsNone(self.successResultOf(Gatekeeper().admit("junk", "1.2.3.4")))

    def test_admitBadToken(self) -> None:
        """A bad token at admission fails with Unauthorized."""
        gate, _ = self.gate("required")
        self.failureResultOf(gate.admit("junk", "1.2.3.4"), Unauthorized)


class AuthMessageTests(SynchronousTestCase):
    """The auth message: authed, refreshes, and the token's deadline."""

    def test_authedReply(self) -> None:
        """auth is answered authed with the user and the token's exp (seconds)."""
        memory = chat(self, auth="optional", jwtSecret=SECRET)
        client = memory.websocket()
        client.send({"type": "auth", "token": token("ann", exp=1234), "ref": "a"})
        self.assertEqual(client.take(Authed), [Authed(user="ann", exp=1234, ref="a")])

    def test_expiresAtExpPlusLeeway(self) -> None:
        """A connection whose token is not refreshed closes 4001 exactly at exp + leeway:
        open a moment before, closed at it, for a handshake token and an auth message."""
        memory = chat(self, auth="optional", jwtSecret=SECRET, jwtLeeway=5.0)
        byHeader = memory.websocket(headers=bearer(token("ann", exp=100)))
        byMessage = memory.lines()
        byMessage.send({"type": "auth", "token": token("bob", exp=100)})
        stream = memory.sse(["lobby"], cookies={"portshare_token": token("cy", exp=100)})
        memory.advance(104.999)
        self.assertTrue(byHeader.open)
        self.assertIsNone(byMessage.closed)
        self.assertEqual(stream.take(Close), [])
        memory.advance(0.001)
        self.assertEqual(stream.take(Close), [Close(code=4001, reason="token expired")])
        self.assertEqual(byHeader.closed, (4001, "token expired"))
        self.assertEqual(byMessage.closed, (4001, "token expired"))
        self.assertEqual(memory.chat.service.hub.sessions, set())

    def test_refreshMovesDeadline(self) -> None:
        """A refresh with a later token moves the deadline: open past the first exp, closed
        at the second."""
        memory = chat(self, auth="required", jwtSecret=SECRET)
        client = memory.websocket(headers=bearer(token("ann", exp=100)))
        memory.advance(90)
        client.send({"type": "auth", "token": token("ann", exp=200), "ref": "r"})
        self.assertEqual(client.take(Authed), [Authed(user="ann", exp=200, ref="r")])
        memory.advance(109.999)  # t = 199.999
        self.assertTrue(client.open)
        memory.advance(0.001)
        self.assertEqual(client.closed, (4001, "token expired"))

    def test_refreshAnotherUserRefused(self) -> None:
        """A refresh naming another user is refused (unauthorized): the connection stays its
        user, its deadline unchanged."""
        memory = chat(self, auth="required", jwtSecret=SECRET)
        client = memory.websocket(headers=bearer(token("ann", exp=100)))
        client.send({"type": "auth", "token": token("mallory", exp=900), "ref": "r"})
        with self.assertRaises(ChatError) as refused:
            client.replyTo("r", Authed)
        self.assertEqual(refused.exception.code, "unauthorized")
        client.join("lobby")
        client.say("lobby", "still me")
        self.assertEqual([m.user for m in client.messages()], ["ann"])
        memory.advance(100)
        self.assertEqual(client.closed, (4001, "token expired"))

    def test_refreshWithBadTokenKeepsConnection(self) -> None:
        """An expired refresh is refused; the connection lives on until its own deadline."""
        memory = chat(self, auth="required", jwtSecret=SECRET)
        client = memory.websocket(headers=bearer(token("ann", exp=100)))
        memory.advance(50)
        client.send({"type": "auth", "token": token("ann", exp=40), "ref": "r"})
        self.assertEqual([e.code for e in client.take(Error)], ["unauthorized"])
        self.assertTrue(client.open)

    def test_anonymousBecomesUser(self) -> None:
        """With --auth optional an anonymous connection may auth later: from then on its
        nick is the token's and its messages carry the user."""
        memory = chat(self, auth="optional", jwtSecret=SECRET)
        client = memory.websocket()
        client.join("lobby", nick="someone")
        client.send({"type": "auth", "token": token("ann", name="Ann"), "ref": "r"})
        client.replyTo("r", Authed)
        client.say("lobby", "hi")
        self.assertEqual([(m.nick, m.user) for m in client.messages()], [("Ann", "ann")])


class UsersOnEventsTests(SynchronousTestCase):
    """Users on message and presence events, and fixed nicks."""

    def test_messageAndPresenceCarryUser(self) -> None:
        """A user's message carries its user beside its nick; its presence events too; an
        anonymous member's carry none."""
        memory = chat(self, auth="optional", jwtSecret=SECRET)
        watcher = memory.websocket()
        watcher.join("lobby", nick="watcher")
        ann = memory.websocket(headers=bearer(token("ann", name="Ann")))
        ann.join("lobby")
        ann.say("lobby", "hello")
        ann.close()
        events = watcher.take(Message, Presence)
        self.assertEqual(
            [(type(e).__name__, e.nick, e.user) for e in events],
            [("Presence", "Ann", "ann"), ("Message", "Ann", "ann"), ("Presence", "Ann", "ann")],
        )
        self.assertEqual([e.event for e in events if isinstance(e, Presence)], ["join", "leave"])
        watcher.say("lobby", "anon")
        self.assertIsNone(watcher.messages()[-1].user)

    def test_historyKeepsUser(self) -> None:
        """A user's message replayed to a later member still carries the user."""
        memory = chat(self, auth="optional", jwtSecret=SECRET)
        ann = memory.websocket(headers=bearer(token("ann")))
        ann.join("lobby")
        ann.say("lobby", "before")
        late = memory.websocket()
        late.join("lobby", since=0)
        self.assertEqual([(m.text, m.user) for m in late.messages()], [("before", "ann")])

    def test_nickChangeRefused(self) -> None:
        """A user cannot take another nick (to pass for someone else): a nick command or a
        join with another nick is refused forbidden, and the nick stays the token's."""
        memory = chat(self, auth="optional", jwtSecret=SECRET)
        ann = memory.websocket(headers=bearer(token("ann")))
        ann.join("lobby")
        ann.send({"type": "nick", "nick": "admin"})
        self.assertEqual([e.code for e in ann.take(Error)], ["forbidden"])
        with self.assertRaises(ChatError) as refused:
            ann.join("other", nick="admin")
        self.assertEqual(refused.exception.code, "forbidden")
        ann.say("lobby", "who am i")
        self.assertEqual([m.nick for m in ann.messages()], ["ann"])
        # the same nick again is no change: allowed
        self.assertEqual(ann.join("third", nick="ann").members, ("ann",))

    def test_anonymousStillRenames(self) -> None:
        """Under --auth optional an anonymous connection renames as in version 1."""
        memory = chat(self, auth="optional", jwtSecret=SECRET)
        anon = memory.websocket()
        anon.join("lobby", nick="first")
        anon.nick("second")
        anon.say("lobby", "renamed")
        self.assertEqual([m.nick for m in anon.messages()], ["second"])

    def test_joinTokensStillWork(self) -> None:
        """The HMAC join tokens of version 1 (--join-secret) keep working beside users: a
        user still needs one to join, and its say grant still mutes."""
        secret = b"j" * 32
        memory = chat(self, auth="optional", jwtSecret=SECRET, joinSecret=secret)
        minted = JoinTokens(secret).mint(["lobby", "quiet"], ["lobby"], 10_000)
        ann = memory.websocket(headers=bearer(token("ann")))
        with self.assertRaises(ChatError) as refused:
            ann.join("lobby")
        self.assertEqual(refused.exception.code, "forbidden")
        ann.join("lobby", token=minted)
        self.assertEqual(ann.say("lobby", "hi").offset, 1)
        ann.join("quiet", token=minted)
        with self.assertRaises(ChatError) as muted:
            ann.say("quiet", "hi")
        self.assertEqual(muted.exception.code, "forbidden")


class GrantTests(SynchronousTestCase):
    """The rooms and publish claims of a token."""

    def test_roomsClaim(self) -> None:
        """rooms grants joins by name and by prefix; any other room is forbidden."""
        memory = chat(self, auth="required", jwtSecret=SECRET)
        ann = memory.websocket(headers=bearer(token("ann", rooms=["lobby", "team-*"])))
        ann.join("lobby")
        ann.join("team-red")
        for room in ("team", "lobby2", "teamx", "other"):
            with self.subTest(room=room):
                with self.assertRaises(ChatError) as refused:
                    ann.join(room)
                self.assertEqual(refused.exception.code, "forbidden")

    def test_publishClaim(self) -> None:
        """publish grants says by name and prefix; a joined room outside it is read-only."""
        memory = chat(self, auth="required", jwtSecret=SECRET)
        ann = memory.websocket(headers=bearer(token("ann", publish=["team-*"])))
        ann.join("lobby")
        ann.join("team-blue")
        self.assertEqual(ann.say("team-blue", "ok").offset, 1)
        with self.assertRaises(ChatError) as refused:
            ann.say("lobby", "not here")
        self.assertEqual(refused.exception.code, "forbidden")
        self.assertEqual([m.text for m in ann.messages()], ["ok"])

    def test_emptyGrants(self) -> None:
        """An empty rooms list grants no room at all (not every room)."""
        memory = chat(self, auth="required", jwtSecret=SECRET)
        ann = memory.websocket(headers=bearer(token("ann", rooms=[])))
        with self.assertRaises(ChatError):
            ann.join("lobby")

    def test_refreshChangesGrants(self) -> None:
        """A refresh's grants apply from then on."""
        memory = chat(self, auth="required", jwtSecret=SECRET)
        ann = memory.websocket(headers=bearer(token("ann", rooms=["lobby"])))
        with self.assertRaises(ChatError):
            ann.join("vip")
        ann.send({"type": "auth", "token": token("ann", rooms=["lobby", "vip"]), "ref": "r"})
        ann.replyTo("r", Authed)
        self.assertEqual(ann.join("vip").members, ("ann",))


@implementer(IPolicy)
class Rules:
    """An in-process policy whose answers the test sets: verdicts, Deferreds, or errors."""

    def __init__(self) -> None:
        self.join: Any = ALLOW
        self.publish: Any = ALLOW
        self.asked: list[tuple[str, Any, Any]] = []
        self.pending: list[Deferred[Verdict]] = []

    def _answer(self, answer: Any) -> Any:
        if answer == "later":
            d: Deferred[Verdict] = Deferred()
            self.pending.append(d)
            return d
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer()
        return answer

    def authorizeConnect(self, principal: Any) -> Any:
        return ALLOW

    def authorizeJoin(self, principal: Any, room: str) -> Any:
        self.asked.append(("join", principal, room))
        return self._answer(self.join)

    def authorizePublish(self, principal: Any, room: str, text: str) -> Any:
        self.asked.append(("publish", principal, text))
        return self._answer(self.publish)


class PolicyTests(SynchronousTestCase):
    """The application's policy (Settings.policy) asked for joins and says."""

    def setUp(self) -> None:
        self.rules = Rules()
        self.memory = chat(self, auth="optional", jwtSecret=SECRET, policy=self.rules)

    def test_joinDenied(self) -> None:
        """A denied join is error forbidden with the policy's reason; the room is not
        joined (a say there is not_joined)."""
        self.rules.join = Verdict.deny("members only")
        ann = self.memory.websocket(headers=bearer(token("ann")))
        with self.assertRaises(ChatError) as refused:
            ann.join("vip")
        self.assertEqual(
            (refused.exception.code, refused.exception.reason), ("forbidden", "members only")
        )
        with self.assertRaises(ChatError) as said:
            ann.say("vip", "hi")
        self.assertEqual(said.exception.code, "not_joined")
        (_, principal, room) = self.rules.asked[0]
        self.assertEqual((principal.user, principal.nick, room), ("ann", "ann", "vip"))

    def test_joinLater(self) -> None:
        """A join the policy answers later is answered then."""
        self.rules.join = "later"
        ann = self.memory.websocket()
        ann.send({"type": "join", "room": "lobby", "nick": "ann", "ref": "r"})
        self.assertEqual(ann.take(), [])
        self.rules.pending[0].callback(ALLOW)
        self.assertEqual(ann.replyTo("r", Joined).members, ("ann",))

    def test_sayRewritten(self) -> None:
        """A say the policy rewrites is published with the new text."""
        self.rules.publish = lambda: Verdict.allow("d***")
        ann = self.memory.websocket()
        ann.join("lobby", nick="ann")
        ann.say("lobby", "darn")
        self.assertEqual([m.text for m in ann.messages()], ["d***"])

    def test_sayDenied(self) -> None:
        """A denied say is error forbidden with the reason, and nothing is published."""
        self.rules.publish = Verdict.deny("spam")
        ann = self.memory.websocket()
        ann.join("lobby", nick="ann")
        with self.assertRaises(ChatError) as refused:
            ann.say("lobby", "buy now")
        self.assertEqual(refused.exception.reason, "spam")
        self.assertEqual(ann.messages(), [])

    def test_laterVerdictsKeepOrder(self) -> None:
        """Says the policy answers later, in another order, are published in the order they
        were sent, each with its own ack or its own error."""
        self.rules.publish = "later"
        ann = self.memory.websocket()
        ann.join("lobby", nick="ann")
        for n in range(4):
            ann.send({"type": "say", "room": "lobby", "text": f"m{n}", "ref": 10 + n})
        first, second, third, fourth = self.rules.pending
        fourth.callback(ALLOW)
        second.callback(Verdict.deny("no"))
        self.assertEqual(ann.messages(), [])  # the first is still undecided
        third.callback(Verdict.allow("m2!"))
        self.assertEqual(ann.messages(), [])
        first.callback(ALLOW)
        self.assertEqual([m.text for m in ann.messages()], ["m0", "m2!", "m3"])
        self.assertEqual([m.offset for m in ann.messages()], [1, 2, 3])
        self.assertEqual(ann.replyTo(10, Ack).offset, 1)
        self.assertEqual(ann.replyTo(12, Ack).offset, 2)
        self.assertEqual(ann.replyTo(13, Ack).offset, 3)
        with self.assertRaises(ChatError) as refused:
            ann.replyTo(11, Ack)
        self.assertEqual(refused.exception.reason, "no")

    def test_laterThenNoPolicyAnswer(self) -> None:
        """A say answered at once behind one still waiting waits its turn."""
        answers: list[Any] = ["later", ALLOW]
        self.rules.publish = lambda: self.rules._answer(answers.pop(0))
        ann = self.memory.websocket()
        ann.join("lobby", nick="ann")
        ann.send({"type": "say", "room": "lobby", "text": "slow", "ref": "r"})
        ann.send({"type": "say", "room": "lobby", "text": "fast", "ref": 2})
        self.assertEqual(ann.messages(), [])
        self.rules.pending[0].callback(ALLOW)
        self.assertEqual([m.text for m in ann.messages()], ["slow", "fast"])

    def test_clockedVerdict(self) -> None:
        """A verdict that arrives on the clock (a backend's delay) publishes then."""
        clock = self.memory.clock

        def later() -> Deferred[Verdict]:
            d: Deferred[Verdict] = Deferred()
            clock.callLater(2.0, d.callback, ALLOW)
            return d

        self.rules.publish = later
        ann = self.memory.websocket()
        ann.join("lobby", nick="ann")
        ann.send({"type": "say", "room": "lobby", "text": "x", "ref": "r"})
        self.memory.advance(1.9)
        self.assertEqual(ann.messages(), [])
        self.memory.advance(0.1)
        self.assertEqual(ann.replyTo("r", Ack).offset, 1)

    def test_closedWhileWaiting(self) -> None:
        """A say whose verdict arrives after its connection closed is not published."""
        self.rules.publish = "later"
        ann, bob = self.memory.websocket(), self.memory.websocket()
        ann.join("lobby", nick="ann")
        bob.join("lobby", nick="bob")
        ann.send({"type": "say", "room": "lobby", "text": "x", "ref": "r"})
        ann.close()
        self.rules.pending[0].callback(ALLOW)
        self.assertEqual(bob.messages(), [])

    def test_policyRaises(self) -> None:
        """A policy that raises is a bug: the say and the join get error unavailable, the
        error is logged, and the connection stays usable."""
        logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        ann = self.memory.websocket()
        ann.join("lobby", nick="ann")
        self.rules.publish = RuntimeError("policy bug")
        with self.assertRaises(ChatError) as refused:
            ann.say("lobby", "x")
        self.assertEqual(refused.exception.code, "unavailable")
        self.rules.join = ZeroDivisionError()
        with self.assertRaises(ChatError) as joined:
            ann.join("other")
        self.assertEqual(joined.exception.code, "unavailable")
        failures = [e for e in logged if e.get("log_failure") is not None]
        self.assertEqual(
            {type(e["log_failure"].value) for e in failures}, {RuntimeError, ZeroDivisionError}
        )
        self.flushLoggedErrors(RuntimeError, ZeroDivisionError)
        self.rules.publish = ALLOW
        self.assertEqual(ann.say("lobby", "fine").offset, 1)

    def test_badVerdict(self) -> None:
        """A rewrite the client could not have sent (control characters) is refused as the
        policy's fault: unavailable, nothing published."""
        self.rules.publish = lambda: Verdict.allow("\x1b[2Jgotcha")
        ann = self.memory.websocket()
        ann.join("lobby", nick="ann")
        with self.assertRaises(ChatError) as refused:
            ann.say("lobby", "x")
        self.assertEqual(refused.exception.code, "unavailable")
        self.assertEqual(ann.messages(), [])

    def test_grantsBeforePolicy(self) -> None:
        """The token's grants refuse before the policy is asked at all."""
        ann = self.memory.websocket(headers=bearer(token("ann", rooms=["lobby"])))
        with self.assertRaises(ChatError):
            ann.join("vip")
        self.assertEqual(self.rules.asked, [])

    def test_noPolicyNoDeferred(self) -> None:
        """Without a policy a join and a say need no Deferred (synchronous verdicts)."""
        memory = chat(self, auth="optional", jwtSecret=SECRET)
        gate = memory.chat.service.gate
        self.assertIsNone(gate.join(None, "n", "", "lobby"))
        self.assertIsNone(gate.publish(None, "n", "", "lobby", "t"))
        self.assertIsInstance(succeed(None), Deferred)


@implementer(IPolicy)
class SlowConnect:
    """A connect rule that answers when the test says (a hook's round trip)."""

    def __init__(self) -> None:
        self.pending: list[Deferred[Verdict]] = []

    def authorizeConnect(self, principal: Any) -> Any:
        d: Deferred[Verdict] = Deferred()
        self.pending.append(d)
        return d

    def authorizeJoin(self, principal: Any, room: str) -> Any:
        return ALLOW

    def authorizePublish(self, principal: Any, room: str, text: str) -> Any:
        return ALLOW


class AuthInFlightTests(SynchronousTestCase):
    """Commands sent right after auth, before its check completes (--auth required)."""

    def setUp(self) -> None:
        self.rule = SlowConnect()
        self.memory = chat(self, auth="required", jwtSecret=SECRET, policy=self.rule)

    def test_commandsAfterAuthWait(self) -> None:
        """auth then join and say at once (a client that does not wait for authed): the
        connection is not closed; once the check allows, they are carried out in order."""
        client = self.memory.websocket()
        client.send({"type": "auth", "token": token("ann"), "ref": "a"})
        client.send({"type": "join", "room": "lobby", "ref": "j"})
        client.send({"type": "say", "room": "lobby", "text": "first", "ref": "s"})
        self.assertEqual(client.take(), [])
        self.assertTrue(client.open)
        self.rule.pending[0].callback(ALLOW)
        self.assertEqual(
            [type(e).__name__ for e in client.take(Authed, Joined, Ack)],
            ["Authed", "Joined", "Ack"],
        )
        self.assertEqual([(m.text, m.user) for m in client.messages()], [("first", "ann")])

    def test_commandsAfterDeniedAuth(self) -> None:
        """If the check then refuses, the waiting commands are dropped with the connection."""
        client = self.memory.websocket()
        client.send({"type": "auth", "token": token("ann"), "ref": "a"})
        client.send({"type": "join", "room": "lobby", "ref": "j"})
        self.rule.pending[0].callback(Verdict.deny("no"))
        self.assertEqual([e.code for e in client.take(Error)], ["forbidden"])
        self.assertEqual(client.closed[0], 1008)  # type: ignore[index]
        self.assertEqual(self.successResultOf(self.memory.chat.service.hub.rooms()), [])

    def test_waitingBounded(self) -> None:
        """The commands kept while auth is checked are bounded: a flood beyond is refused
        and the connection closed, as before auth."""
        client = self.memory.websocket()
        client.send({"type": "auth", "token": token("ann"), "ref": "a"})
        for n in range(40):
            client.send({"type": "nick", "nick": f"n{n}"})
        self.assertEqual([e.code for e in client.take(Error)][-1:], ["unauthorized"])
        self.assertEqual(client.closed[0], 1008)  # type: ignore[index]

    def test_authTimeoutStillApplies(self) -> None:
        """An auth whose check never completes is still bound by --auth-timeout."""
        client = self.memory.websocket()
        client.send({"type": "auth", "token": token("ann"), "ref": "a"})
        self.memory.advance(5.0)
        self.assertEqual(client.closed[0], 1008)  # type: ignore[index]


@implementer(IPolicy)
class Banned:
    """A connect rule that refuses one user (anonymous connections are welcome)."""

    def authorizeConnect(self, principal: Any) -> Any:
        return Verdict.deny("banned") if principal.user == "mallory" else ALLOW

    def authorizeJoin(self, principal: Any, room: str) -> Any:
        return ALLOW

    def authorizePublish(self, principal: Any, room: str, text: str) -> Any:
        return ALLOW


class LateAuthConnectRuleTests(SynchronousTestCase):
    """--auth optional: an anonymous connection that authenticates later."""

    def test_connectRuleAskedAtFirstAuth(self) -> None:
        """A user the connect rule refuses at the handshake cannot connect anonymously and
        auth afterwards: the rule is asked at that first auth (error forbidden), and the
        connection stays anonymous."""
        memory = chat(self, auth="optional", jwtSecret=SECRET, policy=Banned())
        self.assertEqual(memory.websocket(headers=bearer(token("mallory"))).response.status, 403)
        sneaky = memory.websocket()
        sneaky.join("lobby", nick="anon")
        sneaky.send({"type": "auth", "token": token("mallory"), "ref": "a"})
        self.assertEqual(
            [(e.code, e.reason) for e in sneaky.take(Error)], [("forbidden", "banned")]
        )
        self.assertTrue(sneaky.open)
        sneaky.say("lobby", "still anonymous")
        self.assertEqual([(m.nick, m.user) for m in sneaky.messages()], [("anon", None)])
        fine = memory.websocket()
        fine.send({"type": "auth", "token": token("ann"), "ref": "a"})
        self.assertEqual(fine.take(Authed), [Authed(user="ann", exp=600, ref="a")])

    def test_refreshNotAskedAgain(self) -> None:
        """A refresh of the same user does not ask the connect rule again."""
        rule = Banned()
        asked: list[Any] = []
        original = rule.authorizeConnect
        rule.authorizeConnect = lambda p: asked.append(p) or original(p)  # type: ignore[method-assign]
        memory = chat(self, auth="optional", jwtSecret=SECRET, policy=rule)
        client = memory.websocket(headers=bearer(token("ann")))
        client.send({"type": "auth", "token": token("ann", exp=900), "ref": "r"})
        client.replyTo("r", Authed)
        self.assertEqual([p.user for p in asked], ["ann"])


class ClientsOfUsersTests(SynchronousTestCase):
    """What the web client's SSE fallback and portshare-cli send, with a user's cookie."""

    def test_sseNickIgnoredForAUser(self) -> None:
        """/sse?nick=X with a user's token joins under the token's nick (the client's nick=
        is not an attempt to pass for someone else), and its events carry the user."""
        from portshare.testing import SseClient

        memory = chat(self, auth="required", jwtSecret=SECRET)
        c = memory.connection()
        c.send(
            b"GET /sse?room=lobby&nick=somebody-else HTTP/1.1\r\nHost: x\r\n"
            b"Cookie: portshare_token=" + token("u-9", name="nine").encode() + b"\r\n\r\n"
        )
        stream = SseClient(c)
        self.assertEqual(stream.response.status, 200)
        joined = stream.take(Joined)
        self.assertEqual([j.members for j in joined], [("nine",)])

    def test_publishWithTheCookie(self) -> None:
        """POST .../messages from the application's own page (its cookie, no Bearer)
        publishes as the user; the same from a foreign origin is refused before."""
        memory = chat(self, auth="required", jwtSecret=SECRET)
        cookie = "portshare_token=" + token("u-9", name="nine")
        ok = memory.post(
            "/api/rooms/lobby/messages",
            json={"nick": "whoever", "text": "from the fallback"},
            headers={"Cookie": cookie, "Origin": "http://portshare.test"},
        )
        self.assertEqual(ok.status, 201, ok.body)
        _, (message,) = memory.chat._service.hub.history("lobby", 0, 10).result
        self.assertEqual((message.nick, message.user), ("nine", "u-9"))
        foreign = memory.post(
            "/api/rooms/lobby/messages",
            json={"nick": "x", "text": "csrf"},
            headers={"Cookie": cookie, "Origin": "https://evil.example"},
        )
        self.assertEqual((foreign.status, foreign.json()["error"]), (403, "forbidden"))
        anonymous = memory.post("/api/rooms/lobby/messages", json={"nick": "x", "text": "y"})
        self.assertEqual(anonymous.status, 401)


class NarrowerRefreshTests(SynchronousTestCase):
    def test_refreshWithFewerRooms(self) -> None:
        """A refreshed token that no longer grants a room makes the connection leave it
        (left); a room the server API put the user in stays."""
        from portshare.wire import Left

        memory = chat(self, auth="required", jwtSecret=SECRET, apiToken="t" * 16)
        ann = memory.websocket(headers=bearer(token("u-1", rooms=["a", "b"])))
        ann.join("a")
        ann.join("b")
        put = memory.request(
            "PUT", "/api/rooms/staff/members/u-1", headers={"Authorization": "Bearer " + "t" * 16}
        )
        self.assertEqual(put.json(), {"connections": 1})
        ann.take()
        ann.send({"type": "auth", "token": token("u-1", exp=900, rooms=["a"]), "ref": "r"})
        self.assertEqual([e.room for e in ann.take(Left)], ["b"])
        ann.say("a", "still here")
        ann.say("staff", "still here too")
        with self.assertRaises(ChatError) as refused:
            ann.say("b", "gone")
        self.assertEqual(refused.exception.code, "not_joined")
