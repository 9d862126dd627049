"""
C{twistd portshare}: the command line, validated, turned into L{portshare.Chat}'s service.

This is the only module that reads options and the only one that falls back to the global
reactor (imported inside L{makeService}, as twisted's own C{strports} does).  Nothing listens
here: the service starts listening when twistd starts it.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.application.service import IService, MultiService
from twisted.internet.endpoints import serverFromString
from twisted.logger import ILogObserver, jsonFileLogObserver
from twisted.python import usage

from portshare import __version__
from portshare.apps import (
    DEFAULT_APP_PREFIX,
    AppLoadError,
    AppSpec,
    ProxyApp,
    ResourceApp,
    WsgiApp,
    loadResource,
    loadWsgi,
)
from portshare.backpressure import CLOSE, POLICIES
from portshare.broker.url import parseBrokerURL
from portshare.embedding import Chat
from portshare.limits import Limits
from portshare.proxies import parseNetworks
from portshare.proxy import parseBackend
from portshare.service import Settings
from portshare.web import chatPrefixSegments
from portshare.workers import WorkersService, checkWorkers

DEFAULT_PORT = "tcp:8080"

_INTERFACE = re.compile(r"(?<![\\\w])interface=")


def escapeIPv6(description: str) -> str | None:
    """
    An endpoint string with the IPv6 addresses of its C{interface=} written the way people
    type them (C{tcp6:8080:interface=::1}) escaped as Twisted's parser needs them
    (C{interface=\\:\\:1}), for the usage error to suggest.

    @return: the escaped string, or C{None} when it has no unescaped IPv6 interface.
    """
    pieces, last = [], 0
    for match in _INTERFACE.finditer(description):
        start = match.end()
        parts = description[start:].split(":")
        for n in range(len(parts), 1, -1):
            candidate = ":".join(parts[:n])
            try:
                ipaddress.IPv6Address(candidate)
            except ValueError:
                continue
            pieces += [description[last:start], candidate.replace(":", "\\:")]
            last = start + len(candidate)
            break
    if not pieces:
        return None
    return "".join(pieces) + description[last:]


# option name, Limits field, type, help text
_LIMIT_OPTIONS: list[tuple[str, str, type, str]] = [
    (
        "max-message-size",
        "maxMessageSize",
        int,
        "Largest WebSocket message on /ws, in bytes (bigger: close 1009).",
    ),
    ("max-text", "maxText", int, "Longest chat text, in characters (longer: error too_large)."),
    ("history", "history", int, "Messages kept per room for recovery with since."),
    ("max-rooms", "maxRooms", int, "Rooms kept in memory; idle ones are forgotten first."),
    ("rooms-per-connection", "roomsPerConnection", int, "Rooms one WebSocket may join at once."),
    ("rate", "rate", float, "Chat messages per second per connection, sustained."),
    ("burst", "burst", int, "Chat messages a connection may send at once."),
    (
        "flood-strikes",
        "floodStrikes",
        int,
        "Rate-limited messages in a row before the socket is closed with 1008.",
    ),
    ("api-rate", "apiRate", float, "Messages per second one address may POST to the API."),
    ("api-burst", "apiBurst", int, "Messages one address may POST to the API at once."),
    ("max-body", "maxBody", int, "Largest HTTP API request body, in bytes (bigger: 413)."),
    (
        "echo-max-message-size",
        "echoMaxMessageSize",
        int,
        "Largest message on /ws/echo, in bytes, also after inflation.",
    ),
    (
        "handshake-timeout",
        "openHandshakeTimeout",
        float,
        "Seconds a client has to finish the WebSocket handshake.",
    ),
    ("ping-interval", "pingInterval", float, "Seconds between keepalive pings."),
    ("ping-timeout", "pingTimeout", float, "Seconds a pong may take before the socket is dropped."),
    ("max-connections", "maxConnections", int, "Open connections on all endpoints together."),
    (
        "max-connections-per-address",
        "maxConnectionsPerAddress",
        int,
        "Open connections from one client address.",
    ),
    (
        "admin-max-connections",
        "adminMaxConnections",
        int,
        "Open connections on the --admin-port endpoints together (their own cap).",
    ),
    (
        "request-timeout",
        "requestTimeout",
        float,
        "Seconds a new connection has to send its first complete request (slowloris).",
    ),
    (
        "http-idle-timeout",
        "httpIdleTimeout",
        float,
        "Seconds an idle keep-alive connection is kept.",
    ),
    ("max-headers", "maxHeaders", int, "Headers per HTTP request (more: 431)."),
    (
        "max-header-bytes",
        "maxHeaderBytes",
        int,
        "Bytes of request line and headers (more: 431; a longer request line: 414).",
    ),
    (
        "max-concurrent-streams",
        "maxConcurrentStreams",
        int,
        "HTTP/2 streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).",
    ),
    (
        "slow-consumer-bytes",
        "slowConsumerBytes",
        int,
        "Bytes queued for a WebSocket beyond its socket buffer before it is too slow.",
    ),
    (
        "slow-consumer-seconds",
        "slowConsumerSeconds",
        float,
        "Seconds a WebSocket's socket may stay full before it is too slow.",
    ),
    (
        "presence-cap",
        "presenceMembersCap",
        int,
        "Most nicks listed in a joined reply (count has them all), and in each list of a "
        "presence_batch.",
    ),
    (
        "presence-batch-above",
        "presenceBatchAbove",
        int,
        "Rooms with more members on this instance than this get their joins and leaves as one "
        "presence_batch per interval instead of one presence each (0: every room).",
    ),
    (
        "static-cache-file-bytes",
        "staticCacheFileBytes",
        int,
        "Largest static file answered from memory after its first request (larger ones are "
        "streamed from disk).",
    ),
    (
        "static-cache-bytes",
        "staticCacheBytes",
        int,
        "Most bytes of static files held in memory in all.",
    ),
    (
        "presence-batch-interval",
        "presenceBatchInterval",
        float,
        "Seconds a big room's joins and leaves are collected before one presence_batch is sent.",
    ),
]

_DEFAULTS = Limits()


class Options(usage.Options):
    """The options of C{twistd portshare}."""

    synopsis = "[options]"
    longdesc = (
        "Serve the portshare chat (web client, HTTP API, WebSocket /ws) on one port through one "
        "resource tree.  Every limit has a safe default; see docs/operations.md."
    )
    optFlags = [
        ["echo", None, "Enable the /ws/echo endpoint (for Autobahn testsuite runs)."],
        [
            "hook-fail-open",
            None,
            "Allow what the --hook-url backend could not decide (down, slow, a bad answer); "
            "by default it is refused.",
        ],
        [
            "admin-paths-public",
            None,
            "With --admin-port, keep /healthz, /metrics and /api/connections on the public "
            "ports too.",
        ],
    ]
    optParameters = [
        [name, None, getattr(_DEFAULTS, field), text, kind]
        for name, field, kind, text in _LIMIT_OPTIONS
    ] + [
        [
            "api-token",
            None,
            None,
            "Token required (Authorization: Bearer) to publish over HTTP and to list connections.",
        ],
        ["api-token-file", None, None, "Read the API token from this file (keeps it out of ps)."],
        [
            "join-secret-file",
            None,
            None,
            "Require signed join tokens, verified with the secret in this file.",
        ],
        [
            "slow-consumer-policy",
            None,
            CLOSE,
            "What happens to a WebSocket too slow to keep up: close (1013) or drop (its events "
            "are dropped and counted until it catches up).",
        ],
        [
            "static",
            None,
            None,
            "Serve this directory instead of the built-in web client (at /, or under "
            "--chat-prefix).",
        ],
        # -- your application on the same port (issue 14; see portshare.apps) --
        [
            "wsgi",
            None,
            None,
            "Serve this WSGI application (a dotted name: package.module.app, or "
            "package.module:app) for every path portshare does not serve itself.",
        ],
        [
            "resource",
            None,
            None,
            "Serve this twisted.web resource (a dotted name: an IResource, or a callable "
            "returning one, given the reactor if it takes an argument; klein's app.resource) "
            "for every path portshare does not serve itself.",
        ],
        [
            "proxy",
            None,
            None,
            "Relay every path portshare does not serve itself to this HTTP application, in "
            "any language: http://host:port[/base] or https://...",
        ],
        [
            "chat-prefix",
            None,
            None,
            "Where the chat's own paths (web client, /ws, /sse, /api) live, e.g. /chat; / "
            "keeps them at the root. /healthz and /metrics stay at the root. [default: / "
            f"without an application, {DEFAULT_APP_PREFIX} with --wsgi, --resource or --proxy]",
        ],
        # -- users and the application's rules (issue 15; see portshare.users) --
        [
            "auth",
            None,
            "off",
            "Users from JSON Web Tokens: off (anonymous chat), optional (a token presented is "
            "checked) or required (a connection without one must send auth first).",
        ],
        [
            "auth-timeout",
            None,
            5.0,
            "Seconds a connection without a token has to send its auth message (--auth required).",
            float,
        ],
        ["jwt-secret-file", None, None, "Check users' tokens with the HMAC secret in this file."],
        [
            "jwt-public-key-file",
            None,
            None,
            "Check users' tokens with the PEM public key (RSA, EC, Ed25519) in this file.",
        ],
        [
            "jwks-url",
            None,
            None,
            "Check users' tokens with the key set (JWKS) at this URL, fetched without blocking "
            "and cached.",
        ],
        ["jwt-audience", None, None, "The aud a user's token must carry."],
        ["jwt-issuer", None, None, "The iss a user's token must carry."],
        [
            "jwt-leeway",
            None,
            0.0,
            "Seconds of clock difference allowed for a token's exp and nbf.",
            float,
        ],
        [
            "token-cookie",
            None,
            "portshare_token",
            "The cookie a browser presents its token in (set by the application at login).",
        ],
        [
            "hook-url",
            None,
            None,
            "Ask the application's backend (POST JSON) whether a connect, join or say may "
            "happen, or how a say is rewritten.",
        ],
        ["hook-timeout", None, 2.0, "Seconds a --hook-url call may take.", float],
        [
            "hook-max-in-flight",
            None,
            64,
            "--hook-url calls waiting at once; more are refused with error unavailable.",
            int,
        ],
        [
            "hook-header-file",
            None,
            None,
            "Send the headers in this file (Name: value, one per line) with every --hook-url "
            "call, e.g. an Authorization the backend checks.",
        ],
        [
            "hook-join-cache",
            None,
            0.0,
            "Seconds a --hook-url answer to a join is kept (0: never).",
            float,
        ],
        [
            "wsgi-threads",
            None,
            10,
            "Threads running the --wsgi application at once (more requests wait).",
            int,
        ],
        [
            "proxy-connect-timeout",
            None,
            5.0,
            "Seconds the --proxy backend has to accept a connection (then 504).",
            float,
        ],
        [
            "proxy-response-timeout",
            None,
            60.0,
            "Seconds the --proxy backend has to start its answer, and then between two pieces "
            "of its body (then 504, or the response is cut).",
            float,
        ],
        [
            "log-format",
            None,
            "text",
            "Log format: text (twistd's) or json (one object per line on standard output).",
        ],
        [
            "shutdown-timeout",
            None,
            5.0,
            "Seconds to wait at shutdown for WebSockets to close, then again for HTTP "
            "requests in flight.",
            float,
        ],
        [
            "broker",
            None,
            "memory",
            "Where offsets, history and presence live: memory (this process only), or a "
            "Redis shared by several instances: redis://[:password@]host:port/db, "
            "rediss://... (TLS), unix:///path/redis.sock?db=N, or Redis Sentinel: "
            "redis+sentinel://[password@]host:26379,host:26379/master_name/db; query "
            "parameters prefix, presence_ttl, room_ttl, timeout, durable, and "
            "sentinel_password, sentinel_timeout (see docs/scaling.md).",
        ],
        [
            "workers",
            None,
            1,
            "Processes sharing the listening ports (2 or more need a shared --broker).",
            int,
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["ports"] = []
        self["admin-ports"] = []
        self["allowed-origins"] = []
        self["trusted-proxies"] = []

    def opt_port(self, description: str) -> None:
        """
        A Twisted server endpoint string to listen on (tcp:8080, tcp:0:interface=127.0.0.1,
        ssl:8443:privateKey=key.pem:certKey=cert.pem, unix:/run/portshare.sock, systemd:...).
        Repeat to serve the same tree on several endpoints. [default: tcp:8080]
        """
        self["ports"].append(description)

    opt_p = opt_port

    def opt_admin_port(self, description: str) -> None:
        """
        An endpoint string for the operators' paths (/healthz, /metrics, /api/connections),
        served on their own listener outside the public connection caps, and no longer on
        the public ports (see --admin-paths-public). Repeatable, e.g.
        tcp:9090:interface=127.0.0.1 or unix:/run/portshare-admin.sock. [default: none]
        """
        self["admin-ports"].append(description)

    def opt_allowed_origin(self, origin: str) -> None:
        """
        A browser origin allowed to open WebSockets, with * wildcards (https://*.example.com).
        Repeatable. [default: only the page's own origin]
        """
        self["allowed-origins"].append(origin)

    def opt_trusted_proxy(self, spec: str) -> None:
        """
        A reverse proxy (address or network) whose X-Forwarded-For is believed, and whose
        forwarding headers --proxy extends instead of replacing. Repeatable.
        [default: none; X-Forwarded-For is ignored]
        """
        try:
            self["trusted-proxies"].extend(parseNetworks([spec]))
        except ValueError:
            raise usage.UsageError(
                f"--trusted-proxy {spec!r} is not an address or network"
            ) from None

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        # kept so that --workers can start its workers with the same options
        self["argv"] = list(sys.argv[1:] if options is None else options)
        super().parseOptions(options)

    def opt_version(self) -> None:
        """Print the version and exit."""
        print(f"portshare {__version__}")
        sys.exit(0)

    def postOptions(self) -> None:
        if not self["ports"]:
            self["ports"] = [DEFAULT_PORT]
        for option, descriptions in (
            ("--port", self["ports"]),
            ("--admin-port", self["admin-ports"]),
        ):
            for description in descriptions:
                try:
                    serverFromString(None, description)
                except Exception as e:
                    escaped = escapeIPv6(description)
                    if escaped is not None:
                        raise usage.UsageError(
                            f"{option} {description!r} is not valid: the colons of an IPv6 "
                            f"address in an endpoint string must be escaped, type {option} "
                            f"{escaped!r}"
                        ) from None
                    raise usage.UsageError(f"{option} {description!r} is not valid: {e}") from None
        if self["admin-paths-public"] and not self["admin-ports"]:
            raise usage.UsageError("--admin-paths-public needs --admin-port")
        try:
            self["limits"] = Limits(**{field: self[name] for name, field, _, _ in _LIMIT_OPTIONS})
        except ValueError as e:
            message = str(e)
            for name, field, _, _ in _LIMIT_OPTIONS:
                message = re.sub(rf"\b{field}\b", f"--{name}", message)
            raise usage.UsageError(message) from None
        if self["shutdown-timeout"] < 0:
            raise usage.UsageError("--shutdown-timeout must be 0 or more")
        if self["slow-consumer-policy"] not in POLICIES:
            raise usage.UsageError("--slow-consumer-policy must be close or drop")
        if self["log-format"] not in ("text", "json"):
            raise usage.UsageError("--log-format must be text or json")
        if self["static"] is not None and not Path(self["static"]).is_dir():
            raise usage.UsageError(f"--static {self['static']!r} is not a directory")
        self["app"] = self._app()
        try:
            chatPrefixSegments(self["chat-prefix"], self["app"] is not None)
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        if self["api-token-file"] is not None:
            if self["api-token"] is not None:
                raise usage.UsageError("give --api-token or --api-token-file, not both")
            self["api-token"] = _readSecret(self["api-token-file"]).decode("utf-8")
        if self["api-token"] is not None and len(self["api-token"]) < 16:
            raise usage.UsageError("the API token must be at least 16 characters")
        self["join-secret"] = None
        if self["join-secret-file"] is not None:
            self["join-secret"] = _readSecret(self["join-secret-file"])
            if len(self["join-secret"]) < 16:
                raise usage.UsageError("the join secret must be at least 16 bytes")
        self["jwt-secret"] = self["jwt-public-key"] = None
        if self["jwt-secret-file"] is not None:
            self["jwt-secret"] = _readSecret(self["jwt-secret-file"])
        if self["jwt-public-key-file"] is not None:
            self["jwt-public-key"] = _readSecret(self["jwt-public-key-file"])
        self["hook-headers"] = {}
        if self["hook-header-file"] is not None:
            self["hook-headers"] = _readHeaders(self["hook-header-file"])
        try:
            self["broker-url"] = parseBrokerURL(self["broker"])
        except ValueError as e:
            raise usage.UsageError(f"--broker: {e}") from None
        self._checkUsers()
        if self["broker-url"].shared and importlib.util.find_spec("hiredis") is None:
            raise usage.UsageError(
                "--broker redis needs the redis extra: pip install 'portshare[redis]'"
            )
        try:
            checkWorkers(
                self["workers"], self["ports"] + self["admin-ports"], self["broker-url"].shared
            )
        except ValueError as e:
            raise usage.UsageError(str(e)) from None

    def _checkUsers(self) -> None:
        """
        The options of users and hooks, as one-line usage errors: the service's own checks
        (L{Settings}), on the settings these options make, naming the options.
        """
        try:
            self.settings()
        except ValueError as e:
            raise usage.UsageError(_optionNames(str(e))) from None
        if self["jwt-secret"] is not None or self["jwt-public-key"] is not None:
            from portshare import identity

            try:
                if self["jwt-secret"] is not None:
                    identity.secretKeys(self["jwt-secret"])
                else:
                    identity.publicKeys(self["jwt-public-key"])
            except ValueError as e:
                raise usage.UsageError(f"--jwt-secret-file/--jwt-public-key-file: {e}") from None

    def _app(self) -> AppSpec | None:
        """The application of --wsgi, --resource or --proxy (at most one, or --static)."""
        given = [f"--{name}" for name in ("static", "wsgi", "resource", "proxy") if self[name]]
        if len(given) > 1:
            raise usage.UsageError(
                f"give one of --static, --wsgi, --resource and --proxy, not {' and '.join(given)}"
            )
        if self["wsgi-threads"] < 1:
            raise usage.UsageError("--wsgi-threads must be positive")
        for name in ("proxy-connect-timeout", "proxy-response-timeout"):
            if self[name] <= 0:
                raise usage.UsageError(f"--{name} must be positive")
        try:
            if self["wsgi"]:
                return WsgiApp(loadWsgi(self["wsgi"]), poolSize=self["wsgi-threads"])
            if self["resource"]:
                return ResourceApp(loadResource(self["resource"]))
        except AppLoadError as e:
            raise usage.UsageError(str(e)) from None
        if self["proxy"]:
            try:
                parseBackend(self["proxy"])
            except ValueError as e:
                raise usage.UsageError(f"--proxy: {e}") from None
            return ProxyApp(
                self["proxy"],
                connectTimeout=self["proxy-connect-timeout"],
                responseTimeout=self["proxy-response-timeout"],
            )
        return None

    def settings(self) -> Settings:
        """The service's settings from the parsed options."""
        return Settings(
            ports=tuple(self["ports"]),
            limits=self["limits"],
            echo=bool(self["echo"]),
            allowedOrigins=tuple(self["allowed-origins"]),
            apiToken=self["api-token"],
            joinSecret=self["join-secret"],
            staticDir=Path(self["static"]) if self["static"] else None,
            shutdownTimeout=self["shutdown-timeout"],
            broker=self["broker"],
            trustedProxies=tuple(self["trusted-proxies"]),
            slowConsumerPolicy=self["slow-consumer-policy"],
            app=self["app"],
            chatPrefix=self["chat-prefix"],
            adminPorts=tuple(self["admin-ports"]),
            adminPathsPublic=bool(self["admin-paths-public"]),
            auth=self["auth"],
            authTimeout=self["auth-timeout"],
            jwtSecret=self["jwt-secret"],
            jwtPublicKey=self["jwt-public-key"],
            jwksUrl=self["jwks-url"],
            jwtAudience=self["jwt-audience"],
            jwtIssuer=self["jwt-issuer"],
            jwtLeeway=self["jwt-leeway"],
            tokenCookie=self["token-cookie"],
            hookUrl=self["hook-url"],
            hookTimeout=self["hook-timeout"],
            hookMaxInFlight=self["hook-max-in-flight"],
            hookFailOpen=bool(self["hook-fail-open"]),
            hookJoinCache=self["hook-join-cache"],
            hookHeaders=self["hook-headers"],
        )


#: Settings fields, as the options that set them (for the usage errors)
_FIELD_OPTIONS = {
    "authTimeout": "--auth-timeout",
    "auth": "--auth",
    "jwtSecret": "--jwt-secret-file",
    "jwtPublicKey": "--jwt-public-key-file",
    "jwksUrl": "--jwks-url",
    "jwtLeeway": "--jwt-leeway",
    "tokenCookie": "--token-cookie",
    "hookUrl": "--hook-url",
    "hookTimeout": "--hook-timeout",
    "hookMaxInFlight": "--hook-max-in-flight",
    "hookJoinCache": "--hook-join-cache",
}


_FIELDS = re.compile(
    r"(?<![-\w])(" + "|".join(sorted(_FIELD_OPTIONS, key=len, reverse=True)) + r")\b"
)


def _optionNames(message: str) -> str:
    """A Settings check's message, naming the options instead of the fields (one pass)."""
    return _FIELDS.sub(lambda m: _FIELD_OPTIONS[m.group(1)], message)


_HEADER = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}):[ \t]*([\x20-\x7e]{0,4096}?)[ \t]*")


def _readHeaders(path: str) -> dict[str, str]:
    """The headers of --hook-header-file: "Name: value" lines (blank lines and # ignored)."""
    headers: dict[str, str] = {}
    for number, line in enumerate(_readSecret(path).decode("latin-1").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _HEADER.fullmatch(line)
        if match is None:
            raise usage.UsageError(f"--hook-header-file {path}:{number}: not a Name: value header")
        name, value = match.groups()
        if name.lower() in ("content-type", "content-length", "host", "transfer-encoding"):
            raise usage.UsageError(f"--hook-header-file {path}:{number}: {name} is portshare's")
        headers[name] = value
    if len(headers) > 32:
        raise usage.UsageError(f"--hook-header-file {path}: at most 32 headers")
    return headers


def _readSecret(path: str) -> bytes:
    try:
        return Path(path).read_bytes().strip()
    except OSError as e:
        raise usage.UsageError(f"cannot read {path}: {e.strerror}") from None


class JsonLogging(MultiService):
    """A service holding the chat's, that also installs a JSON log observer on twistd's
    application (C{--log-format json}): logging belongs to the program, not to L{Chat}."""

    def setServiceParent(self, parent: Any) -> None:
        super().setServiceParent(parent)
        if hasattr(parent, "setComponent"):
            # flushed per line: twistd ends itself with the signal that stopped it, and
            # buffered records would be lost
            sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
            parent.setComponent(ILogObserver, jsonFileLogObserver(sys.stdout, recordSeparator=""))


def makeService(options: Options, reactor: Any = None) -> IService:
    """Build the service twistd runs; @param reactor: defaults to the global one."""
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        reactor = globalReactor
    if options["workers"] > 1:
        return WorkersService(
            options["ports"],
            options["workers"],
            options["argv"],
            reactor,
            options["shutdown-timeout"],
            jsonLogs=options["log-format"] == "json",
            adminPorts=options["admin-ports"],
        )
    try:
        chat = Chat(reactor, options.settings())  # the public API, as an application uses it
    except AppLoadError as e:
        # a --resource callable that needs the reactor is only called here: its wrong
        # result is still one line, not a traceback
        raise SystemExit(f"twistd portshare: {e}") from None
    if options["log-format"] != "json":
        return chat.service
    logging = JsonLogging()
    chat.service.setServiceParent(logging)
    return logging
