"""
A thin Redis client protocol: RESP2 over one connection, parsed by hiredis, pipelined.

This replaces txredisapi under the Redis broker (issue 16; the reasons and the measurements
are in docs/scaling.md).  It does only what the broker needs, and does it with the least work
per command: a command is packed by C{hiredis.pack_command} and written at once (Twisted's
transport merges a reactor turn's writes into one C{send()}, so a turn's commands travel
pipelined in one write), replies are parsed by C{hiredis.Reader} and matched to the commands
in order, one Deferred a command, no per-command timer.

Theory of operation:
 - L{RespProtocol.execute} appends one Deferred to C{_pending} and writes the command; every
   reply that is not a pub/sub push fires the oldest pending Deferred (Redis answers in
   order).  Error replies fire it with L{ResponseError} (Redis's message).
 - One timer per connection, not per command, bounds how long a reply may take: when the
   oldest pending command has waited C{timeout} seconds, the connection is aborted and every
   pending Deferred fails with L{ConnectionLost}.  At most C{maxPending} commands may be in
   flight; past that L{execute} fails at once with L{Overloaded}: nothing is buffered without
   bound while Redis is slow.
 - Scripts run as C{EVALSHA} (L{RespProtocol.eval}); a C{NOSCRIPT} answer (Redis restarted, or
   SCRIPT FLUSH) sends the script's whole text once (C{EVAL}), after which the SHA1 works.
 - In pub/sub mode (L{RespProtocol.subscribeTo}), C{message} pushes go to C{onMessage(channel,
   payload)} (text: the reader decodes UTF-8), confirmations are matched
   to the request by channel and C{pong}s to pings.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from hashlib import sha1
from typing import Any

import hiredis
from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

__all__ = ["ConnectionLost", "Overloaded", "RespProtocol", "ResponseError"]


class ResponseError(Exception):
    """Redis answered with an error reply; the message is Redis's."""


class ConnectionLost(ConnectionError):
    """The connection was lost (or aborted for a late reply) before the reply came."""


class Overloaded(ConnectionError):
    """Too many commands are waiting for Redis's replies on this connection."""


_SHA1: dict[str, str] = {}


def scriptSha(text: str) -> str:
    """The SHA1 by which Redis names a script (memoised: scripts are few and fixed)."""
    sha = _SHA1.get(text)
    if sha is None:
        sha = _SHA1[text] = sha1(text.encode("utf-8")).hexdigest()
    return sha


class RespProtocol(Protocol):
    """
    One connection to Redis.

    @param clock: runs the reply timer.
    @param timeout: seconds the oldest pending reply may take before the connection is
        aborted (0: no limit).
    @param maxPending: commands in flight at most.
    """

    def __init__(self, clock: IReactorTime, timeout: float, maxPending: int = 20_000) -> None:
        self._clock = clock
        self._timeout = timeout
        self.maxPending = maxPending
        self._reader = hiredis.Reader(replyError=ResponseError, encoding="utf-8", errors="replace")
        self._pending: deque[tuple[Deferred[Any], float]] = deque()
        self._timer: Any = None
        self.connected = False
        self.onMessage: Callable[[str, str], None] = lambda channel, payload: None
        self._confirmations: dict[tuple[str, str], deque[Deferred[None]]] = {}
        self._pongs: deque[Deferred[None]] = deque()
        self._whenConnected: list[Deferred[Any]] = []
        self._whenDisconnected: list[Deferred[Any]] = []
        self.transport: Any = None

    # -- the connection ------------------------------------------------------------------------

    def connectionMade(self) -> None:
        self.connected = True
        noDelay = getattr(self.transport, "setTcpNoDelay", None)
        if noDelay is not None:  # TCP (not a UNIX socket): small commands go out at once
            with contextlib.suppress(OSError):
                noDelay(True)
        waiting, self._whenConnected = self._whenConnected, []
        for d in waiting:
            d.callback(self)

    def whenConnected(self) -> Deferred[Any]:
        """Fires with this protocol once connected (at once if it is)."""
        d: Deferred[Any] = Deferred()
        if self.connected:
            d.callback(self)
        else:
            self._whenConnected.append(d)
        return d

    def whenDisconnected(self) -> Deferred[Any]:
        """Fires with this protocol once the connection is lost."""
        d: Deferred[Any] = Deferred()
        self._whenDisconnected.append(d)
        return d

    def connectionLost(self, reason: Failure = Failure(ConnectionLost())) -> None:  # noqa: B008
        self.connected = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        pending, self._pending = self._pending, deque()
        waits = [d for ds in self._confirmations.values() for d in ds] + list(self._pongs)
        self._confirmations, self._pongs = {}, deque()
        lost = ConnectionLost("Lost connection")
        for d, _ in pending:
            d.errback(lost)
        for d in waits:
            if not d.called:
                d.errback(lost)
        waiting, self._whenDisconnected = self._whenDisconnected, []
        for d in waiting:
            d.callback(self)

    def abort(self) -> None:
        """Drop the connection now (its pending commands fail)."""
        if self.transport is not None:
            self.transport.abortConnection()

    # -- commands ------------------------------------------------------------------------------

    def execute(self, *args: Any) -> Deferred[Any]:
        """
        Send one command; @return: a Deferred firing with its reply (text, ints, lists),
        failing with L{ResponseError}, L{ConnectionLost} or L{Overloaded}.
        """
        if not self.connected:
            return fail(ConnectionLost("Not connected"))
        pending = self._pending
        if len(pending) >= self.maxPending:
            return fail(Overloaded(f"{len(pending)} commands wait for redis's replies"))
        d: Deferred[Any] = Deferred()
        now = self._clock.seconds()
        pending.append((d, now))
        if self._timer is None and self._timeout > 0:
            self._timer = self._clock.callLater(self._timeout, self._checkLate)
        self.transport.write(hiredis.pack_command(args))
        return d

    #: txredisapi's name, kept for the fakes the tests share
    execute_command = execute

    def eval(self, text: str, keys: Sequence[Any], args: Sequence[Any]) -> Deferred[Any]:
        """Run a Lua script by its SHA1 (C{EVALSHA}), sending its text when Redis lacks it."""
        d = self.execute("EVALSHA", scriptSha(text), len(keys), *keys, *args)
        return d.addErrback(self._noScript, text, keys, args)

    def _noScript(
        self, failure: Failure, text: str, keys: Sequence[Any], args: Sequence[Any]
    ) -> Any:
        if failure.check(ResponseError) and str(failure.value).startswith("NOSCRIPT"):
            return self.execute("EVAL", text, len(keys), *keys, *args)
        return failure

    def _checkLate(self) -> None:
        self._timer = None
        if not self._pending:
            return
        late = self._pending[0][1] + self._timeout - self._clock.seconds()
        if late <= 0:
            self.abort()  # a reply this late: the connection is as good as gone
        else:
            self._timer = self._clock.callLater(late, self._checkLate)

    # -- replies -------------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        pending = self._pending
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError:
                self.abort()
                return
            if reply is False:
                return
            if type(reply) is list and reply and self._push(reply):
                continue
            if pending:
                d = pending.popleft()[0]
                if isinstance(reply, ResponseError):
                    d.errback(reply)
                else:
                    d.callback(reply)
            elif reply == "PONG" and self._pongs:  # a ping before the first subscription
                self._pongs.popleft().callback(None)
            elif self.transport is not None:
                # a reply nobody asked for (a refused command in pub/sub mode): state unknown
                self.abort()
                return

    def _push(self, reply: list[Any]) -> bool:
        """Handle a pub/sub push; @return: whether C{reply} was one."""
        kind = reply[0]
        if kind == "message" and len(reply) == 3:
            self.onMessage(reply[1], reply[2])
            return True
        if kind in ("subscribe", "unsubscribe") and len(reply) == 3:
            waiting = self._confirmations.get((kind, reply[1]))
            if waiting:
                d = waiting.popleft()
                if not waiting:
                    del self._confirmations[(kind, reply[1])]
                d.callback(None)
            return True
        if kind == "pong" and self._pongs:
            self._pongs.popleft().callback(None)
            return True
        return False

    # -- pub/sub -------------------------------------------------------------------------------

    def _send(self, kind: str, channels: Sequence[str]) -> Deferred[Any]:
        if not self.connected:
            return fail(ConnectionLost("Not connected"))
        waits: list[Deferred[None]] = []
        for channel in channels:
            d: Deferred[None] = Deferred()
            key = (kind, channel)
            self._confirmations.setdefault(key, deque()).append(d)
            waits.append(d)
        command: tuple[Any, ...] = (kind.upper(), *channels)
        self.transport.write(hiredis.pack_command(command))
        return DeferredList(waits, fireOnOneErrback=True, consumeErrors=True)

    def subscribeTo(self, channels: Sequence[str]) -> Deferred[Any]:
        """Subscribe (pub/sub mode from then on); fires once Redis confirmed every channel."""
        return self._send("subscribe", channels)

    def unsubscribeFrom(self, channels: Sequence[str]) -> Deferred[Any]:
        """Unsubscribe; fires once Redis confirmed every channel."""
        return self._send("unsubscribe", channels)

    def ping(self, timeout: float) -> Deferred[None]:
        """PING in pub/sub mode; a pong not back within C{timeout} drops the connection."""
        if not self.connected:
            return fail(ConnectionLost("Not connected"))
        d: Deferred[None] = Deferred()
        self._pongs.append(d)
        self.transport.write(b"*1\r\n$4\r\nPING\r\n")

        def late(failure: Failure | None, timeout: float) -> Failure:
            self.abort()
            return failure or Failure(TimeoutError("no pong"))

        d.addTimeout(timeout, self._clock, onTimeoutCancel=late)
        return d
