"""
The Redis broker: several portshare instances act as one chat through one Redis.

L{RedisBroker} is the broker's logic on Twisted: subscriptions and their delivery, publish,
history, presence and the heartbeat, on the injected reactor.  It stands on sans-IO parts (the
key layout in L{portshare.broker.keys}, the Lua scripts in L{portshare.broker.scripts}, the
parsing in L{portshare.broker.codec}, the per-room delivery state in
L{portshare.broker.feed}) and reaches Redis through L{portshare.broker.link}: the two
connections (one for commands and scripts, one for pub/sub subscriptions), kept up as one
L{Link}.

Theory of operation:
 - The two connections are one I{link}: when either is lost (or cannot be opened), both are
   closed and opened again after a backoff.  While the link is down, L{RedisBroker.publish},
   L{RedisBroker.replay}, L{RedisBroker.members} and friends fail at once with
   L{Unavailable} (clients get C{unavailable}, C{/healthz} a 503 with the reason); nothing is
   queued.  Joins and leaves of local members are only counted (L{PresenceBook}) and written
   to Redis once it is back.
 - When the link is (back) up: the heartbeat is written, every subscribed room is subscribed
   again and caught up from its stream (the offsets published meanwhile are delivered, in
   order, once), every room's presence is synchronised from the local count, and only then
   does the broker report itself available.
 - A heartbeat (a C{LoopingCall} on the injected clock, every third of the presence TTL)
   refreshes this instance's key, pings the subscription connection (a half-open socket is
   found within the reply timeout), and runs the periodic upkeep of every subscribed room:
   reaping the members of instances that stopped heartbeating, refreshing TTLs.
 - A publish is acknowledged once this instance has delivered the message to the room's
   local members (when it has any), so a sender sees its message before its C{ack}, as with
   the in-memory broker.
 - Publishes are batched per reactor turn and room: L{RedisBroker.publish} queues the message
   in the turn's outbox, and at the end of the turn (a C{callLater(0)}) each room's queued
   messages go to Redis as one L{PUBLISH} call (at most L{PUBLISH_BATCH} messages a call) and
   come back as one pub/sub message; all calls of a turn leave in one write.  The outbox holds
   one turn's messages at most, and the command connection at most C{maxPending} calls in
   flight (past that, publishes fail with L{Unavailable}): nothing queues without bound while
   Redis is slow.
 - When the reply of a publish shows that its messages are the next offsets of a live feed,
   they are delivered here from the reply at once; their pub/sub copy, when it comes, is
   recognised from its head (epoch and offsets, L{portshare.broker.codec.isDelivered})
   without decoding the body, and skipped.
 - Rooms this instance published to or joined are I{active}: the first time in a heartbeat
   period a room is listed in the rooms index at once (L{INDEX}); every heartbeat lists the
   period's active rooms again and refreshes their TTLs (L{TOUCH}), so the per-message
   script does neither.
 - The server API's commands (L{RedisBroker.command}) go to every instance over pub/sub
   (L{portshare.broker.control}): published on the control channel, answered by every
   instance that receives it (this one too) on the publisher's reply channel, gathered until
   as many answers came as C{PUBLISH} counted receivers, or the URL's C{timeout} passed (an
   instance that went silent).  At most L{MAX_COMMANDS} are in flight.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from twisted.internet.defer import (
    Deferred,
    DeferredList,
    DeferredSemaphore,
    fail,
    succeed,
)
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from portshare.broker import IBroker, IRoomListener
from portshare.broker.codec import (
    PublishedBatch,
    batchBody,
    historyOf,
    isDelivered,
    membersOf,
    messageBody,
    parseEntries,
    parsePayload,
    replayOf,
    roomsOf,
)
from portshare.broker.commands import Answerer
from portshare.broker.control import (
    Answer,
    Gathering,
    Request,
    answerPayload,
    parseControl,
    requestPayload,
)
from portshare.broker.feed import LIVE, LOST, STARTING, RoomFeed, Step
from portshare.broker.keys import KeyLayout, RoomKeys
from portshare.broker.link import Backoff, Link, Refused, openConnection
from portshare.broker.scripts import (
    CATCH_UP,
    ENTER,
    EXIT,
    HISTORY,
    INDEX,
    MEMBERS,
    PUBLISH,
    ROOMS,
    SERVER,
    SNAPSHOT,
    SYNC,
    TICK,
    TOUCH,
    Script,
)
from portshare.broker.sentinel import SentinelConnector, Sentinels, askSentinel
from portshare.broker.url import BrokerURL
from portshare.chat import PresenceBook, Replay, RoomInfo
from portshare.errors import Unavailable
from portshare.wire import Message

#: stream entries read per catch-up round
CATCH_UP_BATCH = 500
#: rooms caught up at once after a reconnect
CATCH_UP_CONCURRENCY = 16
#: messages to one room sent in one PUBLISH call at most
PUBLISH_BATCH = 64
#: rooms whose keys are kept built (L{RedisBroker._keysOf})
KEYS_CACHED = 4096
#: server API commands gathering answers at once, at most (past that: L{Unavailable})
MAX_COMMANDS = 64
#: answers kept per command at most (instances)
MAX_ANSWERS = 1024

_UNAVAILABLE = "the message broker is not available"

#: a publish waiting in the outbox: (nick, text, ts, user, its Deferred)
_Queued = tuple[str, str, int, "str | None", Deferred[Message]]


def _newEpoch() -> str:
    return secrets.token_hex(6)


def _instanceId() -> str:
    host = re.sub(r"[^A-Za-z0-9.-]", "", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(4)}"


@implementer(IBroker)
class RedisBroker:
    """
    An L{IBroker} shared by every instance that uses the same Redis (and key prefix).

    @param url: where Redis is, and the tunables (see L{BrokerURL}).
    @param reactor: connects and schedules (the heartbeat, reconnects, timeouts).
    @param history: messages kept per room.
    @param maxRooms: rooms listed at most by L{rooms}.
    @param connect: opens one connection (C{"command"} or C{"subscriber"}), for tests;
        by default from C{url}.
    """

    log = Logger()

    def __init__(
        self,
        url: BrokerURL,
        reactor: Any,
        history: int,
        maxRooms: int,
        *,
        newEpoch: Callable[[], str] = _newEpoch,
        instanceId: str | None = None,
        connect: Callable[[str], Deferred[Any]] | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.url = url
        self._reactor = reactor
        self._history = history
        self._maxRooms = maxRooms
        self._newEpoch = newEpoch
        self.instanceId = instanceId or _instanceId()
        self.layout = KeyLayout(url.prefix)
        self._presenceTtlMs = int(url.presenceTtl * 1000)
        self._gcTtlMs = 3 * self._presenceTtlMs
        self._roomTtlMs = int(url.roomTtl * 1000)
        locate: Callable[[], Deferred[Any]] | None = None
        if connect is None and url.scheme == "redis+sentinel":
            assert url.masterName is not None
            sentinels = Sentinels(url.sentinels, url.masterName, partial(askSentinel, reactor, url))
            connector = SentinelConnector(reactor, url, self.instanceId, sentinels, openConnection)
            connect, locate = connector.connect, connector.locate
        self.link = Link(
            reactor,
            connect or partial(openConnection, reactor, url, self.instanceId),
            self._linkUp,
            self._linkDown,
            backoff or Backoff(),
            url.describe(),
            locate=locate,
        )
        self._feeds: dict[str, RoomFeed] = {}
        self._listeners: dict[str, IRoomListener] = {}
        self._reading: dict[str, RoomFeed] = {}
        #: publishes acknowledged once delivered here: (epoch, last offset, deadline,
        #: [(message, Deferred)]) by room
        self._waiters: dict[str, list[tuple[str, int, float, list[Any]]]] = {}
        self._presence = PresenceBook()
        #: the user id of each authenticated (room, nick) this instance counts, for the
        #: presence scripts (L{ENTER}, L{SYNC}) to name it in the room's users hash
        self._users: dict[tuple[str, str], str] = {}
        self._dirty: set[str] = set()
        self._ready = False
        self._beaten = False
        self._generation: int | None = None
        self._ticking = False
        self._readyWaiters: list[Deferred[None]] = []
        self._heartbeat = LoopingCall(self._tick)
        self._heartbeat.clock = reactor
        #: the generation, once read on the current connection (None: not yet)
        self._generationArg: str | None = None
        #: this turn's publishes, by room: (nick, text, ts, user, Deferred)
        self._outbox: dict[str, list[_Queued]] = {}
        self._flushing = False
        #: rooms published to or joined since the last heartbeat
        self._active: set[str] = set()
        self._keys: dict[str, RoomKeys] = {}
        self._channelRooms: dict[str, str] = {}
        self._sweep: Any = None
        #: answers this instance's server API commands (the hub's)
        self._answerer: Answerer | None = None
        #: this instance's commands in flight, by request id: their answers so far, the
        #: Deferred to fire, the deadline's timer
        self._commands: dict[str, tuple[Gathering, Deferred[list[dict[str, Any]]], Any]] = {}
        self._replyChannel = self.layout.reply(self.instanceId)

    # -- availability ---------------------------------------------------------------------

    @property
    def unavailableReason(self) -> str | None:
        """C{None} while connected and in sync; otherwise why not."""
        if self._ready:
            return None
        if self.link.up:
            return f"resynchronising with redis at {self.link.where}"
        return self.link.reason

    def whenReady(self) -> Deferred[None]:
        """A Deferred that fires once the broker is (again) available."""
        if self._ready:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._readyWaiters.append(d)
        return d

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Deferred[None]:
        """Connect (and keep reconnecting); fires once available the first time."""
        d = self.whenReady()
        self.link.start()
        if not self._heartbeat.running:
            self._heartbeat.start(self.url.presenceTtl / 3, now=False)
        return d

    async def _stop(self) -> None:
        if self._heartbeat.running:
            self._heartbeat.stop()
        if self.link.up:
            goodbye: list[Deferred[Any]] = [
                self.link.run(SYNC, [self.layout.room(room).here], self._syncArgs(room, ()))
                for room in list(self._presence.rooms())
            ]
            goodbye.append(self.link.execute("DEL", self.layout.instance(self.instanceId)))
            done = DeferredList(goodbye, consumeErrors=True)
            done.addTimeout(self.url.timeout, self._reactor)
            try:
                await done
            except Exception:
                self.log.info("redis did not confirm this instance's goodbye in time")
        self._ready = False
        stopped = self.link.stop()
        stopped.addTimeout(self.url.timeout, self._reactor)
        with contextlib.suppress(Exception):
            await stopped
        for d in self._readyWaiters:
            d.callback(None)
        self._readyWaiters = []
        self._releaseWaiters(None)
        for requestId in list(self._commands):
            self._commandDone(requestId)
        if self._sweep is not None and self._sweep.active():
            self._sweep.cancel()
        self._sweep = None

    def stop(self) -> Deferred[None]:
        """Say goodbye (this instance's members leave), then close the connections."""
        return Deferred.fromCoroutine(self._stop())

    # -- the link -----------------------------------------------------------------------------

    def _linkUp(self) -> Deferred[Any]:
        return Deferred.fromCoroutine(self._resync())

    async def _resync(self) -> None:
        link = self.link
        subscriber = link.subscriber
        subscriber.onMessage = self._channelMessage
        await self._checkServer()
        await self._beat()
        await subscriber.subscribeTo([self.layout.control, self._replyChannel])
        feeds = list(self._feeds.values())
        for feed in feeds:
            feed.resubscribed()
        if feeds:
            await subscriber.subscribeTo([self.layout.room(f.room).channel for f in feeds])
            semaphore = DeferredSemaphore(CATCH_UP_CONCURRENCY)
            await DeferredList(
                [semaphore.run(self._readStream, f) for f in feeds],
                fireOnOneErrback=True,
                consumeErrors=True,
            )
        self._dirty.update(self._presence.rooms())
        await self._syncDirty()
        if link.subscriber is subscriber:
            self._ready = True
            self.log.info("redis broker available ({rooms} rooms)", rooms=len(self._feeds))
            waiters, self._readyWaiters = self._readyWaiters, []
            for d in waiters:
                d.callback(None)

    async def _checkServer(self) -> None:
        """
        Tell Redis which server process this is; a restart from a dataset that may have lost
        writes (anything but C{appendonly yes} with C{appendfsync always}, or C{durable=1} in
        the URL) starts a new generation, so no offset is given twice under one epoch.
        """
        try:
            info = await self.link.execute("INFO", "server")
        except Refused as e:
            self.log.warn(
                "cannot read redis's run_id ({why}): a restart that loses writes would not "
                "be noticed",
                why=str(e),
            )
            self._generationArg = str(
                int(await self.link.execute("GET", self.layout.generation) or 0)
            )
            return
        runId = next(
            (
                line.split(":", 1)[1].strip()
                for line in info.splitlines()
                if line.startswith("run_id:")
            ),
            "",
        )
        durable = self.url.durable
        if not durable:
            try:
                appendonly = await self.link.execute("CONFIG", "GET", "appendonly")
                appendfsync = await self.link.execute("CONFIG", "GET", "appendfsync")
                durable = list(appendonly)[-1:] == ["yes"] and list(appendfsync)[-1:] == ["always"]
            except Refused:
                durable = False  # CONFIG is disabled (a managed Redis): assume it may lose writes
        generation = await self.link.run(
            SERVER, [self.layout.server, self.layout.generation], [runId, int(durable)]
        )
        if generation != self._generation:
            if self._generation is not None:
                self.log.warn(
                    "redis restarted from a dataset that may have lost writes: histories from "
                    "before are dropped (generation {generation})",
                    generation=generation,
                )
            self._generation = generation
        self._generationArg = str(generation)

    def _linkDown(self, reason: str) -> None:
        self._ready = False
        self._generationArg = None
        for feed in self._feeds.values():
            feed.lost()
        self._reading.clear()
        self._releaseWaiters(None)

    # -- subscriptions ------------------------------------------------------------------------

    def subscribe(self, room: str, listener: IRoomListener) -> Deferred[None]:
        """Subscribe C{room}; fires once its events are delivered to C{listener}."""
        if not self.link.up:
            return fail(Unavailable("the message broker is not available"))
        feed = self._feeds[room] = RoomFeed(room, self._history)
        self._listeners[room] = listener
        keys = self.layout.room(room)
        subscriber = self.link.subscriber
        return Deferred.fromCoroutine(self._start(feed, keys.channel, subscriber))

    async def _start(self, feed: RoomFeed, channel: str, subscriber: Any) -> None:
        try:
            await subscriber.subscribeTo([channel])
            raw = await self._snapshot(feed.room, None, None)
        except Exception:
            if self._feeds.get(feed.room) is feed:
                del self._feeds[feed.room]
                self._listeners.pop(feed.room, None)
            raise Unavailable("the message broker is not available") from None
        if self._feeds.get(feed.room) is feed and feed.state == STARTING:
            # (otherwise it was unsubscribed, or the link went down and the resync owns it)
            self._apply(feed, feed.started(str(raw[0]), int(raw[1])))

    def unsubscribe(self, room: str) -> Deferred[None]:
        """Stop delivering C{room}."""
        feed = self._feeds.pop(room, None)
        self._listeners.pop(room, None)
        self._reading.pop(room, None)
        self._releaseWaiters(room)
        if feed is not None and self.link.up:
            d = self.link.subscriber.unsubscribeFrom([self.layout.room(room).channel])
            d.addErrback(lambda _: None)
        return succeed(None)

    def _channelMessage(self, channel: str, payload: Any) -> None:
        room = self._channelRooms.get(channel)
        if room is None:
            room = self.layout.roomOfChannel(channel)
            if room is not None and room in self._feeds:
                if len(self._channelRooms) >= KEYS_CACHED:
                    self._channelRooms.clear()
                self._channelRooms[channel] = room
        feed = self._feeds.get(room) if room is not None else None
        if feed is None or room is None:
            if channel == self.layout.control or channel == self._replyChannel:
                self._controlMessage(payload)
            return
        if isDelivered(payload, feed.epoch, feed.delivered) and feed.state == LIVE:
            return  # (delivered from the publish reply, on this instance)
        try:
            event = parsePayload(room, payload)
        except ValueError as e:
            self.log.warn("ignored on {channel}: {why}", channel=channel, why=str(e))
            return
        if type(event) is PublishedBatch:
            self._apply(feed, feed.receivedBatch(event.epoch, event.messages))
            return
        self._apply(feed, feed.received(event))  # type: ignore[arg-type]

    def _apply(self, feed: RoomFeed, step: Step) -> None:
        """Deliver what C{step} says, then start catching up when it says so."""
        self._deliver(feed, step)
        if step.catchUp and feed.room not in self._reading and self.link.up:
            d = Deferred.fromCoroutine(self._readStream(feed))
            d.addErrback(lambda f: None)  # a lost link is handled by the link

    def _deliver(self, feed: RoomFeed, step: Step) -> None:
        listener = self._listeners.get(feed.room)
        if listener is not None:
            for event in step.deliver:
                try:
                    if isinstance(event, Message):
                        listener.messagePublished(event)
                    else:
                        listener.presenceChanged(event)
                except Exception:
                    self.log.failure("delivering to {room} failed", room=feed.room)
        self._releaseDelivered(feed)

    async def _readStream(self, feed: RoomFeed) -> None:
        """Catch C{feed} up from the stream, batch after batch, until it is live again."""
        room = feed.room
        if room in self._reading:
            return
        self._reading[room] = feed
        keys = self.layout.room(room)
        try:
            while True:
                raw = await self.link.run(
                    CATCH_UP,
                    keys.history,
                    [
                        feed.epoch or "",
                        feed.delivered,
                        CATCH_UP_BATCH,
                        self._history,
                        self._generationNow(),
                    ],
                )
                if self._feeds.get(room) is not feed or feed.state == LOST:
                    return
                epoch = None if raw[0] is None else str(raw[0])
                step = feed.caughtUp(epoch, int(raw[1]), parseEntries(room, raw[2]))
                if feed.epochChanges:
                    feed.epochChanges = 0
                    self.log.info(
                        "room {room}: its history restarted (epoch {epoch})",
                        room=room,
                        epoch=epoch,
                    )
                self._deliver(feed, step)
                if not step.catchUp:
                    return
        finally:
            if self._reading.get(room) is feed:
                del self._reading[room]

    # -- publish ---------------------------------------------------------------------------

    def _generationNow(self) -> str:
        """
        The generation to pass a room's script: read once per connection (L{SERVER}).
        @raise Unavailable: before it is read on the current connection.
        """
        generation = self._generationArg
        if generation is None or not self.link.up:
            raise Unavailable(_UNAVAILABLE)
        return generation

    def _keysOf(self, room: str) -> RoomKeys:
        keys = self._keys.get(room)
        if keys is None:
            if len(self._keys) >= KEYS_CACHED:
                self._keys.clear()
            keys = self._keys[room] = self.layout.room(room)
        return keys

    def _markActive(self, room: str) -> None:
        """A room was used: list it in the rooms index now if not yet this period."""
        if room in self._active:
            return
        self._active.add(room)
        d = self.link.run(INDEX, [self.layout.rooms], [room])
        d.addErrback(lambda _: None)  # the next heartbeat lists it again

    def publish(
        self, room: str, nick: str, text: str, ts: int, user: str | None = None
    ) -> Deferred[Message]:
        """
        Give the message the room's next offset, keep and publish it: queued for this
        reactor turn's L{PUBLISH} call of the room (see the theory of operation).
        """
        if self._generationArg is None or not self.link.up:
            return fail(Unavailable(_UNAVAILABLE))
        d: Deferred[Message] = Deferred()
        queued = self._outbox.get(room)
        if queued is None:
            queued = self._outbox[room] = []
        queued.append((nick, text, ts, user, d))
        if not self._flushing:
            self._flushing = True
            self._reactor.callLater(0, self._flush)
        return d

    def _flush(self) -> None:
        self._flushing = False
        outbox, self._outbox = self._outbox, {}
        for room, queued in outbox.items():
            for i in range(0, len(queued), PUBLISH_BATCH):
                self._publishBatch(room, queued[i : i + PUBLISH_BATCH])

    def _publishBatch(self, room: str, queued: list[_Queued]) -> None:
        try:
            generation = self._generationNow()
        except Unavailable as e:
            for *_, d in queued:
                d.errback(Unavailable(str(e)))
            return
        self._markActive(room)
        keys = self._keysOf(room)
        if len(queued) == 1:
            nick, text, ts, user, _ = queued[0]
            body = messageBody(nick, text, user)
        else:
            body = batchBody([(nick, text, ts, user) for nick, text, ts, user, _ in queued])
        args: list[Any] = [
            self._newEpoch(),
            self._history,
            generation,
            self._roomTtlMs,
            keys.channel,
            body,
        ]
        for nick, text, ts, user, _ in queued:
            args += (nick, text, ts, user or "")
        d = self.link.run(PUBLISH, keys.history, args)
        d.addCallbacks(
            self._published,
            self._publishFailed,
            callbackArgs=(room, queued),
            errbackArgs=(queued,),
        )

    def _published(self, raw: Sequence[Any], room: str, queued: list[_Queued]) -> None:
        epoch, first = str(raw[0]), int(raw[1])
        acks = [
            (Message(room=room, offset=first + i, ts=ts, nick=nick, text=text, user=user), d)
            for i, (nick, text, ts, user, d) in enumerate(queued)
        ]
        last = first + len(acks) - 1
        feed = self._feeds.get(room)
        if (
            feed is not None
            and feed.state == LIVE
            and feed.epoch == epoch
            and feed.delivered == first - 1
        ):
            # every earlier offset is delivered here: deliver these from the reply, without
            # waiting for their pub/sub copy (skipped when it comes)
            feed.delivered = last
            self._deliver(feed, Step([message for message, _ in acks]))
        if feed is None or feed.state == LOST or (feed.epoch == epoch and feed.delivered >= last):
            for message, d in acks:
                d.callback(message)
            return
        self._waiters.setdefault(room, []).append(
            (epoch, last, self._reactor.seconds() + self.url.timeout, acks)
        )
        if self._sweep is None:
            self._sweep = self._reactor.callLater(self.url.timeout, self._sweepWaiters)

    def _publishFailed(self, failure: Failure, queued: list[_Queued]) -> None:
        for *_, d in queued:
            d.errback(Unavailable(_UNAVAILABLE))

    def _sweepWaiters(self) -> None:
        """
        Acknowledge the publishes whose local delivery is late (they are kept in Redis; the
        pub/sub message may be lost): one timer for all, not one per publish.
        """
        self._sweep = None
        now = self._reactor.seconds()
        for room in list(self._waiters):
            keep = []
            for waiter in self._waiters[room]:
                if waiter[2] <= now:
                    for message, d in waiter[3]:
                        d.callback(message)
                else:
                    keep.append(waiter)
            if keep:
                self._waiters[room] = keep
            else:
                del self._waiters[room]
        if self._waiters:
            self._sweep = self._reactor.callLater(self.url.timeout / 2, self._sweepWaiters)

    def _releaseDelivered(self, feed: RoomFeed) -> None:
        waiters = self._waiters.get(feed.room)
        if not waiters:
            return
        keep = []
        for waiter in waiters:
            epoch, offset = waiter[0], waiter[1]
            if (feed.state == LIVE and (epoch != feed.epoch or offset <= feed.delivered)) or (
                epoch == feed.epoch and offset <= feed.delivered
            ):
                for message, d in waiter[3]:
                    d.callback(message)
            else:
                keep.append(waiter)
        if keep:
            self._waiters[feed.room] = keep
        else:
            del self._waiters[feed.room]

    def _releaseWaiters(self, room: str | None) -> None:
        rooms = [room] if room is not None else list(self._waiters)
        for name in rooms:
            for waiter in self._waiters.pop(name, ()):
                for message, d in waiter[3]:
                    d.callback(message)

    # -- history ---------------------------------------------------------------------------

    def _snapshot(self, room: str, since: int | None, epoch: str | None) -> Deferred[Any]:
        try:
            generation = self._generationNow()
        except Unavailable as e:
            return fail(e)
        self._markActive(room)
        return self.link.run(
            SNAPSHOT,
            self._keysOf(room).history,
            [
                self._newEpoch(),
                generation,
                self._roomTtlMs,
                "" if since is None else since,
                epoch or "",
                self._history,
            ],
        )

    def replay(self, room: str, since: int | None, epoch: str | None) -> Deferred[Replay]:
        """The L{Replay} for a join (creating the room's epoch when it has none)."""
        d = self._snapshot(room, since, epoch)
        return d.addCallback(lambda raw: replayOf(room, since, epoch, raw))

    def history(
        self, room: str, since: int, limit: int
    ) -> Deferred[tuple[str | None, tuple[Message, ...]]]:
        """C{(epoch, messages after since)}; C{(None, ())} for a room Redis does not hold."""
        try:
            generation = self._generationNow()
        except Unavailable as e:
            return fail(e)
        d = self.link.run(
            HISTORY, self._keysOf(room).history, [since, limit, self._history, generation]
        )
        return d.addCallback(lambda raw: historyOf(room, raw))

    # -- presence --------------------------------------------------------------------------

    def enter(self, room: str, nick: str, user: str | None = None) -> Deferred[None]:
        """Count C{nick} in C{room} here; list it in Redis when it is new to this instance."""
        if not self._presence.enter(room, nick):
            return succeed(None)
        if user is not None:
            self._users[(room, nick)] = user
        return self._presenceChange(ENTER, room, nick)

    def exit(self, room: str, nick: str) -> Deferred[None]:
        """Count one join of C{nick} less; unlist it when this instance has no more."""
        if not self._presence.exit(room, nick):
            return succeed(None)
        self._users.pop((room, nick), None)
        return self._presenceChange(EXIT, room, nick)

    def _presenceChange(self, script: Script, room: str, nick: str) -> Deferred[None]:
        if not self.link.up or room in self._dirty:
            self._dirty.add(room)  # written when Redis is back (or by the next heartbeat)
            return succeed(None)
        keys = self.layout.room(room)
        args: list[Any] = [self.layout.base, self.instanceId, nick, keys.channel]
        if script is ENTER:
            args += (self._gcTtlMs, self._users.get((room, nick), ""))
        d = self.link.run(script, [keys.here], args)

        def failed(_: Failure) -> None:
            self._dirty.add(room)

        return d.addCallbacks(lambda _: None, failed)

    def _syncArgs(self, room: str, nicks: Sequence[str]) -> list[Any]:
        keys = self.layout.room(room)
        args: list[Any] = [self.layout.base, self.instanceId, keys.channel, self._gcTtlMs]
        for nick in nicks:
            args += (nick, self._users.get((room, nick), ""))
        return args

    async def _syncDirty(self) -> None:
        dirty, self._dirty = self._dirty, set()
        waits = []
        for room in sorted(dirty):
            nicks, _ = self._presence.members(room)
            d = self.link.run(SYNC, [self.layout.room(room).here], self._syncArgs(room, nicks))
            waits.append(d.addErrback(self._stillDirty, room))
        if waits:
            await DeferredList(waits, consumeErrors=True)

    def _stillDirty(self, failure: Failure, room: str) -> None:
        self._dirty.add(room)

    def members(self, room: str, cap: int | None) -> Deferred[tuple[tuple[str, ...], int]]:
        """Up to C{cap} nicks present in C{room} on every live instance, and their count."""
        keys = self.layout.room(room)
        d = self.link.run(
            MEMBERS, [keys.here], [self.layout.base, keys.channel, -1 if cap is None else cap]
        )
        return d.addCallback(membersOf)

    def rooms(self) -> Deferred[list[RoomInfo]]:
        """The most recently active rooms (at most C{maxRooms}), sorted by name."""
        d = self.link.run(
            ROOMS, [self.layout.rooms], [self.layout.base, self._maxRooms, self._roomTtlMs]
        )
        return d.addCallback(
            lambda raw: [RoomInfo(room=r, offset=o, members=m) for r, o, m in roomsOf(raw)]
        )

    # -- the heartbeat ---------------------------------------------------------------------

    def _beat(self) -> Deferred[Any]:
        d = self.link.execute(
            "SET",
            self.layout.instance(self.instanceId),
            "1",
            "PX",
            self._presenceTtlMs,
            "GET",
        )

        def beaten(previous: Any) -> None:
            if previous is None and self._beaten:
                # our key had expired: other instances may have reaped our members
                self.log.warn("this instance's presence had expired; writing it again")
                self._dirty.update(self._presence.rooms())
            self._beaten = True

        return d.addCallback(beaten)

    def _tick(self) -> Deferred[Any] | None:
        if self._ticking or not self.link.up:
            return None
        self._ticking = True
        d = Deferred.fromCoroutine(self._upkeep())

        def done(result: Any) -> None:
            self._ticking = False

        d.addBoth(done)
        return d

    async def _upkeep(self) -> None:
        try:
            waits: list[Deferred[Any]] = [
                self._beat(),
                self.link.subscriber.ping(self.url.timeout),
            ]
            for room in list(self._feeds):
                keys = self.layout.room(room)
                waits.append(
                    self.link.run(
                        TICK,
                        [keys.here, keys.epoch, keys.seq, keys.log, keys.gen],
                        [
                            self.layout.base,
                            self.instanceId,
                            keys.channel,
                            self._roomTtlMs,
                            self._gcTtlMs,
                        ],
                    )
                )
            active, self._active = self._active, set()
            if active:
                waits.append(self.link.run(INDEX, [self.layout.rooms], sorted(active)))
                for room in active - set(self._feeds):  # (TICK refreshes the subscribed)
                    waits.append(
                        self.link.run(TOUCH, self._keysOf(room).history, [self._roomTtlMs])
                    )
            await DeferredList(waits, consumeErrors=True)
            if self.link.up:
                await self._syncDirty()
        except Exception:
            pass  # the link reconnects; the next heartbeat tries again

    # -- the server API's commands (see L{portshare.broker.control}) ----------------------

    def answerCommands(self, answerer: Answerer) -> None:
        """This instance answers the commands of every instance with C{answerer}."""
        self._answerer = answerer

    def command(self, message: dict[str, Any]) -> Deferred[list[dict[str, Any]]]:
        """
        Publish C{message} on the control channel; fires with the answers of the instances
        that received it, once all answered or after the URL's C{timeout} (a silent
        instance is not waited for longer).
        @raise Unavailable: (as a failure) while the link is down, when too many commands
            are in flight, or when Redis did not take the request.
        """
        if not self.link.up:
            return fail(Unavailable(_UNAVAILABLE))
        if len(self._commands) >= MAX_COMMANDS:
            return fail(Unavailable("too many server API commands are in flight"))
        requestId = secrets.token_hex(8)
        d: Deferred[list[dict[str, Any]]] = Deferred()
        timer = self._reactor.callLater(self.url.timeout, self._commandDone, requestId)
        self._commands[requestId] = (Gathering(MAX_ANSWERS), d, timer)
        sent = self.link.execute(
            "PUBLISH",
            self.layout.control,
            requestPayload(Request(requestId, self.instanceId, message)),
        )
        sent.addCallbacks(
            self._commandSent,
            self._commandFailed,
            callbackArgs=(requestId,),
            errbackArgs=(requestId,),
        )
        return d

    def _commandSent(self, receivers: Any, requestId: str) -> None:
        pending = self._commands.get(requestId)
        if pending is None or type(receivers) is not int:
            return  # (not a count: the deadline fires it)
        if pending[0].sent(receivers):
            self._commandDone(requestId)

    def _commandFailed(self, failure: Failure, requestId: str) -> None:
        pending = self._commands.pop(requestId, None)
        if pending is not None:
            if pending[2].active():
                pending[2].cancel()
            pending[1].errback(Unavailable(_UNAVAILABLE))

    def _commandDone(self, requestId: str) -> None:
        """Fire a command with the answers it has: all came, its deadline, or stop."""
        pending = self._commands.pop(requestId, None)
        if pending is None:
            return
        gathering, d, timer = pending
        if timer.active():
            timer.cancel()
        if not gathering.done:
            self.log.info(
                "a server API command got {got} of {expected} answers in time",
                got=len(gathering.answers),
                expected="?" if gathering.expected is None else gathering.expected,
            )
        d.callback(gathering.result())

    def _controlMessage(self, payload: Any) -> None:
        """A request on the control channel, or an answer on this instance's reply channel."""
        try:
            event = parseControl(payload)
        except ValueError as e:
            self.log.warn("ignored on the control channels: {why}", why=str(e))
            return
        if type(event) is Answer:
            pending = self._commands.get(event.id)
            if pending is not None and pending[0].received(event):
                self._commandDone(event.id)
            return
        assert type(event) is Request
        answer: dict[str, Any] = {}
        if self._answerer is not None:
            try:
                answer = self._answerer(event.command)
            except Exception as e:
                self.log.failure("answering a server API command failed")
                answer = {"error": f"{type(e).__name__}: {e}"}
        reply = self.link.execute(
            "PUBLISH",
            self.layout.reply(event.origin),
            answerPayload(Answer(event.id, self.instanceId, answer)),
        )
        reply.addErrback(lambda _: None)  # the publisher's deadline covers a lost answer
