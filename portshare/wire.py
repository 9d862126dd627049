"""
The chat wire format, sans I/O: bytes in, typed commands out; typed events in, bytes out.

Nothing here touches a socket or a clock.  L{parseCommand} turns one text frame into one of
the frozen command classes or raises a L{RemoteError} (carrying the client's C{ref} when it
could be read); L{commandFrom} does the same for the fields of a command that a front end
read in another syntax (the line protocol's short forms, SSE's query); L{binaryFrameError}
is the refusal of a binary frame, with its C{ref} too; L{encode} turns an event into the
bytes of one text frame.  Encoding happens once per event, whatever the number of
recipients: an L{Outgoing} carries an event with its encoding, and the framings transports
make of it, once each.

Theory of operation (reading a frame): orjson reads every frame first.  It refuses a few
frames that are JSON by RFC 8259 (a lone surrogate escape such as C{"\\ud800"}, a number
beyond a double such as a 10,000-digit integer) and a few that nearly are (C{NaN},
C{Infinity}).  Such a frame still has a C{ref} worth answering with, so the frames orjson
refuses are read again by the standard library's C{json} module, within limits of its own
(L{FALLBACK_MAX_BYTES}, L{FALLBACK_MAX_DEPTH}, L{FALLBACK_MAX_NUMBER}).  What it reads is
validated exactly like what orjson reads: the validators refuse lone surrogates (no command
or C{ref} can hold a string that does not encode as UTF-8) and numbers out of range; C{NaN}
and the infinities make the frame C{"frame is not valid JSON"}, with its C{ref}.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from portshare.errors import BadRequest, RemoteError, TooLarge, UnknownType

SUBPROTOCOL = "portshare.chat.v1"

Ref = str | int

_ROOM = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
# path segments that HTTP clients normalise away (RFC 3986 section 5.2.4): a room so named
# could be joined but never read at /api/rooms/{room}/messages
_DOT_SEGMENTS = frozenset({".", ".."})
MAX_NICK = 32
MAX_REF = 64
MAX_EPOCH = 64
MAX_TOKEN = 2048
#: the longest JSON Web Token an C{auth} message may carry (the identity check has its own
#: limit, L{portshare.identity.TokenRules.maxTokenBytes}, 8 KiB by default)
MAX_AUTH_TOKEN = 16 * 1024
# JSON numbers a browser can hold exactly; larger integers would change on the round trip.
_MAX_SAFE_INT = 2**53 - 1
# code points that are never characters: a JSON escape can name one alone ("\ud800"), and
# a string holding one cannot be encoded as UTF-8
_SURROGATE = re.compile(r"[\ud800-\udfff]")

#: a frame that orjson refused is read again only if it is at most this many bytes of UTF-8,
FALLBACK_MAX_BYTES = 65536
#: ... nests arrays and objects at most this deep,
FALLBACK_MAX_DEPTH = 32
#: ... and a number in it longer than this many characters is read as an infinity (which no
#: field accepts) instead of being converted
FALLBACK_MAX_NUMBER = 40


# -- commands (client to server) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Join:
    """Join C{room}; with C{since}, replay what history holds after that offset."""

    room: str
    nick: str | None = None
    since: int | None = None
    epoch: str | None = None
    token: str | None = None
    ref: Ref | None = None


@dataclass(frozen=True, slots=True)
class Leave:
    """Leave C{room}."""

    room: str
    ref: Ref | None = None


@dataclass(frozen=True, slots=True)
class Say:
    """Publish C{text} to C{room}, which the sender must have joined."""

    room: str
    text: str
    ref: Ref | None = None


@dataclass(frozen=True, slots=True)
class Nick:
    """Use C{nick} for later messages."""

    nick: str
    ref: Ref | None = None


@dataclass(frozen=True, slots=True)
class Auth:
    """Present (or refresh) a connection's token: a JSON Web Token naming its user."""

    token: str
    ref: Ref | None = None


Command = Join | Leave | Say | Nick | Auth


# -- events (server to client) --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """A chat message as stored in history and delivered to members."""

    room: str
    offset: int
    ts: int
    nick: str
    text: str
    #: the user id (the token's C{sub}) of an authenticated sender; C{None}: anonymous
    user: str | None = None

    def toDict(self) -> dict[str, Any]:
        d = {
            "type": "message",
            "room": self.room,
            "offset": self.offset,
            "ts": self.ts,
            "nick": self.nick,
            "text": self.text,
        }
        if self.user is not None:
            d["user"] = self.user
        return d


@dataclass(frozen=True, slots=True)
class Joined:
    """The reply to L{Join}; C{members} may be capped, C{count} is the full number."""

    room: str
    offset: int
    epoch: str
    members: tuple[str, ...]
    count: int
    recovered: bool
    ref: Ref | None = None

    def toDict(self) -> dict[str, Any]:
        return _withRef(
            {
                "type": "joined",
                "room": self.room,
                "offset": self.offset,
                "epoch": self.epoch,
                "members": list(self.members),
                "count": self.count,
                "recovered": self.recovered,
            },
            self.ref,
        )


@dataclass(frozen=True, slots=True)
class Left:
    """The reply to L{Leave}."""

    room: str
    ref: Ref | None = None

    def toDict(self) -> dict[str, Any]:
        return _withRef({"type": "left", "room": self.room}, self.ref)


@dataclass(frozen=True, slots=True)
class Ack:
    """Tells the sender of a L{Say} with a C{ref} which offset its message got."""

    ref: Ref
    offset: int
    room: str | None = field(default=None)

    def toDict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": "ack", "ref": self.ref, "offset": self.offset}
        if self.room is not None:
            d["room"] = self.room
        return d


@dataclass(frozen=True, slots=True)
class Presence:
    """A member joined or left a room."""

    room: str
    event: str  # "join" | "leave"
    nick: str
    #: the member's user id when it is authenticated; C{None}: anonymous
    user: str | None = None

    def toDict(self) -> dict[str, Any]:
        d = {"type": "presence", "room": self.room, "event": self.event, "nick": self.nick}
        if self.user is not None:
            d["user"] = self.user
        return d


@dataclass(frozen=True, slots=True)
class PresenceBatch:
    """
    The joins and leaves of a big room over one interval, net, in place of one L{Presence}
    each (see L{portshare.chat.PendingPresence}).

    @ivar count: the room's member count when the batch was sent (as in L{Joined}).
    @ivar joined: nicks whose last event in the interval was a join.
    @ivar left: nicks whose last event in the interval was a leave.
    @ivar truncated: whether C{joined} or C{left} was cut at the cap.
    """

    room: str
    count: int
    joined: tuple[str, ...]
    left: tuple[str, ...]
    truncated: bool

    def toDict(self) -> dict[str, Any]:
        return {
            "type": "presence_batch",
            "room": self.room,
            "count": self.count,
            "joined": list(self.joined),
            "left": list(self.left),
            "truncated": self.truncated,
        }


@dataclass(frozen=True, slots=True)
class Authed:
    """The reply to L{Auth}: the connection is C{user} until C{exp} (seconds since the epoch)."""

    user: str
    exp: int
    ref: Ref | None = None

    def toDict(self) -> dict[str, Any]:
        return _withRef({"type": "authed", "user": self.user, "exp": self.exp}, self.ref)


@dataclass(frozen=True, slots=True)
class Error:
    """A refusal of one client message; the connection stays open."""

    code: str
    reason: str
    ref: Ref | None = None

    def toDict(self) -> dict[str, Any]:
        return _withRef({"type": "error", "code": self.code, "reason": self.reason}, self.ref)

    @classmethod
    def fromException(cls, error: RemoteError | Exception, ref: Ref | None = None) -> Error:
        code = getattr(error, "code", "bad_request")
        reason = getattr(error, "reason", str(error))
        own = getattr(error, "ref", None)
        return cls(code=code, reason=reason, ref=own if own is not None else ref)


Event = Message | Joined | Left | Ack | Presence | PresenceBatch | Authed | Error


def _withRef(d: dict[str, Any], ref: Ref | None) -> dict[str, Any]:
    if ref is not None:
        d["ref"] = ref
    return d


def encode(event: Event) -> bytes:
    """
    Serialize one event as the UTF-8 payload of a text frame.

    @return: compact JSON; non-ASCII text is kept as UTF-8, not escaped.
    """
    return orjson.dumps(event.toDict())


def dumps(obj: Any) -> bytes:
    """Serialize an HTTP API body the same way as frames."""
    return orjson.dumps(obj)


_Framed = TypeVar("_Framed")


class Outgoing:
    """
    One event on its way to members: the typed event, its JSON encoding (made here, once),
    and the framings transports make of it, each made once however many members it goes to
    (a prepared WebSocket frame, an SSE block, a line).

    @ivar event: the event.
    @ivar payload: C{encode(event)}.
    """

    __slots__ = ("_framed", "event", "payload")

    def __init__(self, event: Event) -> None:
        self.event = event
        self.payload = orjson.dumps(event.toDict())  # encode(event), a call less
        self._framed: dict[object, Any] | None = None

    def framed(self, key: object, build: Callable[[Outgoing], _Framed]) -> _Framed:
        """
        The framing of this event that C{key} (a transport) makes with C{build}: built on
        the first call for C{key}, the same object on every later one.
        """
        framings = self._framed
        if framings is None:
            framings = self._framed = {}
        elif key in framings:
            return framings[key]  # type: ignore[no-any-return]
        framing = framings[key] = build(self)
        return framing


# -- validation -----------------------------------------------------------------------------


def validRoom(room: object) -> str:
    """
    @return: C{room}, if it is a valid room name: 1 to 64 characters of C{A-Z a-z 0-9 . _ -},
        other than C{.} and C{..} (which no HTTP client can put in a path).
    @raise BadRequest: otherwise.
    """
    if not isinstance(room, str) or _ROOM.match(room) is None or room in _DOT_SEGMENTS:
        raise BadRequest("room must be 1 to 64 characters of A-Z a-z 0-9 . _ -, not . or ..")
    return room


def validNick(nick: object) -> str:
    """
    @return: C{nick}, if it is 1 to 32 printable characters, not only spaces.
    @raise BadRequest: otherwise.
    """
    if (
        not isinstance(nick, str)
        or not 1 <= len(nick) <= MAX_NICK
        or not nick.isprintable()  # also refuses lone surrogates (category Cs)
        or nick.isspace()
    ):
        raise BadRequest("nick must be 1 to 32 printable characters")
    return nick


def validText(text: object, maxText: int) -> str:
    """
    @return: C{text}, if it is a non-empty string of at most C{maxText} characters.
    @raise BadRequest: when it is not a non-empty string, or holds a lone surrogate.
    @raise TooLarge: when it is longer than C{maxText}.
    """
    if not isinstance(text, str) or not text:
        raise BadRequest("text must be a non-empty string")
    if len(text) > maxText:
        raise TooLarge(f"text is longer than {maxText} characters")
    if _hasSurrogate(text):
        raise BadRequest("text must not hold a lone surrogate (\\ud800 to \\udfff)")
    return text


def _hasSurrogate(value: str) -> bool:
    # isascii() is O(1) in CPython (a flag of the string): ASCII strings cost nothing here
    return not value.isascii() and _SURROGATE.search(value) is not None


def validOffset(value: object, name: str = "since") -> int:
    """
    @return: C{value}, if it is a whole number from 0 to 2**53-1 (booleans are not numbers).
    @raise BadRequest: otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_SAFE_INT:
        raise BadRequest(f"{name} must be a whole number >= 0")
    return value


def _validRef(ref: object) -> Ref:
    if isinstance(ref, bool):
        raise BadRequest("ref must be a string or an integer")
    if isinstance(ref, int) and -_MAX_SAFE_INT <= ref <= _MAX_SAFE_INT:
        return ref
    if isinstance(ref, str) and len(ref) <= MAX_REF and not _hasSurrogate(ref):
        return ref
    raise BadRequest(f"ref must be a string of at most {MAX_REF} characters or an integer")


def _optionalString(obj: dict[str, Any], key: str, limit: int) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= limit or _hasSurrogate(value):
        raise BadRequest(f"{key} must be a string of 1 to {limit} characters")
    return value


def _parseJoin(obj: dict[str, Any], ref: Ref | None, maxText: int) -> Join:
    nick = obj.get("nick")
    since = obj.get("since")
    return Join(
        room=validRoom(obj.get("room")),
        nick=None if nick is None else validNick(nick),
        since=None if since is None else validOffset(since),
        epoch=_optionalString(obj, "epoch", MAX_EPOCH),
        token=_optionalString(obj, "token", MAX_TOKEN),
        ref=ref,
    )


def _parseLeave(obj: dict[str, Any], ref: Ref | None, maxText: int) -> Leave:
    return Leave(room=validRoom(obj.get("room")), ref=ref)


def _parseSay(obj: dict[str, Any], ref: Ref | None, maxText: int) -> Say:
    return Say(room=validRoom(obj.get("room")), text=validText(obj.get("text"), maxText), ref=ref)


def _parseNick(obj: dict[str, Any], ref: Ref | None, maxText: int) -> Nick:
    return Nick(nick=validNick(obj.get("nick")), ref=ref)


def _parseAuth(obj: dict[str, Any], ref: Ref | None, maxText: int) -> Auth:
    token = _optionalString(obj, "token", MAX_AUTH_TOKEN)
    if token is None:
        raise BadRequest("auth needs a token")
    return Auth(token=token, ref=ref)


_PARSERS: dict[str, Callable[[dict[str, Any], Ref | None, int], Command]] = {
    "join": _parseJoin,
    "leave": _parseLeave,
    "say": _parseSay,
    "nick": _parseNick,
    "auth": _parseAuth,
}


def parseCommand(payload: bytes | str, maxText: int = 4096) -> Command:
    """
    Read one client frame.

    @param payload: the text frame's payload (UTF-8 already checked by the WebSocket layer).
    @param maxText: the longest C{text} accepted in a C{say}.
    @return: the typed command.
    @raise RemoteError: with C{.ref} set to the client's ref when it was readable (also when
        orjson refused the frame: see the theory of operation above).
    """
    obj, fault = _load(payload)
    if fault is not None:
        raise _withRefOf(BadRequest(fault), obj)
    if not isinstance(obj, dict):
        raise BadRequest("frame must be a JSON object")
    return commandFrom(obj, maxText)


def commandFrom(obj: dict[str, Any], maxText: int = 4096) -> Command:
    """
    The command that a frame's JSON object holds, or that a front end reading another
    syntax built in the same shape (C{{"type": "join", "room": ..., ...}}): the same
    validation and the same refusals as a frame's.

    @param maxText: the longest C{text} accepted in a C{say}.
    @return: the typed command.
    @raise RemoteError: with C{.ref} set to the object's C{ref} when it is valid.
    """
    ref: Ref | None = None
    try:
        if "ref" in obj:
            ref = _validRef(obj["ref"])
        kind = obj.get("type")
        if not isinstance(kind, str):
            raise BadRequest('"type" must be a string')
        parser = _PARSERS.get(kind)
        if parser is None:
            raise UnknownType(f"unknown message type {kind[:32]!r}")
        return parser(obj, ref, maxText)
    except RemoteError as e:
        e.ref = ref  # type: ignore[attr-defined]
        raise


def binaryFrameError(payload: bytes) -> BadRequest:
    """
    The refusal of a binary frame: the chat speaks JSON in text frames only, whatever the
    binary frame holds.

    @return: a L{BadRequest} carrying the client's C{ref} when C{payload} is a JSON object
        (UTF-8, read as a text frame would be) with a valid one.
    """
    error = BadRequest("frames must be text (JSON)")
    try:
        obj, _ = _load(payload)
    except BadRequest:
        return error
    return _withRefOf(error, obj)


_E = TypeVar("_E", bound=RemoteError)


def _withRefOf(error: _E, obj: object) -> _E:
    """C{error}, carrying the ref of C{obj} when it is an object with a valid one."""
    if isinstance(obj, dict) and "ref" in obj:
        with contextlib.suppress(BadRequest):
            error.ref = _validRef(obj["ref"])
    return error


def _load(payload: bytes | str) -> tuple[Any, str | None]:
    """
    The JSON value of a frame, and why the frame is refused even so (C{None}: it is not).

    @raise BadRequest: when the frame cannot be read.
    """
    try:
        return orjson.loads(payload), None
    except orjson.JSONDecodeError:
        return _loadLeniently(payload)


def _loadLeniently(payload: bytes | str) -> tuple[Any, str | None]:
    """
    The fallback read of a frame orjson refused: the standard library's parser, within the
    C{FALLBACK_*} limits.  C{NaN}, C{Infinity} and C{-Infinity} are read (as NaN), so that the
    frame's C{ref} is known, and make it refused as not JSON.
    """
    unreadable = BadRequest("frame is not valid JSON")
    try:
        raw = payload.encode("utf-8") if isinstance(payload, str) else payload
        if len(raw) > FALLBACK_MAX_BYTES:
            raise unreadable
        text = raw.decode("utf-8")
    except UnicodeError:  # a str holding surrogates, or bytes that are not UTF-8
        raise unreadable from None
    if not _nestedWithin(text, FALLBACK_MAX_DEPTH):
        raise unreadable
    constants: list[str] = []

    def constant(name: str) -> float:
        constants.append(name)
        return math.nan

    try:
        obj = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=constant)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        raise unreadable from None
    if constants:
        return obj, f"frame is not valid JSON: {constants[0]} is not a JSON number"
    return obj, None


def _int(literal: str) -> int | float:
    if len(literal) > FALLBACK_MAX_NUMBER:
        return -math.inf if literal.startswith("-") else math.inf
    return int(literal)


def _float(literal: str) -> float:
    if len(literal) > FALLBACK_MAX_NUMBER:
        return -math.inf if literal.startswith("-") else math.inf
    return float(literal)


# a JSON string (escapes included); what is left without them holds the structure
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_AS_PARENTHESES = str.maketrans("[{]}", "(())")


def _nestedWithin(text: str, limit: int) -> bool:
    """
    Whether the arrays and objects of the JSON C{text} nest at most C{limit} deep.  A few
    linear passes in C, so that the recursive parser never starts on a frame that would nest
    too deep (unbalanced brackets may pass: then the parser refuses the frame).
    """
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text)).translate(_AS_PARENTHESES)
    if brackets.count("(") <= limit:
        return True  # too few to nest deeper (if they do not balance, json refuses the frame)
    for _ in range(limit):
        # each pass removes the innermost level of nesting
        brackets = brackets.replace("()", "")
        if not brackets:
            return True
    return False


# ===========================================================================================
# The client's direction: commands to bytes, bytes to events.
#
# One codec serves both ends of the wire, as wsproto does: a client shipped with the server
# (portshare.client) encodes its commands and reads the server's events here, never with
# dict shapes of its own.  encodeCommand() is the inverse of parseCommand(), parseEvent() the
# inverse of encode(): for every valid command c, parseCommand(encodeCommand(c)) == c, and
# for every event e, parseEvent(encode(e)) == e (tests/test_wire.py checks both).
#
# Encoding a command does not validate it: a client may send what the server refuses, and
# is told why in an error event.  Parsing an event checks its shape (a JSON object, a known
# type, every field the encoder always writes present and of the right JSON type, ranges as
# the contract states them) and ignores fields it does not know, as parseCommand does; it
# does not apply the server's rules on input (room names, nick lengths), which a client
# cannot know for another version of the server.  A frame that fails raises BadEvent, the
# server's fault as a RemoteError is the client's; a well-formed event of a type this
# version does not know raises its subclass UnknownEvent, which a client may skip.
# ===========================================================================================


@dataclass(frozen=True, slots=True)
class Close:
    """
    The server's notice that it is about to end the connection, on the transports without a
    close frame of their own: a C{close} line on C{portshare-lines}, an C{event: close} on
    C{/sse} (whose data leaves out the type).  A WebSocket says the same in its close frame.

    @ivar code: a WebSocket close code (RFC 6455 section 7.4), such as 1001 going away.
    @ivar reason: why, for people.
    """

    code: int
    reason: str

    def toDict(self) -> dict[str, Any]:
        return {"type": "close", "code": self.code, "reason": self.reason}


#: everything a server sends a chat client: the chat's events and the transports' close notice
ServerEvent = Event | Close


class BadEvent(ValueError):
    """
    A server frame that is not an event of the contract (see L{parseEvent}).

    @ivar reason: what is wrong with it, for people.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownEvent(BadEvent):
    """
    A JSON object whose C{type} names no event this version knows: maybe an extension of a
    newer server, which a client may skip as the contract lets it skip extensions.

    @ivar type: the unknown type, as sent.
    """

    def __init__(self, kind: str) -> None:
        super().__init__(f"unknown event type {kind[:32]!r}")
        self.type = kind


# -- encoding commands ----------------------------------------------------------------------


def _withOptional(d: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """C{d} with each of C{fields} that is not C{None}, in order (absent and null are one)."""
    d.update((key, value) for key, value in fields.items() if value is not None)
    return d


def _joinToDict(command: Join) -> dict[str, Any]:
    return _withRef(
        _withOptional(
            {"type": "join", "room": command.room},
            nick=command.nick,
            since=command.since,
            epoch=command.epoch,
            token=command.token,
        ),
        command.ref,
    )


def _leaveToDict(command: Leave) -> dict[str, Any]:
    return _withRef({"type": "leave", "room": command.room}, command.ref)


def _sayToDict(command: Say) -> dict[str, Any]:
    return _withRef({"type": "say", "room": command.room, "text": command.text}, command.ref)


def _nickToDict(command: Nick) -> dict[str, Any]:
    return _withRef({"type": "nick", "nick": command.nick}, command.ref)


def _authToDict(command: Auth) -> dict[str, Any]:
    return _withRef({"type": "auth", "token": command.token}, command.ref)


_COMMAND_ENCODERS: dict[type, Callable[[Any], dict[str, Any]]] = {
    Join: _joinToDict,
    Leave: _leaveToDict,
    Say: _sayToDict,
    Nick: _nickToDict,
    Auth: _authToDict,
}


def commandToDict(command: Command) -> dict[str, Any]:
    """
    The JSON object of one command, as the events' C{toDict} make theirs: C{type} first,
    the fields in their declared order, C{ref} last; optional fields that are C{None} are
    left out.

    @raise TypeError: when C{command} is not one of the command classes.
    """
    encoder = _COMMAND_ENCODERS.get(type(command))
    if encoder is None:
        raise TypeError(f"not a chat command: {command!r}")
    return encoder(command)


def encodeCommand(command: Command) -> bytes:
    """
    Serialize one command as the UTF-8 payload of a text frame (or of one line of the line
    protocol), the inverse of L{parseCommand}.  The command is not validated.

    @return: compact JSON; non-ASCII text is kept as UTF-8, not escaped.
    """
    return orjson.dumps(commandToDict(command))


def encodeEvent(event: ServerEvent) -> bytes:
    """
    L{encode}, for everything a server sends a client: the chat's events and L{Close}.

    @return: compact JSON; non-ASCII text is kept as UTF-8, not escaped.
    """
    return orjson.dumps(event.toDict())


# -- parsing events -------------------------------------------------------------------------


class _EventFields:
    """The fields of one event's JSON object, each read with its type checked."""

    def __init__(self, obj: dict[str, Any], kind: str) -> None:
        self.obj = obj
        self.kind = kind

    def _fault(self, key: str, what: str) -> BadEvent:
        return BadEvent(f"{self.kind} event: {key} must be {what}")

    def string(self, key: str) -> str:
        value = self.obj.get(key)
        if not isinstance(value, str):
            raise self._fault(key, "a string")
        return value

    def optionalString(self, key: str) -> str | None:
        return None if self.obj.get(key) is None else self.string(key)

    def number(self, key: str, low: int = 0, high: int = _MAX_SAFE_INT) -> int:
        value = self.obj.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self._fault(key, f"a whole number from {low} to {high}")
        return value

    def flag(self, key: str) -> bool:
        value = self.obj.get(key)
        if not isinstance(value, bool):
            raise self._fault(key, "true or false")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.obj.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._fault(key, "a list of strings")
        return tuple(value)

    def choice(self, key: str, choices: tuple[str, ...]) -> str:
        value = self.obj.get(key)
        if value not in choices:
            raise self._fault(key, " or ".join(repr(c) for c in choices))
        return value

    def ref(self) -> Ref | None:
        value = self.obj.get("ref")
        if value is None:
            return None
        try:
            return _validRef(value)
        except BadRequest as e:
            raise BadEvent(f"{self.kind} event: {e.reason}") from None

    def requiredRef(self) -> Ref:
        ref = self.ref()
        if ref is None:
            raise self._fault("ref", "a string or an integer")
        return ref


def _parseMessage(f: _EventFields) -> Message:
    return Message(
        room=f.string("room"),
        offset=f.number("offset"),
        ts=f.number("ts"),
        nick=f.string("nick"),
        text=f.string("text"),
        user=f.optionalString("user"),
    )


def _parseJoined(f: _EventFields) -> Joined:
    return Joined(
        room=f.string("room"),
        offset=f.number("offset"),
        epoch=f.string("epoch"),
        members=f.strings("members"),
        count=f.number("count"),
        recovered=f.flag("recovered"),
        ref=f.ref(),
    )


def _parseLeft(f: _EventFields) -> Left:
    return Left(room=f.string("room"), ref=f.ref())


def _parseAck(f: _EventFields) -> Ack:
    return Ack(ref=f.requiredRef(), offset=f.number("offset"), room=f.optionalString("room"))


def _parsePresence(f: _EventFields) -> Presence:
    return Presence(
        room=f.string("room"),
        event=f.choice("event", ("join", "leave")),
        nick=f.string("nick"),
        user=f.optionalString("user"),
    )


def _parseAuthed(f: _EventFields) -> Authed:
    return Authed(user=f.string("user"), exp=f.number("exp"), ref=f.ref())


def _parsePresenceBatch(f: _EventFields) -> PresenceBatch:
    return PresenceBatch(
        room=f.string("room"),
        count=f.number("count"),
        joined=f.strings("joined"),
        left=f.strings("left"),
        truncated=f.flag("truncated"),
    )


def _parseError(f: _EventFields) -> Error:
    return Error(code=f.string("code"), reason=f.string("reason"), ref=f.ref())


def _parseClose(f: _EventFields) -> Close:
    return Close(code=f.number("code", 1000, 4999), reason=f.string("reason"))


_EVENT_PARSERS: dict[str, Callable[[_EventFields], ServerEvent]] = {
    "message": _parseMessage,
    "joined": _parseJoined,
    "left": _parseLeft,
    "ack": _parseAck,
    "presence": _parsePresence,
    "presence_batch": _parsePresenceBatch,
    "authed": _parseAuthed,
    "error": _parseError,
    "close": _parseClose,
}


def parseEvent(payload: bytes | str, kind: str | None = None) -> ServerEvent:
    """
    Read one server frame (a WebSocket text frame, a line, an SSE event's data), the
    inverse of L{encode} and L{encodeEvent}.

    @param kind: the event's type when the payload does not name one: SSE carries the type
        of its close notice only as the event's name.  A C{type} in the payload wins.
    @return: the typed event.
    @raise UnknownEvent: for a JSON object whose type names no event this version knows.
    @raise BadEvent: for anything else that is not an event of the contract.
    """
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise BadEvent("event is not valid JSON") from None
    if not isinstance(obj, dict):
        raise BadEvent("event must be a JSON object")
    name = obj.get("type", kind)
    if not isinstance(name, str):
        raise BadEvent('event: "type" must be a string')
    parser = _EVENT_PARSERS.get(name)
    if parser is None:
        raise UnknownEvent(name)
    return parser(_EventFields(obj, name))
