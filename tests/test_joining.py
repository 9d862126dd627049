"""
Tests for L{portshare.joining}: the join state machine, driven by calling its methods in
every order the broker's answers and the member's leave can come in (no Deferreds).
"""

from __future__ import annotations

import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from portshare.chat import Replay
from portshare.joining import (
    Abandon,
    Admit,
    Enter,
    Exit,
    Fetch,
    Joining,
    Step,
    joinedReply,
    newToJoiner,
)
from portshare.wire import Join, Joined, Message, Outgoing, Presence, PresenceBatch


def message(offset: int, room: str = "r") -> Message:
    return Message(room=room, offset=offset, ts=0, nick="x", text=f"m{offset}")


EMPTY = Replay(epoch="e1", last=0, messages=(), recovered=True)


class JoiningTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.command = Join(room="r", nick="ann", since=3, epoch="e1", ref=7)
        self.joining = Joining(self.command, "ann")

    def live(self, replay: Replay = EMPTY, nick: str = "ann") -> Admit | Exit:
        self.joining.subscribed()
        self.joining.entered()
        return self.joining.fetched(replay, ("ann",), 1, nick)

    def test_steps(self) -> None:
        """Once subscribed it asks to enter the nick, once entered to fetch the replay after
        the command's since and epoch, once fetched to admit the member."""
        self.assertEqual(self.joining.step, Step.SUBSCRIBING)
        self.assertEqual(self.joining.subscribed(), Enter("r", "ann"))
        self.assertEqual(self.joining.entered(), Fetch("r", 3, "e1"))
        replay = Replay(epoch="e1", last=5, messages=(message(4), message(5)), recovered=True)
        admit = self.joining.fetched(replay, ("ann", "bob"), 2, "ann")
        self.assertEqual(
            admit,
            Admit(
                joined=Joined(
                    room="r",
                    offset=5,
                    epoch="e1",
                    members=("ann", "bob"),
                    count=2,
                    recovered=True,
                    ref=7,
                ),
                replay=(message(4), message(5)),
                backlog=[],
                recount=None,
            ),
        )
        self.assertEqual(self.joining.step, Step.LIVE)

    def test_backlogThatAddsToTheReplay(self) -> None:
        """Of what the room delivered during the join, the member gets the messages newer
        than the replay, presence other than its own join, and every batch, in order."""
        backlog = [
            Outgoing(message(5)),
            Outgoing(Presence(room="r", event="join", nick="ann")),
            Outgoing(message(6)),
            Outgoing(Presence(room="r", event="join", nick="bob")),
            Outgoing(Presence(room="r", event="leave", nick="ann")),
            Outgoing(PresenceBatch(room="r", count=2, joined=("ann",), left=(), truncated=False)),
        ]
        self.joining.backlog.extend(backlog)
        replay = Replay(epoch="e1", last=5, messages=(message(5),), recovered=True)
        admit = self.live(replay)
        assert isinstance(admit, Admit)
        self.assertEqual(admit.backlog, [backlog[2], backlog[3], backlog[4], backlog[5]])
        self.assertEqual(self.joining.backlog, [])

    def test_renamedWhileJoining(self) -> None:
        """A member that changed nick while joining is admitted with the nicks to recount:
        the one entered, and the one it has now."""
        admit = self.live(nick="annie")
        assert isinstance(admit, Admit)
        self.assertEqual(admit.recount, ("ann", "annie"))

    def test_leftWhileEntering(self) -> None:
        """A member that left while its presence was being counted has it exited once the
        count is done; nothing is fetched."""
        self.joining.subscribed()
        self.joining.left()
        self.assertEqual(self.joining.entered(), Exit("r", "ann"))
        self.assertEqual(self.joining.step, Step.DONE)

    def test_leftWhileFetching(self) -> None:
        """A member that left while its snapshot was in flight is not admitted: its
        presence is exited instead."""
        self.joining.subscribed()
        self.joining.entered()
        self.joining.left()
        self.assertEqual(self.joining.fetched(EMPTY, (), 0, "ann"), Exit("r", "ann"))

    def test_leftWhileSubscribing(self) -> None:
        """A member that left while the room's subscription was in flight is still entered
        (the hub asks for the enter right away), then exited."""
        self.joining.left()
        self.assertEqual(self.joining.subscribed(), Enter("r", "ann"))
        self.assertEqual(self.joining.entered(), Exit("r", "ann"))

    def test_failedBeforeEntering(self) -> None:
        """A join that fails before its presence was counted abandons the room, exiting
        nothing."""
        self.joining.subscribed()
        self.assertEqual(self.joining.failed(), Abandon("r", None))
        self.assertEqual(self.joining.step, Step.DONE)

    def test_failedAfterEntering(self) -> None:
        """A join that fails after its presence was counted abandons the room and exits the
        nick it entered."""
        self.joining.subscribed()
        self.joining.entered()
        self.assertEqual(self.joining.failed(), Abandon("r", "ann"))

    def test_failedAfterLeaving(self) -> None:
        """After a leave, a failure exits what was entered, and only that: the member is
        no longer in the room to abandon."""
        self.joining.subscribed()
        self.joining.entered()
        self.joining.left()
        self.assertEqual(self.joining.failed(), Exit("r", "ann"))
        other = Joining(self.command, "ann")
        other.subscribed()
        other.left()
        self.assertIsNone(other.failed())

    def test_failedOnceLive(self) -> None:
        """A failure after the member was admitted undoes nothing."""
        self.live()
        self.assertIsNone(self.joining.failed())

    def test_outOfOrder(self) -> None:
        """An outcome reported out of order is a bug in the caller, and says so."""
        self.assertRaises(RuntimeError, self.joining.entered)
        self.joining.subscribed()
        self.assertRaises(RuntimeError, self.joining.fetched, EMPTY, (), 0, "ann")
        self.assertRaises(RuntimeError, self.joining.subscribed)


class JoinedReplyTests(SynchronousTestCase):
    def test_offsetIsTheNewestKnown(self) -> None:
        """joined's offset is the room's last offset, or the last replayed message's when
        the replay is newer (it was read after the offset)."""
        command = Join(room="r")
        older = Replay(epoch="e", last=9, messages=(message(8),), recovered=False)
        newer = Replay(epoch="e", last=9, messages=(message(10),), recovered=True)
        self.assertEqual(joinedReply(command, older, (), 0).offset, 9)
        self.assertEqual(joinedReply(command, newer, (), 0).offset, 10)
        self.assertFalse(joinedReply(command, older, (), 0).recovered)


class NewToJoinerTests(SynchronousTestCase):
    def test_whatAddsToTheReplay(self) -> None:
        """Newer messages, others' presence, its own leave and every batch add to what
        joined and the replay said; older messages and its own join do not."""
        batch = PresenceBatch(room="r", count=1, joined=("ann",), left=(), truncated=False)
        self.assertTrue(newToJoiner(message(6), 5, "ann"))
        self.assertFalse(newToJoiner(message(5), 5, "ann"))
        self.assertFalse(newToJoiner(Presence(room="r", event="join", nick="ann"), 5, "ann"))
        self.assertTrue(newToJoiner(Presence(room="r", event="join", nick="bob"), 5, "ann"))
        self.assertTrue(newToJoiner(Presence(room="r", event="leave", nick="ann"), 5, "ann"))
        self.assertTrue(newToJoiner(batch, 5, "ann"))


class SansIOTests(SynchronousTestCase):
    def test_importsNoTwisted(self) -> None:
        """The join machine is sans-IO: importing it imports nothing of Twisted."""
        found = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, portshare.joining; "
                "print(sorted(m for m in sys.modules if m.split('.')[0] == 'twisted'))",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        self.assertEqual(found.strip(), "[]")
