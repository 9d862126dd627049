"""
Tests for L{portshare.client.sse}: how an L{SseLink} reads an event stream (canned bytes), and
the link against the real service's tree in memory (L{treq.testing.RequestTraversalAgent}).
"""

from __future__ import annotations

from treq.testing import RequestTraversalAgent
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseDone

from portshare.client.link import CLOSED, CliError, Server
from portshare.client.sse import RefusedPost, SseClose, SseLink, _SseBody
from portshare.testing import startedService
from portshare.wire import (
    Ack,
    BadEvent,
    Close,
    Error,
    Joined,
    Left,
    Message,
    encodeEvent,
)
from tests.test_client_link import queued


def streamed(*chunks: bytes) -> tuple[SseLink, list[object]]:
    """A link that read C{chunks} of an event stream, and what it queued."""
    from twisted.internet.testing import MemoryReactorClock

    link = SseLink(MemoryReactorClock(), Server("http://127.0.0.1:8080"), None)
    body = _SseBody(link)
    for chunk in chunks:
        body.dataReceived(chunk)
    return link, queued(link)


class StreamTests(SynchronousTestCase):
    """An event stream's events become the wire's typed events."""

    def test_events(self) -> None:
        """Each event's data is read by the wire's parser; the head and comments are not
        events; the last id is kept."""
        link, events = streamed(
            b"retry: 2000\n: portshare sse\n\n",
            b'id: e:0\nevent: left\ndata: {"type":"left","room":"r"}\n\n',
            b": keep-alive\n\n",
        )
        self.assertEqual((events, link.lastEventId), ([Left(room="r")], "e:0"))

    def test_chunksAndCrlf(self) -> None:
        """Events split across reads, with CRLF line ends, are read whole."""
        _, events = streamed(
            b'id: e:1\r\nevent: message\r\ndata: {"type":"message","room":"r",',
            b'"offset":1,"ts":2,"nick":"n","text":"t"}\r\n\r\n',
        )
        self.assertEqual(events, [Message(room="r", offset=1, ts=2, nick="n", text="t")])

    def test_closeNotice(self) -> None:
        """event: close is a Close (its data names no type), kept as SseClose: --json prints
        it as it always did, the data's fields then the type."""
        _, events = streamed(b'event: close\ndata: {"code":1001,"reason":"bye"}\n\n')
        self.assertEqual(events, [SseClose(1001, "bye")])
        [close] = events
        assert isinstance(close, Close)
        self.assertEqual(encodeEvent(close), b'{"code":1001,"reason":"bye","type":"close"}')

    def test_unknownAndBad(self) -> None:
        """An unknown type is skipped; data that is not an event is queued as BadEvent."""
        _, events = streamed(
            b'event: typing\ndata: {"type":"typing"}\n\n', b"event: message\ndata: {}\n\n"
        )
        [bad] = events
        assert isinstance(bad, BadEvent)
        self.assertEqual(bad.reason, "message event: room must be a string")

    def test_end(self) -> None:
        """The end of the stream queues CLOSED."""
        link, _ = streamed()
        assert link.body is None
        body = _SseBody(link)
        body.connectionLost(Failure(ResponseDone()))
        self.assertEqual(queued(link), [CLOSED])

    def test_refusedPostOrder(self) -> None:
        """RefusedPost is an Error that --json prints with its ref first, as it always did."""
        refused = RefusedPost(code="too_large", reason="long", ref=2)
        self.assertIsInstance(refused, Error)
        self.assertEqual(
            encodeEvent(refused), b'{"type":"error","ref":2,"code":"too_large","reason":"long"}'
        )


class SseLinkTests(SynchronousTestCase):
    """Against the real /sse and HTTP API, in memory."""

    def link(self, token: str | None = None, **settings: object) -> SseLink:
        self.service = startedService(self, **settings)
        link = SseLink(self.service.reactor, Server("http://127.0.0.1:8080"), token)
        self.agent = link.agent = RequestTraversalAgent(self.service.root)
        return link

    def flush(self) -> None:
        """Run the requests, and the POST bodies' producers, to the end."""
        for _ in range(3):
            self.agent.flush()
            self.service.reactor.advance(0)

    def test_join(self) -> None:
        """join opens the stream with the nick and since: the server's join has the room as
        its ref, and the replay follows."""
        link = self.link()
        self.service.hub.publish("r", "bob", "old")
        d = link.join("r", "ann", 0)
        self.flush()
        self.successResultOf(d)
        joined, message = queued(link)
        assert isinstance(joined, Joined) and isinstance(message, Message)
        self.assertEqual((joined.members, joined.ref, message.text), (("ann",), "r", "old"))

    def test_joinRefused(self) -> None:
        """A stream the server refuses fails join with its status."""
        link = self.link()
        d = link.join("bad/room", None, None)
        self.flush()
        self.assertEqual(str(self.failureResultOf(d, CliError).value), "/sse answered 400")

    def test_say(self) -> None:
        """say POSTs the text with the link's nick (cli without one): its answer is an Ack
        with the ref given, and the message comes on the stream."""
        for nick, expected in (("ann", "ann"), (None, "cli")):
            link = self.link()
            self.successResultOf(_joined(self, link, nick))
            link.say("r", "hi", 1)
            self.flush()
            ack, message = sorted(queued(link), key=lambda e: type(e).__name__)
            self.assertEqual(ack, Ack(ref=1, offset=1))
            assert isinstance(message, Message)
            self.assertEqual((message.nick, message.text), (expected, "hi"))

    def test_sayRefused(self) -> None:
        """The API's refusal of a POST is a RefusedPost with the ref given."""
        link = self.link()
        link.say("r", "x" * 4097, 2)
        self.flush()
        self.assertEqual(
            queued(link),
            [RefusedPost(code="too_large", reason="text is longer than 4096 characters", ref=2)],
        )

    def test_token(self) -> None:
        """The API token goes with each POST as a bearer token."""
        for token, expected in ((None, "unauthorized"), ("s" * 32, None)):
            link = self.link(token=token, apiToken="s" * 32)
            link.say("r", "hi", 1)
            self.flush()
            [answer] = queued(link)
            self.assertEqual(getattr(answer, "code", None), expected, answer)

    def test_serverClose(self) -> None:
        """The server's close notice at shutdown is an SseClose; CLOSED follows."""
        link = self.link()
        self.successResultOf(_joined(self, link, None))
        self.service.stopService()
        self.flush()
        self.assertEqual(queued(link), [SseClose(1001, "server shutting down"), CLOSED])

    def test_closeBeforeJoin(self) -> None:
        """close() without a stream queues CLOSED at once."""
        link = self.link()
        link.close()
        self.assertEqual(queued(link), [CLOSED])


def _joined(case: SseLinkTests, link: SseLink, nick: str | None) -> Deferred[None]:
    """Join C{r}, and drop the joined event."""
    d = ensureDeferred(link.join("r", nick, None))
    case.flush()
    [joined] = queued(link)
    assert isinstance(joined, Joined)
    return d
