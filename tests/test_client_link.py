"""
Tests for L{portshare.client.link}: where a link connects (L{Server}), and how a link turns the
server's frames into the items of its queue.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from portshare.client.link import CLOSED, CliError, Link, Server
from portshare.wire import (
    BadEvent,
    Command,
    Join,
    Left,
    Say,
    encodeCommand,
)


class ServerTests(SynchronousTestCase):
    def test_urls(self) -> None:
        """--url takes http(s) and ws(s) URLs, with default ports."""
        s = Server("https://chat.example")
        self.assertEqual((s.secure, s.host, s.port, s.base), (True, "chat.example", 443, s.base))
        s = Server("ws://127.0.0.1:8080")
        self.assertEqual((s.secure, s.port, s.base), (False, 8080, "http://127.0.0.1:8080"))
        self.assertRaises(CliError, Server, "ftp://x")

    def test_schemelessUrl(self) -> None:
        """A --url without a scheme is http, and keeps its port in the base URL."""
        s = Server("chat.example:8080")
        self.assertEqual(
            (s.secure, s.host, s.port, s.base, s.netloc),
            (False, "chat.example", 8080, "http://chat.example:8080", "chat.example:8080"),
        )
        self.assertEqual(Server("wss://h").base, "https://h")

    def test_pathIsTheChatPrefix(self) -> None:
        """The path of --url is the chat's prefix: the HTTP paths go under it, and so does the
        WebSocket; a trailing / is the same, and a ws:// URL may name the WebSocket itself."""
        for url in (
            "http://h:8080/chat",
            "http://h:8080/chat/",
            "ws://h:8080/chat/ws",
            "ws://h:8080/chat",
            "h:8080/chat",
        ):
            s = Server(url)
            self.assertEqual((s.prefix, s.base), ("/chat", "http://h:8080/chat"), url)
        for url in ("http://h", "http://h/", "ws://h/ws", "wss://h/ws/"):
            self.assertEqual(Server(url).prefix, "", url)
        self.assertEqual(Server("https://h/a/b.c/").base, "https://h/a/b.c")
        self.assertEqual(Server("http://h/ws").prefix, "/ws")  # http: the path is the prefix

    def test_hostilePathRefused(self) -> None:
        """A --url path that a request line could not carry as it is (spaces, CR/LF, a query
        or fragment) is refused before anything is sent."""
        for url in (
            "http://h/chat?x=1",
            "http://h/chat#top",
            "http://h/a b",
            "http://h/chat\r\nX-Evil: 1",
            "http://h/chat HTTP/1.1\r\n",
            "http://h/\x00",
            "http://h/a//b",
        ):
            self.assertRaises(CliError, Server, url)


class RecordingLink(Link):
    """A link that keeps what it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Command] = []

    def send(self, command: Command) -> None:
        self.sent.append(command)


def queued(link: Link) -> list[object]:
    """Everything on C{link}'s queue so far."""
    items: list[object] = []
    while link.events.pending:
        link.events.get().addCallback(items.append)
    return items


class LinkTests(SynchronousTestCase):
    """The typed commands a link sends, and the items its queue yields."""

    def test_join(self) -> None:
        """join sends the wire's Join with the ref "join", nick and since only when given."""
        link = RecordingLink()
        self.successResultOf(link.join("r", None, None))
        self.successResultOf(link.join("r", "ann", 0))
        self.assertEqual(
            link.sent,
            [Join(room="r", ref="join"), Join(room="r", nick="ann", since=0, ref="join")],
        )
        self.assertEqual(
            encodeCommand(link.sent[1]),
            b'{"type":"join","room":"r","nick":"ann","since":0,"ref":"join"}',
        )

    def test_say(self) -> None:
        """say sends the wire's Say with the ref given."""
        link = RecordingLink()
        link.say("r", "hi", 3)
        self.assertEqual(link.sent, [Say(room="r", text="hi", ref=3)])

    def test_frames(self) -> None:
        """A frame goes on the queue as its typed event; CLOSED follows the connection."""
        link = RecordingLink()
        link.frameReceived(b'{"type":"left","room":"r","ref":"x"}')
        link.connectionClosed()
        self.assertEqual(queued(link), [Left(room="r", ref="x"), CLOSED])

    def test_unknownTypeSkipped(self) -> None:
        """An event of a type this version does not know is skipped."""
        link = RecordingLink()
        link.frameReceived(b'{"type":"typing","room":"r"}')
        self.assertEqual(queued(link), [])

    def test_badFrameQueued(self) -> None:
        """A frame that is no event goes on the queue as its BadEvent, in its place."""
        link = RecordingLink()
        link.frameReceived(b"{not json")
        link.frameReceived(b'{"type":"left"}')
        first, second = queued(link)
        assert isinstance(first, BadEvent) and isinstance(second, BadEvent)
        self.assertEqual(
            (first.reason, second.reason),
            ("event is not valid JSON", "left event: room must be a string"),
        )

    def test_kind(self) -> None:
        """The kind given beside a frame is its type when it names none."""
        link = RecordingLink()
        link.frameReceived(b'{"room":"r"}', "left")
        self.assertEqual(queued(link), [Left(room="r")])
