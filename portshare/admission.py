"""
Who opens a chat connection, decided before the connection is switched or streamed: the
token of a WebSocket, line-protocol or SSE handshake, checked once for every front end.

L{Admitted} wraps the resource of such a handshake (C{/ws}, C{/sse}).  With C{--auth off} and
no connect rule of the application it is not there at all (with one, it asks it, reading no
token).  Otherwise it reads the token (C{Authorization: Bearer T}, or the token
cookie an application on the same origin set at login: the browser sends it with the
WebSocket handshake, which is the one-port advantage), asks L{portshare.users.Gatekeeper},
and then lets the wrapped resource answer, with the identity at hand (L{identityOf}); a bad
token is a JSON 401, the application's refusal a 403, keys or hooks out of reach a 503.  A
check that takes time (a JWKS fetch, an HTTP hook) holds the request: twisted.web has paused
reading the connection while the resource answers, so nothing is lost meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request

from portshare.errors import Forbidden, PortshareError, Unauthorized, Unavailable
from portshare.httpjson import writeError
from portshare.identity import Identity, bearerToken
from portshare.origins import OriginPolicy
from portshare.proxies import Network, clientHost, describeAddress
from portshare.users import Gatekeeper

#: where the identity of an admitted request is kept on the request
_IDENTITY = "portshareIdentity"
_ADDRESS = "portshareAddress"


def identityOf(request: Request) -> Identity | None:
    """The identity L{Admitted} found for C{request}, or C{None}: anonymous."""
    return getattr(request, _IDENTITY, None)


def addressOf(request: Request, trusted: Sequence[Network] = ()) -> str:
    """The client's address (through C{trusted} proxies' C{X-Forwarded-For})."""
    found = getattr(request, _ADDRESS, None)
    if found is not None:
        return str(found)
    peer = describeAddress(request.getClientAddress())[0]
    forwarded = request.requestHeaders.getRawHeaders(b"x-forwarded-for", [])
    return clientHost(peer, [v.decode("latin-1") for v in forwarded], trusted)


def requestToken(request: Request, cookie: str) -> str | None:
    """The token a request presents: its bearer token, else its token cookie."""
    token = bearerToken(request.getHeader(b"authorization"))
    if token is not None:
        return token
    value = request.getCookie(cookie.encode("ascii"))
    if not value:
        return None
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        return "\ufffd"  # not a token: refused as one


class Admitted(Resource):
    """
    C{resource}, answered only for requests the gatekeeper admits.

    @param needsIdentity: refuse (401) an anonymous request when tokens are required, for a
        front end that cannot send an C{auth} message later (SSE reads only).
    @param origins: the browser origins allowed (the page's own, C{--allowed-origin}): a
        token I{cookie} from a page on any other origin is refused (403).  A browser sends
        its cookies with a cross-site WebSocket or C{EventSource} request, so without this
        check any page on the web could connect as the user who is logged in to the
        application (cross-site WebSocket hijacking); a Bearer token, which another page
        cannot know, needs no such check.
    """

    log = Logger()

    def __init__(
        self,
        resource: IResource,
        gate: Gatekeeper,
        trustedProxies: Sequence[Network] = (),
        needsIdentity: bool = False,
        origins: OriginPolicy | None = None,
    ) -> None:
        super().__init__()
        self.origins = origins
        self.resource = resource
        self.gate = gate
        self.trustedProxies = tuple(trustedProxies)
        self.needsIdentity = needsIdentity
        self.isLeaf = bool(getattr(resource, "isLeaf", False))

    def getChildWithDefault(self, path: bytes, request: Request) -> IResource:
        return self.resource.getChildWithDefault(path, request)  # (/ws/echo: not a chat)

    def render(self, request: Request) -> Any:
        address = addressOf(request, self.trustedProxies)
        setattr(request, _ADDRESS, address)
        token = requestToken(request, self.gate.tokenCookie) if self.gate.usesTokens else None
        if token is not None and self.origins is not None:
            fromCookie = bearerToken(request.getHeader(b"authorization")) is None
            refused = self._crossSite(request) if fromCookie else None
            if refused is not None:
                return self._answer(
                    request, Failure(Forbidden(f"{refused}: the token cookie is refused"))
                )
        if self.needsIdentity and token is None and self.gate.waitsForAuth(None):
            return self._answer(
                request,
                Failure(Unauthorized("this stream needs a token: Authorization or cookie")),
            )
        d = self.gate.admit(token, address)
        # the outcome (the identity, or the Failure) is kept here and the Deferred's result
        # consumed: what runs after it must read the outcome from here, never the Deferred's
        # result (None after list.append), or a later refusal would let the client in
        outcome: list[Any] = []
        d.addBoth(outcome.append)
        if outcome:  # decided at once (a key in hand, no hook)
            return self._answer(request, outcome[0])
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def decided(_: object) -> None:
            if gone:
                return  # the client went away meanwhile
            body = self._answer(request, outcome[0])
            if body is not NOT_DONE_YET:
                request.write(body)
                request.finish()

        d.addCallback(decided)
        d.addErrback(lambda f: self.log.failure("admitting a chat connection", f))
        return NOT_DONE_YET

    def _crossSite(self, request: Request) -> str | None:
        """Why the page that sent C{request} may not present the token cookie, or C{None}."""
        assert self.origins is not None
        header = request.getHeader
        values = [header(b"origin"), header(b"sec-fetch-site"), header(b"host")]
        origin, fetchSite, host = (None if v is None else v.decode("latin-1") for v in values)
        return self.origins.refusesWrite(origin, fetchSite, host)

    def _answer(self, request: Request, outcome: Any) -> Any:
        if isinstance(outcome, Failure):
            error = outcome.value
            if not isinstance(error, PortshareError):
                self.log.failure("checking a token", outcome)
                error = Unavailable("the token could not be checked")
            if isinstance(error, Unauthorized):
                request.setHeader(b"www-authenticate", b'Bearer realm="portshare"')
            self.log.info(
                "{address} refused at the handshake ({code}): {reason}",
                address=getattr(request, _ADDRESS, "?"),
                code=error.code,
                reason=error.reason,
            )
            return writeError(request, error)
        setattr(request, _IDENTITY, outcome)
        return self.resource.render(request)
