"""
The HTTP API under C{/api}: rooms, history, publishing, and the live connections view.

Every answer is JSON; every refusal is C{{"error": CODE, "reason": TEXT}} with its status
(see L{portshare.errors}), never an HTML page or a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

from portshare import errors
from portshare.auth import sameSecret
from portshare.chat import KeyedBuckets
from portshare.errors import BadRequest, PortshareError
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
from portshare.origins import OriginPolicy
from portshare.proxies import Network, clientHost, describeAddress
from portshare.wire import validNick, validRoom, validText

#: methods that change nothing, which a cross-site page may send (CORS lets it read nothing)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ApiResource(JsonResource):
    """
    A resource of the API proper, with its L{ApiPolicy}: every state-changing request
    (C{POST}, C{PUT}, C{PATCH}, C{DELETE}) from a browser page on an origin that is not
    allowed is refused with 403 before it is read (cross-site request forgery), whatever
    token it carries.
    """

    def __init__(self, guard: ApiPolicy) -> None:
        super().__init__()
        self.guard = guard

    def admit(self, request: Request, method: str) -> None:
        super().admit(request, method)
        if method not in SAFE_METHODS:
            self.guard.checkOrigin(request)


class ApiPolicy:
    """
    Who may do what on the API, and how often.


    The API token check: with no token configured everything passes; otherwise requests need
    C{Authorization: Bearer TOKEN} (401 when absent, 403 when wrong).  With
    C{privateReads} (join tokens required on the socket) reading rooms needs it too.
    """

    def __init__(
        self,
        token: str | None,
        privateReads: bool = False,
        publishRate: KeyedBuckets | None = None,
        clock: IReactorTime | None = None,
        trustedProxies: Sequence[Network] = (),
        origins: OriginPolicy | None = None,
    ) -> None:
        self.trustedProxies = tuple(trustedProxies)
        #: the browser origins allowed to write (the page's own, and C{--allowed-origin})
        self.origins = origins or OriginPolicy()
        self.token = token
        self.privateReads = privateReads
        self.publishRate = publishRate
        self.clock = clock

    def checkRate(self, request: Request) -> None:
        """
        Publishing is rate limited per client address (429 with Retry-After beyond).
        """
        if self.publishRate is None or self.clock is None:
            return
        host = self.clientHost(request)
        if not self.publishRate.take(host, self.clock.seconds()):
            request.setHeader(b"retry-after", b"1")
            raise errors.RateLimited(
                f"more than {self.publishRate.rate:g} messages per second from {host}"
            )

    def clientHost(self, request: Request) -> str:
        """The client's address, through trusted proxies' C{X-Forwarded-For}."""
        peer = describeAddress(request.getClientAddress())[0]
        forwarded = request.requestHeaders.getRawHeaders(b"x-forwarded-for", [])
        return clientHost(peer, [v.decode("latin-1") for v in forwarded], self.trustedProxies)

    def checkOrigin(self, request: Request) -> None:
        """
        A write from a browser page must come from the page's own origin or an allowed one
        (C{Origin}, or C{Sec-Fetch-Site} when a browser sends no C{Origin}).

        @raise Forbidden: for a page on another origin (and for C{Origin: null}).
        """
        header = request.getHeader
        origin, fetchSite, host = (
            header(b"origin"),
            header(b"sec-fetch-site"),
            header(b"host"),
        )
        refused = self.origins.refusesWrite(
            None if origin is None else origin.decode("latin-1"),
            None if fetchSite is None else fetchSite.decode("latin-1"),
            None if host is None else host.decode("latin-1"),
        )
        if refused is not None:
            raise errors.Forbidden(refused)

    def checkRead(self, request: Request) -> None:
        """
        Reads (rooms, history) are open, unless rooms are private (join tokens required):
        then they need the API token, and are refused when none is configured.
        """
        if not self.privateReads:
            return
        if self.token is None:
            raise errors.Forbidden("rooms are private: reading them over HTTP needs --api-token")
        self.check(request)

    def check(self, request: Request) -> None:
        """
        Publishing and admin endpoints: open without a token, unless rooms are private (join
        tokens required), where they are refused when no API token is configured.
        """
        if self.token is None:
            if self.privateReads:
                raise errors.Forbidden("rooms are private: this endpoint needs --api-token")
            return
        header = (request.getHeader(b"authorization") or b"").decode("latin-1")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            request.setHeader(b"www-authenticate", b'Bearer realm="portshare"')
            raise PortshareError("this endpoint needs an API token", errors.UNAUTHORIZED)
        if not sameSecret(given.strip(), self.token):
            raise errors.Forbidden("the API token is not valid")


class MessagesResource(ApiResource):
    """C{/api/rooms/{room}/messages}: history (GET) and publishing (POST)."""

    isLeaf = True

    def __init__(self, hub: Hub, guard: ApiPolicy, room: str) -> None:
        super().__init__(guard)
        self.hub = hub
        self.room = room

    def render_GET(self, request: Request) -> int:
        self.guard.checkRead(request)
        limits = self.hub.limits
        since = queryInt(request, "since", 0)
        limit = min(queryInt(request, "limit", limits.historyPageLimit), limits.historyPageLimit)
        room = self.room
        d = self.hub.history(room, since, limit)
        d.addCallback(
            lambda result: {
                "room": room,
                "epoch": result[0],
                "messages": [m.toDict() for m in result[1]],
            }
        )
        return answerLater(request, d)

    def render_POST(self, request: Request) -> int:
        self.guard.check(request)
        self.guard.checkRate(request)
        body = readJsonBody(request, self.hub.limits.maxBody)
        nick = validNick(body.get("nick"))
        text = validText(body.get("text"), self.hub.limits.maxText)
        d = self.hub.publish(self.room, nick, text)
        d.addCallback(lambda message: {"offset": message.offset})
        return answerLater(request, d, status=201)


class RoomResource(ApiResource):
    """C{/api/rooms/{room}}: only its C{messages} child exists."""

    def __init__(self, hub: Hub, guard: ApiPolicy, room: str) -> None:
        super().__init__(guard)
        self.hub = hub
        self.room = room

    def getChild(self, path: bytes, request: Request) -> IResource:
        if path == b"messages":
            return MessagesResource(self.hub, self.guard, self.room)
        return notFound()


class RoomsResource(ApiResource):
    """C{/api/rooms}: the rooms this service knows, with members and last offset."""

    def __init__(self, hub: Hub, guard: ApiPolicy) -> None:
        super().__init__(guard)
        self.hub = hub

    def render_GET(self, request: Request) -> int:
        self.guard.checkRead(request)
        d = self.hub.rooms()
        d.addCallback(lambda rooms: {"rooms": [info.toDict() for info in rooms]})
        return answerLater(request, d)

    def getChild(self, path: bytes, request: Request) -> IResource:
        try:
            room = validRoom(path.decode("utf-8"))
        except (UnicodeDecodeError, BadRequest) as e:
            reason = e.reason if isinstance(e, BadRequest) else "room must be UTF-8"
            return ErrorResource(BadRequest(reason))
        return RoomResource(self.hub, self.guard, room)


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
    hub: Hub, guard: ApiPolicy, connections: ConnectionsResource | None, public: bool = True
) -> Resource:
    """
    The C{/api} subtree of the public ports (C{public}: rooms, history, publishing, and the
    connections view unless it is the admin endpoint's alone), or of the admin endpoint
    (the connections view).
    """
    api = JsonResource()
    if public:
        api.putChild(b"rooms", RoomsResource(hub, guard))
    if connections is not None:
        api.putChild(b"connections", connections)
    return api
