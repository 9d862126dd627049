"""
Tests for L{portshare.sse}: C{GET /sse} in memory (StringTransport under the real tracker,
site and hub, keep-alives on the service's clock), and one stream over real loopback.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from portshare.hub import IFrontEnd, IMember
from portshare.limits import Limits
from portshare.sse import EVENT_NAMES, KEEP_ALIVE, eventBlock, formatId, parseId
from portshare.testing import MemoryConnection, startedService
from portshare.wire import (
    Ack,
    Error,
    Joined,
    Left,
    Message,
    Outgoing,
    Presence,
    PresenceBatch,
)
from tests.httpresponses import dechunk


def sseRequest(query: str, lastEventId: str | None = None) -> bytes:
    extra = f"Last-Event-ID: {lastEventId}\r\n" if lastEventId else ""
    return f"GET /sse?{query} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


def parseEvents(body: bytes) -> list[dict[str, Any]]:
    """SSE blocks as dicts of their fields (data parsed as JSON); comments as 'comment'."""
    events = []
    for block in body.decode().split("\n\n"):
        if not block:
            continue
        event: dict[str, Any] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(":")
            if name == "":
                event.setdefault("comment", []).append(value.strip())
            else:
                event[name] = orjson.loads(value) if name == "data" else value.strip()
        events.append(event)
    return events


class IdTests(SynchronousTestCase):
    def test_roundTrip(self) -> None:
        """One room: EPOCH:OFFSET; several: ROOM=EPOCH:OFFSET pairs; both parse back."""
        self.assertEqual(formatId(["a"], {"a": ("e1", 5)}), "e1:5")
        multi = formatId(["a", "b", "c"], {"a": ("e1", 5), "c": ("e2", 0)})
        self.assertEqual(multi, "a=e1:5,c=e2:0")
        self.assertEqual(parseId(multi, ["a", "b", "c"]), {"a": ("e1", 5), "c": ("e2", 0)})
        self.assertEqual(parseId("e1:5", ["a"]), {"a": ("e1", 5)})

    def test_junkIgnored(self) -> None:
        """Unreadable parts and rooms not asked for are left out."""
        self.assertEqual(parseId("e1:x,b=:3,z=e:1,a=e:2", ["a", "b"]), {"a": ("e", 2)})
        self.assertEqual(parseId("e1:5", ["a", "b"]), {})


class EventBlockTests(SynchronousTestCase):
    def test_everyEventNamedByItsType(self) -> None:
        """Each kind of event has its SSE name, the type its JSON says; the block is that
        name and the JSON, from the typed event, with no parsing of the JSON."""
        events = [
            Message(room="r", offset=1, ts=2, nick="n", text="t"),
            Joined(room="r", offset=0, epoch="e", members=(), count=0, recovered=True),
            Left(room="r"),
            Ack(ref=1, offset=2),
            Presence(room="r", event="join", nick="n"),
            PresenceBatch(room="r", count=1, joined=(), left=(), truncated=False),
            Error(code="bad_request", reason="no"),
        ]
        self.assertEqual(set(EVENT_NAMES), {type(e) for e in events})
        for event in events:
            outgoing = Outgoing(event)
            kind = event.toDict()["type"]
            self.assertEqual(EVENT_NAMES[type(event)], kind.encode())
            self.assertEqual(
                eventBlock(outgoing), b"event: %s\ndata: %s\n\n" % (kind.encode(), outgoing.payload)
            )


class SseTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.service = startedService(self, limits=Limits(roomsPerConnection=3))
        self.hub = self.service.hub

    def open(self, query: str, lastEventId: str | None = None) -> tuple[bytes, MemoryConnection]:
        c = MemoryConnection(self.service)
        c.send(sseRequest(query, lastEventId))
        head, _, body = c.read().partition(b"\r\n\r\n")
        self.buffer = body
        return head, c

    def events(self, c: MemoryConnection) -> list[dict[str, Any]]:
        data, self.buffer = self.buffer + c.read(), b""
        return [e for e in parseEvents(dechunk(data)) if "event" in e]

    def test_membersAndTheirFrontEnd(self) -> None:
        """Each stream is a hub member, and the SSE resource their front end."""
        self.open("room=lobby")
        [stream] = self.service.sse.streams
        self.assertTrue(verifyObject(IMember, stream))
        self.assertTrue(verifyObject(IFrontEnd, self.service.sse))
        self.assertIs(stream.frontEnd, self.service.sse)

    def test_streamOfOneRoom(self) -> None:
        """The stream is text/event-stream; joined, presence and messages carry EPOCH:OFFSET."""
        head, c = self.open("room=lobby&nick=sse")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        self.assertIn(b"content-type: text/event-stream", head.lower())
        [joined] = self.events(c)
        epoch = joined["data"]["epoch"]
        self.assertEqual((joined["event"], joined["id"]), ("joined", f"{epoch}:0"))
        self.assertEqual((joined["data"]["recovered"], joined["data"]["members"]), (True, ["sse"]))
        MemoryConnection(self.service).send(sseRequest("room=lobby&nick=other"))
        [presence] = self.events(c)
        self.assertEqual((presence["event"], presence["id"]), ("presence", f"{epoch}:0"))
        self.assertEqual(presence["data"]["nick"], "other")
        self.hub.publish("lobby", "ann", "hi")
        [message] = self.events(c)
        self.assertEqual((message["event"], message["id"]), ("message", f"{epoch}:1"))
        self.assertEqual(message["data"]["text"], "hi")

    def test_presenceBatch(self) -> None:
        """A big room's presence_batch reaches the stream as an event of that name, its id
        unchanged (it does not move the room's position)."""
        self.service = startedService(self, limits=Limits(presenceBatchAbove=0))
        self.hub = self.service.hub
        _, c = self.open("room=lobby&nick=sse")
        [joined] = self.events(c)
        epoch = joined["data"]["epoch"]
        MemoryConnection(self.service).send(sseRequest("room=lobby&nick=other"))
        self.assertEqual(self.events(c), [])
        self.service.reactor.advance(self.service.settings.limits.presenceBatchInterval)
        [batch] = self.events(c)
        self.assertEqual((batch["event"], batch["id"]), ("presence_batch", f"{epoch}:0"))
        self.assertEqual(
            batch["data"],
            {
                "type": "presence_batch",
                "room": "lobby",
                "count": 2,
                "joined": ["sse", "other"],
                "left": [],
                "truncated": False,
            },
        )

    def test_resumeWithLastEventId(self) -> None:
        """Reconnecting with Last-Event-ID replays the messages missed, recovered true,
        for every room of the stream."""
        for n in range(3):
            self.hub.publish("a", "ann", f"a{n}")
        self.hub.publish("b", "bob", "b0")
        _, c = self.open("room=a&room=b")
        joinedA, joinedB = (e for e in self.events(c) if e["event"] == "joined")
        epochA, epochB = joinedA["data"]["epoch"], joinedB["data"]["epoch"]
        self.assertEqual(joinedB["id"], f"a={epochA}:3,b={epochB}:1")
        c.transport.loseConnection()
        c.protocol.connectionLost(connectionDone)
        self.hub.publish("a", "ann", "a3")
        self.hub.publish("b", "bob", "b1")
        _, c2 = self.open("room=a&room=b", lastEventId=joinedB["id"])
        events = self.events(c2)
        joined = [e["data"]["recovered"] for e in events if e["event"] == "joined"]
        self.assertEqual(joined, [True, True])
        messages = [(e["data"]["text"], e["id"]) for e in events if e["event"] == "message"]
        self.assertEqual(
            sorted(messages),
            sorted([("a3", f"a={epochA}:4,b={epochB}:1"), ("b1", f"a={epochA}:4,b={epochB}:2")]),
        )

    def test_resumeFromAnotherEpoch(self) -> None:
        """An id from a lost history gives recovered false and all the history held."""
        self.hub.publish("a", "ann", "new")
        _, c = self.open("room=a", lastEventId="oldepoch:7")
        events = self.events(c)
        self.assertEqual(events[0]["data"]["recovered"], False)
        epoch = events[0]["data"]["epoch"]
        self.assertEqual(events[0]["id"], f"{epoch}:0")
        self.assertEqual(
            [(e["data"]["text"], e["id"]) for e in events[1:]], [("new", f"{epoch}:1")]
        )

    def test_sinceQuery(self) -> None:
        """?since=O replays after O (for clients that cannot send headers)."""
        for n in range(3):
            self.hub.publish("a", "ann", f"m{n}")
        _, c = self.open("room=a&since=1")
        texts = [e["data"]["text"] for e in self.events(c) if e["event"] == "message"]
        self.assertEqual(texts, ["m1", "m2"])

    def test_sinceBeyondJsonRefused(self) -> None:
        """?since= with more digits than JSON numbers hold is refused in an error event, as
        a join's bad since is on the WebSocket, and the stream goes on."""
        _, c = self.open("room=a&since=99999999999999999999999")
        [error] = self.events(c)
        self.assertEqual(
            (error["event"], error["data"]["reason"], error["data"]["ref"]),
            ("error", "since must be a whole number >= 0", "a"),
        )
        self.assertFalse(c.transport.disconnecting)

    def test_keepAlive(self) -> None:
        """A keep-alive comment goes out every KEEP_ALIVE seconds of the injected clock."""
        _, c = self.open("room=a")
        self.events(c)
        self.service.reactor.advance(KEEP_ALIVE)
        self.assertEqual(parseEvents(dechunk(c.read())), [{"comment": ["keep-alive"]}])

    def test_refusals(self) -> None:
        """No room, a bad room (. and .. included), or more rooms than allowed: a JSON error,
        no stream."""
        for query, status in (
            ("x=1", b"400"),
            ("room=a/b", b"400"),
            ("room=.", b"400"),
            ("room=..", b"400"),
            ("room=a&room=..", b"400"),
            ("room=a&room=b&room=c&room=d", b"413"),
        ):
            head, _ = self.open(query)
            self.assertTrue(head.startswith(b"HTTP/1.1 " + status), (query, head))
            self.assertIn("reason", orjson.loads(self.buffer))

    def test_disconnectLeaves(self) -> None:
        """A closed stream leaves its rooms (presence leave) and stops its timer."""
        _, watcher = self.open("room=a&nick=w")
        self.events(watcher)
        _, c = self.open("room=a&nick=gone")
        self.events(c)
        self.events(watcher)
        c.protocol.connectionLost(connectionDone)
        [leave] = self.events(watcher)
        self.assertEqual((leave["data"]["event"], leave["data"]["nick"]), ("leave", "gone"))
        self.assertEqual(len(self.service.sse.streams), 1)

    def test_shutdownEndsStreams(self) -> None:
        """At shutdown each stream gets a close event and ends; nothing stays in flight."""
        _, c = self.open("room=a")
        self.events(c)
        self.service.closeWebSockets(1001, "server shutting down")
        data = c.read()
        self.assertTrue(data.endswith(b"0\r\n\r\n"))
        [close] = parseEvents(dechunk(data))
        self.assertEqual(close["data"], {"code": 1001, "reason": "server shutting down"})
        self.assertEqual(self.service.site.inflight, set())

    def test_slowConsumerCut(self) -> None:
        """A stream whose socket stays full is cut, as a WebSocket is."""
        _, c = self.open("room=a")
        self.events(c)
        [stream] = self.service.sse.streams
        stream.backpressure.pauseProducing()
        self.service.reactor.advance(self.service.settings.limits.slowConsumerSeconds + 1)
        self.assertTrue(c.transport.disconnecting)
        self.assertEqual(self.service.metrics.slowConsumers._value.get(), 1)


class StreamReader(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.waiting: tuple[bytes, Deferred[bytes]] | None = None

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if self.waiting and self.waiting[0] in self.data:
            d = self.waiting[1]
            self.waiting = None
            d.callback(self.data)

    def until(self, marker: bytes) -> Deferred[bytes]:
        d: Deferred[bytes] = Deferred()
        if marker in self.data:
            d.callback(self.data)
        else:
            self.waiting = (marker, d)
        return d


@pytest.mark.e2e
@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_sseOverLoopback() -> None:
    """Over a real socket, a stream gets what an HTTP POST publishes, with its id."""
    import treq

    from portshare.service import PortshareService, Settings

    service = PortshareService(Settings(ports=("tcp:0:interface=127.0.0.1",)), reactor)
    service.startService()
    try:
        port = int(service.listening[0].rsplit(":", 1)[1])
        reader = StreamReader()
        await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(
            Factory.forProtocol(lambda: reader)
        )
        reader.transport.write(sseRequest("room=live"))  # type: ignore[union-attr]
        await reader.until(b"event: joined")
        response = await treq.post(
            f"http://127.0.0.1:{port}/api/rooms/live/messages",
            json={"nick": "http", "text": "over sse"},
        )
        assert response.code == 201
        data = await reader.until(b"event: message")
        assert b'"text":"over sse"' in data
        assert b"text/event-stream" in data
    finally:
        await service.stopService()


class AnyInstanceTests(SynchronousTestCase):
    def test_resumeOnAnotherInstance(self) -> None:
        """A stream resumes on another instance that shares the broker: the id is the
        broker's epoch and offset, not anything of the instance it came from."""
        import txaio.testutil
        from twisted.internet.testing import MemoryReactorClock

        from portshare.broker import buildBroker
        from portshare.service import PortshareService, Settings

        reactor = MemoryReactorClock()
        with txaio.testutil.replace_loop(reactor):
            broker = buildBroker("memory", reactor, 100, 100)
            first, second = (
                PortshareService(Settings(ports=("tcp:0",)), reactor, broker=broker)
                for _ in range(2)
            )
            for service in (first, second):
                service.startService()
            c = MemoryConnection(first)
            c.send(sseRequest("room=a"))
            [joined] = [
                e for e in parseEvents(dechunk(c.read().partition(b"\r\n\r\n")[2])) if "event" in e
            ]
            c.protocol.connectionLost(connectionDone)
            second.hub.publish("a", "ann", "while away")
            c2 = MemoryConnection(second)
            c2.send(sseRequest("room=a", lastEventId=joined["id"]))
            events = [
                e for e in parseEvents(dechunk(c2.read().partition(b"\r\n\r\n")[2])) if "event" in e
            ]
            self.assertEqual(events[0]["data"]["recovered"], True)
            self.assertEqual([e["data"]["text"] for e in events[1:]], ["while away"])
            for service in (first, second):
                service.stopService()


class MethodTests(SynchronousTestCase):
    def test_otherMethods(self) -> None:
        """POST is a JSON 405; HEAD gets the stream's headers and no stream."""
        service = startedService(self)
        c = MemoryConnection(service)
        c.send(b"POST /sse?room=a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        head, _, body = c.read().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 405"), head)
        self.assertEqual(orjson.loads(body)["error"], "method_not_allowed")
        c.send(b"HEAD /sse?room=a HTTP/1.1\r\nHost: x\r\n\r\n")
        head = c.read()
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        self.assertIn(b"text/event-stream", head)
        self.assertEqual(service.sse.streams, set())


class StreamsPerConnectionTests(SynchronousTestCase):
    def test_capPerConnection(self) -> None:
        """One connection (HTTP/2 multiplexes) carries at most maxStreamsPerConnection
        streams; the next is a JSON 429, and a stream that ends frees its place."""
        from twisted.web.test.requesthelper import DummyChannel, DummyRequest

        service = startedService(self)
        resource = service.sse
        resource.maxStreamsPerConnection = 2
        shared = DummyChannel()

        def request(channel: Any = shared) -> Any:
            r = DummyRequest([b""])
            r.channel = channel
            r.args = {b"room": [b"a"]}
            r.registerProducer = lambda producer, streaming: None  # not DummyRequest's loop
            return r

        first, second, third = request(), request(), request()
        resource.render_GET(first)
        resource.render_GET(second)
        body = resource.render_GET(third)
        self.assertEqual(third.responseCode, 429)
        self.assertEqual(orjson.loads(body)["error"], "rate_limited")
        first.processingFailed(Failure(ConnectionDone()))
        fourth = request()
        resource.render_GET(fourth)
        self.assertEqual(fourth.responseCode, 200)
        resource.render_GET(request(DummyChannel()))  # another connection
        self.assertEqual(len(resource.streams), 3)
