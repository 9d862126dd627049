"""
Redis Sentinel: finding the master that a C{redis+sentinel://} URL names.

With Sentinel, the URL does not say where Redis is: it names the sentinels and the master's
name.  Every time the broker's L{portshare.broker.link.Link} (re)connects, it first asks
L{SentinelConnector.locate} for the master's address, then opens both of its connections
there with L{SentinelConnector.connect}, which checks with C{ROLE} that the server really is
the master (a sentinel's answer may be stale during a failover).  A lost connection or a
C{-READONLY} refusal (the server was demoted to a replica) drops the link, and the next
attempt asks the sentinels again: that is how a failover is followed, with the broker's own
resynchronisation after any reconnect.

Theory of operation:
 - L{Sentinels.locate} asks the sentinels in turn (the URL's order, the last one that
   answered first), each on a connection of its own bounded by the URL's C{sentinel_timeout}
   (L{askSentinel}); the first address given wins.  A sentinel that does not answer, refuses,
   or does not know the master is skipped; when none gives an address, L{NoMaster} says why
   for each, and the link waits its backoff before it asks again.
 - The answers are read by the sans-IO L{masterAddressOf} and L{roleOf}, which refuse
   anything that is not the shape Redis documents (a hostile or broken sentinel cannot make
   the broker connect to a malformed address).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol
from twisted.logger import Logger

from portshare.broker.resp import ResponseError, RespProtocol
from portshare.broker.url import BrokerURL

__all__ = [
    "NoMaster",
    "SentinelConnector",
    "Sentinels",
    "askSentinel",
    "masterAddressOf",
    "roleOf",
]


class NoMaster(ConnectionError):
    """No sentinel gave the master's address; the message says what each one did."""


def masterAddressOf(reply: Any) -> tuple[str, int] | None:
    """
    The address in a C{SENTINEL get-master-addr-by-name} reply.

    @return: C{(host, port)}, or C{None} when the sentinel does not know the master (a nil
        reply).
    @raise ValueError: for any other shape, or a port out of range.
    """
    if reply is None:
        return None
    if not isinstance(reply, list) or len(reply) != 2:
        raise ValueError(f"not a master address: {reply!r:.80}")
    host, port = reply
    if not isinstance(host, str) or not host or len(host) > 253:
        raise ValueError(f"not a master host: {host!r:.80}")
    if any(c.isspace() or c in "/@,[]" for c in host):
        raise ValueError(f"not a master host: {host!r:.80}")
    if not isinstance(port, str) or not port.isascii() or not port.isdigit():
        raise ValueError(f"not a master port: {port!r:.80}")
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(f"not a master port: {port!r:.80}")
    return host, number


def roleOf(reply: Any) -> str:
    """
    The role in a C{ROLE} reply: C{"master"}, C{"slave"} or C{"sentinel"}.

    @raise ValueError: when the reply is not a list starting with a role.
    """
    if not isinstance(reply, list) or not reply or not isinstance(reply[0], str):
        raise ValueError(f"not a ROLE reply: {reply!r:.80}")
    return reply[0]


#: asks one sentinel one command: (host, port, command) -> Deferred[reply]
Ask = Callable[[str, int, Sequence[Any]], "Deferred[Any]"]


class Sentinels:
    """
    The sentinels of one URL, asked in turn for the master's address.

    @param sentinels: their C{(host, port)}, in the order to ask them.
    @param masterName: the name they monitor the master under.
    @param ask: sends one command to one sentinel (L{askSentinel} in production; a fake in
        tests); its Deferred fails when the sentinel cannot answer in time.
    """

    def __init__(self, sentinels: Sequence[tuple[str, int]], masterName: str, ask: Ask) -> None:
        if not sentinels:
            raise ValueError("no sentinels to ask")
        self.order = list(sentinels)
        self.masterName = masterName
        self._ask = ask

    def locate(self) -> Deferred[tuple[str, int]]:
        """
        Ask the sentinels, one after the other, until one gives the master's address.

        @return: a Deferred firing with C{(host, port)}, or failing with L{NoMaster}.
        """
        return Deferred.fromCoroutine(self._locate())

    async def _locate(self) -> tuple[str, int]:
        why: list[str] = []
        for sentinel in list(self.order):
            host, port = sentinel
            try:
                reply = await self._ask(
                    host, port, ("SENTINEL", "get-master-addr-by-name", self.masterName)
                )
                address = masterAddressOf(reply)
            except Exception as e:
                why.append(f"{host}:{port}: {_short(e)}")
                continue
            if address is None:
                why.append(f"{host}:{port}: does not know {self.masterName!r}")
                continue
            if self.order[0] != sentinel:  # ask the one that answered first next time
                self.order.remove(sentinel)
                self.order.insert(0, sentinel)
            return address
        raise NoMaster(f"no sentinel knows the master {self.masterName!r} ({'; '.join(why)})")


def _short(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text.splitlines()[0][:120]


def askSentinel(
    reactor: Any, url: BrokerURL, host: str, port: int, command: Sequence[Any]
) -> Deferred[Any]:
    """
    Send one command to one sentinel on a connection of its own, closed after the reply.

    @param url: gives the sentinels' password and how long one may take
        (C{sentinelTimeout}: to connect and answer).
    @return: a Deferred firing with the reply; failing when the sentinel cannot be reached,
        refuses, or is late.
    """
    d = Deferred.fromCoroutine(_ask(reactor, url, host, port, command))
    d.addTimeout(url.sentinelTimeout, reactor)
    return d


async def _ask(reactor: Any, url: BrokerURL, host: str, port: int, command: Sequence[Any]) -> Any:
    endpoint = HostnameEndpoint(reactor, host, port, timeout=url.sentinelTimeout)
    protocol = RespProtocol(reactor, url.sentinelTimeout)
    await connectProtocol(endpoint, protocol)
    try:
        if url.sentinelPassword is not None:
            await protocol.execute("AUTH", url.sentinelPassword)
        return await protocol.execute(*command)
    finally:
        protocol.abort()


#: opens one connection: (reactor, url, instanceId, kind) -> Deferred[protocol]
Opener = Callable[[Any, BrokerURL, str, str], "Deferred[Any]"]


class SentinelConnector:
    """
    The link's C{locate} and C{connect} for a C{redis+sentinel://} URL.

    @param url: the sentinel URL (its credentials, database and tunables are the master's).
    @param sentinels: asks the sentinels (L{Sentinels}).
    @param open: opens one connection to a plain C{redis://} URL
        (L{portshare.broker.link.openConnection}).
    """

    log = Logger()

    def __init__(
        self, reactor: Any, url: BrokerURL, instanceId: str, sentinels: Sentinels, open: Opener
    ) -> None:
        self._reactor = reactor
        self._url = url
        self._instanceId = instanceId
        self.sentinels = sentinels
        self._open = open
        #: the master's URL, as the last discovery found it (None: not known)
        self.master: BrokerURL | None = None

    def locate(self) -> Deferred[str]:
        """Ask the sentinels for the master; fires with its address for logs."""
        self.master = None
        d = self.sentinels.locate()
        return d.addCallback(self._located)

    def _located(self, address: tuple[str, int]) -> str:
        host, port = address
        if self.master is None or (self.master.host, self.master.port) != address:
            self.log.info(
                "sentinels name {host}:{port} as the master {name}",
                host=host,
                port=port,
                name=self.sentinels.masterName,
            )
        self.master = replace(self._url, scheme="redis", host=host, port=port, sentinels=())
        return f"{host}:{port}"

    def connect(self, kind: str) -> Deferred[Any]:
        """Open one connection to the master last located, checked to be a master."""
        master = self.master
        if master is None:
            return fail(NoMaster("no master located"))
        return Deferred.fromCoroutine(self._connect(master, kind))

    async def _connect(self, master: BrokerURL, kind: str) -> Any:
        protocol = await self._open(self._reactor, master, self._instanceId, kind)
        try:
            role = roleOf(await protocol.execute("ROLE"))
        except (ResponseError, ValueError) as e:
            protocol.abort()
            raise ConnectionError(
                f"cannot read the role of {master.host}:{master.port}: {e}"
            ) from None
        except BaseException:
            protocol.abort()
            raise
        if role != "master":
            protocol.abort()
            raise ConnectionError(f"{master.host}:{master.port} is a {role}, not the master")
        return protocol
