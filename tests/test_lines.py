"""
Tests for L{portshare.lines}: lines to the typed commands of L{portshare.wire}, and the
protocol's parts as the hub sees them.  The protocol over the shared port is tested in
C{tests/test_upgrade.py}.
"""

from __future__ import annotations

import orjson
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from portshare.broker.memory import MemoryBroker
from portshare.errors import RemoteError
from portshare.hub import Hub, IFrontEnd, IMember
from portshare.limits import Limits
from portshare.lines import LinesFactory, parseLine, shortForm
from portshare.metrics import Metrics
from portshare.wire import Join, Leave, Nick, Say, parseCommand


class ParseLineTests(SynchronousTestCase):
    def test_shortForms(self) -> None:
        """The short forms become the WebSocket's JSON commands."""
        cases = {
            b"JOIN lobby": {"type": "join", "room": "lobby"},
            b"join lobby 5 e1\r": {"type": "join", "room": "lobby", "since": 5, "epoch": "e1"},
            b"SAY lobby hello  world": {"type": "say", "room": "lobby", "text": "hello  world"},
            b"LEAVE lobby": {"type": "leave", "room": "lobby"},
            b"NICK Ann Lee": {"type": "nick", "nick": "Ann Lee"},
            b"SAY": {"type": "say"},
            b"WAT x": {"type": "wat"},
        }
        for line, command in cases.items():
            self.assertEqual(shortForm(line), command, line)
        self.assertEqual(parseLine(b' {"type":"nick","nick":"x"}'), Nick(nick="x"))

    def test_typedCommands(self) -> None:
        """A line, short or JSON, is parsed straight into a typed command."""
        cases = {
            b"JOIN lobby": Join(room="lobby"),
            b"join lobby 5 e1\r": Join(room="lobby", since=5, epoch="e1"),
            b"SAY lobby hello  world": Say(room="lobby", text="hello  world"),
            b"LEAVE lobby": Leave(room="lobby"),
            b"NICK Ann Lee": Nick(nick="Ann Lee"),
            b'{"type":"say","room":"r","text":"hi","ref":3}': Say(room="r", text="hi", ref=3),
        }
        for line, command in cases.items():
            self.assertEqual(parseLine(line), command, line)

    def test_refusalsAsTheirJsonForms(self) -> None:
        """An invalid short form is refused with the code and reason its JSON form gets
        on the WebSocket."""
        for line in (
            b"SAY",
            b"SAY lobby",
            b"SAY bad/room hi",
            b"SAY lobby " + b"x" * 11,
            b"WAT x",
            b"NICK",
            b"NICK " + b"n" * 33,
            b"JOIN",
            b"JOIN lobby abc",
            b"JOIN lobby 5 " + b"e" * 65,
            b"LEAVE",
            b"SAY\tlobby\thi",
        ):
            with self.assertRaises(RemoteError) as fromLine:
                parseLine(line, maxText=10)
            with self.assertRaises(RemoteError) as fromJson:
                parseCommand(orjson.dumps(shortForm(line)), maxText=10)
            self.assertEqual(
                (fromLine.exception.code, fromLine.exception.reason),
                (fromJson.exception.code, fromJson.exception.reason),
                line,
            )

    def test_offsetsNoJsonHolds(self) -> None:
        """A since that int() cannot read, or too big for JSON, is refused as a bad since
        (it used to close the connection as an internal error)."""
        for line in (b"JOIN lobby 99999999999999999999999", "JOIN lobby ²".encode()):
            with self.assertRaises(RemoteError) as refused:
                parseLine(line)
            self.assertEqual(refused.exception.reason, "since must be a whole number >= 0")


class LinesFactoryTests(SynchronousTestCase):
    def test_membersAndTheirFrontEnd(self) -> None:
        """Each line connection is a hub member, and the factory their front end."""
        clock = Clock()
        factory = LinesFactory(Hub(MemoryBroker(5, 5), clock, Limits(), Metrics()), clock)
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 4000))
        self.assertTrue(verifyObject(IMember, protocol))
        self.assertTrue(verifyObject(IFrontEnd, factory))
        self.assertIs(protocol.frontEnd, factory)
