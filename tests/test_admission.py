"""
Tests for L{portshare.admission}: tokens at the WebSocket, line-protocol and SSE handshakes,
from the attacker's side (every hostile token gets a JSON 401 before any chat happens), with
the whole service in memory (L{portshare.testing.MemoryChat}).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from portshare.policy import ALLOW, IPolicy, Verdict
from portshare.testing import ChatError, MemoryChat
from portshare.wire import Authed, Error, Joined, Message
from tests.jwts import BAD_TOKENS, SECRET, bearer, token


def chat(testCase: SynchronousTestCase, **options: Any) -> MemoryChat:
    memory = MemoryChat(**options)
    testCase.addCleanup(memory.stop)
    return memory


def opener(memory: MemoryChat, kind: str) -> Callable[..., Any]:
    """Open a chat client of C{kind} (websocket, lines) with the given headers/cookies."""
    return {"websocket": memory.websocket, "lines": memory.lines}[kind]


class HandshakeTokenTests(SynchronousTestCase):
    """A token at the handshake: the connection is its user, or the handshake is refused."""

    def test_goodTokenEveryFrontEnd(self) -> None:
        """A good token, as a Bearer header or as the token cookie, makes each of WebSocket,
        lines and SSE its user: its nick is the token's, its messages carry the user."""
        memory = chat(self, auth="required", jwtSecret=SECRET)
        for how in ("bearer", "cookie"):
            for kind in ("websocket", "lines"):
                with self.subTest(how=how, kind=kind):
                    user = f"{kind}-{how}"
                    given = token(user, name=f"nick-{user}"[:32])
                    kwargs: dict[str, Any] = (
                        {"headers": bearer(given)}
                        if how == "bearer"
                        else {"cookies": {"portshare_token": given}}
                    )
                    client = opener(memory, kind)(**kwargs)
                    self.assertEqual(client.response.status, 101)
                    joined = client.join(f"room-{kind}-{how}")
                    self.assertEqual(joined.members, (f"nick-{user}"[:32],))
                    client.say(f"room-{kind}-{how}", "hello")
                    (said,) = client.take(Message)
                    self.assertEqual((said.user, said.nick), (user, f"nick-{user}"[:32]))
            with self.subTest(how=how, kind="sse"):
                given = token("sse-" + how)
                kwargs = (
                    {"headers": bearer(given)}
                    if how == "bearer"
                    else {"cookies": {"portshare_token": given}}
                )
                stream = memory.sse(["sse-room-" + how], **kwargs)
                self.assertEqual(stream.response.status, 200)
                memory.chat.publish("sse-room-" + how, "to the stream", nick="ops")
                texts = [m.text for m in stream.take(Message)]
                self.assertEqual(texts, ["to the stream"])

    def test_badTokensRefused(self) -> None:
        """Each hostile token (expired, another key, alg none, tampered, oversized, not a
        JWT) is refused at each handshake with a JSON 401 and a WWW-Authenticate header,
        whether it comes as a Bearer header or as the cookie, with auth optional or
        required."""
        for mode in ("optional", "required"):
            memory = chat(self, auth=mode, jwtSecret=SECRET)
            for name, make in BAD_TOKENS.items():
                for how in ("bearer", "cookie"):
                    bad = make()
                    kwargs: dict[str, Any] = (
                        {"headers": bearer(bad)}
                        if how == "bearer"
                        else {"cookies": {"portshare_token": bad}}
                    )
                    for kind in ("websocket", "lines", "sse"):
                        with self.subTest(mode=mode, token=name, how=how, kind=kind):
                            if kind == "sse":
                                response = memory.sse(["lobby"], **kwargs).response
                            else:
                                response = opener(memory, kind)(**kwargs).response
                            self.assertEqual(response.status, 401)
                            self.assertEqual(response.json()["error"], "unauthorized")
                            self.assertIsInstance(response.json()["reason"], str)
                            self.assertEqual(
                                response.header("WWW-Authenticate"), 'Bearer realm="portshare"'
                            )
                            self.assertIn("application/json", response.header("Content-Type"))
            self.assertEqual(memory.chat.service.hub.sessions, set())

    def test_wrongCookieNameIgnored(self) -> None:
        """Only the configured cookie carries a token (--token-cookie): a good token in
        another cookie is none (with auth optional: anonymous)."""
        memory = chat(self, auth="optional", jwtSecret=SECRET, tokenCookie="app_jwt")
        other = memory.websocket(cookies={"portshare_token": token("ann")})
        self.assertEqual(other.response.status, 101)
        self.assertTrue(other.join("lobby").members[0].startswith("guest-"))
        mine = memory.websocket(cookies={"app_jwt": token("bob")})
        self.assertIn("bob", mine.join("lobby").members)
        mine.say("lobby", "hi")
        self.assertEqual([m.user for m in other.messages()], ["bob"])

    def test_bearerBeatsCookie(self) -> None:
        """With both, the Authorization header is the token (the cookie is not consulted):
        a bad bearer token is refused even with a good cookie."""
        memory = chat(self, auth="optional", jwtSecret=SECRET)
        client = memory.websocket(headers=bearer("junk"), cookies={"portshare_token": token("ann")})
        self.assertEqual(client.response.status, 401)

    def test_cookieFromForeignOrigin(self) -> None:
        """A token cookie is the browser's, sent by any page: from a page on another origin
        it is refused (403) on every handshake a browser can open (WebSocket and SSE, whose
        EventSource sends cookies cross-site), so that a foreign page cannot act as the user
        (join rooms in its name, appear in their presence); a Bearer token, which a foreign
        page cannot know, and the page's own origin are accepted."""
        memory = chat(self, auth="optional", jwtSecret=SECRET)
        cookie = {"portshare_token": token("ann")}
        evil = {"Origin": "https://evil.example"}
        ws = memory.websocket(origin="https://evil.example", cookies=cookie)
        self.assertEqual(ws.response.status, 403)
        stream = memory.sse(["lobby"], headers=evil, cookies=cookie)
        self.assertEqual(stream.response.status, 403)
        self.assertEqual(stream.response.json()["error"], "forbidden")
        crossSite = memory.sse(["lobby"], headers={"Sec-Fetch-Site": "cross-site"}, cookies=cookie)
        self.assertEqual(crossSite.response.status, 403)
        self.assertEqual(memory.chat.service.hub.sessions, set())
        own = {"Origin": "http://portshare.test"}
        self.assertEqual(memory.sse(["lobby"], headers=own, cookies=cookie).response.status, 200)
        self.assertEqual(memory.sse(["lobby"], cookies=cookie).response.status, 200)
        byBearer = memory.sse(["lobby"], headers={**evil, **bearer(token("ann"))})
        self.assertEqual(byBearer.response.status, 200)

    def test_cookieFromAllowedOrigin(self) -> None:
        """An origin allowed by --allowed-origin may present the cookie."""
        memory = chat(
            self, auth="optional", jwtSecret=SECRET, allowedOrigins=("https://app.example",)
        )
        stream = memory.sse(
            ["lobby"],
            headers={"Origin": "https://app.example"},
            cookies={"portshare_token": token("ann")},
        )
        self.assertEqual(stream.response.status, 200)

    def test_nonAsciiCookieRefused(self) -> None:
        """A token cookie that is not ASCII is refused as a token (401), not a crash."""
        memory = chat(self, auth="optional", jwtSecret=SECRET)
        c = memory.connection()
        c.send(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: portshare-lines\r\nConnection: Upgrade\r\n"
            b"Cookie: portshare_token=\xc3\xa9\xff\r\n\r\n"
        )
        self.assertIn(b" 401 ", c.read().split(b"\r\n")[0] + b" ")


class AuthModeTests(SynchronousTestCase):
    """What --auth off, optional and required make of a handshake without a token."""

    def test_offIgnoresTokens(self) -> None:
        """--auth off reads no token: a garbage one is no refusal and a good one no user."""
        memory = chat(self)
        for headers in (bearer("junk"), bearer(token("ann"))):
            client = memory.websocket(headers=headers)
            self.assertEqual(client.response.status, 101)
            client.join("lobby")
            client.say("lobby", "hi")
            (said,) = client.take(Message)
            self.assertIsNone(said.user)
            self.assertTrue(said.nick.startswith("guest-"))
        self.assertEqual(memory.sse(["lobby"], headers=bearer("junk")).response.status, 200)

    def test_optionalAnonymous(self) -> None:
        """--auth optional without a token: anonymous chat, as in version 1, on every front
        end; a user beside it carries its user id."""
        memory = chat(self, auth="optional", jwtSecret=SECRET)
        anon, lines = memory.websocket(), memory.lines()
        anon.join("lobby", nick="guest")
        lines.join("lobby", nick="liner")
        user = memory.websocket(headers=bearer(token("ann")))
        user.join("lobby")
        anon.say("lobby", "anon here")
        user.say("lobby", "ann here")
        self.assertEqual(
            [(m.nick, m.user) for m in lines.messages()],
            [("guest", None), ("ann", "ann")],
        )
        stream = memory.sse(["lobby"])
        self.assertEqual(stream.response.status, 200)

    def test_requiredWithoutTokenAuthFirst(self) -> None:
        """--auth required without a token: the WebSocket and lines handshakes succeed, and
        an auth message first makes the connection its user."""
        memory = chat(self, auth="required", jwtSecret=SECRET)
        for kind in ("websocket", "lines"):
            with self.subTest(kind=kind):
                client = opener(memory, kind)()
                self.assertEqual(client.response.status, 101)
                client.send({"type": "auth", "token": token("ann", exp=700), "ref": 1})
                (authed,) = client.take()
                self.assertEqual(authed, Authed(user="ann", exp=700, ref=1))
                self.assertEqual(client.join("lobby-" + kind).members, ("ann",))

    def test_requiredAnythingElseFirst(self) -> None:
        """--auth required: anything but auth first (a join, a say, a nick, junk, a binary
        frame) is answered error unauthorized, and the connection is closed (1008)."""
        memory = chat(self, auth="required", jwtSecret=SECRET)
        firsts: list[Any] = [
            {"type": "join", "room": "lobby", "ref": 9},
            {"type": "say", "room": "lobby", "text": "hi", "ref": 9},
            {"type": "nick", "nick": "admin"},
            "{not json",
        ]
        for kind in ("websocket", "lines"):
            for first in firsts:
                with self.subTest(kind=kind, first=first):
                    client = opener(memory, kind)()
                    client.send(first)
                    errors = client.take(Error)
                    self.assertEqual([e.code for e in errors], ["unauthorized"])
                    if isinstance(first, dict) and "ref" in first:
                        self.assertEqual(errors[0].ref, 9)
                    if kind == "websocket":
                        self.assertEqual(client.closed, (1008, "unauthorized"))
                    else:
                        self.assertEqual(client.closed[0], 1008)  # type: ignore[index]
                    # nothing more is read: a second frame is not answered
                    client.send({"type": "auth", "token": token(), "ref": 2})
                    self.assertEqual([e for e in client.take() if getattr(e, "ref", 0) == 2], [])
        self.assertEqual(memory.chat.service.hub.sessions, set())

    def test_requiredSilenceTimesOut(self) -> None:
        """--auth required: a connection silent past --auth-timeout gets error unauthorized
        and is closed, exactly at the timeout (the clock's)."""
        memory = chat(self, auth="required", jwtSecret=SECRET, authTimeout=3.0)
        ws, lines = memory.websocket(), memory.lines()
        memory.advance(2.999)
        self.assertTrue(ws.open)
        self.assertIsNone(lines.closed)
        memory.advance(0.001)
        for client in (ws, lines):
            self.assertEqual([e.code for e in client.take(Error)], ["unauthorized"])
            self.assertEqual(client.closed[0], 1008)  # type: ignore[index]

    def test_requiredAuthInTimeStaysOpen(self) -> None:
        """An auth message within the timeout cancels it: the connection stays open past."""
        memory = chat(self, auth="required", jwtSecret=SECRET, authTimeout=3.0)
        client = memory.websocket()
        memory.advance(2.0)
        client.send({"type": "auth", "token": token("ann"), "ref": 1})
        memory.advance(10.0)
        self.assertTrue(client.open)
        self.assertEqual(client.join("lobby").members, ("ann",))

    def test_requiredBadAuthCloses(self) -> None:
        """--auth required: a first auth message with a bad token is error unauthorized, and
        the connection closes (it had no second chance to be anyone)."""
        memory = chat(self, auth="required", jwtSecret=SECRET)
        for name, make in BAD_TOKENS.items():
            with self.subTest(token=name):
                client = memory.websocket()
                client.send({"type": "auth", "token": make(), "ref": 1})
                with self.assertRaises(ChatError) as refused:
                    client.replyTo(1, Joined)
                self.assertEqual(refused.exception.code, "unauthorized")
                self.assertEqual(client.closed[0], 1008)  # type: ignore[index]

    def test_requiredSseWithoutToken(self) -> None:
        """--auth required: an SSE stream (which cannot send auth) without a token is 401."""
        memory = chat(self, auth="required", jwtSecret=SECRET)
        response = memory.sse(["lobby"]).response
        self.assertEqual(response.status, 401)
        self.assertEqual(response.json()["error"], "unauthorized")
        self.assertEqual(response.header("WWW-Authenticate"), 'Bearer realm="portshare"')


@implementer(IPolicy)
class ConnectRule:
    """A policy whose connect answer the test gives (a verdict, or a Deferred of one)."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.asked: list[Any] = []

    def authorizeConnect(self, principal: Any) -> Any:
        self.asked.append(principal)
        return self.answer

    def authorizeJoin(self, principal: Any, room: str) -> Any:
        return ALLOW

    def authorizePublish(self, principal: Any, room: str, text: str) -> Any:
        return ALLOW


class ConnectRuleTests(SynchronousTestCase):
    """The application's connect rule at the handshake."""

    def test_denied(self) -> None:
        """A denied connect is a JSON 403 with the policy's reason, on every front end."""
        memory = chat(
            self, auth="optional", jwtSecret=SECRET, policy=ConnectRule(Verdict.deny("banned"))
        )
        for open_ in (
            lambda: memory.websocket(headers=bearer(token())),
            lambda: memory.lines(),
            lambda: memory.sse(["lobby"], headers=bearer(token())),
        ):
            response = open_().response
            self.assertEqual(response.status, 403)
            self.assertEqual(response.json(), {"error": "forbidden", "reason": "banned"})

    def test_askedWithUserAndAddress(self) -> None:
        """The rule is asked with the token's user and the client's address."""
        rule = ConnectRule(ALLOW)
        memory = chat(self, auth="optional", jwtSecret=SECRET, policy=rule)
        memory.websocket(headers=bearer(token("ann")), peer="10.1.2.3")
        (principal,) = rule.asked
        self.assertEqual((principal.user, principal.address), ("ann", "10.1.2.3"))

    def test_authOffStillAsksConnect(self) -> None:
        """With --auth off the application's connect rule is still asked at each handshake
        (as its join and publish rules are), anonymously: a denial is a 403, and a token
        sent is not read."""
        rule = ConnectRule(Verdict.deny("closed today"))
        memory = chat(self, policy=rule)
        for response in (
            memory.websocket(headers=bearer(token("ann"))).response,
            memory.lines().response,
            memory.sse(["lobby"]).response,
        ):
            self.assertEqual(response.status, 403)
            self.assertEqual(response.json()["reason"], "closed today")
        self.assertEqual([p.user for p in rule.asked], [None, None, None])
        rule.answer = ALLOW
        self.assertEqual(memory.websocket(headers=bearer("junk")).response.status, 101)

    def test_laterAnswerHoldsHandshake(self) -> None:
        """A connect rule that answers later holds the handshake until then, and its
        allowing answer completes the upgrade."""
        later: Deferred[Verdict] = Deferred()
        memory = chat(self, auth="optional", jwtSecret=SECRET, policy=ConnectRule(later))
        c = memory.connection()
        c.send(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: portshare-lines\r\nConnection: Upgrade\r\n"
            b"\r\n"
        )
        self.assertEqual(c.read(), b"")
        later.callback(ALLOW)
        self.assertIn(b"101", c.read().split(b"\r\n")[0])

    def test_laterAnswerKeepsIdentity(self) -> None:
        """A handshake held for a connect rule that answers later is its token's user once
        allowed (not anonymous)."""
        later: Deferred[Verdict] = Deferred()
        memory = chat(self, auth="optional", jwtSecret=SECRET, policy=ConnectRule(later))
        c = memory.connection()
        c.send(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: portshare-lines\r\nConnection: Upgrade\r\n"
            b"Authorization: Bearer " + token("ann").encode() + b"\r\n\r\n"
        )
        later.callback(ALLOW)
        c.read()
        c.send(b'{"type": "join", "room": "lobby", "ref": 1}\n')
        self.assertIn(b'"members":["ann"]', c.read())

    def test_laterDenialRefuses(self) -> None:
        """A connect rule that denies later (a hook's answer) refuses the held handshake
        with 403, on every front end: the connection is never switched, anonymous or not."""
        for kind in ("lines", "websocket", "sse"):
            with self.subTest(kind=kind):
                later: Deferred[Verdict] = Deferred()
                memory = chat(self, auth="optional", jwtSecret=SECRET, policy=ConnectRule(later))
                c = memory.connection()
                upgrade = b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\n"
                head = {
                    "lines": upgrade + b"Upgrade: portshare-lines\r\n",
                    "websocket": upgrade + b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
                    "sse": b"GET /sse?room=lobby HTTP/1.1\r\n",
                }[kind]
                c.send(head + b"Host: x\r\n\r\n")
                self.assertEqual(c.read(), b"")
                later.callback(Verdict.deny("not now"))
                response = c.read()
                self.assertIn(b" 403 ", response.split(b"\r\n")[0] + b" ")
                self.assertIn(b'"reason":"not now"', response)
                self.assertEqual(memory.chat.service.hub.sessions, set())

    def test_laterFailureRefuses(self) -> None:
        """A connect rule that fails later (a hook down) refuses the held handshake (503),
        never lets it in."""
        later: Deferred[Verdict] = Deferred()
        memory = chat(self, auth="optional", jwtSecret=SECRET, policy=ConnectRule(later))
        c = memory.connection()
        c.send(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: portshare-lines\r\n"
            b"Connection: Upgrade\r\n\r\n"
        )
        later.errback(RuntimeError("backend down"))
        response = c.read()
        self.assertIn(b" 503 ", response.split(b"\r\n")[0] + b" ")
        self.assertEqual(memory.chat.service.hub.sessions, set())
        self.flushLoggedErrors(RuntimeError)

    def test_requiredAuthDenied(self) -> None:
        """With --auth required, the connect rule is asked at the first auth message: a
        denial is error forbidden, and the connection closes."""
        memory = chat(
            self, auth="required", jwtSecret=SECRET, policy=ConnectRule(Verdict.deny("no"))
        )
        client = memory.websocket()
        self.assertEqual(client.response.status, 101)
        client.send({"type": "auth", "token": token(), "ref": 1})
        self.assertEqual([(e.code, e.reason) for e in client.take(Error)], [("forbidden", "no")])
        self.assertEqual(client.closed[0], 1008)  # type: ignore[index]
