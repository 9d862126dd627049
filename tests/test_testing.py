"""
Tests for L{portshare.testing}'s kit for applications: L{MemoryChat} and its clients, the
HTTP requests against the same tree, L{MemoryBackplane}; in memory, under trial's
C{SynchronousTestCase} (and so under pytest too).
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.static import Data

from portshare import Limits, Message, Presence, PresenceBatch, ResourceApp, WsgiApp
from portshare.testing import (
    ChatError,
    MemoryBackplane,
    MemoryChat,
    NoReply,
    SynchronousThreads,
    parseResponse,
)
from portshare.wire import Ack, Joined


def wsgiApp(environ: dict[str, Any], start: Any) -> list[bytes]:
    """A WSGI application with a page that sets a cookie and one that reads it."""
    if environ["PATH_INFO"] == "/login":
        start("303 See Other", [("Location", "/me"), ("Set-Cookie", "user=ann; Path=/")])
        return [b""]
    start("200 OK", [("Content-Type", "text/plain")])
    return [b"cookie: " + environ.get("HTTP_COOKIE", "").encode()]


class ChatClientTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.memory = MemoryChat()
        self.addCleanup(self.memory.stop)

    def test_joinSayOverEachTransport(self) -> None:
        """A WebSocket client and a line-protocol client in one room: replies and events
        are typed; what one says the other reads, and an SSE stream too."""
        ann = self.memory.websocket()
        bob = self.memory.lines()
        self.assertEqual((ann.response.status, bob.response.status), (101, 101))
        joined = ann.join("lobby", nick="ann")
        self.assertIsInstance(joined, Joined)
        self.assertEqual(joined.members, ("ann",))
        stream = self.memory.sse(["lobby"])
        self.assertEqual(stream.response.status, 200)
        bob.join("lobby", nick="bob")
        ack = bob.say("lobby", "hi ann")
        self.assertIsInstance(ack, Ack)
        self.assertEqual(ack.offset, 1)
        self.assertEqual([(m.nick, m.text) for m in ann.messages("lobby")], [("bob", "hi ann")])
        self.assertIn(Presence(room="lobby", event="join", nick="bob"), ann.presence())
        said = [e for e in stream.take() if isinstance(e, Message)]
        self.assertEqual([(m.nick, m.text, m.offset) for m in said], [("bob", "hi ann", 1)])

    def test_refusalsAreChatErrors(self) -> None:
        """A refused command raises ChatError with the contract's code; hostile input is
        answered as the server answers any client."""
        ann = self.memory.websocket()
        with self.assertRaises(ChatError) as raised:
            ann.say("lobby", "not joined yet")
        self.assertEqual(raised.exception.code, "not_joined")
        ann.send(b"{not json")
        self.assertEqual(ann.take()[-1].code, "bad_request")
        with self.assertRaises(ChatError) as raised:
            ann.join("..")
        self.assertEqual(raised.exception.code, "bad_request")

    def test_recoveryWithSince(self) -> None:
        """A client that comes back with since/epoch gets exactly what it missed."""
        ann = self.memory.websocket()
        first = ann.join("lobby", nick="ann")
        ann.say("lobby", "one")
        ann.close()
        self.memory.chat.publish("lobby", "two", nick="ops")
        again = self.memory.websocket()
        joined = again.join("lobby", since=1, epoch=first.epoch)
        self.assertEqual(joined.epoch, first.epoch)
        self.assertEqual([m.text for m in again.messages()], ["two"])

    def test_clockDrivesTimers(self) -> None:
        """Time moves only with advance: a big room's presence comes as one batch after the
        batch interval, not before."""
        memory = MemoryChat(limits=Limits(presenceBatchAbove=1, presenceBatchInterval=2.0))
        self.addCleanup(memory.stop)
        watcher = memory.websocket()
        watcher.join("big", nick="w")
        others = [memory.websocket() for _ in range(3)]
        for n, other in enumerate(others):
            other.join("big", nick=f"m{n}")
        watcher.take()
        memory.advance(1.9)
        self.assertEqual(watcher.take(PresenceBatch), [])
        memory.advance(0.2)
        (batch,) = watcher.take(PresenceBatch)
        self.assertEqual(batch.joined, ("m0", "m1", "m2"))  # over 1 member: batched

    def test_stopClosesClientsWith1001(self) -> None:
        """stop() is the graceful shutdown: every client is told 1001."""
        memory = MemoryChat()
        ann = memory.websocket()
        bob = memory.lines()
        memory.stop()
        self.assertEqual(ann.closed[0] if ann.closed else None, 1001)
        self.assertEqual(bob.closed[0] if bob.closed else None, 1001)

    def test_noReplyYet(self) -> None:
        """A reply that has not come is NoReply, not a hang or a wrong answer."""
        ann = self.memory.websocket()
        self.assertRaises(NoReply, ann.replyTo, 99, Ack)

    def test_originRefused(self) -> None:
        """The handshake's refusal is the client's response (a foreign browser origin)."""
        client = self.memory.websocket(origin="https://evil.example")
        self.assertEqual(client.response.status, 403)
        self.assertFalse(client.open)


class HttpTests(SynchronousTestCase):
    def test_apiAndHealth(self) -> None:
        """HTTP requests go through the same tree: publishing over the API reaches a
        WebSocket member; health is reported."""
        with MemoryChat() as memory:
            ann = memory.websocket()
            ann.join("lobby", nick="ann")
            response = memory.post("/api/rooms/lobby/messages", json={"nick": "h", "text": "x"})
            self.assertEqual((response.status, response.json()), (201, {"offset": 1}))
            self.assertEqual([m.text for m in ann.messages()], ["x"])
            self.assertEqual(memory.get("/healthz").json(), {"status": "ok"})

    def test_wsgiAppRunsSynchronously(self) -> None:
        """A WSGI application beside the chat answers in the test's thread: a redirect, a
        cookie set and read back; the chat is under /chat."""
        with MemoryChat(app=WsgiApp(wsgiApp)) as memory:
            self.assertEqual(memory.prefix, "/chat")
            login = memory.post("/login")
            self.assertEqual((login.status, login.header("location")), (303, "/me"))
            cookie = login.header("set-cookie").split(";")[0]  # type: ignore[union-attr]
            me = memory.get("/me", headers={"Cookie": cookie})
            self.assertEqual(me.body, b"cookie: user=ann")
            ann = memory.websocket()  # /chat/ws
            self.assertEqual(ann.join("lobby").room, "lobby")
            threads = memory.chat.settings.app.threads  # type: ignore[union-attr]
            self.assertIsInstance(threads, SynchronousThreads)
            self.assertEqual(threads.calls, 2)

    def test_resourceApp(self) -> None:
        """A twisted.web resource beside the chat, with the prefix given."""
        root = Resource()
        root.putChild(b"", Data(b"home", "text/plain"))
        with MemoryChat(app=ResourceApp(root), chatPrefix="/rt") as memory:
            self.assertEqual(memory.get("/").body, b"home")
            self.assertEqual(memory.get("/rt/api/rooms").json(), {"rooms": []})

    def test_parseResponse(self) -> None:
        """Chunked and sized bodies; an incomplete one is None."""
        chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        response, rest = parseResponse(chunked + b"next")
        self.assertEqual((response.body, rest), (b"abc", b"next"))  # type: ignore[union-attr]
        self.assertIsNone(parseResponse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")[0])


class BackplaneTests(SynchronousTestCase):
    def test_twoInstancesOneChat(self) -> None:
        """Two instances on one backplane: offsets, history, presence and messages cross."""
        plane = MemoryBackplane()
        with MemoryChat(backplane=plane) as a, MemoryChat(backplane=plane) as b:
            ann = a.websocket()
            bob = b.websocket()
            ann.join("lobby", nick="ann")
            joined = bob.join("lobby", nick="bob")
            self.assertEqual(joined.members, ("ann", "bob"))
            self.assertIn(Presence(room="lobby", event="join", nick="bob"), ann.presence())
            self.assertEqual(bob.say("lobby", "from b").offset, 1)
            self.assertEqual(a.chat.publish("lobby", "from a", nick="ops").result, 2)
            self.assertEqual([m.text for m in ann.messages()], ["from b", "from a"])
            self.assertEqual([m.text for m in bob.messages()], ["from b", "from a"])
            bob.close()
            self.assertIn(Presence(room="lobby", event="leave", nick="bob"), ann.presence())


class TimePassingTests(SynchronousTestCase):
    """MemoryChat.advance as time passes for live clients."""

    def test_longAdvanceKeepsClients(self) -> None:
        """Clients answer the server's keepalive pings as browsers do: minutes of advance do
        not drop them (the ping timeout would, for a client that never answers)."""
        with MemoryChat(limits=Limits(pingInterval=30.0, pingTimeout=10.0)) as memory:
            ann, lines = memory.websocket(), memory.lines()
            ann.join("lobby", nick="ann")
            memory.advance(300)
            self.assertTrue(ann.open)
            self.assertIsNone(lines.closed)
            self.assertEqual(ann.say("lobby", "still here").offset, 1)

    def test_timersFireInOrder(self) -> None:
        """Timers due within one advance fire at their own times, in order."""
        with MemoryChat() as memory:
            seen: list[float] = []
            for at in (3.0, 1.0, 2.0):
                memory.clock.callLater(at, lambda: seen.append(memory.clock.seconds()))
            memory.advance(10)
            self.assertEqual(seen, [1.0, 2.0, 3.0])
            self.assertEqual(memory.clock.seconds(), 10.0)

    def test_serverCloseReachesProtocol(self) -> None:
        """A connection the server closes is gone for the server too (its session ends),
        and what the client sends afterwards goes nowhere."""
        with MemoryChat(limits=Limits(rate=1, burst=1, floodStrikes=1)) as memory:
            ann = memory.websocket()
            for _ in range(5):
                ann.nick("a")
            self.assertEqual(ann.closed, (1008, "message rate limit exceeded"))
            self.assertEqual(memory.chat.service.hub.sessions, set())
            ann.nick("b")  # no error: the socket is closed

    def test_cookies(self) -> None:
        """cookies= is sent as one Cookie header, after the test's own."""
        seen: list[str] = []

        def app(environ: Any, start: Any) -> list[bytes]:
            seen.append(environ.get("HTTP_COOKIE", ""))
            start("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]

        with MemoryChat(app=WsgiApp(app)) as memory:
            memory.get("/", headers={"Cookie": "a=1"}, cookies={"b": "2", "c": "3"})
            memory.get("/", cookies={"d": "4"})
        self.assertEqual(seen, ["a=1; b=2; c=3", "d=4"])


SECRET = b"an-application-secret-of-32-bytes-or-more"


class UsersAndHooksKitTests(SynchronousTestCase):
    """The kit's side of issue 15: tokens signed as the application does, a fake hook."""

    def test_tokenAndExpiry(self) -> None:
        """A token from memory.token() admits the user; its messages carry the user; at
        exp the connection is closed 4001, by the clock."""
        with MemoryChat(auth="required", jwtSecret=SECRET) as memory:
            token = memory.token("u-1", name="ann", lifetime=60)
            ann = memory.websocket(headers={"Authorization": f"Bearer {token}"})
            self.assertEqual(ann.response.status, 101)
            ann.join("lobby")
            ann.say("lobby", "hi")
            (message,) = ann.messages()
            self.assertEqual((message.nick, message.user), ("ann", "u-1"))
            memory.advance(59.9)
            self.assertIsNone(ann.closed)
            memory.advance(0.2)
            self.assertEqual(ann.closed, (4001, "token expired"))

    def test_badTokenRefusedAtTheHandshake(self) -> None:
        """A token signed with another secret: 401 at the handshake, in JSON."""
        from portshare.testing import signToken

        with MemoryChat(auth="optional", jwtSecret=SECRET) as memory:
            forged = signToken(b"x" * 40, "u-1", expires=3600)
            client = memory.websocket(headers={"Authorization": f"Bearer {forged}"})
            self.assertEqual(client.response.status, 401)
            self.assertEqual(orjson.loads(client.response.body)["error"], "unauthorized")

    def test_fakeHookDeniesAndRewrites(self) -> None:
        """The fake backend is asked the contract's questions; its deny and rewrite act."""
        from portshare.testing import FakeHookBackend

        def answer(question: dict[str, Any]) -> dict[str, Any]:
            if question["event"] == "join" and question["room"] == "staff":
                return {"allow": False, "reason": "staff only"}
            if question["event"] == "publish":
                return {"allow": True, "text": question["text"].replace("darn", "d***")}
            return {"allow": True}

        backend = FakeHookBackend(answer)
        with MemoryChat(hookBackend=backend) as memory:
            ann = memory.websocket()
            self.assertEqual(ann.response.status, 101)
            with self.assertRaises(ChatError) as refused:
                ann.join("staff", nick="ann")
            self.assertEqual(
                (refused.exception.code, refused.exception.reason), ("forbidden", "staff only")
            )
            ann.join("lobby", nick="ann")
            ann.say("lobby", "darn it")
            self.assertEqual([m.text for m in ann.messages()], ["d*** it"])
            events = [q["event"] for q in backend.questions]
            self.assertEqual(events, ["connect", "join", "join", "publish"])

    def test_slowHookTimesOut(self) -> None:
        """A backend that never answers: the say gets error unavailable at --hook-timeout,
        and the connection stays open."""
        from twisted.internet.defer import Deferred

        from portshare.testing import FakeHookBackend

        backend = FakeHookBackend(
            lambda q: {"allow": True} if q["event"] != "publish" else Deferred()
        )
        with MemoryChat(hookBackend=backend, hookTimeout=2.0) as memory:
            ann = memory.websocket()
            ann.join("lobby", nick="ann")
            ann.send({"type": "say", "room": "lobby", "text": "anyone?", "ref": 7})
            self.assertRaises(NoReply, ann.replyTo, 7, Ack)
            memory.advance(2.1)
            with self.assertRaises(ChatError) as refused:
                ann.replyTo(7, Ack)
            self.assertEqual(refused.exception.code, "unavailable")
            self.assertTrue(ann.open)


class HookHeadersTests(SynchronousTestCase):
    def test_headersReachTheBackend(self) -> None:
        """--hook-header-file's headers go with every hook call."""
        from portshare.testing import FakeHookBackend

        backend = FakeHookBackend()
        with MemoryChat(hookBackend=backend, hookHeaders={"Authorization": "Bearer h00k"}) as m:
            m.websocket().join("lobby", nick="ann")
        self.assertTrue(backend.headers)
        for headers in backend.headers:
            self.assertEqual(headers.get(b"authorization"), [b"Bearer h00k"])
