"""
Tests for L{portshare.broker.link}: the reconnect backoff, and the commands and scripts run
on the link, with Redis's errors turned into portshare's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from portshare.broker.link import Backoff, Link, Refused
from portshare.broker.resp import ConnectionLost, ResponseError
from portshare.broker.scripts import MEMBERS
from portshare.errors import Unavailable


class BackoffTests(SynchronousTestCase):
    """Reconnection delays grow exponentially up to a maximum, with bounded jitter."""

    def test_grows(self) -> None:
        """Without jitter: 0.1, 0.2, 0.4, ... capped at the maximum; reset starts over."""
        backoff = Backoff(0.1, 1.0, jitter=0)
        self.assertEqual(
            [round(backoff.next(), 3) for _ in range(6)], [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
        )
        backoff.reset()
        self.assertEqual(backoff.next(), 0.1)

    def test_jitter(self) -> None:
        """Jitter spreads each delay by at most the given fraction, never past the maximum."""
        low = Backoff(1.0, 10.0, jitter=0.2, random=lambda: 0.0)
        high = Backoff(1.0, 10.0, jitter=0.2, random=lambda: 1.0)
        self.assertAlmostEqual(low.next(), 0.8)
        self.assertAlmostEqual(high.next(), 1.2)
        capped = Backoff(10.0, 10.0, jitter=0.2, random=lambda: 1.0)
        self.assertEqual(capped.next(), 10.0)


class AnsweringConnection:
    """A connection that answers every command and script with C{answer()}."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.sent: list[tuple[Any, ...]] = []
        self.transport = None

    def execute_command(self, *args: Any) -> Deferred[Any]:
        self.sent.append(args)
        return self.answer()  # type: ignore[no-any-return]

    def eval(self, script: str, keys: list[str], args: list[Any]) -> Deferred[Any]:
        self.sent.append(("EVAL", script, *keys))
        return self.answer()  # type: ignore[no-any-return]

    def whenDisconnected(self) -> Deferred[Any]:
        return Deferred()


def startedLink(connect: Callable[[str], Deferred[Any]]) -> Link:
    """A started link on a clock, opening its connections with C{connect}."""
    link = Link(
        Clock(), connect, lambda: succeed(None), lambda reason: None, Backoff(), "redis://h:1/0"
    )
    link.start()
    return link


def upLink(answer: Any) -> tuple[Link, AnsweringConnection]:
    """A link that is up, its command connection answering with C{answer()}."""
    command = AnsweringConnection(answer)
    opened = iter([command, AnsweringConnection(answer)])
    return startedLink(lambda kind: succeed(next(opened))), command


class LinkCommandsTests(SynchronousTestCase):
    """Scripts and commands run on the command connection; failures say what went wrong."""

    def test_runSendsTheScriptText(self) -> None:
        """A script is sent as its whole text, with its keys, and its reply comes back."""
        link, command = upLink(lambda: succeed([0, []]))
        self.assertEqual(self.successResultOf(link.run(MEMBERS, ["k"], [])), [0, []])
        self.assertEqual(command.sent, [("EVAL", MEMBERS.text, "k")])

    def test_refusedScriptIsUnavailable(self) -> None:
        """A script Redis refuses fails with Unavailable, logged as a warning naming it."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        link, _ = upLink(lambda: fail(ResponseError("ERR no")))
        self.failureResultOf(link.run(MEMBERS, ["k"], []), Unavailable)
        said = [e for e in events if e.get("log_format") == "redis refused {what}: {why}"]
        self.assertEqual([(e["what"], e["why"]) for e in said], [("members", "ERR no")])

    def test_lostConnectionIsUnavailable(self) -> None:
        """A script whose connection is lost fails with Unavailable, and is no bug."""
        link, _ = upLink(lambda: fail(ConnectionLost("Lost connection")))
        self.failureResultOf(link.run(MEMBERS, ["k"], []), Unavailable)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_refusedCommand(self) -> None:
        """A command Redis refuses fails with Refused, carrying Redis's message."""
        link, command = upLink(lambda: fail(ResponseError("ERR unknown command")))
        failure = self.failureResultOf(link.execute("CONFIG", "GET", "appendonly"), Refused)
        self.assertEqual(str(failure.value), "ERR unknown command")
        self.assertEqual(command.sent, [("CONFIG", "GET", "appendonly")])

    def test_whileDown(self) -> None:
        """While the link is not up, scripts and commands fail at once with Unavailable."""
        link = startedLink(lambda kind: fail(ConnectionRefusedError("refused")))
        self.failureResultOf(link.run(MEMBERS, ["k"], []), Unavailable)
        self.failureResultOf(link.execute("PING"), Unavailable)
