"""
The Redis broker's connections: the plumbing under L{portshare.broker.redis.RedisBroker}.

L{RedisBroker} is the broker's logic (rooms, delivery, presence); this module is how it
reaches Redis: L{portshare.broker.resp}'s protocol for the Redis wire format, the endpoint
a L{BrokerURL} names, the two connections (one for commands and scripts, one for pub/sub)
kept up as one L{Link} with a L{Backoff} on the injected reactor, and the commands and
scripts run on it with Redis's errors turned into portshare's (L{Unavailable} when the link
cannot answer, L{Refused} when Redis refuses a command).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory
from twisted.internet.ssl import optionsForClientTLS
from twisted.logger import Logger
from twisted.python.failure import Failure

from portshare.broker.resp import ResponseError, RespProtocol
from portshare.broker.scripts import SCRIPTS, Script
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


class _Factory(Factory):
    """Builds the one protocol of one connection attempt."""

    noisy = False

    def __init__(self, build: Callable[[], RespProtocol]) -> None:
        self._build = build

    def buildProtocol(self, addr: Any) -> RespProtocol:
        protocol = self._build()
        protocol.factory = self
        return protocol


def openConnection(reactor: Any, url: BrokerURL, instanceId: str, kind: str) -> Deferred[Any]:
    """
    Open one connection to the Redis C{url} names.

    @param reactor: connects, and runs the connection's timers.
    @param instanceId: the instance the connection is named after (C{CLIENT SETNAME}).
    @param kind: C{"command"} or C{"subscriber"} (pub/sub).
    @return: a Deferred firing with the protocol (a L{RespProtocol}) once it is usable
        (after AUTH, SELECT and CLIENT SETNAME, and for C{"command"} once Redis holds every
        script), or failing when it cannot be opened.
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
    factory = _Factory(lambda: RespProtocol(reactor, url.timeout))
    ready = Deferred.fromCoroutine(_prepare(endpoint, factory, url, instanceId, kind))
    ready.addTimeout(2 * url.timeout, reactor)
    return ready


async def _prepare(
    endpoint: Any, factory: _Factory, url: BrokerURL, instanceId: str, kind: str
) -> RespProtocol:
    protocol: RespProtocol = await endpoint.connect(factory)
    try:
        # pipelined: one write, the replies in order
        steps: list[Deferred[Any]] = []
        if url.password is not None:
            auth = [url.username, url.password] if url.username else [url.password]
            steps.append(protocol.execute("AUTH", *auth))
        if url.db:
            steps.append(protocol.execute("SELECT", url.db))
        # named, so that CLIENT LIST tells which instance holds which connection
        named = protocol.execute("CLIENT", "SETNAME", f"portshare-{kind}-{instanceId}")
        named.addErrback(lambda _: None)  # an old Redis without it still serves
        if kind == "command":
            steps += [protocol.execute("SCRIPT", "LOAD", script.text) for script in SCRIPTS]
        for step in steps:
            await step
        await named
    except ResponseError as e:
        protocol.abort()
        raise ConnectionError(str(e)) from None
    except BaseException:
        protocol.abort()
        raise
    return protocol


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
    @param locate: when given, called before each attempt (Redis Sentinel: ask the sentinels
        for the master's address); the connections are opened once its Deferred fires, and
        the attempt waits its backoff when it fails.
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
        locate: Callable[[], Deferred[Any]] | None = None,
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
        self._locate = locate

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
        if self._locate is None:
            self._connectBoth()
            return
        located = self._locate()
        located.addCallbacks(lambda _: self._connectBoth(), self._notLocated)

    def _notLocated(self, failure: Failure) -> None:
        if self.state != "stopped":
            self._wait(f"no redis master known through {self.where}: {_describeFailure(failure)}")

    def _connectBoth(self) -> None:
        if self.state == "stopped":
            return
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
        self.state = "waiting"  # (a connection lost by the abort below is this drop's)
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
        Run C{script} on the command connection (by its SHA1, C{EVALSHA}; its whole text,
        C{EVAL}, when Redis lacks it).

        @return: a Deferred firing with the script's reply, or failing with L{Unavailable}
            whatever went wrong (a refusal is logged as a warning, anything but a lost
            connection as a bug).
        """
        try:
            d: Deferred[Any] = self._commandConnection().eval(script.text, keys, args)
        except Unavailable as e:
            return fail(e)
        except ConnectionError:  # lost, and the link does not know yet
            return fail(Unavailable("the message broker is not available"))
        d.addErrback(self._unavailable, script.name)
        return d

    def _unavailable(self, failure: Failure, what: str) -> Failure:
        if failure.check(Unavailable):
            return failure
        if failure.check(ResponseError):
            self._demoted(str(failure.value))
            self.log.warn("redis refused {what}: {why}", what=what, why=_describeFailure(failure))
        elif not failure.check(ConnectionError):
            self.log.failure("redis {what} failed", failure, what=what)
        return Failure(Unavailable("the message broker is not available"))

    def execute(self, *command: Any) -> Deferred[Any]:
        """
        Send one command on the command connection.

        @return: a Deferred firing with the reply, or failing with L{Refused} (Redis's
            message) when Redis answers with an error, with L{Unavailable} while the link is
            not up, and with L{ConnectionLost} when the connection is lost or the reply is late.
        """
        try:
            d: Deferred[Any] = self._commandConnection().execute_command(*command)
        except Exception:
            return fail()  # Unavailable, or lost and the link does not know yet
        return d.addErrback(self._refused)

    def _refused(self, failure: Failure) -> None:
        failure.trap(ResponseError)
        self._demoted(str(failure.value))
        raise Refused(str(failure.value)) from failure.value

    def _demoted(self, message: str) -> None:
        """
        A C{-READONLY} refusal: the server was demoted to a replica (a Sentinel failover
        while the connection stayed open); drop the link, so the next attempt finds the
        master again and resynchronises.
        """
        if message.startswith("READONLY") and self.state == "up":
            self.drop(f"redis at {self.where} is a read-only replica now")
