"""
The test kit for applications: the whole service in memory, driven like a user's client.

Theory of operation: a L{MemoryChat} is a L{portshare.Chat} (the public API the plugin
uses, every option) on a C{MemoryReactorClock}, started at once, with Autobahn's timers on the
same clock.  Each client is one connection to the service's port (the real connection
tracker, site, tree and protocols) over a C{StringTransport}: nothing listens, nothing
sleeps, and everything a connection is sent has been written by the time the call that
caused it returns (the memory broker answers at once), so a client's C{join} can return the
server's reply.  Time moves only when the test says (L{MemoryChat.advance}).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable
from typing import Any, TypeVar
from urllib.parse import urlencode

import orjson
import txaio.testutil
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse
from zope.interface import implementer

from portshare.apps import WsgiApp
from portshare.broker import IBroker, IRoomListener
from portshare.broker.memory import MemoryBroker
from portshare.embedding import Chat
from portshare.lines import TOKEN as LINES
from portshare.service import Settings
from portshare.testing._doubles import SynchronousThreads
from portshare.testing._memory import (
    CLOSE,
    PING,
    PONG,
    TEXT,
    MemoryConnection,
    clientFrame,
    closeCode,
    serverFrames,
)
from portshare.web import chatPrefixSegments
from portshare.wire import (
    Ack,
    Close,
    Error,
    Joined,
    Left,
    Message,
    Presence,
    ServerEvent,
    parseEvent,
)

_E = TypeVar("_E")
_C = TypeVar("_C", bound="ChatClient")


class ChatError(Exception):
    """
    The server answered a client's command with an C{error} event.

    @ivar error: the L{portshare.wire.Error} event: its C{code} (C{forbidden},
        C{not_joined}, ...) and C{reason}.
    """

    def __init__(self, error: Error) -> None:
        super().__init__(f"{error.code}: {error.reason}")
        self.error = error
        self.code = error.code
        self.reason = error.reason


class NoReply(AssertionError):
    """A command got no reply yet: something the test waits on has not happened (a hook's
    answer, a broker call held by a fake); advance the clock or release it, then look
    again with L{ChatClient.replyTo}."""


@dataclasses.dataclass
class HTTPResponse:
    """An HTTP response read from the service in memory."""

    status: int
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of the header C{name} (any case), or C{None}."""
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def json(self) -> Any:
        """The body as JSON."""
        return orjson.loads(self.body)


def parseResponse(data: bytes) -> tuple[HTTPResponse | None, bytes]:
    """
    One HTTP/1.1 response from the start of C{data}, and the bytes after it; C{(None,
    data)} while it is not complete (a body still coming).
    """
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return None, data
    status, headers = _parseHead(head)
    if status in (101, 204, 304) or 100 <= status < 200:
        return HTTPResponse(status, headers, b""), rest
    if "chunked" in ",".join(headers.get("transfer-encoding", [])).lower():
        body = b""
        while True:
            size, sep, after = rest.partition(b"\r\n")
            if not sep:
                return None, data
            n = int(size.split(b";")[0], 16)
            if len(after) < n + 2:
                return None, data
            body, rest = body + after[:n], after[n + 2 :]
            if n == 0:  # (no trailers: portshare sends none)
                return HTTPResponse(status, headers, body), rest
    length = headers.get("content-length")
    if length is None:
        return HTTPResponse(status, headers, rest), b""  # until the connection closes
    n = int(length[0])
    if len(rest) < n:
        return None, data
    return HTTPResponse(status, headers, rest[:n]), rest[n:]


def _parseHead(head: bytes) -> tuple[int, dict[str, list[str]]]:
    lines = head.decode("iso-8859-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return status, headers


class ChatClient:
    """
    A chat connection (WebSocket, or the line protocol) that speaks the wire contract, as a
    user's client would, and reads what the server sends as typed events
    (L{portshare.wire}: L{Joined}, L{Message}, L{Ack}, L{Presence}, L{Error}, ...).

    @ivar received: every event received, in order.
    """

    def __init__(self, connection: MemoryConnection) -> None:
        self._connection = connection
        self._response: HTTPResponse | None = None
        self.received: list[ServerEvent] = []
        self._taken = 0
        self._closed: tuple[int | None, str] | None = None
        self._refs = itertools.count(1)
        self._pending = b""

    @property
    def response(self) -> HTTPResponse:
        """
        The handshake's answer: 101, or the refusal (then nothing else works).

        @raise NoReply: not answered yet (the token's check, or the application's connect
            rule, still waits: advance the clock, or answer the fake, then ask again).
        """
        if self._response is None:
            data = self._pending + self._connection.read()
            response, rest = parseResponse(data)
            if response is None:
                self._pending = data
                raise NoReply("the handshake has no answer yet")
            self._response, self._pending = response, rest
        return self._response

    @property
    def closed(self) -> tuple[int | None, str] | None:
        """The server's close (code, reason), once it closed the connection."""
        if self._closed is None:
            self._read()
        return self._closed

    @property
    def open(self) -> bool:
        """Whether the handshake succeeded and the connection is not closed."""
        return self._handshaken() and self.closed is None

    # -- the contract's commands ------------------------------------------------------------

    def join(
        self,
        room: str,
        *,
        nick: str | None = None,
        since: int | None = None,
        epoch: str | None = None,
        token: str | None = None,
    ) -> Joined:
        """
        Join C{room}; @return: the C{joined} reply (the replayed messages follow it in
        L{received}).  @raise ChatError: the server refused.  @raise NoReply: no reply yet.
        """
        fields = {"room": room, "nick": nick, "since": since, "epoch": epoch, "token": token}
        return self._command(Joined, "join", fields)

    def say(self, room: str, text: str) -> Ack:
        """Say C{text} in C{room}; @return: the C{ack} with the message's offset."""
        return self._command(Ack, "say", {"room": room, "text": text})

    def leave(self, room: str) -> Left:
        """Leave C{room}; @return: the C{left} reply."""
        return self._command(Left, "leave", {"room": room})

    def nick(self, nick: str) -> None:
        """Change nick (the contract has no reply; presence tells the rooms)."""
        self.send({"type": "nick", "nick": nick})

    def send(self, command: dict[str, Any] | bytes | str) -> None:
        """Send anything, the hostile included: a dict as JSON, or raw text or bytes."""
        if isinstance(command, dict):
            payload = orjson.dumps(command)
        elif isinstance(command, str):
            payload = command.encode("utf-8")
        else:
            payload = command
        self._write(payload)
        self._read()

    def _command(self, kind: type[_E], name: str, fields: dict[str, Any]) -> _E:
        ref = next(self._refs)
        command = {"type": name, "ref": ref, **{k: v for k, v in fields.items() if v is not None}}
        self.send(command)
        return self.replyTo(ref, kind)

    def replyTo(self, ref: int, kind: type[_E]) -> _E:
        """The reply to the command sent with C{ref}; @raise ChatError, NoReply."""
        self._read()
        for event in self.received:
            if getattr(event, "ref", None) == ref:
                if isinstance(event, Error):
                    raise ChatError(event)
                if isinstance(event, kind):
                    return event
        raise NoReply(f"no reply to command {ref} yet; closed: {self._closed}")

    # -- what arrived ------------------------------------------------------------------------

    def take(self, *kinds: type[Any]) -> list[Any]:
        """The events received since the last C{take}, of the given types (all without)."""
        self._read()
        new, self._taken = self.received[self._taken :], len(self.received)
        return [e for e in new if not kinds or isinstance(e, kinds)]

    def messages(self, room: str | None = None) -> list[Message]:
        """Every message event received so far (of C{room}), replies' replays included."""
        self._read()
        return [e for e in self.received if isinstance(e, Message) and room in (None, e.room)]

    def presence(self) -> list[Presence]:
        """Every single presence event received so far."""
        self._read()
        return [e for e in self.received if isinstance(e, Presence)]

    def close(self) -> None:
        """Close from the client's side, as a browser tab does, and let the server see it."""
        if self._closed is None:
            self._closeFromClient()
        self._connection.lose()

    # -- framing: the transport's ------------------------------------------------------------

    def _handshaken(self) -> bool:
        try:
            return self.response.status == 101
        except NoReply:
            return False

    def _write(self, payload: bytes) -> None:
        raise NotImplementedError

    def _read(self) -> None:
        raise NotImplementedError

    def _closeFromClient(self) -> None:
        pass

    def _event(self, payload: bytes) -> None:
        event = parseEvent(payload)
        self.received.append(event)
        if isinstance(event, Close):
            self._closed = (event.code, event.reason)


class WebSocketClient(ChatClient):
    """L{ChatClient} over a WebSocket (C{portshare.chat.v1}), masked frames as a browser."""

    def _write(self, payload: bytes) -> None:
        self._connection.send(clientFrame(payload))

    def _read(self) -> None:
        if self._response is None and not self._handshaken():
            return
        data = self._pending + self._connection.read()
        self._pending = b""
        for opcode, payload in serverFrames(data):
            if opcode == TEXT:
                self._event(payload)
            elif opcode == PING and self._closed is None:
                self._connection.send(clientFrame(payload, opcode=PONG))  # as a browser does
            elif opcode == CLOSE and self._closed is None:
                self._closed = (closeCode(payload), payload[2:].decode("utf-8", "replace"))
                self._connection.send(clientFrame(payload[:2], opcode=CLOSE))
                self._connection.settle()  # the server drops the socket after the handshake

    def _closeFromClient(self) -> None:
        self._connection.send(clientFrame((1000).to_bytes(2, "big"), opcode=CLOSE))
        self._read()


class LinesClient(ChatClient):
    """L{ChatClient} over the line protocol (C{Upgrade: portshare-lines}): a JSON per line."""

    def _write(self, payload: bytes) -> None:
        self._connection.send(payload + b"\n")

    def _read(self) -> None:
        if self._response is None and not self._handshaken():
            return
        data = self._pending + self._connection.read()
        *lines, self._pending = data.split(b"\n")
        for line in lines:
            if line.strip():
                self._event(line)
        self._connection.settle()


class SseClient:
    """
    A C{GET /sse} stream (the chat for clients without WebSocket: read-only, its events as
    the same typed values).

    @ivar response: the stream's head (200, or the refusal with its JSON body).
    """

    def __init__(self, connection: MemoryConnection) -> None:
        self._connection = connection
        data = connection.read()
        head, _, rest = data.partition(b"\r\n\r\n")
        status, headers = _parseHead(head)
        if status != 200:  # a refusal: a whole response, with its JSON body
            refusal, _ = parseResponse(data)
            self.response = refusal or HTTPResponse(status, headers, b"")
            rest = b""
        else:
            self.response = HTTPResponse(status, headers, b"")
        self._buffer = _dechunked(rest) if self._chunked() else rest
        self.received: list[ServerEvent] = []
        self.ids: list[str] = []
        self._taken = 0

    def _chunked(self) -> bool:
        return "chunked" in ",".join(self.response.headers.get("transfer-encoding", []))

    def take(self, *kinds: type[Any]) -> list[Any]:
        """The events received since the last C{take}, of the given types (all without)."""
        more = self._connection.read()
        self._buffer += _dechunked(more) if self._chunked() else more
        *blocks, self._buffer = self._buffer.split(b"\n\n")
        for block in blocks:
            fields: dict[str, str] = {}
            data: list[str] = []
            for line in block.decode("utf-8").split("\n"):
                name, _, value = line.partition(":")
                if name == "data":
                    data.append(value[1:] if value.startswith(" ") else value)
                elif name:
                    fields[name] = value.strip()
            if data:
                self.received.append(parseEvent("\n".join(data), fields.get("event")))
                if "id" in fields:
                    self.ids.append(fields["id"])
        new, self._taken = self.received[self._taken :], len(self.received)
        return [e for e in new if not kinds or isinstance(e, kinds)]

    def close(self) -> None:
        """The client goes away."""
        self._connection.lose()


def _dechunked(data: bytes) -> bytes:
    """The payload of whole chunks in C{data} (an SSE stream's chunks arrive whole here)."""
    out = b""
    while data:
        size, sep, rest = data.partition(b"\r\n")
        if not sep:
            break
        n = int(size.split(b";")[0] or b"0", 16)
        out, data = out + rest[:n], rest[n + 2 :]
    return out


class MemoryChat:
    """
    The whole portshare service in memory, for an application's tests: L{portshare.Chat}
    with every option, on a C{MemoryReactorClock}, started, with clients that speak the
    contract and HTTP requests against the same tree (the application's own pages too).

    A WSGI application (C{app=WsgiApp(...)}) runs synchronously in the test's thread
    (L{SynchronousThreads}) unless it names its own C{threads}.  Use it as a context
    manager, or call L{stop}.

    @param backplane: share the broker with other L{MemoryChat}s: several instances of one
        chat, in one process (L{MemoryBackplane}).
    @param options: L{portshare.Settings} fields, as for L{portshare.Chat}.

    @ivar chat: the L{portshare.Chat}.
    @ivar clock: its reactor and clock (advance it with L{advance}).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        backplane: MemoryBackplane | None = None,
        clock: MemoryReactorClock | None = None,
        hookBackend: FakeHookBackend | None = None,
        **options: Any,
    ) -> None:
        self.clock = clock if clock is not None else MemoryReactorClock()
        self._loop = txaio.testutil.replace_loop(self.clock)
        self._loop.__enter__()
        app = options.get("app", settings.app if settings else None)
        if isinstance(app, WsgiApp) and app.threads is None:
            options["app"] = dataclasses.replace(app, threads=SynchronousThreads())
        broker = backplane.broker() if backplane is not None else options.pop("broker", None)
        if hookBackend is not None:
            options.setdefault("hookUrl", "http://hooks.test/portshare")
        #: the fake hook backend the chat asks, if one was given
        self.hookBackend = hookBackend
        try:
            self.chat = Chat(self.clock, settings, broker=broker, http=hookBackend, **options)
        except BaseException:
            self._loop.__exit__(None, None, None)
            raise
        s = self.chat.settings
        prefix = chatPrefixSegments(s.chatPrefix, s.app is not None)
        #: where the chat's own paths are (C{""}, or C{"/chat"} beside an application)
        self.prefix = "".join("/" + p.decode("ascii") for p in prefix)
        self._peers = itertools.count(40000)
        self._connections: list[MemoryConnection] = []
        #: the chat clients opened, which read (and answer pings) while time passes
        self._clients: list[ChatClient] = []
        self._stopped = False
        self.chat.service.startService()

    def __enter__(self) -> MemoryChat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def token(self, user: str, *, lifetime: float = 3600.0, **claims: Any) -> str:
        """
        A user token for this chat (its C{jwtSecret}), valid C{lifetime} seconds from now by
        its clock; C{claims}: C{name}, C{rooms}, C{publish}, or any other claim.
        """
        secret = self.chat.settings.jwtSecret
        if secret is None:
            raise ValueError("MemoryChat(jwtSecret=...) is needed to sign tokens")
        return signToken(secret, user, expires=self.clock.seconds() + lifetime, **claims)

    def advance(self, seconds: float) -> None:
        """
        Let C{seconds} pass: timers, timeouts, presence batches, expiries fire, each at its
        time.  Between them the open clients read what they were sent and answer the
        server's keepalive pings, as live browsers do, so a long C{advance} does not drop
        them for silence (a client that should stay silent: close it, or use L{connection}).
        """
        target = self.clock.seconds() + seconds
        for _ in range(100_000):  # bounded: a timer that re-arms at once cannot spin here
            due = [c.getTime() for c in self.clock.getDelayedCalls()]
            upcoming = min((t for t in due if t <= target), default=None)
            if upcoming is None:
                break
            self.clock.advance(max(0.0, upcoming - self.clock.seconds()))
            self._pump()
        self.clock.advance(max(0.0, target - self.clock.seconds()))
        self._pump()

    def _pump(self) -> None:
        """Let every open client read (and pong), and forget the ones that are gone."""
        alive = []
        for client in self._clients:
            if client._connection.lost:
                continue
            client._read()
            alive.append(client)
        self._clients = alive

    def connection(self, peer: str = "127.0.0.1") -> MemoryConnection:
        """A raw connection to the port, for bytes of the test's own making."""
        connection = MemoryConnection(self.chat._service, port=next(self._peers), host=peer)
        self._connections.append(connection)
        return connection

    def websocket(
        self,
        path: str | None = None,
        *,
        origin: str | None = None,
        headers: dict[str, str] | None = None,
        cookies: dict[str, str] | None = None,
        peer: str = "127.0.0.1",
    ) -> WebSocketClient:
        """
        Open a chat WebSocket (C{/ws} under the chat's prefix by default).

        @param cookies: sent in a C{Cookie} header, as a browser sends the cookies of the
            page's origin (a token cookie the application set at login, C{--token-cookie}).
        """
        c = self.connection(peer)
        more = _withCookies(headers, cookies)
        c.send(_upgradeRequest(path or self.prefix + "/ws", "websocket", origin, more, True))
        return self._kept(WebSocketClient(c))

    def lines(
        self,
        path: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        cookies: dict[str, str] | None = None,
        peer: str = "127.0.0.1",
    ) -> LinesClient:
        """Open a chat connection over the line protocol (C{Upgrade: portshare-lines});
        C{cookies} as for L{websocket}."""
        c = self.connection(peer)
        more = _withCookies(headers, cookies)
        c.send(_upgradeRequest(path or self.prefix + "/ws", LINES, None, more))
        return self._kept(LinesClient(c))

    def _kept(self, client: _C) -> _C:
        """C{client}, kept to read (and answer pings) as time passes (L{advance})."""
        self._clients.append(client)
        return client

    def sse(
        self,
        rooms: Iterable[str],
        *,
        since: int | None = None,
        lastEventId: str | None = None,
        headers: dict[str, str] | None = None,
        cookies: dict[str, str] | None = None,
        peer: str = "127.0.0.1",
    ) -> SseClient:
        """Open C{GET /sse?room=...} (the chat's prefix first); C{cookies} as for
        L{websocket}."""
        query = [("room", r) for r in rooms] + (
            [("since", str(since))] if since is not None else []
        )
        more = _withCookies(headers, cookies)
        if lastEventId is not None:
            more["Last-Event-ID"] = lastEventId
        c = self.connection(peer)
        c.send(_request("GET", f"{self.prefix}/sse?{urlencode(query)}", b"", more))
        return SseClient(c)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        json: Any = None,
        headers: dict[str, str] | None = None,
        cookies: dict[str, str] | None = None,
        peer: str = "127.0.0.1",
    ) -> HTTPResponse:
        """
        One HTTP request on its own connection, through the same tree: the chat's API
        (C{/api/...} under the prefix), C{/healthz}, the application's pages.

        @param json: a body to send as C{application/json}.
        @param cookies: sent in a C{Cookie} header (as for L{websocket}).
        @raise NoReply: the response is not complete (an application answering later:
            advance the clock, or use L{connection} and read it yourself).
        """
        more = _withCookies(headers, cookies)
        if json is not None:
            body = orjson.dumps(json)
            more.setdefault("Content-Type", "application/json")
        c = self.connection(peer)
        c.send(_request(method, path, body, more))
        response, _ = parseResponse(c.read())
        if response is None:
            raise NoReply(f"{method} {path}: no complete response yet")
        return response

    def get(self, path: str, **kwargs: Any) -> HTTPResponse:
        """C{request("GET", path, ...)}."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> HTTPResponse:
        """C{request("POST", path, ...)}."""
        return self.request("POST", path, **kwargs)

    def stop(self) -> None:
        """Stop the service gracefully (its clients get 1001), letting the shutdown timeout
        pass if they do not go; then Autobahn's timers leave the clock."""
        if self._stopped:
            return
        self._stopped = True
        try:
            for connection in self._connections:
                connection.settle()
            d = self.chat.service.stopService()
            self.clock.advance(self.chat.settings.shutdownTimeout + 0.001)
            self.clock.advance(self.chat.settings.shutdownTimeout + 0.001)
            if isinstance(d, Deferred):
                failures: list[Failure] = []
                d.addErrback(failures.append)
                if failures:
                    failures[0].raiseException()
        finally:
            self._loop.__exit__(None, None, None)


def _withCookies(headers: dict[str, str] | None, cookies: dict[str, str] | None) -> dict[str, str]:
    """C{headers}, with C{cookies} in one C{Cookie} header (after any the test gave)."""
    more = dict(headers or {})
    if cookies:
        given = [more["Cookie"]] if "Cookie" in more else []
        more["Cookie"] = "; ".join(given + [f"{k}={v}" for k, v in cookies.items()])
    return more


def _upgradeRequest(
    path: str,
    token: str,
    origin: str | None,
    headers: dict[str, str] | None,
    websocket: bool = False,
) -> bytes:
    fields = {"Upgrade": token, "Connection": "Upgrade"}
    if websocket:
        fields.update(
            {
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Protocol": "portshare.chat.v1",
            }
        )
    if origin is not None:
        fields["Origin"] = origin
    fields.update(headers or {})
    return _request("GET", path, b"", fields)


def _request(method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    fields = {"Host": "portshare.test", **headers}
    if body or method in ("POST", "PUT", "PATCH"):
        fields["Content-Length"] = str(len(body))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return head.encode("latin-1") + b"\r\n" + body


# -- the application's side: tokens and a hook backend ---------------------------------------


@implementer(IResponse)
class _FakeResponse:
    """An HTTP response of a L{FakeHookBackend}, as treq's client hands one out."""

    def __init__(self, code: int, body: bytes, contentType: str) -> None:
        self.code = code
        self.phrase = b"OK" if code == 200 else b"Not OK"
        self.headers = Headers({b"content-type": [contentType.encode("latin-1")]})
        self.length = len(body)
        self.version = (b"HTTP", 1, 1)
        self.request = None
        self.previousResponse = None
        self._body = body

    def deliverBody(self, protocol: Any) -> None:
        protocol.makeConnection(_NoTransport())
        protocol.dataReceived(self._body)
        protocol.connectionLost(Failure(ResponseDone()))

    def setPreviousResponse(self, response: Any) -> None:
        self.previousResponse = response


class _NoTransport:
    """What a body reader may stop (a body over its limit): nothing to stop here."""

    def stopProducing(self) -> None:
        pass

    def loseConnection(self) -> None:
        pass


class FakeHookBackend:
    """
    The application's hook backend (C{--hook-url}), in process: pass it as
    C{MemoryChat(hookBackend=...)} and portshare's real hook client (its timeout, its cap on
    calls in flight, its strict reading of answers) talks to C{answer} instead of a server.

    @param answer: called with each question (the JSON the backend would get: C{event},
        C{user}, C{nick}, C{room}, C{text}, C{client}); returns the answer's JSON (a dict:
        C{{"allow": True}}, C{{"allow": False, "reason": ...}}, C{{"allow": True, "text":
        ...}}), or C{(status, body bytes)} for a broken backend, or a Deferred of either (a
        slow one: fire it when the test says, or never, to see the timeout).
    @ivar questions: every question asked, in order.
    """

    def __init__(self, answer: Any = None) -> None:
        self.answer = answer if answer is not None else (lambda question: {"allow": True})
        self.questions: list[dict[str, Any]] = []
        #: the headers each question came with (C{--hook-header-file}'s among them)
        self.headers: list[Any] = []

    def post(self, url: Any, data: Any = None, headers: Any = None, **kwargs: Any) -> Deferred[Any]:
        """treq's C{post}, as the hook client calls it."""
        question = orjson.loads(data if isinstance(data, bytes) else kwargs.get("json") or b"{}")
        self.questions.append(question)
        self.headers.append(headers)
        d = maybeDeferred(self.answer, question)
        return d.addCallback(self._response)

    @staticmethod
    def _response(answer: Any) -> _FakeResponse:
        if isinstance(answer, tuple):
            status, body = answer
            return _FakeResponse(status, body, "application/json")
        return _FakeResponse(200, orjson.dumps(answer), "application/json")


def signToken(
    secret: bytes,
    user: str,
    *,
    expires: float,
    name: str | None = None,
    rooms: list[str] | None = None,
    publish: list[str] | None = None,
    **claims: Any,
) -> str:
    """
    A user token (HS256 JWT) as the application would sign it for C{--jwt-secret-file}.

    @param expires: C{exp}, seconds since the epoch (a L{MemoryChat}'s clock starts at 0).
    """
    import jwt

    payload: dict[str, Any] = {"sub": user, "exp": int(expires), **claims}
    for key, value in (("name", name), ("rooms", rooms), ("publish", publish)):
        if value is not None:
            payload[key] = value
    return jwt.encode(payload, secret, algorithm="HS256")


# -- several instances in one process --------------------------------------------------------


@implementer(IRoomListener)
class _Relay:
    """The shared broker's one listener of a room: hands each event to every instance."""

    def __init__(self) -> None:
        self.listeners: dict[object, Any] = {}

    def messagePublished(self, message: Message) -> None:
        for listener in list(self.listeners.values()):
            listener.messagePublished(message)

    def presenceChanged(self, presence: Presence) -> None:
        for listener in list(self.listeners.values()):
            listener.presenceChanged(presence)


class MemoryBackplane:
    """
    One in-memory broker shared by several L{MemoryChat}s: instances of one chat in one
    process, as instances on one Redis are (offsets, history and presence shared; each
    instance subscribed once per room), to test cross-instance behaviour without Redis.
    """

    def __init__(self, history: int = 100, maxRooms: int = 10_000) -> None:
        self.shared = MemoryBroker(history, maxRooms)
        self._relays: dict[str, _Relay] = {}
        #: each instance's answerer of the server API's commands
        self.answerers: dict[object, Any] = {}

    def broker(self) -> IBroker:
        """The broker of one more instance."""
        return _InstanceBroker(self)

    def _relay(self, room: str) -> tuple[_Relay, Deferred[None]]:
        relay = self._relays.get(room)
        if relay is not None:
            return relay, succeed(None)
        relay = self._relays[room] = _Relay()
        return relay, self.shared.subscribe(room, relay)

    def _release(self, room: str, instance: object) -> Deferred[None]:
        relay = self._relays.get(room)
        if relay is not None:
            relay.listeners.pop(instance, None)
            if not relay.listeners:
                del self._relays[room]
                return self.shared.unsubscribe(room)
        return succeed(None)


@implementer(IBroker)
class _InstanceBroker:
    """One instance's view of a L{MemoryBackplane}: its own subscriptions, the rest shared."""

    unavailableReason = None

    def __init__(self, plane: MemoryBackplane) -> None:
        self._plane = plane

    def __getattr__(self, name: str) -> Any:
        return getattr(self._plane.shared, name)  # publish, replay, history, presence, rooms

    def start(self) -> Deferred[None]:
        return succeed(None)

    def stop(self) -> Deferred[None]:
        self._plane.answerers.pop(self, None)  # a stopped instance answers no command
        return succeed(None)

    def subscribe(self, room: str, listener: IRoomListener) -> Deferred[None]:
        relay, subscribed = self._plane._relay(room)
        relay.listeners[self] = listener
        return subscribed

    def unsubscribe(self, room: str) -> Deferred[None]:
        return self._plane._release(room, self)

    def answerCommands(self, answerer: Any) -> None:
        self._plane.answerers[self] = answerer

    def command(self, message: dict[str, Any]) -> Deferred[list[dict[str, Any]]]:
        """Every instance on the backplane answers, as every instance on one Redis does."""
        return succeed([answer(message) for answer in list(self._plane.answerers.values())])
