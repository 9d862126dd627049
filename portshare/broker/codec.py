"""
What the Redis broker reads from Redis and puts on a room's channel, as portshare's values.

The replies of the scripts (L{portshare.broker.scripts}), the entries of a room's stream and
the payloads on its channel are decoded here, and the part of a message's payload that the
publisher encodes is encoded here; the rest of that payload is written by C{publish.lua}.
Like L{portshare.wire} for clients, this is a sans-IO codec: plain values in, plain values
(or C{ValueError}) out, no socket, no clock, no Deferred.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from portshare.chat import Replay
from portshare.wire import Message, Presence


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def offsetOfId(entryId: Any) -> int:
    """The offset a stream entry ID (C{"42-0"}) stands for."""
    return int(_text(entryId).split("-", 1)[0])


def parseEntries(room: str, raw: Any) -> tuple[Message, ...]:
    """
    Turn an C{XRANGE} reply (C{[[id, [field, value, ...]], ...]}) into messages.

    @raise ValueError: for an entry that is not one of ours.
    """
    messages = []
    for entry in raw or ():
        entryId, flat = entry
        fields = {_text(flat[i]): flat[i + 1] for i in range(0, len(flat) - 1, 2)}
        try:
            messages.append(
                Message(
                    room=room,
                    offset=offsetOfId(entryId),
                    ts=int(_text(fields["ts"])),
                    nick=_text(fields["n"]),
                    text=_text(fields["t"]),
                    user=_text(fields["u"]) if "u" in fields else None,
                )
            )
        except (KeyError, ValueError) as e:
            raise ValueError(f"stream entry {entryId!r} of {room} is not a message: {e}") from e
    return tuple(messages)


def messageBody(nick: str, text: str, user: str | None = None) -> str:
    """
    The part of a published message's payload that the publisher encodes: C{["nick",
    "text"]}, or C{["nick", "text", "user"]} for an authenticated sender's message (the
    two-element shape stays what an anonymous message is, so older instances still read it).
    """
    if user is None:
        return orjson.dumps([nick, text]).decode("utf-8")
    return orjson.dumps([nick, text, user]).decode("utf-8")


def batchBody(items: Sequence[tuple[str, str, int, str | None]]) -> str:
    """
    The part of a published batch's payload (several messages to one room, one PUBLISH)
    that the publisher encodes: C{[[ts, nick, text], ...]} for C{(nick, text, ts, user)}
    items, with C{user} as a fourth element of the messages that have one.
    """
    return orjson.dumps(
        [
            [ts, nick, text] if user is None else [ts, nick, text, user]
            for nick, text, ts, user in items
        ]
    ).decode("utf-8")


def _userOf(rest: Sequence[Any]) -> str | None:
    """The optional trailing user of a payload's message, checked: C{[]} or C{["user"]}."""
    if not rest:
        return None
    if len(rest) != 1 or type(rest[0]) is not str:
        raise TypeError("not a user")
    return rest[0]  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class Published:
    """A message as it arrives on a room's channel: the message and its epoch."""

    epoch: str
    message: Message


@dataclass(frozen=True, slots=True)
class PublishedBatch:
    """Several messages to one room, published by one script call: consecutive offsets."""

    epoch: str
    messages: tuple[Message, ...]


def parsePayload(room: str, payload: Any) -> Published | PublishedBatch | Presence:
    """
    Parse what a room's channel carries: C{m|epoch|offset|ts|["nick","text"]} (one message;
    C{["nick","text","user"]} for an authenticated sender's), C{b|epoch|first|n|[[ts,"nick",
    "text"],...]} (a batch of n, from offset C{first} on; each message may carry its user as
    a fourth element), C{p|join|nick} / C{p|leave|nick} (an anonymous member), or
    C{u|join|["nick","user"]} / C{u|leave|["nick","user"]} (an authenticated one; written
    by the presence scripts from the room's users hash).

    @raise ValueError: for anything else.
    """
    text = _text(payload)
    kind = text[:2]
    if kind == "b|":
        try:
            _, epoch, first, count, body = text.split("|", 4)
            start = int(first)
            messages = []
            for i, (ts, nick, said, *rest) in enumerate(orjson.loads(body)):
                if not (type(ts) is int and type(nick) is str and type(said) is str):
                    raise TypeError("not [ts, nick, text]")
                messages.append(
                    Message(
                        room=room,
                        offset=start + i,
                        ts=ts,
                        nick=nick,
                        text=said,
                        user=_userOf(rest),
                    )
                )
        except (ValueError, TypeError) as e:
            raise ValueError(f"bad batch payload on {room}: {text[:80]!r}") from e
        if not messages or len(messages) != int(count):
            raise ValueError(f"bad batch payload on {room}: {text[:80]!r}")
        return PublishedBatch(epoch, tuple(messages))
    if kind == "m|":
        try:
            _, epoch, offset, ts, body = text.split("|", 4)
            nick, said, *rest = orjson.loads(body)
            if not (type(nick) is str and type(said) is str):
                raise TypeError("not [nick, text]")
            message = Message(
                room=room, offset=int(offset), ts=int(ts), nick=nick, text=said, user=_userOf(rest)
            )
        except (ValueError, TypeError) as e:
            raise ValueError(f"bad message payload on {room}: {text[:80]!r}") from e
        return Published(epoch, message)
    if kind == "p|":
        _, event, nick = ([*text.split("|", 2), "", ""])[:3]
        if event in ("join", "leave") and nick:
            return Presence(room=room, event=event, nick=nick)  # type: ignore[arg-type]
    if kind == "u|":
        _, event, body = ([*text.split("|", 2), "", ""])[:3]
        try:
            nick, user = orjson.loads(body)
        except (ValueError, TypeError):
            nick = user = None
        if event in ("join", "leave") and type(nick) is str and nick and type(user) is str:
            return Presence(room=room, event=event, nick=nick, user=user)  # type: ignore[arg-type]
    raise ValueError(f"bad payload on {room}: {text[:80]!r}")


def isDelivered(payload: str, epoch: str | None, delivered: int) -> bool:
    """
    Whether C{payload} carries only messages of C{epoch} at offsets up to C{delivered}, read
    from its head alone (the body is not decoded): a publisher's own messages, delivered
    from the publish reply, coming back on the channel.
    """
    if epoch is None or payload[:2] not in ("m|", "b|"):
        return False
    parts = payload.split("|", 4)
    if len(parts) < 5 or parts[1] != epoch:
        return False
    try:
        last = int(parts[2]) + (int(parts[3]) - 1 if parts[0] == "b" else 0)
    except ValueError:
        return False
    return last <= delivered


def replayOf(room: str, since: int | None, clientEpoch: str | None, raw: Sequence[Any]) -> Replay:
    """
    The L{Replay} for a join, from the L{SNAPSHOT} script's reply; the same rule as
    L{portshare.chat.RoomLog.replay}.
    """
    epoch, last = _text(raw[0]), int(raw[1])
    messages = parseEntries(room, raw[2])
    if since is None:
        return Replay(epoch, last, (), True)
    if (clientEpoch is not None and clientEpoch != epoch) or since > last:
        return Replay(epoch, last, messages, False)
    first = messages[0].offset if messages else last + 1
    return Replay(epoch, last, messages, since + 1 >= first)


def historyOf(room: str, raw: Sequence[Any]) -> tuple[str | None, tuple[Message, ...]]:
    """C{(epoch, messages)} from the L{HISTORY} script's reply."""
    if raw[0] is None:
        return None, ()
    return _text(raw[0]), parseEntries(room, raw[1])


def membersOf(raw: Sequence[Any]) -> tuple[tuple[str, ...], int]:
    """C{(nicks, count)} from the L{MEMBERS} script's reply."""
    return tuple(_text(n) for n in raw[1] or ()), int(raw[0])


def roomsOf(raw: Sequence[Any]) -> list[tuple[str, int, int]]:
    """C{(room, offset, members)} rows from the L{ROOMS} script's reply, sorted by room."""
    rows = [(_text(raw[i]), int(raw[i + 1]), int(raw[i + 2])) for i in range(0, len(raw) - 2, 3)]
    return sorted(rows)
