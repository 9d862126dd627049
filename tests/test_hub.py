"""Tests for L{portshare.hub}: the chat application over a broker, with fake members."""

from __future__ import annotations

from typing import Any

import orjson
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from portshare import errors
from portshare.auth import JoinTokens
from portshare.broker.memory import MemoryBroker
from portshare.errors import RemoteError
from portshare.hub import Hub, IFrontEnd, IMember
from portshare.limits import Limits
from portshare.metrics import Metrics
from portshare.testing import RecordingFrontEnd, RecordingMember
from portshare.wire import Join, Leave, Message, Nick, Presence, Say, binaryFrameError, parseCommand


def frame(**message: Any) -> bytes:
    return orjson.dumps(message)


class HubTestMixin:
    limits = Limits(history=5)

    def receiveFrame(self, session: Any, payload: bytes) -> None:
        """What the WebSocket front end does with a text frame: parse it, hand it over."""
        try:
            command = parseCommand(payload, self.hub.limits.maxText)
        except RemoteError as e:
            self.hub.receivedInvalid(session, e)
        else:
            self.hub.received(session, command)

    def receiveBinary(self, session: Any, payload: bytes = b"") -> None:
        """What the WebSocket front end does with a binary frame."""
        self.hub.receivedInvalid(session, binaryFrameError(payload))

    def makeHub(self, broker: Any = None, **kwargs: Any) -> Hub:
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.broker = broker or MemoryBroker(
            self.limits.history, self.limits.maxRooms, newEpoch=lambda: "e1"
        )
        self.metrics = Metrics()
        self.frontEnd = RecordingFrontEnd()
        self.hub = Hub(
            self.broker, self.clock, kwargs.pop("limits", self.limits), self.metrics, **kwargs
        )
        return self.hub

    def connect(self) -> tuple[RecordingMember, Any]:
        member = RecordingMember(frontEnd=self.frontEnd)
        return member, self.hub.connected(member)


class JoinTests(HubTestMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.makeHub()

    def test_memberIsAnIMember(self) -> None:
        """The recording fakes provide the interfaces the hub relies on."""
        self.assertTrue(verifyObject(IMember, RecordingMember()))
        self.assertTrue(verifyObject(IFrontEnd, RecordingFrontEnd()))

    def test_joinReply(self) -> None:
        """A join is answered with joined: room, last offset, epoch, members, count, ref."""
        alice, session = self.connect()
        self.hub.received(session, Join(room="lobby", nick="alice", ref=7))
        self.assertEqual(
            alice.take()[0],
            {
                "type": "joined",
                "room": "lobby",
                "offset": 0,
                "epoch": "e1",
                "members": ["alice"],
                "count": 1,
                "recovered": True,
                "ref": 7,
            },
        )

    def test_presence(self) -> None:
        """Members see others join and leave; a leave is answered with left."""
        alice, a = self.connect()
        bob, b = self.connect()
        self.hub.received(a, Join(room="r", nick="alice"))
        self.hub.received(b, Join(room="r", nick="bob"))
        self.assertIn(
            {"type": "presence", "room": "r", "event": "join", "nick": "bob"}, alice.take()
        )
        self.assertEqual(bob.take()[0]["members"], ["alice", "bob"])
        self.hub.received(b, Leave(room="r", ref="x"))
        self.assertEqual(bob.take(), [{"type": "left", "room": "r", "ref": "x"}])
        self.assertEqual(
            alice.take(), [{"type": "presence", "room": "r", "event": "leave", "nick": "bob"}]
        )

    def test_guestNick(self) -> None:
        """A connection that never chose a nick is listed under a guest nick."""
        alice, a = self.connect()
        self.hub.received(a, Join(room="r"))
        self.assertEqual(alice.take()[0]["members"], ["guest-1"])

    def test_nickChangeAnnounced(self) -> None:
        """Changing nick while in a room is seen by others as a leave and a join."""
        alice, a = self.connect()
        _bob, b = self.connect()
        self.hub.received(a, Join(room="r", nick="alice"))
        self.hub.received(b, Join(room="r", nick="bob"))
        alice.take()
        self.hub.received(b, Nick(nick="robert"))
        self.assertEqual(
            alice.take(),
            [
                {"type": "presence", "room": "r", "event": "leave", "nick": "bob"},
                {"type": "presence", "room": "r", "event": "join", "nick": "robert"},
            ],
        )

    def test_disconnectLeavesRooms(self) -> None:
        """A closed connection leaves every room it was in, and empty rooms are released."""
        alice, a = self.connect()
        _bob, b = self.connect()
        for room in ("r1", "r2"):
            self.hub.received(a, Join(room=room, nick="alice"))
        self.hub.received(b, Join(room="r1", nick="bob"))
        alice.take()
        self.hub.disconnected(b)
        self.assertEqual(
            alice.take(), [{"type": "presence", "room": "r1", "event": "leave", "nick": "bob"}]
        )
        self.hub.disconnected(a)
        self.assertEqual(self.hub._rooms, {})
        self.assertEqual(self.hub.sessions, set())

    def test_tooManyRooms(self) -> None:
        """Joining more rooms than allowed per connection is refused with too_large."""
        self.makeHub(limits=Limits(roomsPerConnection=2))
        alice, a = self.connect()
        for i, room in enumerate(["a", "b", "c"]):
            self.hub.received(a, Join(room=room, ref=i))
        last = alice.take()[-1]
        self.assertEqual((last["type"], last["code"], last["ref"]), ("error", "too_large", 2))

    def test_dotRoomsRefused(self) -> None:
        """Joining the rooms . and .. is refused with bad_request and the ref, and creates
        no room (HTTP clients could not read it: they normalise . and .. out of paths)."""
        alice, a = self.connect()
        self.receiveFrame(a, frame(type="join", room=".", ref=1))
        self.receiveFrame(a, frame(type="join", room="..", ref=2))
        self.assertEqual(
            [(e["type"], e["code"], e["ref"]) for e in alice.take()],
            [("error", "bad_request", 1), ("error", "bad_request", 2)],
        )
        self.assertEqual(self.hub._rooms, {})

    def test_badFrameKeepsConnection(self) -> None:
        """A malformed message gets an error with its ref and the connection stays open."""
        alice, a = self.connect()
        self.receiveFrame(a, frame(type="join", room="no spaces", ref="j"))
        self.receiveFrame(a, frame(type="dance", ref=3))
        self.receiveFrame(a, b"{nope")
        self.assertEqual(
            [(e["code"], e.get("ref")) for e in alice.take()],
            [("bad_request", "j"), ("unknown_type", 3), ("bad_request", None)],
        )
        self.assertIsNone(alice.closed)


class SayTests(HubTestMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.makeHub()
        self.alice, self.a = self.connect()
        self.bob, self.b = self.connect()
        self.hub.received(self.a, Join(room="r", nick="alice"))
        self.hub.received(self.b, Join(room="r", nick="bob"))
        self.alice.take()
        self.bob.take()

    def test_sayReachesEveryMemberAndAcks(self) -> None:
        """A message said in a room reaches every member, the sender included, plus an ack."""
        self.hub.received(self.a, Say(room="r", text="hi", ref="m1"))
        message = {
            "type": "message",
            "room": "r",
            "offset": 1,
            "ts": 1_000_000_000,
            "nick": "alice",
            "text": "hi",
        }
        self.assertEqual(self.bob.take(), [message])
        self.assertEqual(
            self.alice.take(), [message, {"type": "ack", "ref": "m1", "offset": 1, "room": "r"}]
        )

    def test_preparedOnce(self) -> None:
        """Fan-out frames one event once for the members of a front end and hands the same
        object to every member."""
        before = self.frontEnd.framings
        self.hub.received(self.a, Say(room="r", text="once"))
        self.assertEqual(self.frontEnd.framings - before, 1)
        self.assertIs(self.alice.framed[-1], self.bob.framed[-1])

    def test_notJoined(self) -> None:
        """Saying in a room the sender has not joined is refused with not_joined."""
        self.hub.received(self.a, Say(room="other", text="hi", ref=1))
        self.assertEqual(self.alice.take()[0]["code"], "not_joined")
        self.hub.received(self.a, Leave(room="other", ref=2))
        self.assertEqual(self.alice.take()[0]["code"], "not_joined")

    def test_textTooLong(self) -> None:
        """A text longer than the limit is refused with too_large, not delivered."""
        self.receiveFrame(self.a, frame(type="say", room="r", text="x" * 4097, ref=1))
        self.assertEqual(self.alice.take()[0]["code"], "too_large")
        self.assertEqual(self.bob.take(), [])

    def test_offsetsAndMetrics(self) -> None:
        """Offsets increase by one and the metrics count messages in and deliveries out."""
        deliveredBefore = self.metrics.messagesOut._value.get()
        for text in "abc":
            self.hub.received(self.a, Say(room="r", text=text))
        self.assertEqual([e["offset"] for e in self.bob.take()], [1, 2, 3])
        self.assertEqual(self.metrics.messagesIn._value.get(), 3)
        self.assertEqual(self.metrics.messagesOut._value.get() - deliveredBefore, 6)

    def test_rateLimitedThenClosed(self) -> None:
        """Past the burst, messages get rate_limited; a persistent flood is closed with 1008."""
        hub = self.makeHub(limits=Limits(rate=1, burst=2, floodStrikes=3))
        alice, a = self.connect()
        hub.received(a, Join(room="r"))
        for i in range(4):
            hub.received(a, Say(room="r", text="x", ref=i))
        codes = [e.get("code") for e in alice.take() if e["type"] == "error"]
        self.assertEqual(codes, ["rate_limited", "rate_limited", "rate_limited"])
        self.assertIsNone(alice.closed)
        hub.received(a, Say(room="r", text="x"))
        self.assertEqual(alice.closed, (1008, "message rate limit exceeded"))

    def test_binaryFramesRateLimited(self) -> None:
        """Binary frames are refused with bad_request and count against the rate limit."""
        self.makeHub(limits=Limits(rate=1, burst=2, floodStrikes=1))
        alice, a = self.connect()
        for _ in range(3):
            self.receiveBinary(a)
        self.assertEqual(
            [e["code"] for e in alice.take()], ["bad_request", "bad_request", "rate_limited"]
        )
        self.receiveBinary(a)
        self.assertEqual(alice.closed, (1008, "message rate limit exceeded"))

    def test_binaryFrameRef(self) -> None:
        """A binary frame holding a command is refused with bad_request and its ref, and the
        command is not carried out; a rate-limited one keeps its ref too."""
        hub = self.makeHub(limits=Limits(rate=1, burst=2))
        alice, a = self.connect()
        hub.received(a, Join(room="r"))
        alice.take()
        self.receiveBinary(a, frame(type="say", room="r", text="hi", ref="b1"))
        self.receiveBinary(a, frame(type="say", room="r", text="hi", ref="b2"))
        self.assertEqual(
            [(e["type"], e["code"], e["reason"], e["ref"]) for e in alice.take()],
            [
                ("error", "bad_request", "frames must be text (JSON)", "b1"),
                ("error", "rate_limited", "more than 1 messages per second", "b2"),
            ],
        )
        self.assertEqual(self.metrics.messagesIn._value.get(), 0)

    def test_loneSurrogateNick(self) -> None:
        """A nick holding a lone surrogate escape (JSON, though orjson refuses it) is refused
        as a bad nick with the ref, and the nick is unchanged."""
        alice, a = self.connect()
        before = a.nick
        self.receiveFrame(a, b'{"type":"nick","nick":"\\ud800","ref":5}')
        self.assertEqual(
            alice.take(),
            [
                {
                    "type": "error",
                    "code": "bad_request",
                    "reason": "nick must be 1 to 32 printable characters",
                    "ref": 5,
                }
            ],
        )
        self.assertEqual(a.nick, before)

    def test_loneSurrogateTextNotPublished(self) -> None:
        """A say whose text holds a lone surrogate is refused with its ref and reaches
        nobody (it could not be encoded for them)."""
        alice, a = self.connect()
        self.hub.received(a, Join(room="r"))
        alice.take()
        self.receiveFrame(a, b'{"type":"say","room":"r","text":"a\\udc00","ref":"t"}')
        [error] = alice.take()
        self.assertEqual((error["code"], error["ref"]), ("bad_request", "t"))
        self.assertEqual(self.metrics.messagesIn._value.get(), 0)

    def test_nearlyJsonRef(self) -> None:
        """A frame with NaN in it is refused as not JSON, with its ref; one with a
        10,000-digit number in a field no command reads is carried out."""
        alice, a = self.connect()
        self.receiveFrame(a, b'{"type":"join","room":"r","ref":1,"since":NaN}')
        self.receiveFrame(a, b'{"type":"join","room":"r","ref":2,"x":%s}' % (b"9" * 10_000))
        events = alice.take()
        self.assertEqual(
            (events[0]["code"], events[0]["reason"], events[0]["ref"]),
            ("bad_request", "frame is not valid JSON: NaN is not a JSON number", 1),
        )
        self.assertEqual((events[1]["type"], events[1]["ref"]), ("joined", 2))

    def test_rateRefills(self) -> None:
        """After a pause the bucket refills and messages are accepted again."""
        hub = self.makeHub(limits=Limits(rate=1, burst=1))
        alice, a = self.connect()
        hub.received(a, Join(room="r"))
        hub.received(a, Say(room="r", text="x"))
        self.assertEqual(alice.take()[-1]["code"], "rate_limited")
        self.clock.advance(1)
        hub.received(a, Say(room="r", text="y"))
        self.assertEqual(alice.take()[-1]["text"], "y")


class RecoveryTests(HubTestMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.makeHub()
        self.alice, self.a = self.connect()
        self.hub.received(self.a, Join(room="r", nick="alice"))
        for i in range(1, 8):
            self.hub.received(self.a, Say(room="r", text=f"m{i}"))
        self.alice.take()

    def test_sinceWithinHistory(self) -> None:
        """A join with since replays the later messages after joined, recovered true."""
        bob, b = self.connect()
        self.hub.received(b, Join(room="r", since=5, ref=1))
        events = bob.take()
        self.assertEqual(
            (events[0]["type"], events[0]["offset"], events[0]["recovered"]), ("joined", 7, True)
        )
        self.assertEqual([e["text"] for e in events[1:3]], ["m6", "m7"])

    def test_sinceBeyondHistory(self) -> None:
        """When history no longer reaches back, what is held is sent and recovered is false."""
        bob, b = self.connect()
        self.hub.received(b, Join(room="r", since=0))
        events = bob.take()
        self.assertFalse(events[0]["recovered"])
        self.assertEqual(
            [e["offset"] for e in events[1:] if e["type"] == "message"], [3, 4, 5, 6, 7]
        )

    def test_epochChanged(self) -> None:
        """A client resuming from another epoch is told recovery was incomplete."""
        bob, b = self.connect()
        self.hub.received(b, Join(room="r", since=6, epoch="old"))
        self.assertFalse(bob.take()[0]["recovered"])

    def test_rejoinReplays(self) -> None:
        """Joining a room again replays from since without a second presence event."""
        self.hub.received(self.a, Join(room="r", since=6, ref=2))
        events = self.alice.take()
        self.assertEqual([e["type"] for e in events], ["joined", "message"])
        self.assertEqual(events[0]["count"], 1)


class DelayedBroker(MemoryBroker):
    """A memory broker whose replies wait until the test releases them."""

    def __init__(self) -> None:
        super().__init__(history=100, maxRooms=10, newEpoch=lambda: "e1")
        self.held: list[tuple[Deferred[Any], Any]] = []

    def replay(self, room: str, since: Any, epoch: Any) -> Deferred[Any]:
        result = self.successResult(super().replay(room, since, epoch))
        d: Deferred[Any] = Deferred()
        self.held.append((d, result))
        return d

    @staticmethod
    def successResult(d: Deferred[Any]) -> Any:
        box: list[Any] = []
        d.addCallback(box.append)
        return box[0]

    def release(self) -> None:
        held, self.held = self.held, []
        for d, result in held:
            d.callback(result)

    def fail(self) -> None:
        """The held replies fail, as when the broker's connection drops."""
        held, self.held = self.held, []
        for d, _ in held:
            d.errback(RuntimeError("connection lost"))


class AsyncJoinTests(HubTestMixin, SynchronousTestCase):
    def test_liveMessagesBufferedDuringJoin(self) -> None:
        """Messages published while a join is in flight arrive after joined, once, in order."""
        broker = DelayedBroker()
        self.makeHub(broker=broker)
        _alice, a = self.connect()
        bob, b = self.connect()
        self.hub.received(a, Join(room="r", nick="alice"))
        broker.release()
        self.hub.received(a, Say(room="r", text="before"))
        self.hub.received(b, Join(room="r", nick="bob", since=0))
        self.hub.received(a, Say(room="r", text="during"))
        self.assertEqual(bob.take(), [])
        broker.release()
        events = bob.take()
        self.assertEqual(events[0]["type"], "joined")
        self.assertEqual(
            [e["text"] for e in events if e["type"] == "message"], ["before", "during"]
        )

    def test_leaveWhileJoining(self) -> None:
        """A connection that goes away while joining leaves no member behind."""
        broker = DelayedBroker()
        self.makeHub(broker=broker)
        alice, a = self.connect()
        self.hub.received(a, Join(room="r", nick="alice"))
        self.hub.disconnected(a)
        broker.release()
        self.assertEqual(alice.take(), [])
        self.assertEqual(self.successResultOf(broker.members("r", None)), ((), 0))

    def test_leaveAndJoinAgainWhileJoining(self) -> None:
        """A member that leaves while joining and joins again is counted once: the first
        join undoes its presence when its snapshot arrives, the second one completes."""
        broker = DelayedBroker()
        self.makeHub(broker=broker)
        _watcher, w = self.connect()
        self.hub.received(w, Join(room="r", nick="watcher"))
        broker.release()
        alice, a = self.connect()
        self.hub.received(a, Join(room="r", nick="alice", ref=1))
        self.hub.received(a, Leave(room="r", ref="l"))
        self.hub.received(a, Join(room="r", nick="alice", ref=2))
        broker.release()
        self.assertEqual(
            [(e["type"], e.get("ref")) for e in alice.take()], [("left", "l"), ("joined", 2)]
        )
        members = self.successResultOf(broker.members("r", None))
        self.assertEqual(members, (("alice", "watcher"), 2))
        self.hub.disconnected(a)
        self.assertEqual(self.successResultOf(broker.members("r", None)), (("watcher",), 1))

    def test_failureUndoesTheNickEntered(self) -> None:
        """A join whose snapshot fails after its presence was counted exits the nick it
        entered, even if the member renamed meanwhile, and is refused unavailable."""
        broker = DelayedBroker()
        self.makeHub(broker=broker)
        alice, a = self.connect()
        self.hub.received(a, Join(room="r", nick="alice", ref=1))
        self.hub.received(a, Nick(nick="alicia"))
        broker.fail()
        [error] = alice.take()
        self.assertEqual((error["code"], error["ref"]), ("unavailable", 1))
        self.assertEqual(self.successResultOf(broker.members("r", None)), ((), 0))
        self.assertEqual(self.hub._rooms, {})
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_failureAfterLeavingUndoesPresence(self) -> None:
        """A member that left while its snapshot was in flight, which then failed, leaves
        no presence behind."""
        broker = DelayedBroker()
        self.makeHub(broker=broker)
        alice, a = self.connect()
        self.hub.received(a, Join(room="r", nick="alice", ref=1))
        self.hub.received(a, Leave(room="r"))
        broker.fail()
        self.assertEqual(self.successResultOf(broker.members("r", None)), ((), 0))
        self.assertEqual([e["type"] for e in alice.take()], ["left", "error"])
        self.flushLoggedErrors(RuntimeError)


class FailingBroker(MemoryBroker):
    def publish(
        self, room: str, nick: str, text: str, ts: int, user: str | None = None
    ) -> Deferred[Any]:
        return fail(RuntimeError("connection refused"))


class UnavailableTests(HubTestMixin, SynchronousTestCase):
    def test_publishFailureIsUnavailable(self) -> None:
        """When the broker cannot take a message, the sender gets unavailable, not a crash."""
        self.makeHub(broker=FailingBroker(10, 10))
        alice, a = self.connect()
        self.hub.received(a, Join(room="r"))
        self.hub.received(a, Say(room="r", text="x", ref=9))
        error = alice.take()[-1]
        self.assertEqual((error["code"], error["ref"]), ("unavailable", 9))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_roomLimitIsUnavailable(self) -> None:
        """A new room beyond the server's room limit, all rooms in use, is unavailable."""
        self.makeHub(broker=MemoryBroker(5, 1))
        alice, a = self.connect()
        self.hub.received(a, Join(room="one"))
        self.hub.received(a, Join(room="two", ref="t"))
        error = alice.take()[-1]
        self.assertEqual(
            (error["type"], error["code"], error["ref"]), ("error", "unavailable", "t")
        )
        self.assertEqual(self.hub._rooms.keys(), {"one"})


class JoinTokenTests(HubTestMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.tokens = JoinTokens(b"s" * 32)
        self.makeHub(joinTokens=self.tokens)

    def test_noTokenForbidden(self) -> None:
        """With join tokens required, a join without one is forbidden."""
        alice, a = self.connect()
        self.hub.received(a, Join(room="r", ref=1))
        self.assertEqual(alice.take()[0]["code"], errors.FORBIDDEN)

    def test_tokenLimitsRoomsAndSaying(self) -> None:
        """A token allows joining matching rooms, and saying only where it says so."""
        alice, a = self.connect()
        expires = self.clock.seconds() + 60
        token = self.tokens.mint(join=["pub-*"], say=["pub-talk"], expires=expires)
        self.hub.received(a, Join(room="pub-talk", token=token))
        self.hub.received(a, Join(room="pub-news", token=token))
        self.hub.received(a, Join(room="private", token=token, ref="p"))
        self.hub.received(a, Say(room="pub-news", text="x", ref="n"))
        self.hub.received(a, Say(room="pub-talk", text="y", ref="t"))
        events = alice.take()
        self.assertEqual(
            [e["type"] for e in events], ["joined", "joined", "error", "error", "message", "ack"]
        )
        self.assertEqual(
            [(e["code"], e["ref"]) for e in events if e["type"] == "error"],
            [("forbidden", "p"), ("forbidden", "n")],
        )

    def test_expiredToken(self) -> None:
        """An expired token is forbidden."""
        alice, a = self.connect()
        token = self.tokens.mint(join=["*"], say=["*"], expires=self.clock.seconds() - 1)
        self.hub.received(a, Join(room="r", token=token))
        self.assertEqual(alice.take()[0]["reason"], "join token has expired")


class MembersFailingBroker(MemoryBroker):
    """A memory broker that cannot count a room's members."""

    def members(self, room: str, cap: int | None) -> Deferred[Any]:
        if cap == 0:  # the batch's count lookup; joins still get their snapshot
            return fail(RuntimeError("redis is down"))
        return super().members(room, cap)


def presence(event: str, nick: str) -> dict[str, Any]:
    return {"type": "presence", "room": "r", "event": event, "nick": nick}


def batch(count: int, joined: list[str], left: list[str], truncated: bool = False) -> Any:
    return {
        "type": "presence_batch",
        "room": "r",
        "count": count,
        "joined": joined,
        "left": left,
        "truncated": truncated,
    }


class HeldMembersBroker(MemoryBroker):
    """A memory broker whose member counts for batches wait until the test releases them."""

    def __init__(self) -> None:
        super().__init__(history=5, maxRooms=10, newEpoch=lambda: "e1")
        self.held: list[tuple[Deferred[Any], str]] = []

    def members(self, room: str, cap: int | None) -> Deferred[Any]:
        if cap != 0:
            return super().members(room, cap)
        d: Deferred[Any] = Deferred()
        self.held.append((d, room))
        return d

    def release(self) -> None:
        held, self.held = self.held, []
        for d, room in held:
            d.callback(self._presence.members(room, 0))


class PresenceBatchTests(HubTestMixin, SynchronousTestCase):
    """Rooms bigger than presenceBatchAbove get presence as one presence_batch per interval."""

    limits = Limits(
        history=5, presenceBatchAbove=2, presenceBatchInterval=1.0, presenceMembersCap=3
    )

    def setUp(self) -> None:
        self.makeHub()
        self.people: dict[str, tuple[RecordingMember, Any]] = {}

    def join(self, *nicks: str) -> None:
        for nick in nicks:
            self.people[nick] = self.connect()
            self.hub.received(self.people[nick][1], Join(room="r", nick=nick))

    def gone(self, *nicks: str) -> None:
        for nick in nicks:
            self.hub.disconnected(self.people.pop(nick)[1])

    def take(self, nick: str) -> list[dict[str, Any]]:
        return self.people[nick][0].take()

    def takeAll(self) -> None:
        for member, _ in self.people.values():
            member.take()

    def test_smallRoomUnchanged(self) -> None:
        """Up to the threshold, each join and leave is one presence frame, sent at once."""
        self.join("alice", "bob")
        self.assertEqual(self.take("alice")[1:], [presence("join", "bob")])
        self.gone("bob")
        self.assertEqual(self.take("alice"), [presence("leave", "bob")])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_bigRoomBatched(self) -> None:
        """Above the threshold, joins send nothing at once, then one presence_batch per member
        after the interval, with the net joins, the room's count, one frame per member."""
        self.join("alice", "bob")
        self.takeAll()
        self.join("carol", "dave")
        self.assertEqual(self.take("alice"), [])
        self.assertEqual(self.take("bob"), [])
        self.assertEqual([e["type"] for e in self.take("carol")], ["joined"])
        self.assertEqual([e["type"] for e in self.take("dave")], ["joined"])
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        before = self.metrics.messagesOut._value.get()
        self.clock.advance(1.0)
        expected = batch(4, ["carol", "dave"], [])
        for nick in ("alice", "bob", "carol", "dave"):
            self.assertEqual(self.take(nick), [expected], nick)
        self.assertEqual(self.metrics.messagesOut._value.get() - before, 4)
        framed = {id(m.framed[-1]) for m, _ in self.people.values()}
        self.assertEqual(len(framed), 1, "one frame prepared for all members")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_oneBatchPerInterval(self) -> None:
        """Events after a batch was sent make the next batch, one interval after the first."""
        self.join("alice", "bob", "carol")
        self.clock.advance(1.0)
        self.takeAll()
        self.clock.advance(5.0)
        self.join("dave")
        self.clock.advance(0.5)
        self.join("erin")
        self.assertEqual(self.take("alice"), [])
        self.clock.advance(0.5)
        self.assertEqual(self.take("alice"), [batch(5, ["dave", "erin"], [])])
        self.clock.advance(10.0)
        self.assertEqual(self.take("alice"), [])

    def test_capAndTruncated(self) -> None:
        """Each list holds at most presenceMembersCap nicks; truncated says some were cut and
        count still has them all."""
        self.join("alice", "bob", "carol")
        self.clock.advance(1.0)
        self.takeAll()
        self.join("n1", "n2", "n3", "n4", "n5")
        self.gone("bob")
        self.clock.advance(1.0)
        self.assertEqual(self.take("alice"), [batch(7, ["n1", "n2", "n3"], ["bob"], True)])

    def test_leaveThenRejoinNetted(self) -> None:
        """A nick that left and came back within the interval is only in joined; one that
        came and went is only in left."""
        self.join("alice", "bob", "carol", "erin")
        self.clock.advance(1.0)
        self.takeAll()
        self.gone("bob")
        self.join("bob", "dave")
        self.gone("dave")
        self.clock.advance(1.0)
        self.assertEqual(self.take("alice"), [batch(4, ["bob"], ["dave"])])

    def test_crossingDownKeepsOrder(self) -> None:
        """When a big room shrinks to the threshold, presence keeps going into the pending
        batch until it is sent; single presence frames resume after it, in order."""
        self.join("alice", "bob", "carol", "dave")
        self.clock.advance(1.0)
        self.takeAll()
        self.gone("dave")  # 3 members: batched
        self.gone("carol")  # 2 members, but a batch is pending: joins it
        self.assertEqual(self.take("alice"), [])
        self.clock.advance(1.0)
        self.assertEqual(self.take("alice"), [batch(2, [], ["dave", "carol"])])
        self.gone("bob")
        self.assertEqual(self.take("alice"), [presence("leave", "bob")])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_crossingUpSendsPendingSinglesFirst(self) -> None:
        """The join that makes a room big is the first one batched; those before went singly."""
        self.join("alice", "bob")
        self.join("carol")
        self.assertEqual(self.take("alice")[1:], [presence("join", "bob")])
        self.clock.advance(1.0)
        self.assertEqual(self.take("alice"), [batch(3, ["carol"], [])])

    def test_thresholdZeroBatchesEveryRoom(self) -> None:
        """With presenceBatchAbove 0, even a two-member room gets presence_batch only."""
        self.makeHub(limits=Limits(presenceBatchAbove=0))
        self.join("alice", "bob")
        self.assertEqual([e["type"] for e in self.take("alice")], ["joined"])
        self.clock.advance(1.0)
        self.assertEqual(self.take("alice"), [batch(2, ["alice", "bob"], [])])

    def test_noDelayedCallLeftWhenRoomEmpties(self) -> None:
        """A room whose members all leave with a batch pending leaves no DelayedCall behind,
        and sends nothing later."""
        self.join("alice", "bob", "carol")
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.gone("alice", "bob", "carol")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.hub._rooms, {})

    def test_stopCancelsPending(self) -> None:
        """Hub.stop cancels the batches still pending."""
        self.join("alice", "bob", "carol")
        self.takeAll()
        self.hub.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(5.0)
        self.assertEqual(self.take("alice"), [])

    def test_batchBufferedForJoiner(self) -> None:
        """A batch that arrives while a member's join is in flight reaches it after joined."""
        broker = DelayedBroker()
        self.makeHub(broker=broker, limits=self.limits)
        self.join("alice", "bob", "carol")
        broker.release()
        self.clock.advance(1.0)
        self.takeAll()
        self.join("dave")  # waits for its replay
        self.clock.advance(1.0)
        self.assertEqual(self.take("alice"), [batch(4, ["dave"], [])])
        self.assertEqual(self.take("dave"), [])
        broker.release()
        events = self.take("dave")
        self.assertEqual([e["type"] for e in events], ["joined", "presence_batch"])
        self.assertEqual(events[1], batch(4, ["dave"], []))

    def test_countFallsBackToLocalNicks(self) -> None:
        """When the broker cannot count the room, the batch still goes out, counting the
        distinct nicks here."""
        self.makeHub(broker=MembersFailingBroker(5, 10), limits=self.limits)
        self.join("alice", "bob", "carol")
        self.takeAll()
        self.clock.advance(1.0)
        self.assertEqual(self.take("alice"), [batch(3, ["carol"], [])])

    def test_eventsDuringCountLookupJoinTheBatch(self) -> None:
        """While the broker counts the room, further presence joins the batch being sent,
        and no second sending is scheduled."""
        broker = HeldMembersBroker()
        self.makeHub(broker=broker, limits=self.limits)
        self.join("alice", "bob", "carol")
        self.takeAll()
        self.clock.advance(1.0)
        self.join("dave")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.take("alice"), [])
        broker.release()
        self.assertEqual(self.take("alice"), [batch(4, ["carol", "dave"], [])])

    def test_roomGoneDuringCountLookup(self) -> None:
        """A batch whose room emptied while the broker was counting is dropped quietly."""
        broker = HeldMembersBroker()
        self.makeHub(broker=broker, limits=self.limits)
        self.join("alice", "bob", "carol")
        self.clock.advance(1.0)
        people = [m for m, _ in self.people.values()]
        self.gone("alice", "bob", "carol")
        for member in people:
            member.take()
        broker.release()
        self.assertEqual([m.events for m in people], [[], [], []])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class SubscribeTests(HubTestMixin, SynchronousTestCase):
    """In-process subscribers (L{Hub.subscribe}): typed events, not members."""

    def setUp(self) -> None:
        self.makeHub()

    def test_typedEventsNotMembership(self) -> None:
        """A subscriber gets the room's presence and messages as typed values, and is not a
        member: the room's presence and member count do not include it."""
        seen: list[Any] = []
        subscription = self.hub.subscribe("lobby", seen.append)
        self.assertIsNone(self.successResultOf(subscription.ready))
        member, session = self.connect()
        self.hub.received(session, Join(room="lobby", nick="ann", ref=1))
        self.hub.received(session, Say(room="lobby", text="hi", ref=2))
        self.assertEqual(
            seen,
            [Presence(room="lobby", event="join", nick="ann"), self.lastMessage("lobby")],
        )
        joined = member.ofType("joined")[0]
        self.assertEqual((joined["members"], joined["count"]), (["ann"], 1))

    def lastMessage(self, room: str) -> Message:
        _, messages = self.successResultOf(self.broker.history(room, 0, 10))
        return messages[-1]  # type: ignore[no-any-return]

    def test_subscribedOnceAndReleased(self) -> None:
        """Subscribers share the instance's one subscription with the members; the room is
        released at the broker when the last of them goes, whichever goes last."""
        calls: list[str] = []
        broker = self.broker
        original = broker.unsubscribe
        broker.unsubscribe = lambda room: calls.append(room) or original(room)  # type: ignore[method-assign]
        first = self.hub.subscribe("lobby", lambda e: None)
        second = self.hub.subscribe("lobby", lambda e: None)
        _member, session = self.connect()
        self.hub.received(session, Join(room="lobby", ref=1))
        self.assertEqual(self.metrics.rooms._value.get(), 1)
        first.cancel()
        self.hub.received(session, Leave(room="lobby"))
        self.assertEqual(calls, [])
        second.cancel()
        second.cancel()  # twice: nothing more
        self.assertEqual(calls, ["lobby"])
        self.assertFalse(second.active)
        self.assertEqual(self.metrics.rooms._value.get(), 0)

    def test_cancelledGetsNothing(self) -> None:
        """After C{cancel}, the callback is not called again."""
        seen: list[Any] = []
        self.hub.subscribe("lobby", seen.append).cancel()
        self.hub.publish("lobby", "ops", "after")
        self.assertEqual(seen, [])

    def test_brokenCallbackDoesNotStopTheRoom(self) -> None:
        """A subscriber that raises is logged; members and other subscribers still get the
        event."""
        from twisted.internet.testing import EventLoggingObserver
        from twisted.logger import globalLogPublisher

        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

        def broken(event: Any) -> None:
            raise RuntimeError("application bug")

        seen: list[Any] = []
        self.hub.subscribe("lobby", broken)
        self.hub.subscribe("lobby", seen.append)
        member, session = self.connect()
        self.hub.received(session, Join(room="lobby", ref=1))
        member.take()
        seen.clear()
        self.hub.publish("lobby", "ops", "still here")
        self.assertEqual([m.text for m in seen], ["still here"])
        self.assertEqual([e["text"] for e in member.ofType("message")], ["still here"])
        failed = [e for e in events if "log_failure" in e]
        self.assertEqual(len(failed), 2)  # ann's presence event, and the message
        self.assertEqual(failed[-1]["log_failure"].getErrorMessage(), "application bug")
        self.assertEqual(failed[-1]["room"], "lobby")
        self.flushLoggedErrors(RuntimeError)

    def test_badRoom(self) -> None:
        """An invalid room name is refused before anything is subscribed."""
        self.assertRaises(errors.BadRequest, self.hub.subscribe, "..", lambda e: None)
        self.assertEqual(self.metrics.rooms._value.get(), 0)

    def test_failedSubscription(self) -> None:
        """When the broker cannot subscribe, C{ready} fails and the subscription ends."""
        broker = self.broker
        broker.subscribe = lambda room, listener: fail(errors.Unavailable("down"))  # type: ignore[method-assign]
        subscription = self.hub.subscribe("lobby", lambda e: None)
        self.failureResultOf(subscription.ready, errors.Unavailable)
        self.assertFalse(subscription.active)
        self.assertEqual(self.metrics.rooms._value.get(), 0)


class NoSessionsTests(HubTestMixin, SynchronousTestCase):
    def test_whenNoSessions(self) -> None:
        """whenNoSessions fires at once with no connection, else when the last one closes."""
        self.makeHub()
        self.successResultOf(self.hub.whenNoSessions())
        _, one = self.connect()
        _, two = self.connect()
        d = self.hub.whenNoSessions()
        self.hub.disconnected(one)
        self.assertNoResult(d)
        self.hub.disconnected(two)
        self.successResultOf(d)

    def test_whenNoSessionsCancelled(self) -> None:
        """A cancelled wait is forgotten: the last close later fires nothing twice."""
        self.makeHub()
        _, one = self.connect()
        d = self.hub.whenNoSessions()
        d.cancel()
        self.failureResultOf(d)
        self.hub.disconnected(one)  # no AlreadyCalledError
        self.assertEqual(self.hub._noSessions, [])


class ServerCommandTests(HubTestMixin, SynchronousTestCase):
    """The server API's commands on one instance (L{Hub.answerCommand})."""

    def setUp(self) -> None:
        from portshare.identity import Authenticator, StaticKeys, TokenRules, secretKeys
        from portshare.users import Gatekeeper

        self.makeHub()
        secret = b"k" * 40
        self.gate = Gatekeeper(
            "optional", Authenticator(StaticKeys(secretKeys(secret)), TokenRules(), self.clock)
        )
        self.hub.gate = self.gate
        self.secret = secret

    def connectAs(self, user: str) -> tuple[RecordingMember, Any]:
        from portshare.identity import Identity

        member = RecordingMember(frontEnd=self.frontEnd)
        identity = Identity(user=user, nick=user, expires=self.clock.seconds() + 600)
        return member, self.hub.connected(member, identity=identity)

    def test_unknownOp(self) -> None:
        """An unknown op is answered with an error, not an exception."""
        self.assertIn("error", self.hub.answerCommand({"op": "explode"}))

    def test_disconnectCountsOpenOnly(self) -> None:
        """disconnect closes the user's sessions (4000, the reason) and counts them; a
        second disconnect before they are gone counts none again."""
        (a, _), (b, _), (other, _) = (
            self.connectAs("ann"),
            self.connectAs("ann"),
            self.connectAs("bob"),
        )
        answer = self.hub.answerCommand({"op": "disconnect", "user": "ann", "reason": "bye"})
        self.assertEqual(answer, {"connections": 2})
        self.assertEqual((a.closed, b.closed), ((4000, "bye"), (4000, "bye")))
        self.assertFalse(hasattr(other, "closed") and other.closed)
        self.assertEqual(
            self.hub.answerCommand({"op": "disconnect", "user": "ann"}), {"connections": 0}
        )

    def test_refuseFor(self) -> None:
        """disconnect with refuseFor refuses the user's tokens on this instance for that
        long; without it (or 0) nothing is refused."""
        import jwt

        good = jwt.encode({"sub": "ann", "exp": self.clock.seconds() + 900}, self.secret, "HS256")
        self.hub.answerCommand({"op": "disconnect", "user": "ann", "refuseFor": 0})
        self.successResultOf(self.gate.authenticate(good))
        self.hub.answerCommand({"op": "disconnect", "user": "ann", "refuseFor": 30})
        self.failureResultOf(self.gate.authenticate(good), errors.Forbidden)
        self.clock.advance(30)
        self.successResultOf(self.gate.authenticate(good))

    def test_joinLeaveMembers(self) -> None:
        """join puts the user's sessions in the room, members counts them by (user, nick),
        leave takes them out again with a left event."""
        (a, _), (b, _) = self.connectAs("ann"), self.connectAs("ann")
        self.connectAs("bob")
        self.assertEqual(
            self.hub.answerCommand({"op": "join", "user": "ann", "room": "r"}), {"connections": 2}
        )
        self.assertEqual([e["room"] for e in a.ofType("joined")], ["r"])
        self.assertEqual(
            self.hub.answerCommand({"op": "members", "room": "r"}),
            {"members": [{"user": "ann", "nick": "ann", "connections": 2}]},
        )
        self.assertEqual(
            self.hub.answerCommand({"op": "leave", "user": "ann", "room": "r"}), {"connections": 2}
        )
        self.assertEqual([e["room"] for e in b.ofType("left")], ["r"])
        self.assertEqual(self.hub.answerCommand({"op": "members", "room": "r"}), {"members": []})

    def test_closingSessionsSkipped(self) -> None:
        """Sessions closing (disconnected, their close handshake running) are not joined."""
        member, _ = self.connectAs("ann")
        self.hub.answerCommand({"op": "disconnect", "user": "ann"})
        answer = self.hub.answerCommand({"op": "join", "user": "ann", "room": "r"})
        self.assertEqual(answer, {"connections": 0})
        self.assertEqual(member.ofType("joined"), [])
