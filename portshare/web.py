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

A request for C{/ws} that carries C{Upgrade: websocket} is handed, socket and all, to the
Autobahn protocol; every other request stays with twisted.web.  Same port, same tree.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.web.resource import IResource, Resource

from portshare.limits import Limits
from portshare.metrics import Metrics
from portshare.staticfiles import StaticCache, StaticFiles, builtinClient
from portshare.status import HealthResource, MetricsResource
from portshare.upgrade import UpgradeDispatcher, WebSocketEndpoint


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
) -> Resource:
    """
    The one resource tree every endpoint serves.

    @param limits: the static files' memory cache sizes (and the defaults when not given).

    @param upgrades: when given, mounted at C{/ws} in front of the WebSocket resource, so that
        C{/ws} also switches to the protocols registered there (C{Upgrade: portshare-lines}).
    @param sse: the Server-Sent Events stream, mounted at C{/sse} (L{portshare.sse}).
    """
    root = StaticFiles(str(staticDir or builtinClient()))
    root.indexNames = ["index.html"]
    limits = limits or Limits()
    root.cache = StaticCache(limits.staticCacheFileBytes, limits.staticCacheBytes)
    root.putChild(b"healthz", HealthResource(unavailableReason))
    root.putChild(b"metrics", MetricsResource(metrics))
    root.putChild(b"api", api)
    if sse is not None:
        root.putChild(b"sse", sse)
    ws = WebSocketEndpoint(chatFactory)
    if echoFactory is not None:
        ws.putChild(b"echo", WebSocketEndpoint(echoFactory))
    if upgrades is not None:
        upgrades.websocket = ws
        root.putChild(b"ws", upgrades)
    else:
        root.putChild(b"ws", ws)
    return root
