"""
The server API's commands between instances over Redis pub/sub, sans-IO: the control
messages' codec and the gathering of one command's answers.

Theory of operation (the I/O is L{portshare.broker.redis.RedisBroker}'s):
 - Every instance subscribes to the control channel (L{portshare.broker.keys.KeyLayout.control})
   and to its own reply channel (C{KeyLayout.reply(id)}), on the connection that carries the
   rooms' channels.
 - A command is published on the control channel as a L{Request} (C{q|{"id", "from",
   "command"}}): a fresh request id and the publisher's instance id.  C{PUBLISH} answers with
   the number of subscribers that received it: every live instance, the publisher included;
   that is how many answers to wait for (L{Gathering.sent}).
 - Every instance that receives a request calls its answerer and publishes an L{Answer}
   (C{a|{"id", "from", "answer"}}) on the publisher's reply channel.
 - The publisher gathers the answers of its request (one per instance, duplicates ignored,
   at most C{cap}) until as many came as Redis counted receivers, or its deadline passes (an
   instance that received the request but went silent): then it fires with what it has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

#: the longest request id or instance id a control message may carry
MAX_ID = 128


@dataclass(frozen=True, slots=True)
class Request:
    """A server API command sent to every instance: answer C{origin} under C{id}."""

    id: str
    origin: str
    command: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Answer:
    """Instance C{instance}'s answer to request C{id}."""

    id: str
    instance: str
    answer: dict[str, Any]


def requestPayload(request: Request) -> str:
    """What the control channel carries for C{request}."""
    body = {"id": request.id, "from": request.origin, "command": request.command}
    return "q|" + orjson.dumps(body).decode("utf-8")


def answerPayload(answer: Answer) -> str:
    """What a reply channel carries for C{answer}."""
    body = {"id": answer.id, "from": answer.instance, "answer": answer.answer}
    return "a|" + orjson.dumps(body).decode("utf-8")


def _id(value: Any) -> str:
    if type(value) is not str or not 1 <= len(value) <= MAX_ID:
        raise ValueError("not an id")
    return value  # type: ignore[no-any-return]


def parseControl(payload: str | bytes) -> Request | Answer:
    """
    A control or reply channel's payload, checked.

    @raise ValueError: for anything that is not a L{requestPayload} or an L{answerPayload}.
    """
    text = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else payload
    kind, body = text[:2], text[2:]
    if kind not in ("q|", "a|"):
        raise ValueError(f"not a control message: {text[:80]!r}")
    try:
        fields = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise ValueError(f"bad control message: {text[:80]!r}") from e
    if type(fields) is not dict:
        raise ValueError(f"bad control message: {text[:80]!r}")
    value = fields.get("command" if kind == "q|" else "answer")
    if type(value) is not dict:
        raise ValueError(f"bad control message: {text[:80]!r}")
    if kind == "q|":
        return Request(_id(fields.get("id")), _id(fields.get("from")), value)
    return Answer(_id(fields.get("id")), _id(fields.get("from")), value)


@dataclass
class Gathering:
    """
    The answers to one request, by instance, in arrival order.

    @ivar expected: how many instances received the request (C{None} until C{PUBLISH}
        answered: answers may come first, over the other connection).
    @ivar cap: the most answers kept (a bound on memory whatever the channel carries).
    """

    cap: int
    expected: int | None = None
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        """Whether every instance that received the request answered."""
        return self.expected is not None and len(self.answers) >= min(self.expected, self.cap)

    def sent(self, receivers: int) -> bool:
        """C{PUBLISH} said how many received the request; @return: L{done}."""
        self.expected = max(0, receivers)
        return self.done

    def received(self, answer: Answer) -> bool:
        """An answer came (a second one from the same instance is ignored); @return: L{done}."""
        if answer.instance not in self.answers and len(self.answers) < self.cap:
            self.answers[answer.instance] = answer.answer
        return self.done

    def result(self) -> list[dict[str, Any]]:
        """The answers gathered, in arrival order."""
        return list(self.answers.values())
