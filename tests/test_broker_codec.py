"""
Tests for L{portshare.broker.codec}: what Redis returns becomes messages, presence, replays
and rows, and the replay rule is L{portshare.chat.RoomLog}'s.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from portshare.broker.codec import (
    Published,
    PublishedBatch,
    batchBody,
    historyOf,
    isDelivered,
    membersOf,
    messageBody,
    parseEntries,
    parsePayload,
    replayOf,
    roomsOf,
)
from portshare.chat import RoomLog
from portshare.wire import Message, Presence


class ParsingTests(SynchronousTestCase):
    """What Redis returns becomes messages, presence, replays and rows."""

    def test_entries(self) -> None:
        """XRANGE entries with IDs <offset>-0 become messages with those offsets."""
        raw = [
            ["7-0", ["n", "ann", "t", "hi | there\n", "ts", "1700000000000"]],
            [b"8-0", [b"n", b"b", b"t", b"", b"ts", b"5"]],
        ]
        self.assertEqual(
            parseEntries("r", raw),
            (
                Message(room="r", offset=7, ts=1700000000000, nick="ann", text="hi | there\n"),
                Message(room="r", offset=8, ts=5, nick="b", text=""),
            ),
        )
        with self.assertRaises(ValueError):
            parseEntries("r", [["9-0", ["n", "x"]]])

    def test_payloadMessage(self) -> None:
        """A published message carries its epoch; any nick and text survive the trip."""
        nick, text = "ann|x", 'say "|" \u00e9\U0001f600\n'
        payload = f"m|e1|12|99|{messageBody(nick, text)}"
        self.assertEqual(
            parsePayload("r", payload),
            Published("e1", Message(room="r", offset=12, ts=99, nick=nick, text=text)),
        )

    def test_payloadBatch(self) -> None:
        """A batch carries consecutive offsets from its first; nicks and texts survive."""
        items = [("ann|x", 'say "|" \u00e9\U0001f600\n', 7, None), ("bob", "", 8, None)]
        payload = f"b|e1|12|2|{batchBody(items)}"
        self.assertEqual(
            parsePayload("r", payload),
            PublishedBatch(
                "e1",
                (
                    Message(room="r", offset=12, ts=7, nick="ann|x", text=items[0][1]),
                    Message(room="r", offset=13, ts=8, nick="bob", text=""),
                ),
            ),
        )

    def test_entriesWithUser(self) -> None:
        """An entry's optional C{u} field is its message's user; without it, anonymous."""
        raw = [
            ["7-0", ["n", "ann", "t", "hi", "ts", "1", "u", "auth0|ann"]],
            [b"8-0", [b"n", b"b", b"t", b"", b"ts", b"5"]],
        ]
        self.assertEqual(
            [m.user for m in parseEntries("r", raw)],
            ["auth0|ann", None],
        )

    def test_payloadMessageWithUser(self) -> None:
        """
        An authenticated sender's message carries its user (any characters); the payload of
        an anonymous one keeps the old two-element shape, which older instances read.
        """
        user = 'auth0|"x"\u00e9'
        payload = f"m|e1|12|99|{messageBody('ann', 'hi', user)}"
        self.assertEqual(
            parsePayload("r", payload),
            Published("e1", Message(room="r", offset=12, ts=99, nick="ann", text="hi", user=user)),
        )
        self.assertEqual(messageBody("ann", "hi"), '["ann","hi"]')
        self.assertIsNone(parsePayload("r", 'm|e1|1|2|["a","b"]').message.user)  # type: ignore[union-attr]

    def test_payloadBatchWithUsers(self) -> None:
        """In a batch, each message has its own user or none; the old shape is still read."""
        items = [("ann", "a", 7, "u1"), ("bob", "b", 8, None), ("cy", "c", 9, "u|3")]
        batch = parsePayload("r", f"b|e1|12|3|{batchBody(items)}")
        self.assertEqual([m.user for m in batch.messages], ["u1", None, "u|3"])  # type: ignore[union-attr]
        self.assertEqual(batchBody([("a", "b", 1, None)]), '[[1,"a","b"]]')
        old = parsePayload("r", 'b|e1|1|2|[[1,"a","b"],[2,"c","d"]]')
        self.assertEqual([m.user for m in old.messages], [None, None])  # type: ignore[union-attr]

    def test_badUsers(self) -> None:
        """A user that is not one string is refused, in a single message and in a batch."""
        for payload in (
            'm|e|1|1|["a","b",1]',
            'm|e|1|1|["a","b","u","v"]',
            'm|e|1|1|["a","b",null]',
            'b|e|1|1|[[1,"a","b",2]]',
            'b|e|1|1|[[1,"a","b","u","v"]]',
            'm|e|1|1|[1,"b"]',
        ):
            with self.assertRaises(ValueError, msg=payload):
                parsePayload("r", payload)

    def test_badBatches(self) -> None:
        """A batch that is not a list of [ts, nick, text] (or is empty) is refused."""
        one = '[[1,"a","b"]]'
        for payload in ("b|e|1|0|[]", f"b|e|x|1|{one}", 'b|e|1|1|[["1","a","b"]]',
                        'b|e|1|1|[[1,"a"]]', "b|e|1|1|{}", "b|e|1", f"b|e|1|2|{one}"):  # fmt: skip
            with self.assertRaises(ValueError, msg=payload):
                parsePayload("r", payload)

    def test_isDelivered(self) -> None:
        """A payload is recognised as delivered from its head: epoch, and last offset."""
        body = batchBody([("a", "b", 1, None), ("c", "d", 2, "u|1")])
        self.assertTrue(isDelivered(f"b|e|4|2|{body}", "e", 5))
        self.assertFalse(isDelivered(f"b|e|4|2|{body}", "e", 4))  # offset 5 is not yet
        self.assertFalse(isDelivered(f"b|e|4|2|{body}", "f", 9))  # another epoch
        self.assertTrue(isDelivered(f"m|e|3|9|{messageBody('a', 'b')}", "e", 3))
        self.assertFalse(isDelivered(f"m|e|4|9|{messageBody('a', 'b')}", "e", 3))
        for other in ("p|join|e", "m|e|x|1|[]", "b|e|1", "", "m|e|1|1|[]"):
            self.assertFalse(isDelivered(other, None, 9), other)
            self.assertFalse(isDelivered(other, "e", 0), other)

    def test_payloadPresence(self) -> None:
        """Presence payloads become presence events; a nick may contain the separator."""
        self.assertEqual(
            parsePayload("r", b"p|join|a|b"), Presence(room="r", event="join", nick="a|b")
        )
        self.assertEqual(
            parsePayload("r", "p|leave|z"), Presence(room="r", event="leave", nick="z")
        )

    def test_payloadUserPresence(self) -> None:
        """
        An authenticated member's presence (C{u|event|["nick","user"]}, as the scripts'
        cjson writes it: '/' escaped) carries its user; a malformed one is refused.
        """
        self.assertEqual(
            parsePayload("r", 'u|join|["a|b","auth0\\/x|1"]'),
            Presence(room="r", event="join", nick="a|b", user="auth0/x|1"),
        )
        self.assertEqual(
            parsePayload("r", b'u|leave|["z","u"]'),
            Presence(room="r", event="leave", nick="z", user="u"),
        )
        for payload in ('u|wave|["a","u"]', 'u|join|["","u"]', 'u|join|["a"]', 'u|join|["a",1]',
                        "u|join|a", "u|join|", 'u|join|["a","u","v"]'):  # fmt: skip
            with self.assertRaises(ValueError, msg=payload):
                parsePayload("r", payload)

    def test_badPayloads(self) -> None:
        """Anything else is refused."""
        for payload in ("", "x|y", "m|e|notanumber|1|[]", "m|e|1|1|{}", "p|wave|ann", "p|join|"):
            with self.assertRaises(ValueError, msg=payload):
                parsePayload("r", payload)

    def test_rowsAndMembers(self) -> None:
        """ROOMS rows are sorted by room; MEMBERS gives (nicks, count)."""
        self.assertEqual(roomsOf(["b", 2, 1, "a", 0, 3]), [("a", 0, 3), ("b", 2, 1)])
        self.assertEqual(membersOf([3, ["a", "b"]]), (("a", "b"), 3))
        self.assertEqual(historyOf("r", [None, []]), (None, ()))


class ReplayRuleTests(SynchronousTestCase):
    """replayOf follows RoomLog.replay exactly, for every since and epoch."""

    def test_sameAsRoomLog(self) -> None:
        """
        For a log of n messages keeping h, what the SNAPSHOT script reads (the held window
        after since, or all held on an epoch mismatch or since beyond last) gives the same
        Replay as RoomLog.
        """
        for history in (1, 3, 5):
            for n in range(0, 8):
                log = RoomLog("r", "e", history)
                for i in range(n):
                    log.append("ann", f"m{i + 1}", i)
                held = log.after(0)
                for since in (None, 0, 1, 2, n - 1, n, n + 1, n + 5):
                    if since is not None and since < 0:
                        continue
                    for epoch in (None, "e", "other"):
                        start = 1
                        if since is not None and not (
                            (epoch is not None and epoch != "e") or since > n
                        ):
                            start = since + 1
                        start = max(start, n - history + 1)
                        window = [] if since is None else [m for m in held if m.offset >= start]
                        raw = [
                            "e",
                            n,
                            [
                                [f"{m.offset}-0", ["n", m.nick, "t", m.text, "ts", str(m.ts)]]
                                for m in window
                            ],
                        ]
                        self.assertEqual(
                            replayOf("r", since, epoch, raw),
                            log.replay(since, epoch),
                            (history, n, since, epoch),
                        )
