"""
THE resource tree, and the site that serves it on every endpoint.

    /                 the web client (static files, or --static DIR)
    /healthz          200 while the service accepts work, 503 and a reason otherwise
    /metrics          Prometheus text exposition
    /api/...          JSON API (rooms, history, publishing, connections)
    /ws               chat WebSocket (Upgrade: websocket; 101 Switching Protocols)
    /ws/echo          echo WebSocket for compliance runs (only with --echo)

A request for C{/ws} that carries C{Upgrade: websocket} is handed, socket and all, to the
Autobahn protocol; every other request stays with twisted.web.  Same port, same tree.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site
from twisted.web.static import File

from portshare.api import JsonResource, notFound, writeError, writeJson
from portshare.errors import METHOD_NOT_ALLOWED, PortshareError
from portshare.metrics import Metrics

#: The headers every page gets: no inline script, no framing, no MIME sniffing.
SECURITY_HEADERS = {
    b"content-security-policy": (
        b"default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
        b"style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
        b"form-action 'self'; frame-ancestors 'none'"
    ),
    b"x-content-type-options": b"nosniff",
    b"x-frame-options": b"DENY",
    b"referrer-policy": b"no-referrer",
}


def builtinClient() -> Path:
    """The directory of the web client shipped inside the package."""
    return Path(str(resources.files("portshare") / "static"))


class StaticFiles(File):
    """Static files with security headers, without directory listings, JSON refusals."""

    childNotFound = notFound("no such file")  # type: ignore[assignment]

    def render(self, request: Request) -> Any:
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"allow", b"GET, HEAD")
            return writeError(
                request, PortshareError("static files are read-only", METHOD_NOT_ALLOWED)
            )
        return super().render(request)

    def directoryListing(self) -> IResource:
        return notFound("no such file")


class HealthResource(JsonResource):
    """C{/healthz}: C{{"status": "ok"}} while C{unavailableReason()} is None, else 503."""

    isLeaf = True

    def __init__(self, unavailableReason: Callable[[], str | None]) -> None:
        super().__init__()
        self.unavailableReason = unavailableReason

    def render_GET(self, request: Request) -> bytes:
        reason = self.unavailableReason()
        if reason is None:
            return writeJson(request, 200, {"status": "ok"})
        return writeJson(request, 503, {"status": "unavailable", "reason": reason})


class MetricsResource(JsonResource):
    """C{/metrics}: the service's registry in Prometheus text format."""

    isLeaf = True

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")
        return self.metrics.render()


class UpgradeResource(WebSocketResource):
    """
    A WebSocket endpoint in the tree.  Requests without C{Upgrade: websocket} get a JSON 426
    instead of Autobahn's HTML; its children (C{/ws/echo}) are ordinary tree children.
    """

    isLeaf = False

    def __init__(self, factory: WebSocketServerFactory) -> None:
        super().__init__(factory)
        self.children: dict[bytes, IResource] = {}

    def getChildWithDefault(self, name: bytes, request: Request) -> IResource:
        return self.children.get(name) or notFound()

    def putChild(self, path: bytes, child: IResource) -> None:
        self.children[path] = child

    def render(self, request: Request) -> Any:
        upgrade = (request.getHeader(b"upgrade") or b"").lower()
        if upgrade != b"websocket":
            request.setHeader(b"upgrade", b"websocket")
            request.setHeader(b"connection", b"Upgrade")
            request.setResponseCode(426, b"Upgrade Required")
            request.setHeader(b"content-type", b"application/json")
            return (
                b'{"error":"upgrade_required","reason":"this is a WebSocket endpoint: '
                b'send Upgrade: websocket"}'
            )
        return super().render(request)


class PortshareRequest(Request):
    """A request that knows it came over TLS even through the connection tracker."""

    def isSecure(self) -> bool:
        transport = self.channel.transport if self.channel is not None else None
        secure = getattr(transport, "secure", None)
        return bool(secure) if secure is not None else super().isSecure()


class PortshareSite(Site):
    """The site: no tracebacks to clients, and a request count per tracked connection."""

    displayTracebacks = False
    requestFactory = PortshareRequest

    def getResourceFor(self, request: Request) -> IResource:
        request.setHeader(b"server", b"portshare")
        transport = request.channel.transport if request.channel is not None else None
        if transport is not None and hasattr(transport, "requests"):
            transport.requests += 1
        return super().getResourceFor(request)


def buildTree(
    *,
    api: IResource,
    chatFactory: WebSocketServerFactory,
    echoFactory: WebSocketServerFactory | None,
    metrics: Metrics,
    unavailableReason: Callable[[], str | None],
    staticDir: Path | None = None,
) -> Resource:
    """The one resource tree every endpoint serves."""
    root = StaticFiles(str(staticDir or builtinClient()))
    root.indexNames = ["index.html"]
    root.putChild(b"healthz", HealthResource(unavailableReason))
    root.putChild(b"metrics", MetricsResource(metrics))
    root.putChild(b"api", api)
    ws = UpgradeResource(chatFactory)
    if echoFactory is not None:
        ws.putChild(b"echo", UpgradeResource(echoFactory))
    root.putChild(b"ws", ws)
    return root


def buildSite(root: Resource, reactor: IReactorTime) -> PortshareSite:
    """The site for C{root}, on the injected reactor."""
    site = PortshareSite(root, reactor=reactor)
    site.displayTracebacks = False
    return site
