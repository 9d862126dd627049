"""
What operators and their load balancers read: C{/healthz} and C{/metrics}.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.web.server import Request

from portshare.httpjson import JsonResource, writeJson
from portshare.metrics import Metrics


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
