"""
Who may use the HTTP API, and how often: the API token, the origin of a browser's writes
(cross-site request forgery), the publish rate per client address.  Shared by the chat's
API (L{portshare.api}) and the server API (L{portshare.serverapi}).
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet.interfaces import IReactorTime
from twisted.web.server import Request

from portshare import errors
from portshare.auth import sameSecret
from portshare.chat import KeyedBuckets
from portshare.errors import PortshareError
from portshare.httpjson import JsonResource
from portshare.origins import OriginPolicy
from portshare.proxies import Network, clientHost, describeAddress

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

    def isApiToken(self, token: str) -> bool:
        """Whether C{token} is the configured API token (compared in constant time)."""
        return self.token is not None and sameSecret(token, self.token)

    def checkServer(self, request: Request) -> None:
        """
        The server API: always the API token; with none configured it is refused, never
        open (it disconnects users and speaks for them).
        """
        if self.token is None:
            raise errors.Forbidden("the server API needs --api-token")
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
