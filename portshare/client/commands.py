"""
What C{portshare-cli}'s commands do over any link, and how they print.

C{tail}, C{say} and C{chat} read a link's typed events (L{portshare.client.link.Incoming})
and print them with a L{Printer}: messages to standard output, status lines to standard
error, or with C{--json} every event as the JSON the server's codec writes for it.
"""

from __future__ import annotations

import argparse
from typing import IO

from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    DeferredQueue,
    FirstError,
    ensureDeferred,
)

from portshare.client.link import CliError, Closed, Incoming, Link
from portshare.wire import (
    Ack,
    BadEvent,
    Close,
    Error,
    Joined,
    Message,
    Presence,
    ServerEvent,
    encodeEvent,
)


class Printer:
    """Messages to C{out}, status to C{err}."""

    def __init__(self, out: IO[str], err: IO[str], asJson: bool) -> None:
        self.out = out
        self.err = err
        self.asJson = asJson

    def event(self, event: ServerEvent | Closed) -> None:
        """
        Print one event: as one JSON line with C{--json} (nothing for L{Closed}), else
        messages as C{[room #offset] nick: text} and joins, presence, errors and the
        server's close notice as status lines; other events print nothing.
        """
        if self.asJson:
            if not isinstance(event, Closed):
                self.out.write(encodeEvent(event).decode() + "\n")
        elif isinstance(event, Message):
            self.out.write(f"[{event.room} #{event.offset}] {event.nick}: {event.text}\n")
        elif isinstance(event, Joined):
            recovered = "" if event.recovered else " (history incomplete)"
            self.err.write(
                f"* joined {event.room} at #{event.offset}, {event.count} here{recovered}\n"
            )
        elif isinstance(event, Presence):
            self.err.write(f"* {event.nick} {event.event}s {event.room}\n")
        elif isinstance(event, Error):
            self.err.write(f"! {event.code}: {event.reason}\n")
        elif isinstance(event, Close):
            self.err.write(f"! closed by the server ({event.code}): {event.reason}\n")
        self.out.flush()
        self.err.flush()


async def nextEvent(link: Link) -> ServerEvent | Closed:
    """
    The link's next event.

    @raise CliError: when the server sent a frame that is not an event.
    """
    event: Incoming = await link.events.get()
    if isinstance(event, BadEvent):
        raise CliError(f"the server sent a frame that is not an event: {event.reason}")
    return event


async def _joined(link: Link, printer: Printer) -> None:
    while True:
        event = await nextEvent(link)
        printer.event(event)
        if isinstance(event, Joined):
            return
        if isinstance(event, Error):
            raise CliError(f"{event.code}: {event.reason}")
        if isinstance(event, Closed):
            raise CliError("the connection closed")


async def tail(link: Link, args: argparse.Namespace, printer: Printer) -> int:
    """Join, then print the room's messages (C{--count} of them, or until the end)."""
    await link.join(args.room, args.nick, args.since)
    await _joined(link, printer)
    seen = 0
    while args.count is None or seen < args.count:
        event = await nextEvent(link)
        printer.event(event)
        if isinstance(event, Closed):
            return 1
        if isinstance(event, Message) and event.room == args.room:
            seen += 1
    return 0


async def say(link: Link, args: argparse.Namespace, printer: Printer) -> int:
    """Say one message (joining first where the transport needs it); print its offset."""
    link.nick = args.nick
    if link.needsJoin:
        await link.join(args.room, args.nick, None)
        await _joined(link, printer)
    link.say(args.room, args.text, 1)
    while True:
        event = await nextEvent(link)
        if isinstance(event, Closed):
            raise CliError("the connection closed before the message was acknowledged")
        if isinstance(event, Ack) and event.ref == 1:
            printer.out.write(f"{event.offset}\n")
            return 0
        if isinstance(event, Error) and event.ref == 1:
            raise CliError(f"{event.code}: {event.reason}")


async def chat(
    link: Link, args: argparse.Namespace, printer: Printer, lines: DeferredQueue[str | None]
) -> int:
    """
    Join, say each line of C{lines} (C{None} ends them) and print the room's events.

    @return: 1 if the server refused a line or closed first, else 0.
    """
    await link.join(args.room, args.nick, args.since)
    await _joined(link, printer)
    status = 0
    # at the end of input, wait until each line said is answered and, when acknowledged,
    # has come back as a message (over SSE the two travel on different connections)
    unanswered: set[int] = set()
    offsets = {"acked": 0, "seen": 0}
    settled: Deferred[None] | None = None

    def settle() -> None:
        nonlocal settled
        d = settled
        if d is not None and not unanswered and offsets["seen"] >= offsets["acked"]:
            settled = None
            d.callback(None)

    async def show() -> None:
        nonlocal status
        while True:
            event = await nextEvent(link)
            printer.event(event)
            if isinstance(event, Closed):
                return
            if isinstance(event, Error):
                status = 1
                unanswered.discard(event.ref)  # type: ignore[arg-type]
            elif isinstance(event, Ack):
                unanswered.discard(event.ref)  # type: ignore[arg-type]
                offsets["acked"] = max(offsets["acked"], event.offset or 0)
            elif isinstance(event, Message) and event.room == args.room:
                offsets["seen"] = max(offsets["seen"], event.offset or 0)
            settle()

    async def typing() -> None:
        nonlocal settled
        ref = 1
        while (line := await lines.get()) is not None:
            if line.strip():
                ref += 1
                unanswered.add(ref)
                link.say(args.room, line, ref)
        settled = Deferred()
        waiting = settled
        settle()
        await waiting
        link.close()

    showing = ensureDeferred(show())
    typed = ensureDeferred(typing())
    try:
        first = await DeferredList([showing, typed], fireOnOneCallback=True, fireOnOneErrback=True)
    except FirstError as e:  # a frame that is not an event: raise that, not FirstError
        for d in (showing, typed):
            d.addErrback(lambda failure: None)
        typed.cancel()
        e.subFailure.raiseException()
    if first[1] == 0:  # the server closed first: stop reading the person's lines
        typed.addErrback(lambda failure: failure.trap(CancelledError))
        typed.cancel()
        return 1
    await showing  # the link closed: what was said is acknowledged, then CLOSED
    return status
