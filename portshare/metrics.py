"""
Prometheus metrics of one service, in a registry of its own (no global state).

Label children are bound once here, so the hot path (a delivery per member) only adds to a
number.  C{GET /metrics} renders L{Metrics.registry}.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from portshare import errors


def autobahnNvx() -> bool:
    """Whether Autobahn's WebSocket protocol uses its native accelerator (NVX)."""
    from autobahn import websocket

    return bool(getattr(websocket, "USES_NVX", False))


_ERROR_CODES = errors.CHAT_ERROR_CODES


class _Callback:
    """A collector whose value is read from a callable at scrape time."""

    def __init__(
        self, name: str, documentation: str, labelName: str, read: Callable[[], dict[str, float]]
    ) -> None:
        self._name = name
        self._doc = documentation
        self._label = labelName
        self._read = read

    def collect(self):  # type: ignore[no-untyped-def]
        family = GaugeMetricFamily(self._name, self._doc, labels=[self._label])
        for label, value in sorted(self._read().items()):
            family.add_metric([label], value)
        yield family


class Metrics:
    """
    The service's counters and gauges.

    @ivar registry: the registry C{/metrics} exposes.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.messagesIn = Counter(
            "portshare_messages_in",
            "Chat messages accepted for publishing (WebSocket and API)",
            registry=r,
        )
        self.messagesOut = Counter(
            "portshare_messages_out", "Chat events delivered to WebSocket members", registry=r
        )
        self.drops = Counter(
            "portshare_drops",
            "Events not delivered to a member (slow consumer, closed socket)",
            registry=r,
        )
        self._errors = Counter(
            "portshare_errors", "Client messages refused, by error code", ["code"], registry=r
        )
        self.errorsByCode = {code: self._errors.labels(code) for code in _ERROR_CODES}
        self.wsOpened = Counter(
            "portshare_websocket_opened",
            "WebSocket connections opened, by path",
            ["path"],
            registry=r,
        )
        self.wsClosed = Counter(
            "portshare_websocket_closed",
            "WebSocket connections closed, by close code",
            ["code"],
            registry=r,
        )
        self.httpErrors = Counter(
            "portshare_http_errors",
            "HTTP API requests refused, by status",
            ["status"],
            registry=r,
        )
        self.slowConsumers = Counter(
            "portshare_slow_consumers", "WebSockets found too slow to keep up", registry=r
        )
        self.refusedConnections = Counter(
            "portshare_refused_connections",
            "TCP connections refused, by reason",
            ["reason"],
            registry=r,
        )
        self.rooms = Gauge("portshare_rooms", "Rooms with members on this instance", registry=r)
        self.nvx = Gauge(
            "portshare_autobahn_nvx",
            "1 when Autobahn's native accelerator (NVX) frames the WebSockets, else 0",
            registry=r,
        )
        self.nvx.set(1 if autobahnNvx() else 0)
        # users and the application's rules (portshare.jwks, portshare.hooks)
        self._jwksFetches = Counter(
            "portshare_jwks_fetches",
            "Fetches of the --jwks-url key set, by outcome (ok, failed)",
            ["outcome"],
            registry=r,
        )
        self._hookCalls = Counter(
            "portshare_hook_calls",
            "Decisions of the --hook-url hook, by event and outcome (allow, deny, rewrite, "
            "cached, failed, timeout, overloaded)",
            ["event", "outcome"],
            registry=r,
        )
        self.hookSeconds = Histogram(
            "portshare_hook_seconds",
            "Seconds a --hook-url call took, answered or not",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        self.hooksInFlight = Gauge(
            "portshare_hooks_in_flight", "--hook-url calls waiting for their answer", registry=r
        )

    def watchConnections(self, read: Callable[[], dict[str, float]]) -> None:
        """Expose open TCP connections on the shared port by protocol, read at scrape time."""
        self.registry.register(
            _Callback("portshare_connections", "Open connections by protocol", "protocol", read)
        )

    def refused(self, code: str) -> None:
        """Count one refused client message."""
        child = self.errorsByCode.get(code)
        if child is None:
            child = self.errorsByCode[code] = self._errors.labels(code)
        child.inc()

    def jwksFetched(self, outcome: str) -> None:
        """Count one fetch of the JWKS, C{"ok"} or C{"failed"}."""
        self._jwksFetches.labels(outcome).inc()

    def hookDecided(self, event: str, outcome: str) -> None:
        """Count one hook decision: C{event} connect, join or publish; C{outcome} as listed."""
        self._hookCalls.labels(event, outcome).inc()

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
