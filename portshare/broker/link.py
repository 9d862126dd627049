"""
The Redis broker's connections: the plumbing under L{portshare.broker.redis.RedisBroker}.

L{RedisBroker} is the broker's logic (rooms, delivery, presence); this module is how it
reaches Redis: txredisapi's protocols for the Redis wire format, the endpoint a L{BrokerURL}
names, the two connections (one for commands and scripts, one for pub/sub) kept up as one
L{Link} with a L{Backoff} on the injected reactor, and the commands and scripts run on it with
Redis's errors turned into portshare's (L{Unavailable} when the link cannot answer, L{Refused}
when Redis refuses a command).  No other module of portshare imports txredisapi.

L{_Subscriber} relies on internals of txredisapi's C{RedisProtocol} (C{replyReceived},
C{replyQueue}, C{_build_command}, C{connected}, C{callLater}), as of txredisapi 1.6.0, the
version the tests run on (pyproject.toml asks for 1.4.10 or later).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import txredisapi
from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory
from twisted.internet.ssl import optionsForClientTLS
from twisted.logger import Logger
from twisted.python.failure import Failure

from portshare.broker.scripts import Script
from portshare.broker.url import BrokerURL
from portshare.errors import Unavailable


class Backoff:
    """
    Exponential backoff between reconnection attempts: C{initial}, doubled after each
    failure up to C{maximum}, each delay spread by up to C{jitter} (a fraction) with the
    C{random} the caller injects; L{reset} once connected.
    """

    def __init__(
        self,
        initial: float = 0.1,
        maximum: float = 5.0,
        jitter: float = 0.2,
        random: Any = None,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self._random = random or (lambda: 0.5)
        self.attempts = 0

    def next(self) -> float:
        """The delay before the next attempt."""
        base = min(self.maximum, self.initial * (2**self.attempts))
        self.attempts += 1
        spread = 1 + self.jitter * (2 * self._random() - 1)
        return max(0.0, min(self.maximum, base * spread))

    def reset(self) -> None:
        """Start again from C{initial}."""
        self.attempts = 0


class _Commands(txredisapi.RedisProtocol):  # type: ignore[misc]
    """txredisapi's protocol with its timers on the injected clock."""

    def __init__(self, clock: IReactorTime, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.callLater = clock.callLater


class _Subscriber(_Commands):
    """
    A connection in pub/sub mode.  Confirmations are matched to requests by channel (a
    SUBSCRIBE of n channels gets n of them), messages go to C{onMessage(channel, payload)}.
    """

    def __init__(self, clock: IReactorTime, **kwargs: Any) -> None:
        super().__init__(clock, **kwargs)
        self._clock = clock
        self.onMessage: Callable[[str, Any], None] = lambda channel, payload: None
        self._confirmations: dict[tuple[str, str], list[Deferred[None]]] = {}
        self._pongs: list[Deferred[None]] = []

    def replyReceived(self, reply: Any) -> None:
        if isinstance(reply, list) and reply:
            kind = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
            if kind == "message" and len(reply) == 3:
                channel = reply[1].decode() if isinstance(reply[1], bytes) else reply[1]
                self.onMessage(channel, reply[2])
                return
            if kind in ("subscribe", "unsubscribe") and len(reply) == 3:
                channel = reply[1].decode() if isinstance(reply[1], bytes) else reply[1]
                waiting = self._confirmations.get((kind, channel))
                if waiting:
                    d = waiting.pop(0)
                    if not waiting:
                        del self._confirmations[(kind, channel)]
                    d.callback(None)
                return
            if kind == "pong" and self._pongs:
                self._pongs.pop(0).callback(None)
                return
        if reply in ("PONG", b"PONG") and self._pongs:  # not subscribed to anything yet
            self._pongs.pop(0).callback(None)
            return
        if self.replyQueue.waiting:
            super().replyReceived(reply)  # AUTH, SELECT, CLIENT SETNAME before subscribing
        elif self.transport is not None:
            # an unexpected reply in pub/sub mode (a refused command): state unknown
            self.transport.abortConnection()

    def _send(self, kind: str, channels: Sequence[str]) -> Deferred[Any]:
        if not self.connected:
            return fail(txredisapi.ConnectionError("Not connected"))
        waits: list[Deferred[None]] = []
        for channel in channels:
            d: Deferred[None] = Deferred()
            self._confirmations.setdefault((kind, channel), []).append(d)
            waits.append(d)
        self.transport.write(self._build_command(kind.upper(), *channels))
        return DeferredList(waits, fireOnOneErrback=True, consumeErrors=True)

    def subscribeTo(self, channels: Sequence[str]) -> Deferred[Any]:
        """Subscribe; fires once Redis confirmed every channel."""
        return self._send("subscribe", channels)

    def unsubscribeFrom(self, channels: Sequence[str]) -> Deferred[Any]:
        """Unsubscribe; fires once Redis confirmed every channel."""
        return self._send("unsubscribe", channels)

    def ping(self, timeout: float) -> Deferred[None]:
        """PING in pub/sub mode; a pong not back within C{timeout} drops the connection."""
        if not self.connected:
            return fail(txredisapi.ConnectionError("Not connected"))
        d: Deferred[None] = Deferred()
        self._pongs.append(d)
        self.transport.write(self._build_command("PING"))

        def late(failure: Failure | None, timeout: float) -> Failure:
            if self.transport is not None:
                self.transport.abortConnection()
            return failure or Failure(TimeoutError("no pong"))

        d.addTimeout(timeout, self._clock, onTimeoutCancel=late)
        return d

    def connectionLost(self, why: Failure) -> None:
        waiting = [d for ds in self._confirmations.values() for d in ds] + self._pongs
        self._confirmations, self._pongs = {}, []
        super().connectionLost(why)
        for d in waiting:
            if not d.called:
                d.errback(txredisapi.ConnectionError("Lost connection"))


class _Factory(Factory):
    """Builds one protocol; keeps what txredisapi reports when AUTH or SELECT fails."""

    isLazy = False
    noisy = False

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self.error: str | None = None

    def buildProtocol(self, addr: Any) -> Any:
        protocol = self._build()
        protocol.factory = self
        return protocol

    def stopTrying(self) -> None:
        pass  # the link decides when to try again

    def connectionError(self, message: str) -> None:
        self.error = message


def openConnection(reactor: Any, url: BrokerURL, instanceId: str, kind: str) -> Deferred[Any]:
    """
    Open one connection to the Redis C{url} names.

    @param reactor: connects, and runs the connection's timers.
    @param instanceId: the instance the connection is named after (C{CLIENT SETNAME}).
    @param kind: C{"command"} or C{"subscriber"} (pub/sub).
    @return: a Deferred firing with the protocol once it is usable (after AUTH, SELECT and
        CLIENT SETNAME), or failing when it cannot be opened.
    """
    endpoint: Any
    if url.scheme == "unix":
        assert url.path is not None
        endpoint = UNIXClientEndpoint(reactor, url.path, timeout=int(url.timeout))
    else:
        assert url.host is not None and url.port is not None
        endpoint = HostnameEndpoint(reactor, url.host, url.port, timeout=url.timeout)
        if url.scheme == "rediss":
            endpoint = wrapClientTLS(optionsForClientTLS(url.host), endpoint)
    protocolClass = _Subscriber if kind == "subscriber" else _Commands
    factory = _Factory(
        lambda: protocolClass(
            reactor,
            charset="utf-8",
            convertNumbers=False,
            replyTimeout=url.timeout,
            password=url.password,
            username=url.username,
            dbid=url.db or None,
        )
    )
    ready: Deferred[Any] = Deferred()

    def connected(protocol: Any) -> None:
        def usable(_: Any) -> None:
            # named, so that CLIENT LIST tells which instance holds which connection
            named = protocol.execute_command("CLIENT", "SETNAME", f"portshare-{kind}-{instanceId}")
            named.addBoth(lambda _: None if ready.called else ready.callback(protocol))

        def lost(_: Any) -> None:
            if not ready.called:
                ready.errback(ConnectionError(factory.error or "connection lost"))

        protocol.whenDisconnected().addCallback(lost)
        protocol.whenConnected().addCallback(usable)

    def failed(failure: Failure) -> None:
        if not ready.called:
            ready.errback(failure)

    connecting = endpoint.connect(factory)
    connecting.addCallbacks(connected, failed)
    ready.addTimeout(2 * url.timeout, reactor)
    return ready


def _describeFailure(failure: Failure) -> str:
    value = failure.value
    text = str(value) or type(value).__name__
    return text.splitlines()[0][:120]


class Refused(Exception):
    """Redis answered a command with an error; the message is Redis's."""


class Link:
    """
    The two connections to Redis (C{command} and C{subscriber}), opened together and kept
    up: when one is lost or cannot be opened, both are closed and tried again after a
    L{Backoff} on the injected clock.

    @param connect: opens one connection, C{"command"} or C{"subscriber"}; a Deferred firing
        with its protocol once it is usable (after AUTH and SELECT).
    @param onUp: called when both are open; returns a Deferred (the resynchronisation).
    @param onDown: called with a short reason when they are lost.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        connect: Callable[[str], Deferred[Any]],
        onUp: Callable[[], Deferred[Any]],
        onDown: Callable[[str], None],
        backoff: Backoff,
        where: str,
    ) -> None:
        self._clock = clock
        self._connect = connect
        self._onUp = onUp
        self._onDown = onDown
        self.backoff = backoff
        self.where = where
        self.command: Any = None
        self.subscriber: Any = None
        self.state = "idle"  # connecting, up, waiting, stopped
        self.reason = f"connecting to redis at {where}"
        self._retry: Any = None
        self.attempts = 0

    @property
    def up(self) -> bool:
        """Whether both connections are open."""
        return self.state == "up"

    def start(self) -> None:
        """Open the connections (and keep them open) until L{stop}."""
        if self.state == "idle":
            self._attempt()

    def _attempt(self) -> None:
        self._retry = None
        self.state = "connecting"
        self.attempts += 1
        d = DeferredList(
            [self._connect("command"), self._connect("subscriber")], consumeErrors=True
        )
        d.addCallback(self._opened)

    def _opened(self, results: list[tuple[bool, Any]]) -> None:
        opened = [value for ok, value in results if ok]
        failures = [value for ok, value in results if not ok]
        if self.state == "stopped" or failures:
            for protocol in opened:
                protocol.transport.abortConnection()
            if self.state != "stopped":
                self._wait(
                    f"cannot connect to redis at {self.where}: {_describeFailure(failures[0])}"
                )
            return
        self.command, self.subscriber = opened
        self.state = "up"
        for protocol in opened:
            protocol.whenDisconnected().addCallback(self._lost)
        self.log.info("connected to redis at {where}", where=self.where)
        d = self._onUp()
        d.addCallback(lambda _: self.backoff.reset())
        d.addErrback(self._resyncFailed)

    def _resyncFailed(self, failure: Failure) -> None:
        if self.state == "up":
            # not a lost connection (that is handled by _lost): a refusal, try again later
            self.log.warn("redis resynchronisation failed: {why}", why=_describeFailure(failure))
            self.drop()

    def _lost(self, protocol: Any) -> None:
        if self.state != "up" or protocol not in (self.command, self.subscriber):
            return
        self.drop()

    def drop(self, reason: str | None = None) -> None:
        """Close both connections and try again later."""
        for other in (self.command, self.subscriber):
            if other is not None and other.transport is not None:
                other.transport.abortConnection()
        self.command = self.subscriber = None
        reason = reason or f"lost the connection to redis at {self.where}"
        self.log.warn("{reason}; reconnecting", reason=reason)
        self._onDown(reason)
        self._wait(reason)

    def _wait(self, reason: str) -> None:
        self.state = "waiting"
        self.reason = reason
        delay = self.backoff.next()
        self._retry = self._clock.callLater(delay, self._attempt)

    def stop(self) -> Deferred[Any]:
        """Close the connections; fires once they are closed."""
        self.state = "stopped"
        self.reason = "stopped"
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        waits = []
        for protocol in (self.command, self.subscriber):
            if protocol is not None and protocol.transport is not None:
                waits.append(protocol.whenDisconnected())
                protocol.transport.loseConnection()
        self.command = self.subscriber = None
        return DeferredList(waits, consumeErrors=True)

    # -- commands and scripts -----------------------------------------------------------------

    def _commandConnection(self) -> Any:
        command = self.command
        if command is None or not self.up:
            raise Unavailable("the message broker is not available")
        return command

    def run(self, script: Script, keys: list[str], args: list[Any]) -> Deferred[Any]:
        """
        Run C{script} on the command connection (txredisapi sends its SHA1, C{EVALSHA}, once
        Redis has it, and the whole text, C{EVAL}, when not).

        @return: a Deferred firing with the script's reply, or failing with L{Unavailable}
            whatever went wrong (a refusal is logged as a warning, anything but a lost
            connection as a bug).
        """
        try:
            d: Deferred[Any] = self._commandConnection().eval(script.text, keys, args)
        except Unavailable as e:
            return fail(e)
        except txredisapi.ConnectionError:  # lost, and the link does not know yet
            return fail(Unavailable("the message broker is not available"))
        d.addErrback(self._unavailable, script.name)
        return d

    def _unavailable(self, failure: Failure, what: str) -> Failure:
        if failure.check(Unavailable):
            return failure
        if failure.check(txredisapi.ResponseError):
            self.log.warn("redis refused {what}: {why}", what=what, why=_describeFailure(failure))
        elif not failure.check(txredisapi.ConnectionError):
            self.log.failure("redis {what} failed", failure, what=what)
        return Failure(Unavailable("the message broker is not available"))

    def execute(self, *command: Any) -> Deferred[Any]:
        """
        Send one command on the command connection.

        @return: a Deferred firing with the reply, or failing with L{Refused} (Redis's
            message) when Redis answers with an error, with L{Unavailable} while the link is
            not up, and as txredisapi says when the connection is lost or the reply is late.
        """
        try:
            d: Deferred[Any] = self._commandConnection().execute_command(*command)
        except Exception:
            return fail()  # Unavailable, or lost and the link does not know yet
        return d.addErrback(_refused)


def _refused(failure: Failure) -> None:
    failure.trap(txredisapi.ResponseError)
    raise Refused(str(failure.value)) from failure.value
