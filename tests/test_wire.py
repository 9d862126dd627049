"""
Tests for L{portshare.wire}, the sans-IO codec between frames and typed commands and events.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from portshare.errors import BadRequest, RemoteError, TooLarge, UnknownType
from portshare.wire import (
    FALLBACK_MAX_BYTES,
    FALLBACK_MAX_DEPTH,
    SUBPROTOCOL,
    Ack,
    BadEvent,
    Close,
    Error,
    Join,
    Joined,
    Leave,
    Left,
    Message,
    Nick,
    Outgoing,
    Presence,
    PresenceBatch,
    Say,
    UnknownEvent,
    binaryFrameError,
    commandFrom,
    commandToDict,
    dumps,
    encode,
    encodeCommand,
    encodeEvent,
    parseCommand,
    parseEvent,
    validNick,
    validOffset,
    validRoom,
    validText,
)

MAX_SAFE = 2**53 - 1

# Deterministic, quick, and leaving no example database behind.
PROPERTY = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow],
)


def frame(**fields: Any) -> bytes:
    """One client frame holding C{fields}."""
    return orjson.dumps(fields)


class ParseCommandTests(SynchronousTestCase):
    """parseCommand turns each well-formed client frame into its command."""

    def test_subprotocol(self) -> None:
        """The chat subprotocol is named portshare.chat.v1."""
        self.assertEqual(SUBPROTOCOL, "portshare.chat.v1")

    def test_joinMinimal(self) -> None:
        """A join with only a room leaves every optional field unset."""
        self.assertEqual(
            parseCommand(frame(type="join", room="lobby")),
            Join(room="lobby", nick=None, since=None, epoch=None, token=None, ref=None),
        )

    def test_joinFull(self) -> None:
        """A join carries its nick, since, epoch, token and ref."""
        self.assertEqual(
            parseCommand(
                frame(
                    type="join",
                    room="lobby",
                    nick="alice",
                    since=17,
                    epoch="abc123",
                    token="tok.sig",
                    ref="j1",
                )
            ),
            Join(room="lobby", nick="alice", since=17, epoch="abc123", token="tok.sig", ref="j1"),
        )

    def test_joinNulls(self) -> None:
        """Explicit nulls for a join's optional fields mean they are absent."""
        self.assertEqual(
            parseCommand(
                frame(type="join", room="r", nick=None, since=None, epoch=None, token=None)
            ),
            Join(room="r"),
        )

    def test_leave(self) -> None:
        """A leave carries its room and ref."""
        self.assertEqual(
            parseCommand(frame(type="leave", room="lobby", ref=3)), Leave(room="lobby", ref=3)
        )

    def test_say(self) -> None:
        """A say carries its room, text and ref."""
        self.assertEqual(
            parseCommand(frame(type="say", room="lobby", text="hello", ref="m-1")),
            Say(room="lobby", text="hello", ref="m-1"),
        )

    def test_nick(self) -> None:
        """A nick command carries the new nick."""
        self.assertEqual(parseCommand(frame(type="nick", nick="bob")), Nick(nick="bob", ref=None))

    def test_textPayload(self) -> None:
        """A frame given as text parses like its UTF-8 bytes."""
        self.assertEqual(
            parseCommand('{"type":"say","room":"r","text":"h\u00e9"}'), Say(room="r", text="hé")
        )

    def test_unknownFieldsIgnored(self) -> None:
        """Fields a command does not know are ignored (the contract may grow)."""
        self.assertEqual(
            parseCommand(frame(type="leave", room="r", extra=[1, 2], text="x")), Leave(room="r")
        )

    def test_commandsFrozen(self) -> None:
        """Commands cannot be changed once parsed."""
        command = parseCommand(frame(type="say", room="r", text="x"))
        self.assertRaises(dataclasses.FrozenInstanceError, setattr, command, "text", "y")


class ParseErrorTests(SynchronousTestCase):
    """parseCommand refuses malformed frames with a RemoteError carrying the client's ref."""

    def assertRefused(
        self,
        payload: bytes | str,
        errorType: type[RemoteError],
        code: str,
        ref: object = None,
        reason: str | None = None,
        maxText: int = 4096,
    ) -> RemoteError:
        error = self.assertRaises(errorType, parseCommand, payload, maxText)
        self.assertEqual((error.code, error.ref), (code, ref))
        if reason is not None:
            self.assertEqual(error.reason, reason)
        return error

    def test_notJson(self) -> None:
        """A frame that is not JSON is a bad_request without a ref."""
        reason = "frame is not valid JSON"
        for payload in (b"hello", b"", b'{"type": "say"', b"\xff\xfe", b"{'a': 1}", '"\ud800"'):
            self.assertRefused(payload, BadRequest, "bad_request", None, reason)

    def test_notObject(self) -> None:
        """A JSON frame other than an object is a bad_request without a ref."""
        reason = "frame must be a JSON object"
        for payload in (b"[]", b'[{"type":"join","room":"r"}]', b'"join"', b"null", b"42"):
            self.assertRefused(payload, BadRequest, "bad_request", None, reason)

    def test_unknownType(self) -> None:
        """An unknown type is code unknown_type, with the client's ref attached."""
        self.assertRefused(
            frame(type="dance", ref="r7"),
            UnknownType,
            "unknown_type",
            "r7",
            "unknown message type 'dance'",
        )

    def test_unknownTypeTruncated(self) -> None:
        """The reason for an unknown type quotes at most 32 characters of it."""
        self.assertRefused(
            frame(type="x" * 100, ref=5),
            UnknownType,
            "unknown_type",
            5,
            f"unknown message type {'x' * 32!r}",
        )

    def test_typeMissing(self) -> None:
        """A frame without a type is a bad_request with the client's ref."""
        self.assertRefused(
            frame(room="r", ref="q"), BadRequest, "bad_request", "q", '"type" must be a string'
        )

    def test_typeNotString(self) -> None:
        """A type that is not a string is a bad_request with the client's ref."""
        for kind in (1, None, ["join"], {"join": 1}, True):
            self.assertRefused(frame(type=kind, ref=1), BadRequest, "bad_request", 1)

    def test_typeCaseSensitive(self) -> None:
        """Types are matched exactly: 'Join' is unknown."""
        self.assertRefused(frame(type="Join", room="r"), UnknownType, "unknown_type")

    def test_errorsCarryRef(self) -> None:
        """A validation error about a command with a valid ref carries that ref."""
        self.assertRefused(
            frame(type="say", room="bad room", text="x", ref="s1"), BadRequest, "bad_request", "s1"
        )
        self.assertRefused(
            frame(type="join", room="r", since=-1, ref=0), BadRequest, "bad_request", 0
        )

    def test_intRef(self) -> None:
        """Integer refs up to +-(2**53-1), zero included, are echoed unchanged."""
        for ref in (0, 1, -1, MAX_SAFE, -MAX_SAFE):
            self.assertEqual(parseCommand(frame(type="leave", room="r", ref=ref)).ref, ref)

    def test_stringRef(self) -> None:
        """String refs of up to 64 characters, the empty one included, are echoed unchanged."""
        for ref in ("", "a", "x" * 64, "é" * 64):
            self.assertEqual(parseCommand(frame(type="leave", room="r", ref=ref)).ref, ref)

    def test_invalidRef(self) -> None:
        """An invalid ref makes the frame a bad_request that carries no ref."""
        for ref in (True, False, 1.5, 1.0, "x" * 65, [1], {"a": 1}, MAX_SAFE + 1, -MAX_SAFE - 1):
            self.assertRefused(
                frame(type="leave", room="r", ref=ref), BadRequest, "bad_request", None
            )

    def test_invalidRefBeforeUnknownType(self) -> None:
        """An invalid ref is reported even when the type is unknown, without a ref."""
        self.assertRefused(frame(type="dance", ref=True), BadRequest, "bad_request", None)

    def test_nullRef(self) -> None:
        """A null ref is refused (a ref is a string or an integer)."""
        self.assertRefused(frame(type="leave", room="r", ref=None), BadRequest, "bad_request")


def loneSurrogate(**fields: Any) -> bytes:
    """A frame holding C{fields} as RFC 8259 allows and orjson refuses: a string may hold a
    lone surrogate escape (C{"\\ud800"})."""
    return json.dumps(fields).encode("ascii")


HUGE = "1" * 10_000  # digits of an integer RFC 8259 allows, beyond any double


class RefFallbackTests(SynchronousTestCase):
    """
    A frame that orjson refuses, but that is JSON (RFC 8259) or nearly, is read again, so
    that the error carries the client's ref and names the command's real fault.
    """

    def assertRefused(
        self, payload: bytes | str, reason: str, ref: object, errorType: type = BadRequest
    ) -> None:
        # the premise: orjson refuses it
        self.assertRaises(orjson.JSONDecodeError, orjson.loads, payload)
        error = self.assertRaises(errorType, parseCommand, payload)
        self.assertEqual((error.reason, error.ref), (reason, ref))
        orjson.loads(encode(Error.fromException(error)))  # the answer encodes

    def test_loneSurrogateNick(self) -> None:
        """A lone surrogate in a nick (nick or join) is a bad nick, answered with the ref."""
        nickReason = "nick must be 1 to 32 printable characters"
        self.assertRefused(loneSurrogate(type="nick", nick="\ud800", ref=4), nickReason, 4)
        self.assertRefused(
            loneSurrogate(type="join", room="r", nick="a\udfffb", ref="j"), nickReason, "j"
        )

    def test_loneSurrogateText(self) -> None:
        """A lone surrogate in a say's text is refused (it cannot be sent on as UTF-8)."""
        self.assertRefused(
            loneSurrogate(type="say", room="r", text="hi \udc00", ref="s"),
            "text must not hold a lone surrogate (\\ud800 to \\udfff)",
            "s",
        )

    def test_loneSurrogateOtherFields(self) -> None:
        """A lone surrogate in a room, epoch or token fails that field's rule, with the ref;
        in a type, the type is unknown (and quoted escaped)."""
        self.assertRefused(
            loneSurrogate(type="leave", room="\ud800", ref=1),
            "room must be 1 to 64 characters of A-Z a-z 0-9 . _ -, not . or ..",
            1,
        )
        self.assertRefused(
            loneSurrogate(type="join", room="r", epoch="\ud800", ref=2),
            "epoch must be a string of 1 to 64 characters",
            2,
        )
        self.assertRefused(
            loneSurrogate(type="join", room="r", token="t\ud800", ref=3),
            "token must be a string of 1 to 2048 characters",
            3,
        )
        self.assertRefused(
            loneSurrogate(type="\ud800", ref=5), "unknown message type '\\ud800'", 5, UnknownType
        )

    def test_loneSurrogateRef(self) -> None:
        """A ref holding a lone surrogate is an invalid ref: the error has no ref."""
        self.assertRefused(
            loneSurrogate(type="leave", room="r", ref="\ud800"),
            "ref must be a string of at most 64 characters or an integer",
            None,
        )

    def test_surrogatePairAccepted(self) -> None:
        """A surrogate pair escape is one character, read by orjson itself."""
        self.assertEqual(
            parseCommand(loneSurrogate(type="nick", nick="\U0001f600")), Nick(nick="\U0001f600")
        )

    def test_hugeIntegerElsewhere(self) -> None:
        """A 10,000-digit integer in a field no command reads does not stop the command."""
        payload = b'{"type":"leave","room":"r","ref":3,"x":%s}' % HUGE.encode()
        self.assertRaises(orjson.JSONDecodeError, orjson.loads, payload)
        self.assertEqual(parseCommand(payload), Leave(room="r", ref=3))

    def test_hugeNumbersInFields(self) -> None:
        """Numbers beyond a double in since are out of range, with the ref; as the ref, the
        ref is invalid."""
        reason = "since must be a whole number >= 0"
        for number in (HUGE, "-" + HUGE, "1e400", "-1e400"):
            payload = '{"type":"join","room":"r","since":' + number + ',"ref":"h"}'
            error = self.assertRaises(BadRequest, parseCommand, payload)
            self.assertEqual((error.reason, error.ref), (reason, "h"), number[:10])
        error = self.assertRaises(
            BadRequest, parseCommand, '{"type":"leave","room":"r","ref":' + HUGE + "}"
        )
        self.assertIsNone(error.ref)

    def test_notANumber(self) -> None:
        """NaN and the infinities are not JSON: the frame is refused as such, with its ref
        (or without, when the ref is invalid)."""
        for constant in ("NaN", "Infinity", "-Infinity"):
            self.assertRefused(
                '{"type":"say","room":"r","text":"x","ref":7,"n":[' + constant + "]}",
                f"frame is not valid JSON: {constant} is not a JSON number",
                7,
            )
        self.assertRefused(
            '{"type":"say","room":"r","text":"x","ref":true,"n":NaN}',
            "frame is not valid JSON: NaN is not a JSON number",
            None,
        )
        self.assertRefused('{"ref":NaN}', "frame is not valid JSON: NaN is not a JSON number", None)
        self.assertRefused("NaN", "frame is not valid JSON: NaN is not a JSON number", None)

    def test_stillNotJson(self) -> None:
        """What neither parser reads stays "frame is not valid JSON", without a ref."""
        for payload in (
            b'{"type":"leave","room":"r","ref":1,}',
            b"{'type':'leave','ref':1}",
            b'{"type":"leave","ref":1',
            b'\xef\xbb\xbf{"type":"leave","ref":1}',
            '{"type":"leave","ref":1,"x":"\ud800"}',  # a str holding a surrogate is not UTF-8
            b'{"type":"leave","ref":1,"x":"\xff"}',
        ):
            self.assertRefused(payload, "frame is not valid JSON", None)

    def test_fallbackDepthLimit(self) -> None:
        """The fallback reads frames nested up to FALLBACK_MAX_DEPTH; deeper ones are not
        read (brackets inside strings do not count)."""

        def nested(depth: int) -> bytes:
            inner = "[" * (depth - 1) + "]" * (depth - 1)
            return b'{"type":"nick","nick":"\\ud800","ref":1,"x":%s,"s":"[[[[[[[[[["}' % (
                inner.encode()
            )

        error = self.assertRaises(BadRequest, parseCommand, nested(FALLBACK_MAX_DEPTH))
        self.assertEqual(error.ref, 1)
        error = self.assertRaises(BadRequest, parseCommand, nested(FALLBACK_MAX_DEPTH + 1))
        self.assertEqual((error.reason, error.ref), ("frame is not valid JSON", None))
        wide = b'{"type":"nick","nick":"\\ud800","ref":1,"x":[%s]}' % b",".join([b"[[]]"] * 50)
        self.assertEqual(self.assertRaises(BadRequest, parseCommand, wide).ref, 1)

    def test_orjsonDepthLimitKept(self) -> None:
        """A frame too deep for orjson (1,024 levels) is still refused, without a ref."""
        payload = b'{"ref":1,"x":' + b"[" * 2000 + b"]" * 2000 + b"}"
        error = self.assertRaises(BadRequest, parseCommand, payload)
        self.assertEqual((error.reason, error.ref), ("frame is not valid JSON", None))

    def test_fallbackSizeLimit(self) -> None:
        """The fallback reads frames of up to FALLBACK_MAX_BYTES; longer ones are not read."""
        head = b'{"type":"nick","nick":"\\ud800","ref":1,"pad":"'
        for size, ref in ((FALLBACK_MAX_BYTES, 1), (FALLBACK_MAX_BYTES + 1, None)):
            payload = head + b"x" * (size - len(head) - 2) + b'"}'
            self.assertEqual(len(payload), size)
            self.assertEqual(self.assertRaises(BadRequest, parseCommand, payload).ref, ref)


class CommandFromTests(SynchronousTestCase):
    """commandFrom validates a command's fields exactly as parseCommand validates a frame."""

    def test_sameCommands(self) -> None:
        """The fields of a valid frame make the command the frame makes."""
        for fields in (
            {"type": "join", "room": "r", "nick": "ann", "since": 3, "epoch": "e", "ref": 1},
            {"type": "say", "room": "r", "text": "hi", "ref": "x"},
            {"type": "leave", "room": "r"},
            {"type": "nick", "nick": "bob"},
        ):
            self.assertEqual(commandFrom(fields), parseCommand(frame(**fields)), fields)

    def test_sameRefusals(self) -> None:
        """Invalid fields are refused with the frame's code, reason and ref."""
        for fields in (
            {"type": "say", "ref": 4},
            {"type": "say", "room": "r", "text": "x" * 11, "ref": 5},
            {"type": "wat"},
            {"type": 3, "ref": "t"},
            {"type": "join", "room": "r", "since": -1, "ref": 6},
            {"type": "nick", "nick": "n", "ref": True},
        ):
            fromFields = self.assertRaises(RemoteError, commandFrom, fields, 10)
            fromFrame = self.assertRaises(RemoteError, parseCommand, frame(**fields), 10)
            self.assertEqual(
                (fromFields.code, fromFields.reason, fromFields.ref),
                (fromFrame.code, fromFrame.reason, fromFrame.ref),
                fields,
            )


class OutgoingTests(SynchronousTestCase):
    """An Outgoing is an event with its encoding, and each transport's framing of it."""

    def test_payloadIsTheEncoding(self) -> None:
        """The payload is encode(event), made once."""
        event = Message(room="r", offset=1, ts=2, nick="n", text="h\u00e9")
        outgoing = Outgoing(event)
        self.assertIs(outgoing.event, event)
        self.assertEqual(outgoing.payload, encode(event))

    def test_framedOncePerKey(self) -> None:
        """framed builds a key's framing on the first call and returns the same object on
        later ones; another key gets its own."""
        outgoing = Outgoing(Left(room="r"))
        built: list[str] = []

        def build(name: str) -> Any:
            def framing(o: Outgoing) -> bytes:
                built.append(name)
                return name.encode() + o.payload

            return framing

        first = outgoing.framed("ws", build("ws"))
        self.assertIs(outgoing.framed("ws", build("ws")), first)
        self.assertEqual(outgoing.framed("sse", build("sse")), b"sse" + outgoing.payload)
        self.assertEqual(built, ["ws", "sse"])


class BinaryFrameTests(SynchronousTestCase):
    """binaryFrameError refuses any binary frame, with the ref of the command it holds."""

    def test_validCommand(self) -> None:
        """A binary frame holding a valid command is refused, carrying its ref."""
        error = binaryFrameError(frame(type="say", room="r", text="hi", ref="b1"))
        self.assertEqual(
            (error.code, error.reason, error.ref),
            ("bad_request", "frames must be text (JSON)", "b1"),
        )

    def test_faultyCommand(self) -> None:
        """Whatever else is wrong with the command it holds, the fault is the binary frame;
        its ref is read as from a text frame (the fallback included)."""
        for payload, ref in (
            (frame(type="dance", ref=2), 2),
            (loneSurrogate(type="nick", nick="\ud800", ref=3), 3),
            (b'{"type":"leave","ref":4,"n":NaN}', 4),
        ):
            error = binaryFrameError(payload)
            self.assertEqual((error.reason, error.ref), ("frames must be text (JSON)", ref))

    def test_noReadableRef(self) -> None:
        """Without a JSON object holding a valid ref, the refusal has no ref."""
        for payload in (
            b"",
            b"\x00\x01",
            b"\xff\xfe{}",
            b"[1]",
            frame(type="leave", room="r"),
            frame(type="leave", room="r", ref=True),
            '{"ref":1}'.encode("utf-16"),
        ):
            error = binaryFrameError(payload)
            self.assertEqual((error.reason, error.ref), ("frames must be text (JSON)", None))


class RoomValidationTests(SynchronousTestCase):
    """A room is 1 to 64 characters of A-Z a-z 0-9 . _ -."""

    def test_valid(self) -> None:
        """Rooms of the allowed characters, 1 to 64 long, are accepted unchanged."""
        for room in ("a", "Z", "0", "_", "-", "Team-1.dev_x", "r" * 64, "...", ".a", "a.", "._"):
            self.assertEqual(parseCommand(frame(type="leave", room=room)), Leave(room=room))
            self.assertEqual(validRoom(room), room)

    def test_dotNamesRefused(self) -> None:
        """The names . and .. are refused everywhere (an HTTP path cannot name them: clients
        normalise them away), with the reason saying so and the client's ref."""
        for room in (".", ".."):
            error = self.assertRaises(
                BadRequest, parseCommand, frame(type="join", room=room, ref="d")
            )
            self.assertEqual(
                (error.ref, error.reason),
                ("d", "room must be 1 to 64 characters of A-Z a-z 0-9 . _ -, not . or .."),
            )
            self.assertRaises(BadRequest, validRoom, room)

    def test_invalid(self) -> None:
        """Empty, too long, or other characters (spaces, slashes, non-ASCII) are refused."""
        for room in ("", "r" * 65, "a b", "a/b", "caf\u00e9", "r\n", "\nr", "a:b", "#x", "\uff41"):
            error = self.assertRaises(
                BadRequest, parseCommand, frame(type="say", room=room, text="t")
            )
            self.assertEqual(
                error.reason,
                "room must be 1 to 64 characters of A-Z a-z 0-9 . _ -, not . or ..",
                repr(room),
            )

    def test_notString(self) -> None:
        """A missing room, or one that is not a string, is refused."""
        self.assertRaises(BadRequest, parseCommand, frame(type="leave"))
        for room in (None, 1, ["r"], True):
            self.assertRaises(BadRequest, parseCommand, frame(type="leave", room=room))
            self.assertRaises(BadRequest, validRoom, room)


class NickValidationTests(SynchronousTestCase):
    """A nick is 1 to 32 printable characters, not only spaces."""

    def test_valid(self) -> None:
        """Printable nicks of 1 to 32 characters, spaces inside or around, are accepted."""
        for nick in ("a", "x" * 32, "é" * 32, " a ", "Ann Lee", "\u2603\U0001f600", "!@#"):
            self.assertEqual(parseCommand(frame(type="nick", nick=nick)), Nick(nick=nick))
            self.assertEqual(validNick(nick), nick)

    def test_invalid(self) -> None:
        """Empty, too long, only spaces, or holding unprintable characters is refused."""
        for nick in ("", "x" * 33, " ", "   ", "a\tb", "a\nb", "\x00", "a\u200bb", "\x7f"):
            error = self.assertRaises(BadRequest, parseCommand, frame(type="nick", nick=nick))
            self.assertEqual(error.reason, "nick must be 1 to 32 printable characters", repr(nick))

    def test_notString(self) -> None:
        """A missing nick, or one that is not a string, is refused."""
        self.assertRaises(BadRequest, parseCommand, frame(type="nick"))
        for nick in (None, 7, ["a"], False):
            self.assertRaises(BadRequest, parseCommand, frame(type="nick", nick=nick))

    def test_joinNick(self) -> None:
        """A join's nick is validated like a nick command's."""
        self.assertRaises(BadRequest, parseCommand, frame(type="join", room="r", nick="   "))
        self.assertRaises(BadRequest, parseCommand, frame(type="join", room="r", nick=5))


class TextValidationTests(SynchronousTestCase):
    """A text is a non-empty string of at most maxText characters."""

    def test_atLimit(self) -> None:
        """A text of exactly maxText characters, counted as characters, is accepted."""
        for text in ("x" * 4096, "é" * 4096, "\U0001f600" * 4096):
            self.assertEqual(
                parseCommand(frame(type="say", room="r", text=text)), Say(room="r", text=text)
            )

    def test_tooLarge(self) -> None:
        """A text longer than maxText is too_large, carrying the client's ref."""
        error = self.assertRaises(
            TooLarge, parseCommand, frame(type="say", room="r", text="x" * 4097, ref=9)
        )
        self.assertEqual(
            (error.code, error.ref, error.reason),
            ("too_large", 9, "text is longer than 4096 characters"),
        )

    def test_maxTextParameter(self) -> None:
        """maxText sets the limit."""
        self.assertEqual(
            parseCommand(frame(type="say", room="r", text="12345"), maxText=5).text, "12345"
        )
        error = self.assertRaises(
            TooLarge, parseCommand, frame(type="say", room="r", text="123456"), 5
        )
        self.assertEqual(error.reason, "text is longer than 5 characters")

    def test_empty(self) -> None:
        """An empty text is a bad_request, not too_large."""
        error = self.assertRaises(BadRequest, parseCommand, frame(type="say", room="r", text=""))
        self.assertEqual(
            (error.code, error.reason), ("bad_request", "text must be a non-empty string")
        )

    def test_notString(self) -> None:
        """A missing text, or one that is not a string, is a bad_request."""
        self.assertRaises(BadRequest, parseCommand, frame(type="say", room="r"))
        for text in (None, 1, ["t"], {"t": 1}, True):
            error = self.assertRaises(
                BadRequest, parseCommand, frame(type="say", room="r", text=text)
            )
            self.assertEqual(error.code, "bad_request")

    def test_whitespaceText(self) -> None:
        """Any non-empty text is a message, whitespace and newlines included."""
        self.assertEqual(validText(" \n", 10), " \n")

    def test_validTextDirect(self) -> None:
        """validText raises TooLarge only for strings over the limit."""
        self.assertRaises(TooLarge, validText, "abc", 2)
        self.assertRaises(BadRequest, validText, b"abc", 2)


class SinceValidationTests(SynchronousTestCase):
    """since is a whole number from 0 to 2**53-1, and not a boolean."""

    def test_valid(self) -> None:
        """0, small and the largest safe integers are accepted."""
        for since in (0, 1, 1000, MAX_SAFE):
            self.assertEqual(parseCommand(frame(type="join", room="r", since=since)).since, since)

    def test_invalid(self) -> None:
        """Negative, too large, fractional, boolean and non-number values are refused."""
        for since in (-1, MAX_SAFE + 1, 2**63 - 1, 1.5, 1.0, True, False, "3", [3], 1e300):
            error = self.assertRaises(
                BadRequest, parseCommand, frame(type="join", room="r", since=since, ref="j")
            )
            self.assertEqual(
                (error.ref, error.reason), ("j", "since must be a whole number >= 0"), repr(since)
            )

    def test_hugeInteger(self) -> None:
        """An integer beyond 64 bits in the frame is refused too."""
        self.assertRaises(
            BadRequest, parseCommand, b'{"type":"join","room":"r","since":18446744073709551616}'
        )

    def test_validOffsetName(self) -> None:
        """validOffset names the field it checks in its reason."""
        error = self.assertRaises(BadRequest, validOffset, -1, "offset")
        self.assertEqual(error.reason, "offset must be a whole number >= 0")
        self.assertEqual(validOffset(7), 7)


class EpochAndTokenValidationTests(SynchronousTestCase):
    """A join's epoch (1..64) and token (1..2048) are non-empty bounded strings."""

    def test_bounds(self) -> None:
        """An epoch of 64 characters and a token of 2048 are accepted."""
        command = parseCommand(frame(type="join", room="r", epoch="e" * 64, token="t" * 2048))
        self.assertEqual((command.epoch, command.token), ("e" * 64, "t" * 2048))  # type: ignore[union-attr]

    def test_epochInvalid(self) -> None:
        """An empty, too long or non-string epoch is refused."""
        for epoch in ("", "e" * 65, 5, ["e"]):
            error = self.assertRaises(
                BadRequest, parseCommand, frame(type="join", room="r", epoch=epoch)
            )
            self.assertEqual(error.reason, "epoch must be a string of 1 to 64 characters")

    def test_tokenInvalid(self) -> None:
        """An empty, too long or non-string token is refused."""
        for token in ("", "t" * 2049, 5, {"t": 1}):
            error = self.assertRaises(
                BadRequest, parseCommand, frame(type="join", room="r", token=token)
            )
            self.assertEqual(error.reason, "token must be a string of 1 to 2048 characters")


class EncodeTests(SynchronousTestCase):
    """encode turns each event into the exact JSON object of the contract."""

    def assertEncodes(self, event: Any, expected: dict[str, Any]) -> None:
        payload = encode(event)
        self.assertIsInstance(payload, bytes)
        self.assertEqual(orjson.loads(payload), expected)
        self.assertEqual(list(orjson.loads(payload)), list(expected))

    def test_message(self) -> None:
        """A message event has type, room, offset, ts, nick and text."""
        self.assertEncodes(
            Message(room="lobby", offset=7, ts=1700000000123, nick="alice", text="hi"),
            {
                "type": "message",
                "room": "lobby",
                "offset": 7,
                "ts": 1700000000123,
                "nick": "alice",
                "text": "hi",
            },
        )

    def test_joined(self) -> None:
        """A joined reply lists members as an array and echoes the ref."""
        self.assertEncodes(
            Joined(
                room="r",
                offset=3,
                epoch="e1",
                members=("a", "b"),
                count=5,
                recovered=False,
                ref="j1",
            ),
            {
                "type": "joined",
                "room": "r",
                "offset": 3,
                "epoch": "e1",
                "members": ["a", "b"],
                "count": 5,
                "recovered": False,
                "ref": "j1",
            },
        )

    def test_joinedWithoutRef(self) -> None:
        """A joined reply without a ref has no ref field."""
        self.assertEncodes(
            Joined(room="r", offset=0, epoch="e", members=(), count=0, recovered=True),
            {
                "type": "joined",
                "room": "r",
                "offset": 0,
                "epoch": "e",
                "members": [],
                "count": 0,
                "recovered": True,
            },
        )

    def test_left(self) -> None:
        """A left reply has its room, and its ref when given, even a zero one."""
        self.assertEncodes(Left(room="r"), {"type": "left", "room": "r"})
        self.assertEncodes(Left(room="r", ref=0), {"type": "left", "room": "r", "ref": 0})

    def test_ack(self) -> None:
        """An ack has the ref and offset, and the room only when known."""
        self.assertEncodes(Ack(ref=4, offset=9), {"type": "ack", "ref": 4, "offset": 9})
        self.assertEncodes(
            Ack(ref="x", offset=1, room="r"), {"type": "ack", "ref": "x", "offset": 1, "room": "r"}
        )

    def test_presence(self) -> None:
        """A presence event has room, event and nick."""
        self.assertEncodes(
            Presence(room="r", event="leave", nick="bob"),
            {"type": "presence", "room": "r", "event": "leave", "nick": "bob"},
        )

    def test_presenceBatch(self) -> None:
        """A presence_batch has room, count, the joined and left nicks as arrays, truncated."""
        self.assertEncodes(
            PresenceBatch(room="r", count=5000, joined=("a", "b"), left=(), truncated=True),
            {
                "type": "presence_batch",
                "room": "r",
                "count": 5000,
                "joined": ["a", "b"],
                "left": [],
                "truncated": True,
            },
        )

    def test_error(self) -> None:
        """An error event has code and reason, and the ref when given."""
        self.assertEncodes(
            Error(code="not_joined", reason="join r first"),
            {"type": "error", "code": "not_joined", "reason": "join r first"},
        )
        self.assertEncodes(
            Error(code="rate_limited", reason="slow down", ref="m"),
            {"type": "error", "code": "rate_limited", "reason": "slow down", "ref": "m"},
        )

    def test_compact(self) -> None:
        """Frames are compact JSON, fields in contract order."""
        self.assertEqual(encode(Left(room="r", ref=1)), b'{"type":"left","room":"r","ref":1}')

    def test_nonAsciiUnescaped(self) -> None:
        """Non-ASCII text is sent as UTF-8, not as \\u escapes."""
        text = "h\u00e9llo \u2603 \U0001f600 \u4e2d\u6587"
        payload = encode(Message(room="r", offset=1, ts=0, nick="\u00e9l\u00e8ve", text=text))
        self.assertIn(text.encode("utf-8"), payload)
        self.assertIn("\u00e9l\u00e8ve".encode(), payload)
        self.assertNotIn(b"\\u", payload)

    def test_dumps(self) -> None:
        """dumps serializes API bodies compactly, keeping UTF-8."""
        self.assertEqual(
            dumps({"rooms": [{"room": "r", "n": "\u00e9"}]}),
            '{"rooms":[{"room":"r","n":"\u00e9"}]}'.encode(),
        )


class ErrorFromExceptionTests(SynchronousTestCase):
    """Error.fromException turns a refusal into the error event sent to the client."""

    def test_remoteError(self) -> None:
        """A RemoteError gives its code and reason."""
        self.assertEqual(
            Error.fromException(TooLarge("too long")),
            Error(code="too_large", reason="too long", ref=None),
        )

    def test_refFromParse(self) -> None:
        """The ref that parseCommand attached to its error is the event's ref."""
        error = self.assertRaises(UnknownType, parseCommand, frame(type="dance", ref="d1"))
        self.assertEqual(
            Error.fromException(error),
            Error(code="unknown_type", reason="unknown message type 'dance'", ref="d1"),
        )

    def test_refArgument(self) -> None:
        """Without a ref of its own, the error takes the ref passed in."""
        self.assertEqual(Error.fromException(BadRequest("no"), ref=12).ref, 12)

    def test_ownRefWins(self) -> None:
        """The error's own ref is preferred over the one passed in."""
        error = BadRequest("no")
        error.ref = "own"
        self.assertEqual(Error.fromException(error, ref="other").ref, "own")

    def test_zeroRefFromParse(self) -> None:
        """A zero ref attached by parseCommand survives into the event (0 is a valid ref)."""
        error = self.assertRaises(UnknownType, parseCommand, frame(type="dance", ref=0))
        self.assertEqual(error.ref, 0)
        self.assertEqual(Error.fromException(error).ref, 0)

    def test_emptyStringRefFromParse(self) -> None:
        """An empty string ref attached by parseCommand survives into the event."""
        error = self.assertRaises(UnknownType, parseCommand, frame(type="dance", ref=""))
        self.assertEqual(Error.fromException(error).ref, "")

    def test_plainException(self) -> None:
        """Any other exception is a bad_request with its text as the reason."""
        self.assertEqual(
            Error.fromException(ValueError("boom"), ref="r"),
            Error(code="bad_request", reason="boom", ref="r"),
        )

    def test_encodes(self) -> None:
        """The resulting event encodes to the contract's error object."""
        error = self.assertRaises(BadRequest, parseCommand, frame(type="say", room="r", ref=2))
        self.assertEqual(
            orjson.loads(encode(Error.fromException(error))),
            {
                "type": "error",
                "code": "bad_request",
                "reason": "text must be a non-empty string",
                "ref": 2,
            },
        )


# -- properties -----------------------------------------------------------------------------

KEYS = ["type", "room", "nick", "text", "since", "epoch", "token", "ref"]

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=80),
    st.sampled_from(["join", "leave", "say", "nick", "lobby", "a" * 64, "a" * 65, ""]),
    st.integers(min_value=-3, max_value=3),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
JSON_OBJECTS = st.dictionaries(
    st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), JSON_VALUES, max_size=9
)

ROOMS = st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True).filter(
    lambda r: r not in (".", "..")
)
NICKS = st.text(min_size=1, max_size=32).filter(lambda s: s.isprintable() and not s.isspace())
TEXTS = st.text(min_size=1, max_size=300)
REFS = st.one_of(st.integers(-MAX_SAFE, MAX_SAFE), st.text(max_size=64))

COMMANDS = {"join": Join, "leave": Leave, "say": Say, "nick": Nick}

SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"])
# strings that may hold surrogates, paired or lone (json.dumps writes them as \\uXXXX)
SURROGATE_TEXT = st.lists(st.one_of(st.characters(), SURROGATES), max_size=12).map("".join)
# strings holding one lone surrogate (st.text draws no surrogates, so none pairs with it)
LONE_SURROGATE = st.builds(
    lambda before, lone, after: before + lone + after,
    st.text(max_size=5),
    SURROGATES,
    st.text(max_size=5),
)
# JSON literals (RFC 8259) that orjson refuses to read
ORJSON_REFUSES = st.one_of(
    st.integers(min_value=10**309, max_value=10**400).map(str),
    st.sampled_from([HUGE, "-" + HUGE, "1e400", "-1e999"]),
    LONE_SURROGATE.map(json.dumps),
)
EXTRA = "extra-field"  # longer than any key JSON_OBJECTS draws, so never one of them


def withField(obj: dict[str, Any], literal: str) -> str:
    """The JSON text of C{obj} with one more field, whose value is the JSON C{literal}."""
    return json.dumps({**obj, EXTRA: None}).replace(f'"{EXTRA}": null', f'"{EXTRA}": {literal}')


def outcome(payload: bytes | str) -> tuple[Any, ...]:
    """What parseCommand makes of C{payload}: the command, or the error's kind and fields."""
    try:
        return ("command", parseCommand(payload))
    except RemoteError as e:
        return ("error", type(e), e.code, e.reason, e.ref)


def validRef(ref: object) -> bool:
    """The test's own statement of which refs are valid."""
    if isinstance(ref, bool):
        return False
    if isinstance(ref, int):
        return -MAX_SAFE <= ref <= MAX_SAFE
    return (
        isinstance(ref, str)
        and len(ref) <= 64
        and not any(0xD800 <= ord(c) <= 0xDFFF for c in ref)  # a lone surrogate is no text
    )


class ParseCommandPropertyTests(SynchronousTestCase):
    """Whatever a client sends, parseCommand answers with a command or a RemoteError."""

    @PROPERTY
    @given(JSON_OBJECTS)
    def test_anyObject(self, obj: dict[str, Any]) -> None:
        """Any JSON object parses into the command its type names, or raises a RemoteError."""
        try:
            command = parseCommand(json.dumps(obj).encode("utf-8"))
        except RemoteError as e:
            self.assertIn(e.code, {"bad_request", "unknown_type", "too_large"})
            expectedRef = obj["ref"] if "ref" in obj and validRef(obj["ref"]) else None
            self.assertEqual(e.ref, expectedRef)
            if e.code == "unknown_type":
                self.assertNotIn(obj["type"], COMMANDS)
        else:
            self.assertIs(type(command), COMMANDS[obj["type"]])
            self.assertEqual(command.ref, obj.get("ref"))

    @PROPERTY
    @given(JSON_OBJECTS, ORJSON_REFUSES)
    def test_fieldOrjsonRefuses(self, obj: dict[str, Any], literal: str) -> None:
        """A field that orjson cannot read (a lone surrogate escape, a number beyond a
        double) in a field no command reads changes nothing: the frame gets the same command
        or the same error, ref included, as without it."""
        payload = withField(obj, literal)
        self.assertRaises(orjson.JSONDecodeError, orjson.loads, payload)
        self.assertEqual(outcome(payload), outcome(json.dumps(obj)))

    @PROPERTY
    @given(JSON_OBJECTS, st.sampled_from(["NaN", "Infinity", "-Infinity"]))
    def test_notANumberAnywhere(self, obj: dict[str, Any], constant: str) -> None:
        """NaN or an infinity anywhere makes the frame not JSON, answered with its ref when
        the ref is valid."""
        payload = withField(obj, constant)
        expectedRef = obj["ref"] if "ref" in obj and validRef(obj["ref"]) else None
        self.assertEqual(
            outcome(payload),
            (
                "error",
                BadRequest,
                "bad_request",
                f"frame is not valid JSON: {constant} is not a JSON number",
                expectedRef,
            ),
        )

    @PROPERTY
    @given(
        st.dictionaries(
            st.sampled_from(KEYS),
            st.one_of(SURROGATE_TEXT, st.sampled_from(["join", "leave", "say", "nick", "r"])),
            max_size=8,
        )
    )
    def test_loneSurrogatesNeverLeak(self, obj: dict[str, Any]) -> None:
        """Whatever fields hold lone surrogates, the frame parses into a command whose every
        string encodes as UTF-8, or into an error that encodes; the ref is kept when valid."""
        try:
            command = parseCommand(json.dumps(obj).encode("ascii"))
        except RemoteError as e:
            orjson.loads(encode(Error.fromException(e)))
            expectedRef = obj["ref"] if "ref" in obj and validRef(obj["ref"]) else None
            self.assertEqual(e.ref, expectedRef)
        else:
            for value in dataclasses.astuple(command):
                if isinstance(value, str):
                    value.encode("utf-8")

    @PROPERTY
    @given(JSON_OBJECTS)
    def test_binaryFrameCarriesRef(self, obj: dict[str, Any]) -> None:
        """Any binary frame holding a JSON object is refused with its ref when valid."""
        error = binaryFrameError(json.dumps(obj).encode("utf-8"))
        expectedRef = obj["ref"] if "ref" in obj and validRef(obj["ref"]) else None
        self.assertEqual((error.reason, error.ref), ("frames must be text (JSON)", expectedRef))

    @PROPERTY
    @given(st.binary(max_size=200))
    def test_anyBytes(self, payload: bytes) -> None:
        """Arbitrary bytes never raise anything but a RemoteError."""
        try:
            parseCommand(payload)
        except RemoteError as e:
            self.assertEqual(e.code, "bad_request")

    @PROPERTY
    @given(st.text(max_size=200))
    def test_anyText(self, payload: str) -> None:
        """Arbitrary text never raises anything but a RemoteError."""
        try:
            parseCommand(payload)
        except RemoteError as e:
            self.assertIn(e.code, {"bad_request", "unknown_type", "too_large"})

    @PROPERTY
    @given(ROOMS, TEXTS, REFS)
    def test_sayRoundTrip(self, room: str, text: str, ref: str | int) -> None:
        """Any valid room and text, with any valid ref, round-trip through a say frame."""
        self.assertEqual(
            parseCommand(frame(type="say", room=room, text=text, ref=ref)),
            Say(room=room, text=text, ref=ref),
        )

    @PROPERTY
    @given(ROOMS, NICKS, st.integers(0, MAX_SAFE))
    def test_joinRoundTrip(self, room: str, nick: str, since: int) -> None:
        """Any valid room, nick and since round-trip through a join frame."""
        self.assertEqual(
            parseCommand(frame(type="join", room=room, nick=nick, since=since)),
            Join(room=room, nick=nick, since=since),
        )

    @PROPERTY
    @given(NICKS)
    def test_nickRoundTrip(self, nick: str) -> None:
        """Any valid nick round-trips through a nick frame."""
        self.assertEqual(parseCommand(frame(type="nick", nick=nick)), Nick(nick=nick))

    @PROPERTY
    @given(ROOMS, st.integers(0, MAX_SAFE), st.integers(0, 2**62), NICKS, TEXTS)
    def test_messageEncodeRoundTrip(
        self, room: str, offset: int, ts: int, nick: str, text: str
    ) -> None:
        """Any message encodes to JSON that decodes to exactly its fields."""
        payload = encode(Message(room=room, offset=offset, ts=ts, nick=nick, text=text))
        self.assertEqual(
            orjson.loads(payload),
            {
                "type": "message",
                "room": room,
                "offset": offset,
                "ts": ts,
                "nick": nick,
                "text": text,
            },
        )


# ===========================================================================================
# The client's direction: encodeCommand, parseEvent (and encodeEvent, Close).
# ===========================================================================================


class EncodeCommandTests(SynchronousTestCase):
    """Commands encode to the frames a client sends: type first, ref last, no nulls."""

    def test_joinMinimal(self) -> None:
        """A join with only a room is just its type and room."""
        self.assertEqual(encodeCommand(Join(room="r")), b'{"type":"join","room":"r"}')

    def test_joinFull(self) -> None:
        """Every field of a join, in declared order, the ref last."""
        join = Join(room="r", nick="ann", since=3, epoch="e1", token="t.k", ref="j")
        self.assertEqual(
            encodeCommand(join),
            b'{"type":"join","room":"r","nick":"ann","since":3,"epoch":"e1","token":"t.k",'
            b'"ref":"j"}',
        )

    def test_leave(self) -> None:
        """A leave is its room, and its ref when it has one."""
        self.assertEqual(encodeCommand(Leave(room="r")), b'{"type":"leave","room":"r"}')
        self.assertEqual(
            encodeCommand(Leave(room="r", ref=7)), b'{"type":"leave","room":"r","ref":7}'
        )

    def test_say(self) -> None:
        """A say is its room and text, then its ref."""
        self.assertEqual(
            encodeCommand(Say(room="r", text="hi", ref=1)),
            b'{"type":"say","room":"r","text":"hi","ref":1}',
        )

    def test_nick(self) -> None:
        """A nick command is its nick."""
        self.assertEqual(encodeCommand(Nick(nick="bob")), b'{"type":"nick","nick":"bob"}')

    def test_falsyRefsKept(self) -> None:
        """A ref of 0 or "" is a ref: only None is left out."""
        self.assertEqual(commandToDict(Nick(nick="n", ref=0))["ref"], 0)
        self.assertEqual(commandToDict(Nick(nick="n", ref=""))["ref"], "")
        self.assertEqual(commandToDict(Join(room="r", since=0))["since"], 0)

    def test_everyFieldEncoded(self) -> None:
        """Each command class has an encoder that writes every one of its fields: a field
        added to a command without its encoder fails here."""
        full = [
            Join(room="r", nick="n", since=1, epoch="e", token="t", ref=1),
            Leave(room="r", ref=1),
            Say(room="r", text="t", ref=1),
            Nick(nick="n", ref=1),
        ]
        for command in full:
            names = {f.name for f in dataclasses.fields(command)}
            self.assertEqual(set(commandToDict(command)), {"type", *names}, command)
            self.assertEqual(parseCommand(encodeCommand(command)), command)

    def test_notValidated(self) -> None:
        """What the server would refuse still encodes: the client hears why from it."""
        payload = encodeCommand(Say(room="bad/room", text=""))
        self.assertEqual(payload, b'{"type":"say","room":"bad/room","text":""}')
        self.assertRaises(BadRequest, parseCommand, payload)

    def test_notACommand(self) -> None:
        """An event is not a command."""
        self.assertRaises(TypeError, encodeCommand, Left(room="r"))

    def test_nonAsciiUnescaped(self) -> None:
        """Non-ASCII text is sent as UTF-8, as events are."""
        self.assertEqual(
            encodeCommand(Say(room="r", text="héllo ☃")),
            '{"type":"say","room":"r","text":"héllo ☃"}'.encode(),
        )


class ParseEventTests(SynchronousTestCase):
    """Server frames parse into the typed events; anything else raises BadEvent."""

    def test_message(self) -> None:
        """A message frame."""
        self.assertEqual(
            parseEvent(b'{"type":"message","room":"r","offset":2,"ts":5,"nick":"n","text":"t"}'),
            Message(room="r", offset=2, ts=5, nick="n", text="t"),
        )

    def test_joined(self) -> None:
        """A joined frame; members become a tuple; the ref is kept, or None."""
        frame = (
            b'{"type":"joined","room":"r","offset":4,"epoch":"e","members":["a","b"],'
            b'"count":9,"recovered":false,"ref":"join"}'
        )
        self.assertEqual(
            parseEvent(frame),
            Joined(
                room="r",
                offset=4,
                epoch="e",
                members=("a", "b"),
                count=9,
                recovered=False,
                ref="join",
            ),
        )
        self.assertIsNone(parseEvent(frame.replace(b',"ref":"join"', b"")).ref)  # type: ignore[union-attr]

    def test_left(self) -> None:
        """A left frame."""
        self.assertEqual(parseEvent('{"type":"left","room":"r","ref":3}'), Left(room="r", ref=3))

    def test_ack(self) -> None:
        """An ack, with its room or without."""
        self.assertEqual(
            parseEvent(b'{"type":"ack","ref":1,"offset":8,"room":"r"}'),
            Ack(ref=1, offset=8, room="r"),
        )
        self.assertEqual(parseEvent(b'{"type":"ack","ref":"x","offset":8}'), Ack(ref="x", offset=8))

    def test_presence(self) -> None:
        """A presence frame."""
        self.assertEqual(
            parseEvent(b'{"type":"presence","room":"r","event":"leave","nick":"n"}'),
            Presence(room="r", event="leave", nick="n"),
        )

    def test_presenceBatch(self) -> None:
        """A presence batch; its lists become tuples."""
        self.assertEqual(
            parseEvent(
                b'{"type":"presence_batch","room":"r","count":3,"joined":["a"],"left":[],'
                b'"truncated":true}'
            ),
            PresenceBatch(room="r", count=3, joined=("a",), left=(), truncated=True),
        )

    def test_error(self) -> None:
        """An error, with the ref of what it refuses."""
        self.assertEqual(
            parseEvent(b'{"type":"error","code":"too_large","reason":"long","ref":2}'),
            Error(code="too_large", reason="long", ref=2),
        )

    def test_close(self) -> None:
        """The lines protocol's close line, and SSE's close data with its type given apart."""
        self.assertEqual(
            parseEvent(b'{"type":"close","code":1001,"reason":"bye"}'), Close(1001, "bye")
        )
        self.assertEqual(parseEvent(b'{"code":1008,"reason":"x"}', kind="close"), Close(1008, "x"))
        self.assertEqual(
            encodeEvent(Close(1001, "bye")), b'{"type":"close","code":1001,"reason":"bye"}'
        )

    def test_ownTypeWins(self) -> None:
        """A payload's own type wins over the kind given."""
        self.assertEqual(parseEvent(b'{"type":"left","room":"r"}', kind="close"), Left(room="r"))

    def test_unknownFieldsIgnored(self) -> None:
        """Fields this version does not know are ignored (extensions add fields)."""
        self.assertEqual(parseEvent(b'{"type":"left","room":"r","new":[1,2]}'), Left(room="r"))

    def test_unknownType(self) -> None:
        """A well-formed object of an unknown type raises UnknownEvent, naming it."""
        error = self.assertRaises(UnknownEvent, parseEvent, b'{"type":"typing","room":"r"}')
        self.assertEqual((error.type, error.reason), ("typing", "unknown event type 'typing'"))
        self.assertIsInstance(error, BadEvent)
        self.assertRaises(UnknownEvent, parseEvent, b'{"code":1000,"reason":"x"}', kind="hello")

    def test_notAnEvent(self) -> None:
        """Frames that are not events, each with its reason."""
        cases = {
            b"nope": "event is not valid JSON",
            b"[1]": "event must be a JSON object",
            b"{}": 'event: "type" must be a string',
            b'{"type":7}': 'event: "type" must be a string',
            b'{"type":"left"}': "left event: room must be a string",
            b'{"type":"left","room":"r","ref":true}': (
                "left event: ref must be a string or an integer"
            ),
            b'{"type":"ack","offset":1}': "ack event: ref must be a string or an integer",
            b'{"type":"ack","ref":1,"offset":-1}': (
                "ack event: offset must be a whole number from 0 to 9007199254740991"
            ),
            b'{"type":"ack","ref":1,"offset":true}': (
                "ack event: offset must be a whole number from 0 to 9007199254740991"
            ),
            b'{"type":"ack","ref":1,"offset":1.5}': (
                "ack event: offset must be a whole number from 0 to 9007199254740991"
            ),
            b'{"type":"ack","ref":1,"offset":1,"room":3}': "ack event: room must be a string",
            b'{"type":"presence","room":"r","event":"wave","nick":"n"}': (
                "presence event: event must be 'join' or 'leave'"
            ),
            b'{"type":"presence_batch","room":"r","count":1,"joined":[1],"left":[],'
            b'"truncated":false}': "presence_batch event: joined must be a list of strings",
            b'{"type":"joined","room":"r","offset":0,"epoch":"e","members":[],"count":0,'
            b'"recovered":1}': "joined event: recovered must be true or false",
            b'{"type":"close","code":999,"reason":"x"}': (
                "close event: code must be a whole number from 1000 to 4999"
            ),
        }
        for frame, reason in cases.items():
            error = self.assertRaises(BadEvent, parseEvent, frame)
            self.assertNotIsInstance(error, UnknownEvent)
            self.assertEqual(error.reason, reason, frame)

    def test_badEventIsValueError(self) -> None:
        """BadEvent is a ValueError, as the broker's codec raises for what Redis holds."""
        self.assertTrue(issubclass(BadEvent, ValueError))

    def test_serverFramesAreEvents(self) -> None:
        """encodeEvent is encode for the chat's events."""
        events = [
            Message(room="r", offset=1, ts=2, nick="n", text="t"),
            Ack(ref=1, offset=1),
            Error(code="c", reason="r"),
        ]
        for event in events:
            self.assertEqual(encodeEvent(event), encode(event))


# -- properties of the client's direction ---------------------------------------------------

MAYBE_REFS = st.one_of(st.none(), REFS)
EPOCHS = st.text(min_size=1, max_size=64)
TOKENS = st.text(min_size=1, max_size=200)
OFFSETS = st.integers(0, MAX_SAFE)
TEXT = st.text(max_size=40)

VALID_COMMANDS = st.one_of(
    st.builds(
        Join,
        room=ROOMS,
        nick=st.one_of(st.none(), NICKS),
        since=st.one_of(st.none(), OFFSETS),
        epoch=st.one_of(st.none(), EPOCHS),
        token=st.one_of(st.none(), TOKENS),
        ref=MAYBE_REFS,
    ),
    st.builds(Leave, room=ROOMS, ref=MAYBE_REFS),
    st.builds(Say, room=ROOMS, text=TEXTS, ref=MAYBE_REFS),
    st.builds(Nick, nick=NICKS, ref=MAYBE_REFS),
)

NAMES = st.lists(TEXT, max_size=5).map(tuple)
CHAT_EVENTS = st.one_of(
    st.builds(Message, room=TEXT, offset=OFFSETS, ts=OFFSETS, nick=TEXT, text=TEXT),
    st.builds(
        Joined,
        room=TEXT,
        offset=OFFSETS,
        epoch=TEXT,
        members=NAMES,
        count=OFFSETS,
        recovered=st.booleans(),
        ref=MAYBE_REFS,
    ),
    st.builds(Left, room=TEXT, ref=MAYBE_REFS),
    st.builds(Ack, ref=REFS, offset=OFFSETS, room=st.one_of(st.none(), TEXT)),
    st.builds(Presence, room=TEXT, event=st.sampled_from(["join", "leave"]), nick=TEXT),
    st.builds(
        PresenceBatch,
        room=TEXT,
        count=OFFSETS,
        joined=NAMES,
        left=NAMES,
        truncated=st.booleans(),
    ),
    st.builds(Error, code=TEXT, reason=TEXT, ref=MAYBE_REFS),
)
CLOSES = st.builds(Close, code=st.integers(1000, 4999), reason=TEXT)

EVENT_KEYS = [
    "type",
    "room",
    "offset",
    "ts",
    "nick",
    "text",
    "epoch",
    "members",
    "count",
    "recovered",
    "ref",
    "event",
    "joined",
    "left",
    "truncated",
    "code",
    "reason",
]
EVENT_TYPES = ["message", "joined", "left", "ack", "presence", "presence_batch", "error", "close"]
EVENTISH_OBJECTS = st.dictionaries(
    st.sampled_from(EVENT_KEYS),
    st.one_of(JSON_VALUES, st.sampled_from(EVENT_TYPES), st.lists(st.text(max_size=3))),
    max_size=10,
)


class ClientCodecPropertyTests(SynchronousTestCase):
    """The two directions of the codec are inverses; parseEvent never raises another error."""

    @PROPERTY
    @given(VALID_COMMANDS)
    def test_commandRoundTrip(self, command: Join | Leave | Say | Nick) -> None:
        """Every valid command survives encodeCommand then parseCommand unchanged."""
        self.assertEqual(parseCommand(encodeCommand(command)), command)

    @PROPERTY
    @given(CHAT_EVENTS)
    def test_eventRoundTrip(self, event: Any) -> None:
        """Every event survives the server's encode then parseEvent unchanged, and encodes
        back to the very bytes the server sent."""
        payload = encode(event)
        self.assertEqual(parseEvent(payload), event)
        self.assertEqual(encodeEvent(parseEvent(payload)), payload)

    @PROPERTY
    @given(CLOSES)
    def test_closeRoundTrip(self, close: Close) -> None:
        """Every close notice survives encodeEvent then parseEvent, also without its type."""
        self.assertEqual(parseEvent(encodeEvent(close)), close)
        data = orjson.dumps({"code": close.code, "reason": close.reason})
        self.assertEqual(parseEvent(data, kind="close"), close)

    @PROPERTY
    @given(EVENTISH_OBJECTS)
    def test_anyObject(self, obj: dict[str, Any]) -> None:
        """Any JSON object parses into the event its type names, or raises BadEvent."""
        try:
            event = parseEvent(json.dumps(obj))
        except UnknownEvent as e:
            self.assertNotIn(obj.get("type"), EVENT_TYPES)
            self.assertEqual(e.type, obj.get("type"))
        except BadEvent as e:
            self.assertTrue(e.reason)
        else:
            self.assertEqual(event.toDict()["type"], obj["type"])

    @PROPERTY
    @given(st.binary(max_size=200))
    def test_anyBytes(self, payload: bytes) -> None:
        """Arbitrary bytes never raise anything but BadEvent."""
        try:
            parseEvent(payload)
        except BadEvent as e:
            self.assertTrue(e.reason)
