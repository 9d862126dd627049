"""
Who a chat connection is, and what the application lets it do: the one place that joins the
token check (L{portshare.identity}) and the application's rules (L{portshare.policy}) for
every front end and the hub.

Theory of operation:
 - C{--auth off} (the default): no token is read; every connection is anonymous, the chat of
   version 1.  C{optional}: a token presented is checked (a bad one is refused), none means
   anonymous.  C{required}: a handshake with a bad token is refused; one with none is
   accepted only to send an C{auth} message first (L{Gatekeeper.waitsForAuth}).
 - A front end asks L{Gatekeeper.admit} at its handshake, with the token it found (the
   C{Authorization: Bearer} header or the token cookie): the answer is the connection's
   L{Identity} (or C{None}), or a failure to answer with (401, 403, 503).  The connect rule
   of the application is asked there, with the user when there is one.
 - The hub asks L{Gatekeeper.authenticate} for an C{auth} message, and L{Gatekeeper.join} /
   L{Gatekeeper.publish} for each join and say, which are synchronous (C{None}) unless an
   application policy is configured: a service without one pays nothing per message.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed

from portshare.errors import Forbidden, Unauthorized
from portshare.identity import Authenticator, Identity
from portshare.policy import Authorization, Principal

AUTH_OFF = "off"
AUTH_OPTIONAL = "optional"
AUTH_REQUIRED = "required"
#: the values of C{--auth}
AUTH_MODES = (AUTH_OFF, AUTH_OPTIONAL, AUTH_REQUIRED)

#: the cookie a browser on the application's origin sends with the handshake
DEFAULT_TOKEN_COOKIE = "portshare_token"


class Gatekeeper:
    """
    The users of one service: how tokens are checked, and the application's rules.

    @param mode: C{off}, C{optional} or C{required} (C{--auth}).
    @param authenticator: checks tokens; needed unless C{mode} is C{off}.
    @param authorization: the application's policy (in process, or C{--hook-url}), or
        C{None}: everything a token's grants allow is allowed.
    @param authTimeout: seconds a connection without a token has, with C{required}, to
        send its C{auth} message.
    """

    def __init__(
        self,
        mode: str = AUTH_OFF,
        authenticator: Authenticator | None = None,
        authorization: Authorization | None = None,
        authTimeout: float = 5.0,
        tokenCookie: str = DEFAULT_TOKEN_COOKIE,
    ) -> None:
        if mode not in AUTH_MODES:
            raise ValueError(f"auth must be one of {', '.join(AUTH_MODES)}, not {mode!r}")
        if mode != AUTH_OFF and authenticator is None:
            raise ValueError(f"auth {mode} needs a key to check tokens with")
        self.mode = mode
        self.authenticator = authenticator
        self.authorization = authorization
        self.authTimeout = authTimeout
        self.tokenCookie = tokenCookie
        #: users refused until a time (the server API's disconnect with refuseFor)
        self._refused: dict[str, float] = {}

    @property
    def usesTokens(self) -> bool:
        """Whether tokens are read at all (C{--auth} not C{off})."""
        return self.mode != AUTH_OFF

    def waitsForAuth(self, identity: Identity | None) -> bool:
        """Whether a connection admitted with C{identity} must send C{auth} first."""
        return identity is None and self.mode == AUTH_REQUIRED

    def admit(self, token: str | None, address: str) -> Deferred[Identity | None]:
        """
        A handshake (WebSocket, line protocol, SSE) presenting C{token}, or none.

        @return: a Deferred of the connection's identity (C{None}: anonymous, or with
            C{required} one that must send C{auth} first); failing with L{Unauthorized}
            (401: a bad token), L{Forbidden} (403: the application's connect rule) or
            L{portshare.errors.Unavailable} (503: the keys or the hook cannot be asked now).
        """
        if not self.usesTokens:
            return self.connect(None, address)  # the application's connect rule, if any
        if token is None:
            if self.mode == AUTH_REQUIRED:
                return succeed(None)  # asked again at its auth message
            return self.connect(None, address)
        return self.authenticate(token).addCallback(self.connect, address)

    def authenticate(self, token: str) -> Deferred[Identity]:
        """Check a token (a handshake's, or an C{auth} message's)."""
        if self.authenticator is None:
            return fail(Unauthorized("this server does not use tokens (--auth off)"))
        return self.authenticator.authenticate(token).addCallback(self._notRefused)

    def refuse(self, user: str, until: float) -> None:
        """Refuse C{user}'s tokens until C{until} (seconds since the epoch, the clock's)."""
        self._refused[user] = max(until, self._refused.get(user, 0.0))
        if len(self._refused) > 100_000:  # bounded: the expired ones go first
            now = self.authenticator.clock.seconds() if self.authenticator else 0.0
            self._refused = {u: t for u, t in self._refused.items() if t > now}

    def _notRefused(self, identity: Identity) -> Identity:
        until = self._refused.get(identity.user)
        if until is not None and self.authenticator is not None:
            now = self.authenticator.clock.seconds()
            if now < until:
                raise Forbidden(f"refused by the server for {until - now:.0f} more seconds")
            del self._refused[identity.user]
        return identity

    def connect(self, identity: Identity | None, address: str) -> Deferred[Identity | None]:
        """The application's connect rule for C{identity}; @return: C{identity} if allowed."""
        if self.authorization is None:
            return succeed(identity)
        principal = principalOf(identity, identity.nick if identity else "", address)
        return self.authorization.connect(principal).addCallback(lambda _: identity)

    def deadline(self, identity: Identity) -> float:
        """When a connection of C{identity} closes (4001) unless it refreshes its token."""
        assert self.authenticator is not None
        return self.authenticator.rules.deadline(identity)

    def join(
        self, identity: Identity | None, nick: str, address: str, room: str
    ) -> Deferred[None] | None:
        """
        Whether a connection (C{identity}, or anonymous; C{nick}; C{address}) may join
        C{room}: the token's grants (raise L{Forbidden}), then the application's rule (a
        Deferred), or C{None} at once when there is no rule: then no L{Principal} is made.
        """
        if identity is not None and not identity.mayJoin(room):
            raise Forbidden(f"your token does not allow joining {room}")
        if self.authorization is None:
            return None
        return self.authorization.join(principalOf(identity, nick, address), room)

    def publish(
        self, identity: Identity | None, nick: str, address: str, room: str, text: str
    ) -> Deferred[str] | None:
        """
        Whether a connection may say C{text} in C{room}: the token's grants, then the
        application's rule, whose Deferred fires with the text to publish (a rewrite, or
        C{text}); C{None} at once when there is no rule (the path of every say of a chat
        without one: nothing is allocated for it).
        """
        if identity is not None and not identity.mayPublish(room):
            raise Forbidden(f"your token does not allow saying anything in {room}")
        if self.authorization is None:
            return None
        return self.authorization.publish(principalOf(identity, nick, address), room, text)


def principalOf(identity: Identity | None, nick: str, address: str) -> Principal:
    """The L{Principal} a policy is asked about: the user (if any), nick and address."""
    return Principal(
        user=identity.user if identity is not None else None,
        nick=nick,
        address=address,
        identity=identity,
    )
