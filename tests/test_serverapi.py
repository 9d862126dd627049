"""
Tests for L{portshare.serverapi} (and the user side of C{POST /api/rooms/{room}/messages} in
L{portshare.api}): the API token always, commands on every instance, and hostile paths and
bodies refused, with the whole service in memory (two instances on a L{MemoryBackplane}).
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from portshare.policy import ALLOW, IPolicy, Verdict
from portshare.testing import ChatError, MemoryBackplane, MemoryChat, MemoryConnection
from portshare.testing._kit import parseResponse
from portshare.wire import Close, Joined, Left
from tests.jwts import API_TOKEN, SECRET, bearer, token

API = bearer(API_TOKEN)

#: one request of each server API endpoint: (method, path, body)
ENDPOINTS: list[tuple[str, str, Any]] = [
    ("POST", "/api/users/ann/disconnect", None),
    ("PUT", "/api/rooms/lobby/members/ann", None),
    ("DELETE", "/api/rooms/lobby/members/ann", None),
    ("GET", "/api/rooms/lobby/members", None),
    ("POST", "/api/broadcast", {"rooms": ["lobby"], "text": "hi"}),
]


def chat(testCase: SynchronousTestCase, **options: Any) -> MemoryChat:
    options.setdefault("auth", "optional")
    options.setdefault("jwtSecret", SECRET)
    memory = MemoryChat(**options)
    testCase.addCleanup(memory.stop)
    return memory


class TokenTests(SynchronousTestCase):
    """The server API needs the API token, always."""

    def test_noTokenConfigured(self) -> None:
        """Without --api-token every server API endpoint is 403, whatever is sent, and
        nothing happens (the user stays connected)."""
        memory = chat(self)
        ann = memory.websocket(headers=bearer(token("ann")))
        for method, path, body in ENDPOINTS:
            for headers in ({}, API, bearer(token("ann"))):
                with self.subTest(method=method, path=path, headers=headers):
                    response = memory.request(method, path, json=body, headers=headers)
                    self.assertEqual(response.status, 403)
                    self.assertEqual(response.json()["error"], "forbidden")
        self.assertTrue(ann.open)

    def test_missingAndWrongToken(self) -> None:
        """A missing token is 401 (with WWW-Authenticate), a wrong one 403 (a user's JWT is
        no API token either)."""
        memory = chat(self, apiToken=API_TOKEN)
        ann = memory.websocket(headers=bearer(token("ann")))
        for method, path, body in ENDPOINTS:
            with self.subTest(method=method, path=path):
                missing = memory.request(method, path, json=body)
                self.assertEqual(missing.status, 401)
                self.assertEqual(missing.header("WWW-Authenticate"), 'Bearer realm="portshare"')
                for wrong in (bearer(API_TOKEN + "x"), bearer(token("ann"))):
                    self.assertEqual(
                        memory.request(method, path, json=body, headers=wrong).status, 403
                    )
        self.assertTrue(ann.open)

    def test_tokenBeforePath(self) -> None:
        """A hostile path is refused for its token first: an attacker without the token
        learns nothing from the path's validation (401/403, not 400)."""
        memory = chat(self, apiToken=API_TOKEN)
        for path in ("/api/users/%ff/disconnect", "/api/rooms/lobby/members/" + "x" * 300):
            with self.subTest(path=path):
                self.assertEqual(memory.request("POST", path).status, 401)
                self.assertEqual(memory.request("PUT", path).status, 401)
        self.assertEqual(chat(self).post("/api/users/%ff/disconnect").status, 403)

    def test_foreignOriginRefused(self) -> None:
        """A browser page on another origin cannot use the server API, even with the token
        (it would be a forged request from a logged-in operator's browser)."""
        memory = chat(self, apiToken=API_TOKEN)
        ann = memory.websocket(headers=bearer(token("ann")))
        response = memory.post(
            "/api/users/ann/disconnect", headers={**API, "Origin": "https://evil.example"}
        )
        self.assertEqual(response.status, 403)
        self.assertTrue(ann.open)


class DisconnectTests(SynchronousTestCase):
    """POST /api/users/{user}/disconnect."""

    def test_everyInstance(self) -> None:
        """Every connection of the user, on two instances, is closed with 4000; the answer
        counts them all; other users stay."""
        plane = MemoryBackplane()
        a = chat(self, backplane=plane, apiToken=API_TOKEN)
        b = chat(self, backplane=plane, apiToken=API_TOKEN)
        mine = [
            a.websocket(headers=bearer(token("ann"))),
            a.lines(headers=bearer(token("ann"))),
            b.websocket(headers=bearer(token("ann"))),
        ]
        stream = b.sse(["lobby"], headers=bearer(token("ann")))
        bob = b.websocket(headers=bearer(token("bob")))
        response = a.post("/api/users/ann/disconnect", headers=API)
        self.assertEqual((response.status, response.json()), (200, {"connections": 4}))
        self.assertEqual([c.code for c in stream.take(Close)], [4000])
        for client in mine:
            self.assertEqual(client.closed[0], 4000)  # type: ignore[index]
        self.assertEqual(mine[0].closed, (4000, "disconnected by the server"))
        self.assertTrue(bob.open)
        again = b.post("/api/users/ann/disconnect", headers=API)
        self.assertEqual(again.json(), {"connections": 0})

    def test_stoppedInstanceNotCounted(self) -> None:
        """An instance that stopped answers no command: its closed connections are not
        counted."""
        plane = MemoryBackplane()
        a = chat(self, backplane=plane, apiToken=API_TOKEN)
        b = MemoryChat(backplane=plane, auth="optional", jwtSecret=SECRET, apiToken=API_TOKEN)
        b.websocket(headers=bearer(token("ann")))
        b.stop()
        a.websocket(headers=bearer(token("ann")))
        response = a.post("/api/users/ann/disconnect", headers=API)
        self.assertEqual(response.json(), {"connections": 1})

    def test_reason(self) -> None:
        """The reason given is the close's reason; a reason that is no short printable text
        is refused (400) and nobody is disconnected."""
        memory = chat(self, apiToken=API_TOKEN)
        ann = memory.websocket(headers=bearer(token("ann")))
        for bad in (5, "x" * 124, "é" * 62, "line\nbreak", "\x00", "\x1b[2J"):
            with self.subTest(reason=bad):
                response = memory.post(
                    "/api/users/ann/disconnect", headers=API, json={"reason": bad}
                )
                self.assertEqual(response.status, 400)
        self.assertTrue(ann.open)
        memory.post("/api/users/ann/disconnect", headers=API, json={"reason": "bye ann"})
        self.assertEqual(ann.closed, (4000, "bye ann"))

    def test_longUnicodeReasonStaysUtf8(self) -> None:
        """A reason of many multi-byte characters (allowed) reaches the client as valid
        UTF-8 (a close frame's reason is at most 123 bytes: it is cut between characters)."""
        memory = chat(self, apiToken=API_TOKEN)
        c = memory.connection()
        from portshare.testing._kit import _upgradeRequest
        from portshare.testing._memory import CLOSE, serverFrames

        c.send(_upgradeRequest("/ws", "websocket", None, bearer(token("ann")), websocket=True))
        _, rest = parseResponse(c.read())
        memory.post("/api/users/ann/disconnect", headers=API, json={"reason": "é" * 61})
        (close,) = [p for op, p in serverFrames(rest + c.read()) if op == CLOSE]
        self.assertLessEqual(len(close), 125)
        self.assertEqual(close[2:].decode("utf-8"), "é" * 61)

    def test_refuseFor(self) -> None:
        """refuseFor refuses the user's token afterwards, on every instance, until it passes
        (the clock): 403 at a handshake, forbidden for an auth message; then fine."""
        plane = MemoryBackplane()
        a = chat(self, backplane=plane, apiToken=API_TOKEN, auth="required")
        b = chat(self, backplane=plane, apiToken=API_TOKEN, auth="required")
        a.websocket(headers=bearer(token("ann")))
        response = a.post("/api/users/ann/disconnect", headers=API, json={"refuseFor": 60})
        self.assertEqual(response.json(), {"connections": 1})
        for memory in (a, b):
            refused = memory.websocket(headers=bearer(token("ann")))
            self.assertEqual(refused.response.status, 403)
            self.assertEqual(refused.response.json()["error"], "forbidden")
            late = memory.websocket()
            late.send({"type": "auth", "token": token("ann"), "ref": "r"})
            with self.assertRaises(ChatError) as caught:
                late.replyTo("r", Joined)
            self.assertEqual(caught.exception.code, "forbidden")
            self.assertTrue(memory.websocket(headers=bearer(token("bob"))).open)
            self.assertEqual(
                memory.post(
                    "/api/rooms/lobby/messages", headers=bearer(token("ann")), json={"text": "x"}
                ).status,
                403,
            )
        for memory in (a, b):
            memory.advance(59.9)
        self.assertEqual(a.websocket(headers=bearer(token("ann"))).response.status, 403)
        for memory in (a, b):
            memory.advance(0.1)
        for memory in (a, b):
            self.assertTrue(memory.websocket(headers=bearer(token("ann"))).open)

    def test_badRefuseFor(self) -> None:
        """refuseFor must be a number of seconds within a week."""
        memory = chat(self, apiToken=API_TOKEN)
        for bad in (-1, True, "60", 1e9, float("nan")):
            with self.subTest(refuseFor=bad):
                body = b'{"refuseFor": NaN}' if bad != bad else None
                if body is not None:
                    response = memory.post(
                        "/api/users/ann/disconnect",
                        headers={**API, "Content-Type": "application/json"},
                        body=body,
                    )
                else:
                    response = memory.post(
                        "/api/users/ann/disconnect", headers=API, json={"refuseFor": bad}
                    )
                self.assertEqual(response.status, 400)

    def test_hostileUserIds(self) -> None:
        """Hostile user segments are refused with 400: not UTF-8, overlong, empty, control
        characters."""
        memory = chat(self, apiToken=API_TOKEN)
        for segment in ("%ff", "%c3", "x" * 300, "%00", "%0a", "%20%20"):
            with self.subTest(segment=segment):
                response = memory.post(f"/api/users/{segment}/disconnect", headers=API)
                self.assertEqual(response.status, 400)
                self.assertEqual(response.json()["error"], "bad_request")
        for path in ("/api/users//disconnect", "/api/users/ann/disconnect/more", "/api/users/ann"):
            with self.subTest(path=path):
                self.assertIn(memory.post(path, headers=API).status, (400, 404))

    def test_userIdsDecodedOnce(self) -> None:
        """A user id is its path segment percent-decoded exactly once: a user with a
        non-ASCII id is reached, and one whose id holds a % is not confused with another."""
        memory = chat(self, apiToken=API_TOKEN)
        jose = memory.websocket(headers=bearer(token("josé")))
        literal = memory.websocket(headers=bearer(token("a%41")))
        decoded = memory.websocket(headers=bearer(token("aA")))
        slash = memory.websocket(headers=bearer(token("team/ann")))
        response = memory.post("/api/users/jos%C3%A9/disconnect", headers=API)
        self.assertEqual(response.json(), {"connections": 1})
        self.assertEqual(jose.closed[0], 4000)  # type: ignore[index]
        self.assertEqual(
            memory.post("/api/users/a%2541/disconnect", headers=API).json(), {"connections": 1}
        )
        self.assertEqual(literal.closed[0], 4000)  # type: ignore[index]
        self.assertTrue(decoded.open)
        self.assertEqual(
            memory.post("/api/users/team%2Fann/disconnect", headers=API).json(), {"connections": 1}
        )
        self.assertEqual(slash.closed[0], 4000)  # type: ignore[index]


class MembersTests(SynchronousTestCase):
    """PUT, DELETE and GET /api/rooms/{room}/members."""

    def test_putJoinsDeleteLeaves(self) -> None:
        """PUT joins the user's open connections on every instance (they get joined); DELETE
        makes them leave (they get left); others are untouched."""
        plane = MemoryBackplane()
        a = chat(self, backplane=plane, apiToken=API_TOKEN)
        b = chat(self, backplane=plane, apiToken=API_TOKEN)
        ann1 = a.websocket(headers=bearer(token("ann")))
        ann2 = b.lines(headers=bearer(token("ann")))
        bob = b.websocket(headers=bearer(token("bob")))
        response = a.request("PUT", "/api/rooms/news/members/ann", headers=API)
        self.assertEqual((response.status, response.json()), (200, {"connections": 2}))
        for client in (ann1, ann2):
            (joined,) = client.take(Joined)
            self.assertEqual((joined.room, joined.ref), ("news", None))
        self.assertEqual(bob.take(Joined), [])
        b.chat.publish("news", "extra", nick="ops")
        self.assertEqual([m.text for m in ann1.messages()], ["extra"])
        self.assertEqual([m.text for m in ann2.messages()], ["extra"])
        response = b.request("DELETE", "/api/rooms/news/members/ann", headers=API)
        self.assertEqual((response.status, response.json()), (200, {"connections": 2}))
        for client in (ann1, ann2):
            self.assertEqual(client.take(Left), [Left(room="news")])
        with self.assertRaises(ChatError) as refused:
            ann1.say("news", "still here?")
        self.assertEqual(refused.exception.code, "not_joined")

    def test_putRespectsJoinSecret(self) -> None:
        """With --join-secret the server API's join needs no join token (the application
        asks it): the user's connections are in the room, not refused."""
        memory = chat(self, apiToken=API_TOKEN, joinSecret=b"j" * 32)
        ann = memory.websocket(headers=bearer(token("ann")))
        response = memory.request("PUT", "/api/rooms/news/members/ann", headers=API)
        self.assertEqual(response.json(), {"connections": 1})
        self.assertEqual([j.room for j in ann.take(Joined)], ["news"])
        self.assertEqual(ann.say("news", "in").offset, 1)

    def test_putRespectsRoomLimit(self) -> None:
        """The server API's join keeps to the rooms-per-connection limit: a full connection
        gets error too_large instead."""
        from portshare import Limits

        memory = chat(self, apiToken=API_TOKEN, limits=Limits(roomsPerConnection=1))
        ann = memory.websocket(headers=bearer(token("ann")))
        ann.join("one")
        memory.request("PUT", "/api/rooms/two/members/ann", headers=API)
        self.assertEqual([e.code for e in ann.take() if type(e).__name__ == "Error"], ["too_large"])
        self.assertEqual(memory.get("/api/rooms/two/members", headers=API).json()["members"], [])

    def test_getMergesInstances(self) -> None:
        """GET lists users, nicks and connection counts, merged over the instances."""
        plane = MemoryBackplane()
        a = chat(self, backplane=plane, apiToken=API_TOKEN)
        b = chat(self, backplane=plane, apiToken=API_TOKEN)
        for memory in (a, b, b):
            memory.websocket(headers=bearer(token("ann", name="Ann"))).join("lobby")
        a.websocket().join("lobby", nick="guest")
        b.websocket(headers=bearer(token("bob"))).join("elsewhere")
        response = b.get("/api/rooms/lobby/members", headers=API)
        self.assertEqual(response.status, 200)
        self.assertEqual(
            response.json(),
            {
                "room": "lobby",
                "members": [
                    {"user": "ann", "nick": "Ann", "connections": 3},
                    {"user": None, "nick": "guest", "connections": 1},
                ],
            },
        )
        self.assertEqual(a.get("/api/rooms/empty/members", headers=API).json()["members"], [])

    def test_hostileRoomsAndUsers(self) -> None:
        """Invalid rooms and users in the members paths are 400."""
        memory = chat(self, apiToken=API_TOKEN)
        for method, path in (
            ("GET", "/api/rooms/%ff/members"),
            ("GET", "/api/rooms/" + "r" * 300 + "/members"),
            ("PUT", "/api/rooms/lobby/members/%ff"),
            ("DELETE", "/api/rooms/lobby/members/" + "u" * 300),
        ):
            with self.subTest(method=method, path=path):
                self.assertEqual(memory.request(method, path, headers=API).status, 400)


class BroadcastTests(SynchronousTestCase):
    """POST /api/broadcast."""

    def test_offsetsPerRoom(self) -> None:
        """One broadcast to several rooms publishes in each, and answers each room's offset;
        members of each room get it."""
        memory = chat(self, apiToken=API_TOKEN)
        ann = memory.websocket()
        ann.join("a", nick="ann")
        ann.say("a", "first")
        response = memory.post(
            "/api/broadcast",
            headers=API,
            json={"rooms": ["a", "b", "a"], "text": "all", "nick": "ops"},
        )
        self.assertEqual((response.status, response.json()), (200, {"offsets": {"a": 2, "b": 1}}))
        self.assertEqual([(m.nick, m.text) for m in ann.messages()][-1], ("ops", "all"))

    def test_onBehalfOfUser(self) -> None:
        """A broadcast on behalf of a user carries that user on its messages."""
        memory = chat(self, apiToken=API_TOKEN)
        ann = memory.websocket()
        ann.join("a", nick="ann")
        memory.post("/api/broadcast", headers=API, json={"rooms": ["a"], "text": "x", "user": "u1"})
        self.assertEqual([m.user for m in ann.messages()], ["u1"])

    def test_refusedBodies(self) -> None:
        """Too many rooms, no rooms, invalid rooms, a bad text, nick or user: 400, and
        nothing is published anywhere."""
        memory = chat(self, apiToken=API_TOKEN)
        ann = memory.websocket()
        ann.join("a", nick="ann")
        for body in (
            {"rooms": [f"r{n}" for n in range(101)], "text": "x"},
            {"rooms": [], "text": "x"},
            {"rooms": "a", "text": "x"},
            {"rooms": ["a", "bad room\n"], "text": "x"},
            {"rooms": ["a", 5], "text": "x"},
            {"rooms": ["a"], "text": ""},
            {"rooms": ["a"], "text": 5},
            {"rooms": ["a"], "text": "x", "nick": ""},
            {"rooms": ["a"], "text": "x", "user": ""},
            {"rooms": ["a"], "text": "x", "user": 7},
        ):
            with self.subTest(body=body):
                self.assertEqual(memory.post("/api/broadcast", headers=API, json=body).status, 400)
        self.assertEqual(ann.messages(), [])


@implementer(IPolicy)
class NoSwearing:
    def authorizeConnect(self, principal: Any) -> Any:
        return ALLOW

    def authorizeJoin(self, principal: Any, room: str) -> Any:
        return ALLOW

    def authorizePublish(self, principal: Any, room: str, text: str) -> Any:
        if "darn" in text:
            return Verdict.deny("mind your language")
        return Verdict.allow(text.upper())


class PublishAsUserTests(SynchronousTestCase):
    """POST /api/rooms/{room}/messages with a user's JWT, or on behalf of one."""

    def test_userToken(self) -> None:
        """A user's JWT publishes as that user (its nick and user id), without the API
        token."""
        memory = chat(self)
        ann = memory.websocket()
        ann.join("lobby", nick="watcher")
        response = memory.post(
            "/api/rooms/lobby/messages",
            headers=bearer(token("ann", name="Ann")),
            json={"text": "hi"},
        )
        self.assertEqual((response.status, response.json()), (201, {"offset": 1}))
        self.assertEqual([(m.nick, m.user) for m in ann.messages()], [("Ann", "ann")])

    def test_nickIgnored(self) -> None:
        """A user's request cannot name another nick (it is the token's)."""
        memory = chat(self)
        ann = memory.websocket()
        ann.join("lobby", nick="watcher")
        memory.post(
            "/api/rooms/lobby/messages",
            headers=bearer(token("ann")),
            json={"text": "hi", "nick": "admin", "user": "root"},
        )
        self.assertEqual([(m.nick, m.user) for m in ann.messages()], [("ann", "ann")])

    def test_grants(self) -> None:
        """The token's publish grants apply: outside them 403, nothing published."""
        memory = chat(self)
        response = memory.post(
            "/api/rooms/lobby/messages",
            headers=bearer(token("ann", publish=["team-*"])),
            json={"text": "hi"},
        )
        self.assertEqual(response.status, 403)
        ok = memory.post(
            "/api/rooms/team-a/messages",
            headers=bearer(token("ann", publish=["team-*"])),
            json={"text": "hi"},
        )
        self.assertEqual(ok.status, 201)

    def test_policy(self) -> None:
        """The application's rules apply to a user's HTTP publish: a denial is 403 with the
        reason, a rewrite is what is published."""
        memory = chat(self, policy=NoSwearing())
        ann = memory.websocket()
        ann.join("lobby", nick="watcher")
        denied = memory.post(
            "/api/rooms/lobby/messages", headers=bearer(token("ann")), json={"text": "darn"}
        )
        self.assertEqual(denied.status, 403)
        self.assertEqual(denied.json()["reason"], "mind your language")
        memory.post("/api/rooms/lobby/messages", headers=bearer(token("ann")), json={"text": "ok"})
        self.assertEqual([m.text for m in ann.messages()], ["OK"])

    def test_badUserTokens(self) -> None:
        """A bad JWT (expired, forged) on a publish is 401 with WWW-Authenticate."""
        memory = chat(self)
        for bad in (token(exp=-5), token(secret=b"x" * 40), "junk.junk.junk"):
            with self.subTest(token=bad[:20]):
                response = memory.post(
                    "/api/rooms/lobby/messages", headers=bearer(bad), json={"text": "x"}
                )
                self.assertEqual(response.status, 401)
                self.assertEqual(response.header("WWW-Authenticate"), 'Bearer realm="portshare"')

    def test_onBehalfNeedsApiToken(self) -> None:
        """Publishing on behalf of a user ("user" in the body) needs the API token: refused
        without one configured, or without it on the request; allowed with it."""
        memory = chat(self)
        response = memory.post(
            "/api/rooms/lobby/messages", json={"text": "x", "nick": "n", "user": "ann"}
        )
        self.assertEqual(response.status, 403)
        withToken = chat(self, apiToken=API_TOKEN)
        ann = withToken.websocket()
        ann.join("lobby", nick="watcher")
        self.assertEqual(
            withToken.post(
                "/api/rooms/lobby/messages", json={"text": "x", "nick": "n", "user": "ann"}
            ).status,
            401,
        )
        ok = withToken.post(
            "/api/rooms/lobby/messages", headers=API, json={"text": "x", "nick": "n", "user": "ann"}
        )
        self.assertEqual(ok.status, 201)
        self.assertEqual([(m.nick, m.user) for m in ann.messages()], [("n", "ann")])

    def test_requiredAnonymousRefused(self) -> None:
        """With --auth required and no API token, an anonymous publish is 401."""
        memory = chat(self, auth="required")
        response = memory.post("/api/rooms/lobby/messages", json={"text": "x", "nick": "n"})
        self.assertEqual(response.status, 401)


class AdminPortTests(SynchronousTestCase):
    """--admin-port: the server API there, and off the public tree."""

    def adminRequest(self, memory: MemoryChat, method: str, path: str, **kw: Any) -> Any:
        from portshare.testing._kit import _request

        c = MemoryConnection(memory.chat.service.adminTracker)
        c.send(_request(method, path, kw.get("body", b""), kw.get("headers", {})))
        response, _ = parseResponse(c.read())
        return response

    def test_serverApiMoves(self) -> None:
        """With --admin-port the server API answers there and is 404 on the public port."""
        memory = chat(self, apiToken=API_TOKEN, adminPorts=("tcp:0",))
        ann = memory.websocket(headers=bearer(token("ann")))
        for method, path, body in ENDPOINTS:
            with self.subTest(method=method, path=path):
                self.assertEqual(memory.request(method, path, json=body, headers=API).status, 404)
        self.assertTrue(ann.open)
        response = self.adminRequest(memory, "POST", "/api/users/ann/disconnect", headers=API)
        self.assertEqual((response.status, response.json()), (200, {"connections": 1}))
        self.assertEqual(ann.closed[0], 4000)  # type: ignore[index]
        # the chat's own API stays public
        self.assertEqual(memory.get("/api/rooms").status, 200)
        # and still needs the token on the admin port
        self.assertEqual(self.adminRequest(memory, "GET", "/api/rooms/lobby/members").status, 401)

    def test_adminPathsPublic(self) -> None:
        """With --admin-paths-public the server API is on both."""
        memory = chat(self, apiToken=API_TOKEN, adminPorts=("tcp:0",), adminPathsPublic=True)
        memory.websocket(headers=bearer(token("ann")))
        self.assertEqual(memory.get("/api/rooms/lobby/members", headers=API).status, 200)
        response = self.adminRequest(memory, "GET", "/api/rooms/lobby/members", headers=API)
        self.assertEqual(response.status, 200)


class ReadsUnderAuthRequiredTests(SynchronousTestCase):
    """With --auth required the chat's history and room list are not open to anyone."""

    def setUp(self) -> None:
        self.memory = chat(self, auth="required", apiToken=API_TOKEN)
        ann = self.memory.websocket(headers=bearer(token("ann")))
        ann.join("secret")
        ann.say("secret", "members only")

    def test_anonymousRefused(self) -> None:
        """Without a token, history and the room list are 401 (WWW-Authenticate); a bad
        token 401 too."""
        for path in ("/api/rooms/secret/messages", "/api/rooms"):
            for headers in ({}, bearer("junk"), bearer(token("ann", exp=-1))):
                with self.subTest(path=path, headers=headers):
                    response = self.memory.get(path, headers=headers)
                    self.assertEqual(response.status, 401)
                    self.assertEqual(
                        response.header("WWW-Authenticate"), 'Bearer realm="portshare"'
                    )
                    self.assertNotIn(b"members only", response.body)

    def test_userReadsGrantedRooms(self) -> None:
        """A user's token reads the history of the rooms it may join, not of others."""
        mine = self.memory.get("/api/rooms/secret/messages", headers=bearer(token("bob")))
        self.assertEqual(mine.status, 200)
        self.assertEqual([m["text"] for m in mine.json()["messages"]], ["members only"])
        narrow = bearer(token("bob", rooms=["lobby"]))
        refused = self.memory.get("/api/rooms/secret/messages", headers=narrow)
        self.assertEqual(refused.status, 403)
        self.assertNotIn(b"members only", refused.body)
        self.assertEqual(self.memory.get("/api/rooms", headers=narrow).status, 200)
        cookie = self.memory.get(
            "/api/rooms/secret/messages", cookies={"portshare_token": token("bob")}
        )
        self.assertEqual(cookie.status, 200)

    def test_apiTokenReads(self) -> None:
        """The API token reads everything."""
        response = self.memory.get("/api/rooms/secret/messages", headers=API)
        self.assertEqual(response.status, 200)
        self.assertEqual(self.memory.get("/api/rooms", headers=API).status, 200)

    def test_optionalStaysOpen(self) -> None:
        """With --auth optional reads stay open, as in version 1."""
        memory = chat(self, auth="optional")
        self.assertEqual(memory.get("/api/rooms/lobby/messages").status, 200)
        self.assertEqual(memory.get("/api/rooms").status, 200)
