"""
The service: one hub, one tree, one site, served on every configured endpoint.

Start order: the broker, then the WebSocket factories, then the listeners.  Stop order, for
a graceful shutdown: report unhealthy, stop listening, close every WebSocket with 1001 and
wait for them (at most C{shutdownTimeout}, then abort the stragglers), stop the factories,
and stop the broker last so that it can flush.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IAddress, IListeningPort, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from portshare import errors
from portshare.api import ApiPolicy, ConnectionsResource, buildApi
from portshare.apps import AppSpec, MountedApp, mountApp
from portshare.auth import JoinTokens
from portshare.backpressure import CLOSE, POLICIES
from portshare.broker import IBroker, buildBroker
from portshare.broker.url import parseBrokerURL
from portshare.chat import KeyedBuckets
from portshare.connections import BehindProxy, TrackingFactory
from portshare.echo import buildEchoFactory
from portshare.hub import Hub, IMember
from portshare.limits import Limits
from portshare.lines import TOKEN as LINES
from portshare.lines import LinesFactory
from portshare.metrics import Metrics, autobahnNvx
from portshare.origins import OriginPolicy
from portshare.proxies import Network, describeAddress
from portshare.site import buildSite
from portshare.sse import SseResource
from portshare.upgrade import UpgradeDispatcher
from portshare.users import AUTH_MODES, AUTH_OFF, DEFAULT_TOKEN_COOKIE, Gatekeeper
from portshare.web import buildAdminTree, buildTree, chatPrefixSegments, placeChat
from portshare.ws import buildChatFactory, closeWithCode, isWebSocket, plainFramesWarning


def isProxied(description: str) -> bool:
    """Whether an endpoint string is behind the PROXY protocol (C{haproxy:tcp:8080})."""
    return description.split(":", 1)[0].lower() == "haproxy"


def formatAddress(address: IAddress, secure: bool = False) -> str:
    """
    C{tcp:127.0.0.1:8080}, C{tcp6:[::1]:8080}, C{ssl:127.0.0.1:8443} or C{unix:/path}: what
    C{tcp:0} became, in the form the log and C{/api/connections} show.
    """
    host, port = describeAddress(address)
    if port is None:
        return f"unix:{host}"
    kind = "ssl" if secure else "tcp"
    if ":" in host:
        return f"{kind}6:[{host}]:{port}" if not secure else f"ssl:[{host}]:{port}"
    return f"{kind}:{host}:{port}"


class ListeningService(Service):
    """
    Listens on one endpoint while running and logs the address actually bound.

    A port that cannot be bound fails the start (so C{twistd} exits with the reason)
    instead of being logged and forgotten.
    """

    log = Logger()

    def __init__(
        self,
        description: str,
        endpoint: IStreamServerEndpoint,
        factory: Any,
        listening: list[str],
        admin: bool = False,
    ) -> None:
        self.description = description
        self.admin = admin
        self.endpoint = endpoint
        self.factory = factory
        self.port: IListeningPort | None = None
        self.address: str | None = None
        self._listening = listening
        self.secure = description.split(":", 1)[0].lower() in ("ssl", "tls")
        self._waiting: Deferred[IListeningPort] | None = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._waiting = self.endpoint.listen(self.factory)
        problems: list[Failure] = []
        self._waiting.addCallbacks(self._bound, problems.append)
        if problems:
            problems[0].raiseException()

    def _bound(self, port: IListeningPort) -> None:
        self.port = port
        self.address = address = formatAddress(port.getHost(), self.secure)
        self._listening.append(address)
        if self.admin:
            self.log.info("admin endpoint on {address}", address=address, endpoint=self.description)
        else:
            self.log.info("listening on {address}", address=address, endpoint=self.description)

    def startService(self) -> None:
        super().startService()
        if self._waiting is None:
            self.privilegedStartService()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        waiting, self._waiting = self._waiting, None
        if waiting is not None and self.port is None:
            waiting.cancel()
        port, self.port = self.port, None
        if port is None:
            return succeed(None)
        self._listening[:] = [a for a in self._listening if a != self.address]
        return maybeDeferred(port.stopListening)  # type: ignore[call-overload]


@dataclass
class Settings:
    """
    Everything C{twistd portshare} can be told (see L{portshare.tap.Options}), but its
    process-wide C{--workers} and C{--log-format}: the fields are the options' names in
    camelCase, with the same defaults and the same checks.

    @raise ValueError: a field out of its range, naming the field.
    """

    #: endpoint strings to listen on; none: the chat is served only where its resource is
    #: mounted (L{portshare.Chat.resource}); C{twistd portshare} defaults to C{tcp:8080}
    ports: Sequence[str] = ()
    limits: Limits = field(default_factory=Limits)
    echo: bool = False
    allowedOrigins: Sequence[str] = ()
    apiToken: str | None = None
    joinSecret: bytes | None = None
    staticDir: Path | None = None
    shutdownTimeout: float = 5.0
    #: C{memory}, or the Redis URL that several instances share (see L{buildBroker})
    broker: str = "memory"
    trustedProxies: Sequence[Network] = ()
    slowConsumerPolicy: str = CLOSE
    # -- your application on the same port (issue 14; portshare.apps) --
    #: the application for every path portshare does not serve itself (--wsgi, --resource,
    #: --proxy), or None
    app: AppSpec | None = None
    #: where the chat's own paths go (--chat-prefix); None: the root without an app, /chat
    #: with one (see portshare.web.chatPrefixSegments)
    chatPrefix: str | None = None
    # -- operators (issue 15) --
    #: endpoint strings of the admin listener (--admin-port): /healthz, /metrics and
    #: /api/connections on their own connection cap (Limits.adminMaxConnections)
    adminPorts: Sequence[str] = ()
    #: with adminPorts, keep those paths on the public ports too (--admin-paths-public)
    adminPathsPublic: bool = False
    # -- users and the application's rules (issue 15; portshare.users) --
    #: off (anonymous chat, the default), optional or required (--auth)
    auth: str = AUTH_OFF
    #: seconds a connection without a token has to send auth, with auth required
    authTimeout: float = 5.0
    #: the HMAC secret that signs users' tokens (--jwt-secret-file's content)
    jwtSecret: bytes | None = None
    #: the PEM public key (RSA, EC, Ed25519) that checks users' tokens (--jwt-public-key-file)
    jwtPublicKey: bytes | None = None
    #: the URL of the key set (JWKS) that checks users' tokens (--jwks-url)
    jwksUrl: str | None = None
    #: the aud a token must carry (--jwt-audience), and the iss (--jwt-issuer)
    jwtAudience: str | None = None
    jwtIssuer: str | None = None
    #: seconds of clock difference allowed for exp and nbf (--jwt-leeway)
    jwtLeeway: float = 0.0
    #: the cookie a browser presents its token in (--token-cookie)
    tokenCookie: str = DEFAULT_TOKEN_COOKIE
    #: the application's backend asked about connects, joins and says (--hook-url)
    hookUrl: str | None = None
    hookTimeout: float = 2.0
    hookMaxInFlight: int = 64
    #: allow what the hook could not decide (--hook-fail-open); default: refuse it
    hookFailOpen: bool = False
    #: seconds a hook's answer to a join is kept (--hook-join-cache); 0: never
    hookJoinCache: float = 0.0
    #: headers sent with every hook call (--hook-header-file: "Name: value" lines), so that
    #: the backend can tell portshare's calls from anyone else's
    hookHeaders: Mapping[str, str] = field(default_factory=dict)
    #: an in-process policy (L{portshare.IPolicy}), asked before the hook: Python only
    policy: Any = None

    def __post_init__(self) -> None:
        for name, descriptions in (("ports", self.ports), ("adminPorts", self.adminPorts)):
            for description in descriptions:
                try:
                    serverFromString(None, description)
                except Exception as e:
                    raise ValueError(
                        f"{name}: {description!r} is not a valid endpoint: {e}"
                    ) from None
        if self.adminPathsPublic and not self.adminPorts:
            raise ValueError("adminPathsPublic needs adminPorts")
        if self.shutdownTimeout < 0:
            raise ValueError("shutdownTimeout must be 0 or more")
        if self.slowConsumerPolicy not in POLICIES:
            raise ValueError(f"slowConsumerPolicy must be one of {', '.join(POLICIES)}")
        if self.staticDir is not None and not Path(self.staticDir).is_dir():
            raise ValueError(f"staticDir {str(self.staticDir)!r} is not a directory")
        if self.apiToken is not None and len(self.apiToken) < 16:
            raise ValueError("the API token must be at least 16 characters")
        if self.joinSecret is not None and len(self.joinSecret) < 16:
            raise ValueError("the join secret must be at least 16 bytes")
        chatPrefixSegments(self.chatPrefix, self.app is not None)
        parseBrokerURL(self.broker)
        if self.auth not in AUTH_MODES:
            raise ValueError(f"auth must be one of {', '.join(AUTH_MODES)}, not {self.auth!r}")
        keys = [k for k in ("jwtSecret", "jwtPublicKey", "jwksUrl") if getattr(self, k)]
        if len(keys) > 1:
            raise ValueError(f"give one of jwtSecret, jwtPublicKey and jwksUrl, not {keys}")
        if self.auth != AUTH_OFF and not keys:
            raise ValueError(f"auth {self.auth} needs jwtSecret, jwtPublicKey or jwksUrl")
        # (not "<= 0" alone: NaN passes every comparison, and a NaN or infinite timeout
        # would leave a silent connection or a hook call waiting for ever)
        for name in ("authTimeout", "hookTimeout"):
            if not 0 < getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be a positive number of seconds")
        for name in ("jwtLeeway", "hookJoinCache"):
            if not 0 <= getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be 0 or more seconds")
        if self.hookMaxInFlight < 1:
            raise ValueError("hookMaxInFlight must be 1 or more")
        if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}", self.tokenCookie):
            raise ValueError(f"tokenCookie {self.tokenCookie!r} is not a cookie name")
        if self.hookUrl is not None and not re.match(r"https?://[^/\s]+", self.hookUrl):
            raise ValueError(f"hookUrl {self.hookUrl!r} must be an http:// or https:// URL")
        if self.jwksUrl is not None and not re.match(r"https?://[^/\s]+", self.jwksUrl):
            raise ValueError(f"jwksUrl {self.jwksUrl!r} must be an http:// or https:// URL")


class PortshareService(MultiService):
    """
    The whole portshare service of one process.

    @ivar hub: the chat application.
    @ivar site: the twisted.web site of the one tree.
    @ivar tracker: the factory the endpoints listen with (the site, wrapped to list
        connections).
    @ivar listening: the addresses bound right now.
    """

    log = Logger()

    def __init__(
        self,
        settings: Settings,
        reactor: Any,
        broker: IBroker | None = None,
        http: Any = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.reactor = reactor
        limits = settings.limits
        self.metrics = Metrics()
        self.broker: IBroker = broker or buildBroker(
            settings.broker, reactor, limits.history, limits.maxRooms
        )
        #: the HTTP client of the JWKS fetches and the hook calls (closed at stop)
        self._httpPool: Any = None
        self.gate = self._buildGate(settings, reactor, http)
        self.hub = Hub(
            self.broker,
            reactor,
            limits,
            self.metrics,
            joinTokens=JoinTokens(settings.joinSecret) if settings.joinSecret else None,
            gate=self.gate,
        )
        #: the browser origins trusted by every WebSocket endpoint and the API's writes
        self.origins = OriginPolicy(tuple(settings.allowedOrigins))
        self.chatFactory = buildChatFactory(limits, reactor, self.origins, hub=self.hub)
        self.echoFactory = (
            buildEchoFactory(limits, reactor, self.origins) if settings.echo else None
        )
        self.chatFactory.slowPolicy = settings.slowConsumerPolicy
        self.stopping = False
        self.listening: list[str] = []
        guard = ApiPolicy(
            settings.apiToken,
            privateReads=settings.joinSecret is not None,
            publishRate=KeyedBuckets(limits.apiRate, limits.apiBurst),
            clock=reactor,
            trustedProxies=settings.trustedProxies,
            origins=self.origins,
        )
        connections = ConnectionsResource(
            lambda: self.tracker.rows(), lambda: list(self.listening), guard
        )
        #: whether /healthz, /metrics and /api/connections are on the public ports
        operatorsPublic = not settings.adminPorts or settings.adminPathsPublic
        #: C{/ws}'s protocol switch: register more C{Upgrade} tokens here
        self.upgrades = UpgradeDispatcher()
        self.upgrades.registerUpgrade(
            LINES, LinesFactory(self.hub, reactor, settings.slowConsumerPolicy)
        )
        self.sse = SseResource(self.hub, reactor, slowPolicy=settings.slowConsumerPolicy)
        #: the mounted application (issue 14), started and stopped with the service
        self.app: MountedApp | None = None
        if settings.app is not None:
            self.app = mountApp(
                settings.app,
                reactor,
                shutdownTimeout=settings.shutdownTimeout,
                trustedProxies=settings.trustedProxies,
            )
        #: the chat's own tree (web client, /api, /sse, /ws, /healthz, /metrics), whole
        self.chatTree = buildTree(
            api=buildApi(
                self.hub,
                guard,
                connections if operatorsPublic else None,
                server=operatorsPublic,
            ),
            operatorPaths=operatorsPublic,
            chatFactory=self.chatFactory,
            echoFactory=self.echoFactory,
            metrics=self.metrics,
            unavailableReason=self.unavailableReason,
            staticDir=settings.staticDir,
            upgrades=self.upgrades,
            sse=self.sse,
            limits=limits,
            gate=self.gate,
            trustedProxies=settings.trustedProxies,
            origins=self.origins,
        )
        #: what the endpoints serve: the chat's tree, or the chat beside the application
        self.root = placeChat(
            self.chatTree,
            settings.chatPrefix,
            self.app.resource if self.app is not None else None,
        )
        self.site = buildSite(self.root, reactor, limits, self.metrics)
        self.tracker = TrackingFactory(
            self.site,
            reactor,
            maxConnections=limits.maxConnections,
            maxPerAddress=limits.maxConnectionsPerAddress,
            requestTimeout=limits.requestTimeout,
            refused=lambda reason: self.metrics.refusedConnections.labels(reason).inc(),
            trustedProxies=settings.trustedProxies,
        )
        self.metrics.watchConnections(self.tracker.counts)
        for description in settings.ports:
            endpoint = serverFromString(reactor, description)
            factory = self.tracker if not isProxied(description) else BehindProxy(self.tracker)
            ListeningService(description, endpoint, factory, self.listening).setServiceParent(self)
        #: the admin endpoints' addresses, their tree and their own tracker (--admin-port)
        self.adminListening: list[str] = []
        self.adminRoot = buildAdminTree(
            api=buildApi(self.hub, guard, connections, public=False, server=True),
            metrics=self.metrics,
            unavailableReason=self.unavailableReason,
        )
        self.adminTracker = TrackingFactory(
            buildSite(self.adminRoot, reactor, limits, self.metrics),
            reactor,
            maxConnections=limits.adminMaxConnections,
            requestTimeout=limits.requestTimeout,
            refused=lambda reason: self.metrics.refusedConnections.labels("admin_" + reason).inc(),
            trustedProxies=settings.trustedProxies,
        )
        for description in settings.adminPorts:
            endpoint = serverFromString(reactor, description)
            admin: Any = self.adminTracker
            if isProxied(description):
                admin = BehindProxy(self.adminTracker)
            ListeningService(
                description, endpoint, admin, self.adminListening, admin=True
            ).setServiceParent(self)

    def _buildGate(self, settings: Settings, reactor: Any, http: Any) -> Gatekeeper:
        """
        Tokens and the application's rules, from the settings (L{portshare.users}).

        @param http: the HTTP client of the JWKS fetches and hook calls (a treq client), or
            C{None} for a pool of the service's own.
        """
        from portshare.policy import AllOf, Authorization

        if http is None and (settings.jwksUrl or settings.hookUrl):
            from portshare.httpclient import newHTTPClient

            http, self._httpPool = newHTTPClient(reactor, maxPerHost=settings.hookMaxInFlight)
        authenticator = None
        self._jwks: Any = None
        if settings.auth != AUTH_OFF:
            from portshare import identity, jwks

            keys: Any
            if settings.jwtSecret is not None:
                keys = identity.StaticKeys(identity.secretKeys(settings.jwtSecret))
            elif settings.jwtPublicKey is not None:
                keys = identity.StaticKeys(identity.publicKeys(settings.jwtPublicKey))
            else:
                assert settings.jwksUrl is not None
                keys = self._jwks = jwks.JWKSKeys(
                    settings.jwksUrl, clock=reactor, http=http, metrics=self.metrics
                )
            rules = identity.TokenRules(
                audience=settings.jwtAudience,
                issuer=settings.jwtIssuer,
                leeway=settings.jwtLeeway,
            )
            authenticator = identity.Authenticator(keys, rules, reactor)
        policies = [] if settings.policy is None else [settings.policy]
        if settings.hookUrl is not None:
            from portshare.hooks import HookPolicy

            policies.append(
                HookPolicy(
                    settings.hookUrl,
                    clock=reactor,
                    http=http,
                    timeout=settings.hookTimeout,
                    maxInFlight=settings.hookMaxInFlight,
                    failOpen=settings.hookFailOpen,
                    joinCacheSeconds=settings.hookJoinCache,
                    headers=settings.hookHeaders,
                    maxText=settings.limits.maxText,
                    metrics=self.metrics,
                )
            )
        authorization = None
        if policies:
            policy = policies[0] if len(policies) == 1 else AllOf(*policies)
            authorization = Authorization(policy, settings.limits.maxText)
        return Gatekeeper(
            settings.auth,
            authenticator,
            authorization,
            authTimeout=settings.authTimeout,
            tokenCookie=settings.tokenCookie,
        )

    def unavailableReason(self) -> str | None:
        """Why the service does not accept work now, or C{None} (for C{/healthz})."""
        if self.stopping:
            return "shutting down"
        return self.broker.unavailableReason

    def _factories(self) -> list[Any]:
        return [f for f in (self.chatFactory, self.echoFactory) if f is not None]

    def privilegedStartService(self) -> None:
        self.broker.start().addErrback(lambda f: self.log.failure("broker did not start", f))
        if self._jwks is not None:  # the first key set, fetched before the first handshake
            self._jwks.refresh().addErrback(lambda f: None)  # (its failure is logged there)
        for factory in self._factories():
            factory.doStart()
        super().privilegedStartService()

    def startService(self) -> None:
        nvx = autobahnNvx()
        if nvx:
            self.log.info("Autobahn's native accelerator (NVX) is active", nvx=True)
        else:
            # an sdist install without a compiler, or AUTOBAHN_USE_NVX=0: pure-Python framing
            self.log.warn(
                "Autobahn's native accelerator (NVX) is not active: WebSocket framing is "
                "slower (see docs/performance.md)",
                nvx=False,
            )
        plain = plainFramesWarning(self.chatFactory)
        if plain is not None:
            self.log.warn("{fence}", fence=plain)
        if self.app is not None:
            self.app.service.startService()  # before the listeners accept anything
        super().startService()

    def stopService(self) -> Deferred[Any]:
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        self.stopping = True
        await super().stopService()
        await self.closeWebSockets(errors.CLOSE_GOING_AWAY, "server shutting down")
        if self.app is not None:
            # the application's requests in flight are the site's too: both wait, at most
            # shutdownTimeout, side by side
            await DeferredList([self.finishRequests(), maybeDeferred(self.app.service.stopService)])
        else:
            await self.finishRequests()
        self.hub.stop()
        for factory in self._factories():
            factory.doStop()
        if self._httpPool is not None:
            await self._httpPool.closeCachedConnections()
        await self.broker.stop()

    def finishRequests(self) -> Deferred[Any]:
        """Let HTTP requests in flight finish, at most C{shutdownTimeout} seconds."""
        d = self.site.whenIdle()
        d.addTimeout(self.settings.shutdownTimeout, self.reactor, onTimeoutCancel=lambda r, t: None)
        return d

    def closeWebSockets(self, code: int, reason: str) -> Deferred[Any]:
        """
        Close every WebSocket on every endpoint with C{code}, and wait for them to go, at
        most C{shutdownTimeout} seconds; then the stragglers' sockets are aborted.
        """
        self.sse.closeAll(code, reason)  # plain HTTP responses: finished at once
        waits = []
        for tracked in self.tracker.connections():
            protocol = tracked.wrappedProtocol
            if isWebSocket(protocol):
                waits.append(tracked.notifyLost())
                closeWithCode(protocol, code, reason)
            elif tracked.upgradedTo is not None and IMember.providedBy(protocol):
                waits.append(tracked.notifyLost())  # portshare-lines
                protocol.closeWith(code, reason)
        trackedIds = {id(t) for t in self.tracker.connections()}
        for session in list(self.hub.sessions):
            member = session.member
            if id(getattr(member, "transport", None)) not in trackedIds:
                # a chat connection of another site (the chat's resource mounted in an
                # application's own tree): closed the same way, its end waited for below
                member.closeWith(code, reason)
        if len(self.hub.sessions):
            waits.append(self.hub.whenNoSessions())
        if not waits:
            return succeed(None)
        timeout = self.settings.shutdownTimeout

        def abortStragglers(result: Any) -> Any:
            for tracked in self.tracker.connections():
                if isWebSocket(tracked.wrappedProtocol) or tracked.upgradedTo:
                    tracked.transport.abortConnection()  # type: ignore[union-attr]
            return result

        d = DeferredList(waits, consumeErrors=True)  # cancelled at the timeout: no error
        d.addTimeout(timeout, self.reactor, onTimeoutCancel=lambda r, t: None)
        d.addBoth(abortStragglers)
        return d
