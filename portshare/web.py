"""
THE resource tree that every endpoint serves (the site is L{portshare.site}).

    /                 the web client (static files, or --static DIR)
    /healthz          200 while the service accepts work, 503 and a reason otherwise
    /metrics          Prometheus text exposition
    /api/...          JSON API (rooms, history, publishing, connections)
    /ws               chat WebSocket (Upgrade: websocket; 101 Switching Protocols), and the
                      chat line protocol (Upgrade: portshare-lines; see portshare.upgrade)
    /ws/echo          echo WebSocket for compliance runs (only with --echo)
    /sse              the chat as Server-Sent Events (GET /sse?room=R), for clients without
                      WebSocket
    /client.js        the JavaScript client for your own pages (docs/client.md), and under
    /client/          the modules it imports: the built-in ones, also with --static DIR

A request for C{/ws} that carries C{Upgrade: websocket} is handed, socket and all, to the
Autobahn protocol; every other request stays with twisted.web.  Same port, same tree.

With an application mounted (C{--wsgi}, C{--resource}, C{--proxy}; L{portshare.apps}) the
tree's root falls back to it, and the chat's own paths move under C{--chat-prefix}
(C{/chat} by default):

    /healthz, /metrics      stay at the root, where operators and load balancers look
    /chat/                  the web client;  /chat/api/..., /chat/ws, /chat/ws/echo, /chat/sse,
                            /chat/client.js and /chat/client/
    everything else         the application, which sees the whole path (as if it were the root)

portshare's children are found first, by the dictionary lookup twisted.web does for every
child; only a path none of them claims reaches L{AppFallback}.  The chat's paths are served
exactly as without an application.  With neither an application nor a prefix, the tree is
today's, unchanged.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.web.resource import IResource, Resource, getChildForRequest
from twisted.web.server import Request
from twisted.web.util import redirectTo

from portshare.admission import Admitted
from portshare.apps import DEFAULT_APP_PREFIX
from portshare.httpjson import notFound
from portshare.limits import Limits
from portshare.metrics import Metrics
from portshare.origins import OriginPolicy
from portshare.proxies import Network
from portshare.staticfiles import StaticCache, StaticFile, StaticFiles, builtinClient
from portshare.status import HealthResource, MetricsResource
from portshare.upgrade import UpgradeDispatcher, WebSocketEndpoint
from portshare.users import Gatekeeper


def buildTree(
    *,
    api: IResource,
    chatFactory: WebSocketServerFactory,
    echoFactory: WebSocketServerFactory | None,
    metrics: Metrics,
    unavailableReason: Callable[[], str | None],
    staticDir: Path | None = None,
    upgrades: UpgradeDispatcher | None = None,
    sse: IResource | None = None,
    limits: Limits | None = None,
    app: IResource | None = None,
    chatPrefix: str | None = None,
    operatorPaths: bool = True,
    gate: Gatekeeper | None = None,
    trustedProxies: Sequence[Network] = (),
    origins: OriginPolicy | None = None,
) -> Resource:
    """
    The one resource tree every endpoint serves.

    @param origins: the browser origins allowed to present the token cookie at the chat's
        handshakes (L{portshare.admission.Admitted}).

    @param operatorPaths: C{/healthz} and C{/metrics} are in it (not when the admin
        endpoint has them alone: L{buildAdminTree}).

    @param app: the application every path portshare does not serve itself goes to
        (L{portshare.apps.mountApp}'s resource), or C{None}.
    @param chatPrefix: where the chat's own paths go (see L{chatPrefixSegments}); C{None}
        for the default: the root without C{app}, C{/chat} with it.

    @param limits: the static files' memory cache sizes (and the defaults when not given).

    @param upgrades: when given, mounted at C{/ws} in front of the WebSocket resource, so that
        C{/ws} also switches to the protocols registered there (C{Upgrade: portshare-lines}).
    @param sse: the Server-Sent Events stream, mounted at C{/sse} (L{portshare.sse}).
    """
    root = StaticFiles(str(staticDir or builtinClient()))
    root.indexNames = ["index.html"]
    limits = limits or Limits()
    root.cache = StaticCache(limits.staticCacheFileBytes, limits.staticCacheBytes)
    if operatorPaths:
        root.putChild(b"healthz", HealthResource(unavailableReason))
        root.putChild(b"metrics", MetricsResource(metrics))
    root.putChild(b"api", api)
    # the public JS client and its modules, wherever the chat is and whatever --static says
    # (a page of yours imports <prefix>/client.js; its imports resolve to <prefix>/client/)
    builtin = StaticFiles(str(builtinClient()))
    builtin.cache = StaticCache(limits.staticCacheFileBytes, limits.staticCacheBytes)
    root.putChild(b"client.js", StaticFile(builtin, b"client.js"))
    modules = StaticFiles(str(builtinClient() / "client"))
    modules.segments, modules.cache = (b"client",), builtin.cache
    root.putChild(b"client", modules)
    # a handshake is decided first when tokens are read, or the application rules connects
    admits = gate is not None and (gate.usesTokens or gate.authorization is not None)
    if sse is not None:
        if admits:
            assert gate is not None
            sse = Admitted(sse, gate, trustedProxies, needsIdentity=True, origins=origins)
        root.putChild(b"sse", sse)
    ws = WebSocketEndpoint(chatFactory)
    if echoFactory is not None:
        ws.putChild(b"echo", WebSocketEndpoint(echoFactory))
    front: IResource = ws
    if upgrades is not None:
        upgrades.websocket = ws
        front = upgrades
    if admits:
        assert gate is not None
        front = Admitted(front, gate, trustedProxies, origins=origins)
    root.putChild(b"ws", front)
    return placeChat(root, chatPrefix, app)


def buildAdminTree(
    *, api: IResource, metrics: Metrics, unavailableReason: Callable[[], str | None]
) -> Resource:
    """
    The admin endpoint's tree (C{--admin-port}): C{/healthz}, C{/metrics}, C{/api/...} (the
    connections view), and JSON 404 for anything else.
    """
    root = JsonNotFoundRoot()
    root.putChild(b"healthz", HealthResource(unavailableReason))
    root.putChild(b"metrics", MetricsResource(metrics))
    root.putChild(b"api", api)
    return root


class JsonNotFoundRoot(Resource):
    """A root whose only paths are its children: JSON 404 for the rest, C{/} included."""

    def getChild(self, path: bytes, request: Request) -> IResource:
        return notFound()

    def render(self, request: Request) -> bytes | int:
        return notFound().render(request)


def placeChat(chat: Resource, chatPrefix: str | None, app: IResource | None) -> Resource:
    """
    The root of the tree the service's endpoints serve: the chat's tree C{chat} itself when
    there is neither an application nor a prefix (today's tree, exactly), else
    L{mountChat}'s.  C{chat} is not changed (L{portshare.Chat.resource} hands it out whole).
    """
    prefix = chatPrefixSegments(chatPrefix, app is not None)
    if app is None and not prefix:
        return chat
    return mountChat(chat, prefix, app)


# -- the chat beside an application (issue 14) ---------------------------------------------

#: the operators' paths: always at the root, whatever the prefix
OPERATOR_PATHS = (b"healthz", b"metrics")

_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+\Z")


def chatPrefixSegments(prefix: str | None, appMounted: bool) -> tuple[bytes, ...]:
    """
    The path segments the chat's own paths go under.

    @param prefix: C{--chat-prefix}: C{/} or C{""} for the root, C{/chat}, C{/a/b}; C{None}
        for the default (the root without an application, L{DEFAULT_APP_PREFIX} with one).
    @raise ValueError: a prefix that is not a plain absolute path, or that would hide
        C{/healthz} or C{/metrics}.
    """
    if prefix is None:
        prefix = DEFAULT_APP_PREFIX if appMounted else "/"
    if prefix not in ("", "/") and not prefix.startswith("/"):
        raise ValueError(f"--chat-prefix {prefix!r} must start with /")
    segments = [s for s in prefix.strip("/").split("/")] if prefix.strip("/") else []
    for segment in segments:
        if not _SEGMENT.match(segment) or segment in (".", ".."):
            raise ValueError(
                f"--chat-prefix {prefix!r}: each segment must be letters, digits, . _ ~ -"
                " (not . or .., no empty segment)"
            )
    if segments and segments[0].encode("ascii") in OPERATOR_PATHS:
        raise ValueError(f"--chat-prefix {prefix!r} would hide /{segments[0]}")
    return tuple(s.encode("ascii") for s in segments)


def _restore(request: Request, depth: int) -> None:
    """Give back the C{depth} path segments consumed to get here: the app sees them all."""
    prepath, postpath = request.prepath, request.postpath
    assert prepath is not None and postpath is not None  # set by Request.process
    for _ in range(depth):
        postpath.insert(0, prepath.pop())


class AppFallback(Resource):
    """
    A node of the tree whose own children are portshare's, and where every other path goes
    to the application, whole (with the segments consumed to reach this node given back).

    @ivar depth: how many path segments lead here from the root (0 for the root).
    """

    def __init__(self, app: IResource, depth: int = 0) -> None:
        super().__init__()
        self.app = app
        self.depth = depth

    def getChild(self, path: bytes, request: Request) -> IResource:
        _restore(request, self.depth + 1)
        return self.app

    def render(self, request: Request) -> bytes | int:
        # the path ends at this node (/a for a prefix /a/b): the application's too
        _restore(request, self.depth)
        return getChildForRequest(self.app, request).render(request)  # type: ignore[no-any-return]


class ChatRoot(Resource):
    """
    The root when the chat has a prefix but no application is mounted: the operators' paths,
    the prefix, C{/} redirected to the web client, and JSON 404 for the rest.
    """

    def __init__(self, prefix: tuple[bytes, ...]) -> None:
        super().__init__()
        self.location = b"/" + b"/".join(prefix) + b"/"

    def getChild(self, path: bytes, request: Request) -> IResource:
        if path == b"" and not request.postpath:
            return self
        return notFound()

    def render(self, request: Request) -> bytes | int:
        return redirectTo(self.location, request)  # type: ignore[no-any-return]


class _Node(Resource):
    """An intermediate segment of a prefix without an application: JSON 404 elsewhere."""

    def getChild(self, path: bytes, request: Request) -> IResource:
        return notFound()

    def render(self, request: Request) -> bytes | int:
        return notFound().render(request)


def mountChat(chat: Resource, prefix: tuple[bytes, ...], app: IResource | None) -> Resource:
    """
    The root of a tree with the chat's tree C{chat} (web client, C{api}, C{sse}, C{ws}) under
    C{prefix}, the operators' paths at the root, and C{app} (if any) for every other path.
    With an application and no prefix, the chat keeps C{/api}, C{/sse} and C{/ws} at the
    root, and the web client is not served (the application owns C{/}).
    """
    root: Resource = AppFallback(app) if app is not None else ChatRoot(prefix)
    children = dict(chat.children)  # C{chat} itself keeps all of them
    for name in OPERATOR_PATHS:
        if name in children:  # (not when the admin endpoint has them alone)
            root.putChild(name, children.pop(name))
    if not prefix:
        for name, child in children.items():
            root.putChild(name, child)
        return root
    chat = copy.copy(chat)  # the same resource, without the operators' paths
    chat.children = children
    node = root
    for depth, segment in enumerate(prefix[:-1], start=1):
        between: Resource = AppFallback(app, depth) if app is not None else _Node()
        node.putChild(segment, between)
        node = between
    node.putChild(prefix[-1], chat)
    return root
