"""
The HTTP API under C{/api}: rooms, history, publishing, and the live connections view.

Every answer is JSON; every refusal is C{{"error": CODE, "reason": TEXT}} with its status
(see L{portshare.errors}), never an HTML page or a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

from portshare import errors
from portshare.admission import requestToken
from portshare.apiguard import SAFE_METHODS, ApiPolicy, ApiResource
from portshare.errors import BadRequest
from portshare.httpjson import (
    ErrorResource,
    JsonResource,
    answerLater,
    notFound,
    queryInt,
    readJsonBody,
    writeJson,
)
from portshare.hub import Hub
from portshare.identity import bearerToken
from portshare.serverapi import (
    BroadcastResource,
    MembersResource,
    UsersResource,
    optionalUser,
)
from portshare.wire import validNick, validRoom, validText

__all__ = ["SAFE_METHODS", "ApiPolicy", "ApiResource", "buildApi"]


def readerChecked(request: Request, hub: Hub, guard: ApiPolicy, room: str | None) -> Deferred[None]:
    """
    Who may read rooms (their history, C{room}; the room list, C{None}) over HTTP.

    Open, as in version 1 (unless rooms are private: L{ApiPolicy.checkRead}), except with
    C{--auth required}, where the chat is for users only: reading needs the API token or a
    user's token (C{Authorization: Bearer}, or the token cookie) whose C{rooms} grant lets it
    join C{room}; without one it is 401, as a handshake would be.
    """
    if not hub.gate.waitsForAuth(None):
        guard.checkRead(request)
        return succeed(None)
    token = requestToken(request, hub.gate.tokenCookie)
    if token is not None and guard.isApiToken(token):
        return succeed(None)

    def granted(identity: Any) -> None:
        if room is not None and not identity.mayJoin(room):
            raise errors.Forbidden(f"your token does not allow reading {room}")

    def refused(failure: Failure) -> Failure:
        if isinstance(failure.value, errors.Unauthorized):
            request.setHeader(b"www-authenticate", b'Bearer realm="portshare"')
        return failure

    if token is None:
        d: Deferred[Any] = fail(errors.Unauthorized("--auth required: read with a token"))
    else:
        d = hub.gate.authenticate(token).addCallback(granted)
    return d.addErrback(refused)


class MessagesResource(ApiResource):
    """C{/api/rooms/{room}/messages}: history (GET) and publishing (POST)."""

    isLeaf = True

    def __init__(self, hub: Hub, guard: ApiPolicy, room: str) -> None:
        super().__init__(guard)
        self.hub = hub
        self.room = room

    def render_GET(self, request: Request) -> int:
        limits = self.hub.limits
        since = queryInt(request, "since", 0)
        limit = min(queryInt(request, "limit", limits.historyPageLimit), limits.historyPageLimit)
        room, hub = self.room, self.hub
        d: Deferred[Any] = readerChecked(request, hub, self.guard, room)
        d.addCallback(lambda _: hub.history(room, since, limit))
        d.addCallback(
            lambda result: {
                "room": room,
                "epoch": result[0],
                "messages": [m.toDict() for m in result[1]],
            }
        )
        return answerLater(request, d)

    def render_POST(self, request: Request) -> int:
        gate = self.hub.gate
        token = bearerToken(request.getHeader(b"authorization"))
        if gate.usesTokens and (token is None or not self.guard.isApiToken(token)):
            # a user's own token: Bearer, or the cookie of the application's pages (a write
            # from another origin was refused already: ApiResource.admit)
            token = token or requestToken(request, gate.tokenCookie)
            if token is not None:
                return self._publishAsUser(request, token)
        self.guard.check(request)
        self.guard.checkRate(request)
        body = readJsonBody(request, self.hub.limits.maxBody)
        nick = validNick(body.get("nick"))
        text = validText(body.get("text"), self.hub.limits.maxText)
        user = optionalUser(body)
        if user is not None and self.guard.token is None:
            raise errors.Forbidden("publishing on behalf of a user needs --api-token")
        if gate.waitsForAuth(None) and self.guard.token is None:
            raise errors.Unauthorized("--auth required: publish with a user's token")
        d = self.hub.publish(self.room, nick, text, user=user)
        d.addCallback(lambda message: {"offset": message.offset})
        return answerLater(request, d, status=201)

    def _publishAsUser(self, request: Request, token: str) -> int:
        """A user's token on the request: published as that user, by the chat's rules."""
        self.guard.checkRate(request)
        body = readJsonBody(request, self.hub.limits.maxBody)
        text = validText(body.get("text"), self.hub.limits.maxText)
        room, hub = self.room, self.hub
        address = self.guard.clientHost(request)

        def authenticated(identity: Any) -> Any:
            # the token's grants, the rules
            check = hub.gate.publish(identity, identity.nick, address, room, text)
            said = check if check is not None else None
            if said is None:
                return hub.publish(room, identity.nick, text, user=identity.user)
            return said.addCallback(
                lambda allowed: hub.publish(room, identity.nick, allowed, user=identity.user)
            )

        def refused(failure: Failure) -> Failure:
            if isinstance(failure.value, errors.Unauthorized):
                # as every 401 of the service: the client is told which scheme to use
                request.setHeader(b"www-authenticate", b'Bearer realm="portshare"')
            return failure

        d = hub.gate.authenticate(token).addCallback(authenticated)
        d.addErrback(refused)
        d.addCallback(lambda message: {"offset": message.offset})
        return answerLater(request, d, status=201)


class RoomResource(ApiResource):
    """C{/api/rooms/{room}}: its C{messages} (the chat's API) and C{members} (the server
    API's) children."""

    def __init__(
        self, hub: Hub, guard: ApiPolicy, room: str, chat: bool = True, server: bool = True
    ) -> None:
        super().__init__(guard)
        self.hub = hub
        self.room = room
        self.withChat = chat
        self.withServer = server

    def getChild(self, path: bytes, request: Request) -> IResource:
        if path == b"messages" and self.withChat:
            return MessagesResource(self.hub, self.guard, self.room)
        if path == b"members" and self.withServer:
            return MembersResource(self.hub, self.guard, self.room)
        return notFound()


class RoomsResource(ApiResource):
    """C{/api/rooms}: the rooms this service knows, with members and last offset."""

    def __init__(self, hub: Hub, guard: ApiPolicy, chat: bool = True, server: bool = True) -> None:
        super().__init__(guard)
        self.hub = hub
        self.withChat = chat
        self.withServer = server

    def methods(self) -> list[str]:
        return super().methods() if self.withChat else []

    def render_GET(self, request: Request) -> int:
        d: Deferred[Any] = readerChecked(request, self.hub, self.guard, None)
        d.addCallback(lambda _: self.hub.rooms())
        d.addCallback(lambda rooms: {"rooms": [info.toDict() for info in rooms]})
        return answerLater(request, d)

    def getChild(self, path: bytes, request: Request) -> IResource:
        try:
            room = validRoom(path.decode("utf-8"))
        except (UnicodeDecodeError, BadRequest) as e:
            reason = e.reason if isinstance(e, BadRequest) else "room must be UTF-8"
            return ErrorResource(BadRequest(reason))
        return RoomResource(self.hub, self.guard, room, chat=self.withChat, server=self.withServer)


class ConnectionsResource(ApiResource):
    """C{/api/connections}: one row per TCP connection on the shared port."""

    isLeaf = True

    def __init__(
        self,
        rows: Callable[[], list[dict[str, Any]]],
        listening: Callable[[], list[str]],
        guard: ApiPolicy,
    ) -> None:
        super().__init__(guard)
        self.rows = rows
        self.listening = listening

    def render_GET(self, request: Request) -> bytes:
        self.guard.check(request)
        return writeJson(request, 200, {"connections": self.rows(), "listening": self.listening()})


def buildApi(
    hub: Hub,
    guard: ApiPolicy,
    connections: ConnectionsResource | None,
    public: bool = True,
    server: bool = True,
) -> Resource:
    """
    An C{/api} subtree: the chat's API (C{public}: rooms, history, publishing), the server
    API (C{server}: users, members, broadcast; L{portshare.serverapi}) and the connections
    view (when given).  The public ports get the first two unless the admin endpoint has the
    server API alone; the admin endpoint gets the server API and the connections view.
    """
    api = JsonResource()
    if public or server:
        api.putChild(b"rooms", RoomsResource(hub, guard, chat=public, server=server))
    if server:
        api.putChild(b"users", UsersResource(hub, guard))
        api.putChild(b"broadcast", BroadcastResource(hub, guard))
    if connections is not None:
        api.putChild(b"connections", connections)
    return api
