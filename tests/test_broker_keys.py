"""
Tests for L{portshare.broker.keys}: the Redis broker's key layout.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from portshare.broker.keys import KeyLayout


class KeyLayoutTests(SynchronousTestCase):
    """Every key of a room carries the room as a hash tag; channels map back to rooms."""

    def test_roomKeys(self) -> None:
        """A room's keys share the {room} hash tag under the prefix."""
        keys = KeyLayout("p").room("lobby")
        self.assertEqual(
            (keys.epoch, keys.seq, keys.log, keys.gen, keys.here, keys.channel),
            (
                "p:{lobby}:epoch",
                "p:{lobby}:seq",
                "p:{lobby}:log",
                "p:{lobby}:gen",
                "p:{lobby}:here",
                "p:{lobby}:events",
            ),
        )
        self.assertEqual(keys.history, [keys.epoch, keys.seq, keys.log, keys.gen])
        # the scripts build the users hash from the here key (_common.lua's usersOf)
        self.assertEqual(keys.users, "p:{lobby}:users")
        self.assertEqual(keys.users, keys.here[: -len("here")] + "users")

    def test_globalKeys(self) -> None:
        """The rooms index and instance keys live under the prefix."""
        layout = KeyLayout("p")
        self.assertEqual(
            (layout.rooms, layout.instance("i1"), layout.base), ("p:rooms", "p:instance:i1", "p:")
        )

    def test_roomOfChannel(self) -> None:
        """A room's channel names it; other channels name nothing."""
        layout = KeyLayout("p")
        for room in ("a", "a.b-c_d", "x" * 64):
            self.assertEqual(layout.roomOfChannel(layout.room(room).channel), room)
        self.assertIsNone(layout.roomOfChannel("q:{a}:events"))
        self.assertIsNone(layout.roomOfChannel("p:{a}:log"))
        # the server API's channels are no room's
        self.assertEqual((layout.control, layout.reply("i1")), ("p:control", "p:reply:i1"))
        self.assertIsNone(layout.roomOfChannel(layout.control))
        self.assertIsNone(layout.roomOfChannel(layout.reply("{a}:events")))
