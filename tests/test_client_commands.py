"""
Tests for L{portshare.client.commands}: what the L{Printer} prints for each typed event, and
what C{tail}, C{say} and C{chat} do over a scripted link (no connection).
"""

from __future__ import annotations

import argparse
import gc
import io
from collections.abc import Callable, Iterable

from twisted.internet.defer import CancelledError, DeferredQueue, ensureDeferred
from twisted.trial.unittest import SynchronousTestCase

from portshare.client.commands import Printer, chat, say, tail
from portshare.client.link import CLOSED, CliError, Closed
from portshare.client.sse import RefusedPost, SseClose
from portshare.wire import (
    Ack,
    BadEvent,
    Close,
    Command,
    Error,
    Join,
    Joined,
    Left,
    Message,
    Presence,
    PresenceBatch,
    Say,
    ServerEvent,
)
from tests.test_client_link import RecordingLink

JOINED = Joined(room="r", offset=0, epoch="e", members=("ann",), count=1, recovered=True)


def printed(event: ServerEvent | Closed, asJson: bool = False) -> tuple[str, str]:
    """What a printer writes to standard output and standard error for C{event}."""
    out, err = io.StringIO(), io.StringIO()
    Printer(out, err, asJson).event(event)
    return out.getvalue(), err.getvalue()


class PrinterTests(SynchronousTestCase):
    """Messages to standard output, status lines to standard error, or JSON lines."""

    def test_message(self) -> None:
        """A message is [room #offset] nick: text, on standard output."""
        self.assertEqual(
            printed(Message(room="r", offset=3, ts=1, nick="ann", text="hé")),
            ("[r #3] ann: hé\n", ""),
        )

    def test_joined(self) -> None:
        """A join says where and how many, and whether history is incomplete."""
        self.assertEqual(printed(JOINED), ("", "* joined r at #0, 1 here\n"))
        gap = Joined(room="r", offset=9, epoch="e", members=(), count=120, recovered=False)
        self.assertEqual(printed(gap), ("", "* joined r at #9, 120 here (history incomplete)\n"))

    def test_presence(self) -> None:
        """Joins and leaves of others."""
        self.assertEqual(
            printed(Presence(room="r", event="join", nick="bob")), ("", "* bob joins r\n")
        )
        self.assertEqual(
            printed(Presence(room="r", event="leave", nick="bob")), ("", "* bob leaves r\n")
        )

    def test_error(self) -> None:
        """An error is ! code: reason; a refused POST too."""
        self.assertEqual(printed(Error(code="c", reason="why", ref=2)), ("", "! c: why\n"))
        self.assertEqual(printed(RefusedPost(code="c", reason="why", ref=2)), ("", "! c: why\n"))

    def test_close(self) -> None:
        """The server's close notice, from lines or from sse."""
        for close in (Close(1001, "bye"), SseClose(1001, "bye")):
            self.assertEqual(printed(close), ("", "! closed by the server (1001): bye\n"))

    def test_silent(self) -> None:
        """Acks, lefts, presence batches and the end of the connection print nothing."""
        batch = PresenceBatch(room="r", count=1, joined=("a",), left=(), truncated=False)
        for event in (Ack(ref=1, offset=1), Left(room="r"), batch, CLOSED):
            self.assertEqual(printed(event), ("", ""), event)

    def test_json(self) -> None:
        """With --json every event is one line of the codec's JSON; CLOSED is not."""
        self.assertEqual(
            printed(Message(room="r", offset=3, ts=1, nick="ann", text="hé"), asJson=True),
            ('{"type":"message","room":"r","offset":3,"ts":1,"nick":"ann","text":"hé"}\n', ""),
        )
        self.assertEqual(
            printed(Ack(ref=3, offset=2, room="r"), asJson=True),
            ('{"type":"ack","ref":3,"offset":2,"room":"r"}\n', ""),
        )
        self.assertEqual(
            printed(Close(1001, "bye"), asJson=True),
            ('{"type":"close","code":1001,"reason":"bye"}\n', ""),
        )
        self.assertEqual(printed(CLOSED, asJson=True), ("", ""))

    def test_flushes(self) -> None:
        """Both streams are flushed after every event (a pipe sees each line at once)."""
        flushed: list[str] = []

        class Stream(io.StringIO):
            def __init__(self, name: str) -> None:
                super().__init__()
                self.name = name

            def flush(self) -> None:
                flushed.append(self.name)

        Printer(Stream("out"), Stream("err"), False).event(Left(room="r"))
        self.assertEqual(flushed, ["out", "err"])


class ScriptedLink(RecordingLink):
    """A link whose server answers each command with the events C{script} gives."""

    def __init__(
        self, script: Callable[[Command], Iterable[ServerEvent | BadEvent]], needsJoin: bool = True
    ) -> None:
        super().__init__()
        self.script = script
        self.needsJoin = needsJoin
        self.closed = 0

    def send(self, command: Command) -> None:
        super().send(command)
        for event in self.script(command):
            self.events.put(event)

    def close(self) -> None:
        self.closed += 1
        self.connectionClosed()


def server(command: Command) -> list[ServerEvent | BadEvent]:
    """A room "r" that refuses the text "bad" and numbers the rest from 1."""
    if isinstance(command, Join):
        return [JOINED if command.room == "r" else Error("bad_request", "no room", command.ref)]
    assert isinstance(command, Say)
    if command.text == "bad":
        return [Error("too_large", "too long", command.ref)]
    offset = sum(1 for c in server.said if c != "bad") + 1  # type: ignore[attr-defined]
    server.said.append(command.text)  # type: ignore[attr-defined]
    return [
        Message(room="r", offset=offset, ts=0, nick="ann", text=command.text),
        Ack(ref=command.ref, offset=offset, room="r"),  # type: ignore[arg-type]
    ]


def namespace(**fields: object) -> argparse.Namespace:
    defaults: dict[str, object] = {"room": "r", "nick": None, "since": None, "count": None}
    return argparse.Namespace(**{**defaults, **fields})


class CommandTests(SynchronousTestCase):
    """tail, say and chat over a link, whatever its transport."""

    def setUp(self) -> None:
        server.said = []  # type: ignore[attr-defined]
        self.out, self.err = io.StringIO(), io.StringIO()
        self.printer = Printer(self.out, self.err, False)

    def test_tailCounts(self) -> None:
        """tail joins with nick and since, and stops after --count messages of its room."""
        link = ScriptedLink(server)
        other = Message(room="elsewhere", offset=1, ts=0, nick="x", text="not counted")
        link.events.put(other)
        d = ensureDeferred(tail(link, namespace(nick="ann", since=5, count=1), self.printer))
        self.assertNoResult(d)
        link.events.put(Message(room="r", offset=6, ts=0, nick="bob", text="yes"))
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(link.sent, [Join(room="r", nick="ann", since=5, ref="join")])
        self.assertEqual(
            (self.out.getvalue(), self.err.getvalue()),
            ("[elsewhere #1] x: not counted\n[r #6] bob: yes\n", "* joined r at #0, 1 here\n"),
        )

    def test_tailClosed(self) -> None:
        """tail exits 1 when the connection ends."""
        link = ScriptedLink(server)
        d = ensureDeferred(tail(link, namespace(), self.printer))
        link.connectionClosed()
        self.assertEqual(self.successResultOf(d), 1)

    def test_joinRefused(self) -> None:
        """A refused join prints the error and fails with it; a connection that ends before
        the joined event fails too."""
        link = ScriptedLink(server)
        d = ensureDeferred(tail(link, namespace(room="other"), self.printer))
        self.assertEqual(str(self.failureResultOf(d, CliError).value), "bad_request: no room")
        self.assertEqual(self.err.getvalue(), "! bad_request: no room\n")
        link = ScriptedLink(lambda command: [])
        d = ensureDeferred(tail(link, namespace(), self.printer))
        link.connectionClosed()
        self.assertEqual(str(self.failureResultOf(d, CliError).value), "the connection closed")

    def test_say(self) -> None:
        """say joins, says with ref 1 and prints the offset of its ack."""
        link = ScriptedLink(server)
        status = self.successResultOf(
            ensureDeferred(say(link, namespace(nick="ann", text="hi"), self.printer))
        )
        self.assertEqual((status, self.out.getvalue()), (0, "1\n"))
        self.assertEqual(link.sent[1:], [Say(room="r", text="hi", ref=1)])
        self.assertEqual(link.nick, "ann")

    def test_sayWithoutJoin(self) -> None:
        """Where saying needs no join (sse), say only says."""
        link = ScriptedLink(server, needsJoin=False)
        self.successResultOf(ensureDeferred(say(link, namespace(text="hi"), self.printer)))
        self.assertEqual(link.sent, [Say(room="r", text="hi", ref=1)])

    def test_sayRefused(self) -> None:
        """A refusal of the message fails say with the server's code and reason."""
        link = ScriptedLink(server)
        d = ensureDeferred(say(link, namespace(text="bad"), self.printer))
        self.assertEqual(str(self.failureResultOf(d, CliError).value), "too_large: too long")

    def test_sayClosed(self) -> None:
        """A connection that ends before the ack fails say."""
        link = ScriptedLink(lambda command: [JOINED] if isinstance(command, Join) else [])
        d = ensureDeferred(say(link, namespace(text="hi"), self.printer))
        link.connectionClosed()
        self.assertEqual(
            str(self.failureResultOf(d, CliError).value),
            "the connection closed before the message was acknowledged",
        )

    def test_badFrame(self) -> None:
        """A frame that is not an event stops the command with an error naming it."""
        link = ScriptedLink(lambda command: [BadEvent("event is not valid JSON")])
        d = ensureDeferred(tail(link, namespace(), self.printer))
        self.assertEqual(
            str(self.failureResultOf(d, CliError).value),
            "the server sent a frame that is not an event: event is not valid JSON",
        )

    def test_chat(self) -> None:
        """chat says each non-blank line with refs from 2, and at the end of input waits for
        every answer and message before it closes: 1 after a refusal."""
        link = ScriptedLink(server)
        lines: DeferredQueue[str | None] = DeferredQueue()
        d = ensureDeferred(chat(link, namespace(), self.printer, lines))
        for line in ("bad", "  ", "ok", None):
            lines.put(line)
        self.assertEqual(self.successResultOf(d), 1)
        self.assertEqual(
            link.sent[1:], [Say(room="r", text="bad", ref=2), Say(room="r", text="ok", ref=3)]
        )
        self.assertEqual(
            (self.out.getvalue(), self.err.getvalue(), link.closed),
            ("[r #1] ann: ok\n", "* joined r at #0, 1 here\n! too_large: too long\n", 1),
        )

    def test_chatServerClosed(self) -> None:
        """chat exits 1 when the server ends the connection first."""
        link = ScriptedLink(server)
        lines: DeferredQueue[str | None] = DeferredQueue()
        d = ensureDeferred(chat(link, namespace(), self.printer, lines))
        link.connectionClosed()
        self.assertEqual(self.successResultOf(d), 1)
        # typing(), cancelled, is not left as an unhandled CancelledError (it was printed as
        # a traceback on standard error)
        del d
        gc.collect()
        self.assertEqual(self.flushLoggedErrors(CancelledError), [])

    def test_chatBadFrame(self) -> None:
        """A frame that is not an event stops chat with the error itself."""
        link = ScriptedLink(server)
        lines: DeferredQueue[str | None] = DeferredQueue()
        d = ensureDeferred(chat(link, namespace(), self.printer, lines))
        link.events.put(BadEvent("event must be a JSON object"))
        self.assertEqual(
            str(self.failureResultOf(d, CliError).value),
            "the server sent a frame that is not an event: event must be a JSON object",
        )
        del d
        gc.collect()
        self.assertEqual(self.flushLoggedErrors(), [])
