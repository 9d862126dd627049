"""
The client's link over Server-Sent Events: C{GET /sse} to read, C{POST
/api/rooms/ROOM/messages} to say (see L{portshare.sse} and L{portshare.api}).

The stream's events are the WebSocket's, read by L{portshare.wire.parseEvent}, with the SSE
event's name as their type where the data names none (the close notice).  Saying is an HTTP
request, not a chat command: its answer becomes the C{ack} (or C{error}) event that the
WebSocket would have sent, with the C{ref} the command would have carried.

Two of these events keep the key order that C{--json} has always printed them in, which is
not the server's: L{SseClose} (the close notice's data, then its type) and L{RefusedPost} (an
error's C{ref} first).  The WebSocket and the line protocol print the server's order.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import Cooperator
from twisted.python.failure import Failure
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from portshare.client.link import CliError, Link, Server
from portshare.wire import Ack, Close, Error, ServerEvent, dumps


@dataclass(frozen=True, slots=True)
class SseClose(Close):
    """A L{Close} that came over SSE: C{--json} prints its data's fields, then its type."""

    def toDict(self) -> dict[str, Any]:
        return {"code": self.code, "reason": self.reason, "type": "close"}


@dataclass(frozen=True, slots=True)
class RefusedPost(Error):
    """The HTTP API's refusal of a message said over SSE: C{--json} prints its C{ref} first."""

    def toDict(self) -> dict[str, Any]:
        return {"type": "error", "ref": self.ref, "code": self.code, "reason": self.reason}


class _SseBody(Protocol):
    """Reads a C{text/event-stream} body; each event's data goes to the link."""

    def __init__(self, link: SseLink) -> None:
        self.link = link
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data.replace(b"\r\n", b"\n")
        while b"\n\n" in self.buffer:
            block, self.buffer = self.buffer.split(b"\n\n", 1)
            fields: dict[bytes, bytes] = {}
            for line in block.split(b"\n"):
                name, _, value = line.partition(b":")
                if name:
                    fields[name] = value[1:] if value.startswith(b" ") else value
            if b"data" in fields:
                self.link.lastEventId = fields.get(b"id", b"").decode() or self.link.lastEventId
                kind = fields.get(b"event", b"").decode("utf-8", "replace") or None
                self.link.frameReceived(fields[b"data"], kind)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.link.connectionClosed()


class SseLink(Link):
    """C{GET /sse} to read, C{POST /api/rooms/ROOM/messages} to say (no join needed)."""

    needsJoin = False

    def __init__(self, reactor: Any, server: Server, token: str | None) -> None:
        from twisted.web.client import Agent, BrowserLikePolicyForHTTPS

        super().__init__()
        self.server = server
        # what sends the bodies of POSTs: on this link's reactor, not the global one
        self.cooperator = Cooperator(scheduler=lambda work: reactor.callLater(0, work))
        self.token = token
        self.lastEventId = ""
        self.body: _SseBody | None = None
        policy: Any = BrowserLikePolicyForHTTPS()
        if server.secure:
            options = server.tlsOptions()
            policy = _FixedPolicy(options)
        self.agent = Agent(reactor, contextFactory=policy)

    async def join(self, room: str, nick: str | None, since: int | None) -> None:
        """Open the stream of C{room}: the server joins it for us (its C{ref} is the room)."""
        from twisted.web.http_headers import Headers

        self.nick = nick
        query = f"room={quote(room)}"
        if nick is not None:
            query += f"&nick={quote(nick)}"
        if since is not None:
            query += f"&since={since}"
        response = await self.agent.request(
            b"GET",
            f"{self.server.base}/sse?{query}".encode(),
            Headers({b"accept": [b"text/event-stream"]}),
        )
        if response.code != 200:
            raise CliError(f"/sse answered {response.code}")
        self.body = _SseBody(self)
        response.deliverBody(self.body)

    def eventReceived(self, event: ServerEvent) -> None:
        if type(event) is Close:
            event = SseClose(event.code, event.reason)
        super().eventReceived(event)

    def say(self, room: str, text: str, ref: int) -> None:
        """POST C{text} to C{room}; its answer comes on C{events} as an ack or an error."""
        ensureDeferred(self._post(room, text, ref))

    async def _post(self, room: str, text: str, ref: int) -> None:
        from twisted.web.client import FileBodyProducer
        from twisted.web.http_headers import Headers

        headers = Headers({b"content-type": [b"application/json"]})
        if self.token is not None:
            headers.addRawHeader(b"authorization", f"Bearer {self.token}".encode())
        body = dumps({"nick": self.nick or "cli", "text": text})
        try:
            response = await self.agent.request(
                b"POST",
                f"{self.server.base}/api/rooms/{quote(room)}/messages".encode(),
                headers,
                FileBodyProducer(io.BytesIO(body), cooperator=self.cooperator),
            )
            collected = _Collect()
            response.deliverBody(collected)
            # the HTTP API's answer: {"offset": O}, or {"error": CODE, "reason": TEXT}
            reply = orjson.loads(await collected.done)
        except Exception as e:
            reply = {"error": "unavailable", "reason": str(e)}
        if "offset" in reply:
            self.events.put(Ack(ref=ref, offset=reply["offset"]))
        else:
            self.events.put(
                RefusedPost(
                    code=reply.get("error", "error"),
                    reason=reply.get("reason", str(reply)),
                    ref=ref,
                )
            )

    def close(self) -> None:
        body = self.body
        if body is not None and body.transport is not None:
            body.transport.stopProducing()  # type: ignore[attr-defined]
        elif body is None:
            self.connectionClosed()


class _Collect(Protocol):
    """A whole response body."""

    def __init__(self) -> None:
        self.data = b""
        self.done: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.done.callback(self.data)


@implementer(IPolicyForHTTPS)
class _FixedPolicy:
    """The same client TLS options for every host (the one server of C{--url})."""

    def __init__(self, options: Any) -> None:
        self.options = options

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return self.options
