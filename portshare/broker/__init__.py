"""
The broker: where offsets are assigned, history is kept and messages fan out between instances.

The chat protocol code talks only to L{IBroker}.  The in-memory broker (L{memory}) serves one
process; a broker backed by a shared server (Redis) makes several processes act as one chat by
implementing the same interface.  Every call returns a Deferred so a networked broker fits; one
instance subscribes once per room (not once per client) and fans out locally.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from portshare.wire import Message, Presence


class IRoomListener(Interface):
    """Receives what happens in one subscribed room, in order."""

    def messagePublished(message: Message) -> None:
        """A message was published to the room (on any instance)."""

    def presenceChanged(presence: Presence) -> None:
        """A nick joined or left the room (on any instance)."""


class IBroker(Interface):
    """Offsets, history, presence and cross-instance fan-out for chat rooms."""

    unavailableReason = Attribute(
        "None while the broker works; otherwise a short text saying why it does not "
        "(reported by /healthz)."
    )

    def start():  # type: ignore[misc]
        """Connect or prepare; @return: a Deferred that fires when ready."""

    def stop():  # type: ignore[misc]
        """Flush and disconnect; @return: a Deferred that fires when done."""

    def subscribe(room, listener):  # type: ignore[misc]
        """
        Deliver C{room}'s messages and presence to C{listener} (an L{IRoomListener}) until
        L{unsubscribe}.  One listener per room per instance.
        @return: a Deferred that fires once deliveries have started.
        """

    def unsubscribe(room):  # type: ignore[misc]
        """Stop delivering C{room}; @return: a Deferred."""

    def publish(room, nick, text, ts, user=None):  # type: ignore[misc]
        """
        Give a new message the room's next offset, keep it in history and deliver it to every
        subscriber of the room.  C{user}: the sender's user id (authenticated), kept with it.
        @return: a Deferred firing with the L{Message}.
        @raise Unavailable: (as a failure) when the message could not be accepted.
        """

    def replay(room, since, epoch):  # type: ignore[misc]
        """@return: a Deferred firing with a L{portshare.chat.Replay} for a join."""

    def history(room, since, limit):  # type: ignore[misc]
        """
        @return: a Deferred firing with (epoch, messages after C{since}, oldest first, at
            most C{limit}).
        """

    def enter(room, nick, user=None):  # type: ignore[misc]
        """
        Count C{nick} as a member of C{room}; announce it if new (with C{user}, the member's
        user id, when it is authenticated).  @return: a Deferred.
        """

    def exit(room, nick):  # type: ignore[misc]
        """Count one join of C{nick} less; announce its leave if gone.  @return: a Deferred."""

    def members(room, cap):  # type: ignore[misc]
        """@return: a Deferred firing with (up to C{cap} nicks, total count)."""

    def rooms():  # type: ignore[misc]
        """@return: a Deferred firing with a list of L{portshare.chat.RoomInfo}."""

    def answerCommands(answerer):  # type: ignore[misc]
        """
        This instance answers the server API's commands with C{answerer} (a callable taking
        the command, a dict, and returning the answer, a dict; the hub's).
        """

    def command(message):  # type: ignore[misc]
        """
        Give C{message} (a dict of JSON values) to the answerer of every instance, this one
        included; @return: a Deferred firing with their answers, as a list (the instances
        that answered in time: an instance gone silent is not waited for past the broker's
        timeout).
        """


def buildBroker(url: str, reactor: Any, history: int, maxRooms: int) -> IBroker:
    """
    The broker a C{--broker} URL names: the in-memory broker for C{memory}, the Redis
    broker (L{portshare.broker.redis}, imported only then) for C{redis://}, C{rediss://},
    C{unix://} and C{redis+sentinel://} (the master found through the sentinels).

    @param history: messages kept per room.
    @param maxRooms: rooms kept (in memory) or listed (Redis) at most.
    @raise ValueError: for a URL that L{portshare.broker.url.parseBrokerURL} refuses.
    """
    from portshare.broker.url import parseBrokerURL

    parsed = parseBrokerURL(url)
    if not parsed.shared:
        from portshare.broker.memory import MemoryBroker

        return MemoryBroker(history, maxRooms)
    from portshare.broker.redis import RedisBroker

    return RedisBroker(parsed, reactor, history, maxRooms)
