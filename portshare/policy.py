"""
The application's rules: who may connect, join a room, and say what in it.

An application adopts portshare's decisions by giving it an L{IPolicy}: in process (an object
passed to the service, part of the public API), or over HTTP (C{--hook-url}, L{portshare.hooks}).
A policy answers each question with a L{Verdict}, or a Deferred of one, so that it may ask
a database or a backend first:

    >>> @implementer(IPolicy)
    ... class MembersOnly:
    ...     def authorizeConnect(self, principal):
    ...         return ALLOW
    ...     def authorizeJoin(self, principal, room):
    ...         if principal.user is None:
    ...             return Verdict.deny("sign in to join")
    ...         return ALLOW
    ...     def authorizePublish(self, principal, room, text):
    ...         return Verdict.allow(text.replace("darn", "d***"))

The service never calls a policy directly but through L{Authorization}, which turns each
answer into the one thing the caller needs (nothing, or the text to publish), checks it
(a rewrite must be a text the client could have sent), and turns a denial into L{Forbidden}
(error C{forbidden}, HTTP 403) and a broken policy into L{Unavailable}, logged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Union

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from portshare.errors import Forbidden, PortshareError, Unavailable
from portshare.identity import Identity
from portshare.wire import validText

#: the longest reason a denial may give (it is shown to the client)
MAX_REASON = 256
#: the reason a denial without one is reported with
DEFAULT_REASON = "refused by the application"

# control characters a rewritten text may not hold (tab, line feed and carriage return may:
# clients send multi-line texts); a hostile or broken backend must not inject terminal
# escapes or NULs into every member's screen
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class Principal:
    """
    Who asks: one connection, as the service knows it.

    @ivar user: the user id of the connection's verified token (C{sub}), or C{None} for an
        anonymous connection.
    @ivar nick: the connection's nick at the time of the question.
    @ivar address: the client's address (behind C{--trusted-proxy}, the real client's).
    @ivar identity: the verified token's L{Identity} (its claims included), or C{None}.
    """

    user: str | None
    nick: str
    address: str
    identity: Identity | None = None


@dataclass(frozen=True)
class Verdict:
    """
    A policy's answer.

    @ivar allowed: whether the action may go ahead.
    @ivar reason: why not, shown to the client (error C{forbidden}); C{None}: a default.
    @ivar text: for L{IPolicy.authorizePublish} only: the text to publish instead of the
        one sent (a rewrite), or C{None} to publish it unchanged.
    """

    allowed: bool
    reason: str | None = None
    text: str | None = None

    @classmethod
    def allow(cls, text: str | None = None) -> Verdict:
        """Allow; for a publish, with C{text} in place of the text sent."""
        return cls(True, text=text)

    @classmethod
    def deny(cls, reason: str | None = None) -> Verdict:
        """Refuse, telling the client C{reason}."""
        return cls(False, reason=reason)


#: the verdict that allows, unchanged
ALLOW = Verdict(True)

#: what a policy method returns
Answer = Union[Verdict, "Deferred[Verdict]"]


class IPolicy(Interface):
    """
    The application's rules over connections, rooms and messages.

    Each method is asked once per action, before the action happens, and answers with a
    L{Verdict} or a Deferred of one.  Raising (or failing) with L{Forbidden} denies with its
    reason; any other exception is a bug in the policy: the action is refused with
    C{unavailable} and the error logged.  A slow answer holds only the action asked about
    (the handshake, the join, the one message), never the connection's other traffic.
    """

    def authorizeConnect(principal: Principal) -> Answer:
        """
        May C{principal} open a chat connection?  Asked once, at the handshake (after its
        token, if any, is verified).  A denial refuses the handshake with 403.
        """

    def authorizeJoin(principal: Principal, room: str) -> Answer:
        """May C{principal} join C{room}?  A denial answers the join with error C{forbidden}."""

    def authorizePublish(principal: Principal, room: str, text: str) -> Answer:
        """
        May C{principal} say C{text} in C{room}?  The verdict may carry a new C{text}
        (moderation, mentions turned into links, ...), which must still be a valid chat text
        (non-empty, within the server's limit, no control characters but tab and newlines).
        """


@implementer(IPolicy)
class AllowAll:
    """The default policy: everything is allowed (portshare's behaviour without a policy)."""

    def authorizeConnect(self, principal: Principal) -> Answer:
        return ALLOW

    def authorizeJoin(self, principal: Principal, room: str) -> Answer:
        return ALLOW

    def authorizePublish(self, principal: Principal, room: str, text: str) -> Answer:
        return ALLOW


@implementer(IPolicy)
class ClaimsPolicy:
    """
    The rules a user's token carries: its C{rooms} and C{publish} grants.  Anonymous
    connections are not this policy's business (C{--auth} decides whether they exist).
    """

    def authorizeConnect(self, principal: Principal) -> Answer:
        return ALLOW

    def authorizeJoin(self, principal: Principal, room: str) -> Answer:
        identity = principal.identity
        if identity is not None and not identity.mayJoin(room):
            return Verdict.deny(f"your token does not grant the room {room}")
        return ALLOW

    def authorizePublish(self, principal: Principal, room: str, text: str) -> Answer:
        identity = principal.identity
        if identity is not None and not identity.mayPublish(room):
            return Verdict.deny(f"your token does not let you say anything in {room}")
        return ALLOW


@implementer(IPolicy)
class AllOf:
    """
    Several policies, asked in order: the first denial wins, and each publish rewrite is what
    the next policy is asked about (C{AllOf(ClaimsPolicy(), hooks)}: the token's grants are
    checked before the backend is called at all).
    """

    def __init__(self, *policies: IPolicy) -> None:
        self.policies: Sequence[IPolicy] = policies

    def authorizeConnect(self, principal: Principal) -> Answer:
        return self._chain(lambda p, _: p.authorizeConnect(principal), None)

    def authorizeJoin(self, principal: Principal, room: str) -> Answer:
        return self._chain(lambda p, _: p.authorizeJoin(principal, room), None)

    def authorizePublish(self, principal: Principal, room: str, text: str) -> Answer:
        return self._chain(lambda p, t: p.authorizePublish(principal, room, t), text)

    def _chain(self, ask: Callable[[IPolicy, Any], Answer], text: str | None) -> Deferred[Verdict]:
        publish = text is not None

        def step(index: int, current: str | None) -> Deferred[Verdict]:
            if index == len(self.policies):
                return _succeed(Verdict(True, text=current if current != text else None))
            d = maybeDeferred(ask, self.policies[index], current)

            def next_(verdict: object) -> Verdict | Deferred[Verdict]:
                # the text limit is Authorization's to apply, on the final text
                checked = checkVerdict(verdict, publish, 1 << 30)
                if not checked.allowed:
                    return checked
                return step(index + 1, current if checked.text is None else checked.text)

            return d.addCallback(next_)

        return step(0, text)


def _succeed(verdict: Verdict) -> Deferred[Verdict]:
    d: Deferred[Verdict] = Deferred()
    d.callback(verdict)
    return d


class BadVerdict(ValueError):
    """A policy's answer that is no valid verdict (the message says why)."""


def checkVerdict(verdict: object, publish: bool, maxText: int) -> Verdict:
    """
    C{verdict}, if it is a valid answer.

    @param publish: whether it answers L{IPolicy.authorizePublish} (only there may a verdict
        carry a C{text}).
    @param maxText: the longest text the server accepts (a rewrite included).
    @raise BadVerdict: when it is not a L{Verdict}, its reason is no short printable text,
        or its C{text} is where it may not be or no valid chat text.
    """
    if not isinstance(verdict, Verdict) or not isinstance(verdict.allowed, bool):
        raise BadVerdict(f"a policy answered {type(verdict).__name__}, not a Verdict")
    reason = verdict.reason
    if reason is not None and (
        not isinstance(reason, str) or not 0 < len(reason) <= MAX_REASON or not reason.isprintable()
    ):
        raise BadVerdict(f"a denial's reason must be 1 to {MAX_REASON} printable characters")
    text = verdict.text
    if text is not None:
        if not publish or not verdict.allowed:
            raise BadVerdict("only a publish that is allowed may carry a text")
        try:
            validText(text, maxText)
        except PortshareError as e:
            raise BadVerdict(f"the rewritten text is refused: {e.reason}") from None
        if _CONTROL.search(text) is not None:
            raise BadVerdict("the rewritten text holds control characters")
    return verdict


class Authorization:
    """
    The service's side of a policy: each question asked, its answer checked, the outcome as
    the caller needs it.

    Every method returns a Deferred that fails only with a L{PortshareError}: L{Forbidden}
    for a denial (with the policy's reason), L{Unavailable} when the policy could not decide
    (a hook down, overloaded or too slow, fail-closed) or broke (logged as a bug).
    """

    log = Logger()

    def __init__(self, policy: IPolicy, maxText: int) -> None:
        """
        @param policy: the application's rules (L{AllowAll} when there are none).
        @param maxText: the server's text limit, which a rewrite must keep too.
        """
        self.policy = policy
        self.maxText = maxText

    def connect(self, principal: Principal) -> Deferred[None]:
        """Fires with C{None} if C{principal} may connect."""
        d = maybeDeferred(self.policy.authorizeConnect, principal)
        d.addErrback(self._broken, "connect")
        return d.addCallback(self._allowed, False).addCallback(lambda _: None)

    def join(self, principal: Principal, room: str) -> Deferred[None]:
        """Fires with C{None} if C{principal} may join C{room}."""
        d = maybeDeferred(self.policy.authorizeJoin, principal, room)
        d.addErrback(self._broken, "join")
        return d.addCallback(self._allowed, False).addCallback(lambda _: None)

    def publish(self, principal: Principal, room: str, text: str) -> Deferred[str]:
        """Fires with the text to publish (C{text}, or the policy's rewrite of it)."""
        d = maybeDeferred(self.policy.authorizePublish, principal, room, text)
        d.addErrback(self._broken, "publish")
        d.addCallback(self._allowed, True)
        return d.addCallback(lambda rewritten: text if rewritten is None else rewritten)

    def _allowed(self, verdict: object, publish: bool) -> str | None:
        try:
            checked = checkVerdict(verdict, publish, self.maxText)
        except BadVerdict as e:
            self.log.error("the policy's answer is refused: {why}", why=str(e))
            raise Unavailable("the application's rules could not decide") from None
        if not checked.allowed:
            raise Forbidden(checked.reason or DEFAULT_REASON)
        return checked.text

    def _broken(self, failure: Failure, event: str) -> Failure:
        if failure.check(PortshareError):
            return failure  # Forbidden from the policy, or Unavailable from a hook
        self.log.failure("the policy failed on {event}", failure, event=event)
        raise Unavailable("the application's rules could not decide")
