"""Tests for L{portshare.metrics}: the registry /metrics renders, read directly."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from portshare import errors
from portshare.metrics import Metrics


class MetricsTests(SynchronousTestCase):
    def test_everyChatErrorCodeStartsAtZero(self) -> None:
        """Each error code of the contract is exported from the start, at 0, so an alert on
        one of them has a series before the first error."""
        text = Metrics().render().decode()
        for code in errors.CHAT_ERROR_CODES:
            self.assertIn(f'portshare_errors_total{{code="{code}"}} 0.0', text)

    def test_refusedCountsByCode(self) -> None:
        """refused() counts per code, a code outside the contract's list included."""
        metrics = Metrics()
        metrics.refused(errors.RATE_LIMITED)
        metrics.refused(errors.RATE_LIMITED)
        metrics.refused("unauthorized")
        text = metrics.render().decode()
        self.assertIn('portshare_errors_total{code="rate_limited"} 2.0', text)
        self.assertIn('portshare_errors_total{code="unauthorized"} 1.0', text)

    def test_connectionsReadAtScrape(self) -> None:
        """The connections gauge is read from its callback at each scrape, not stored."""
        metrics = Metrics()
        open_ = {"websocket": 2.0, "http/1.1": 1.0}
        metrics.watchConnections(lambda: dict(open_))
        self.assertIn('portshare_connections{protocol="websocket"} 2.0', metrics.render().decode())
        open_["websocket"] = 0.0
        self.assertIn('portshare_connections{protocol="websocket"} 0.0', metrics.render().decode())

    def test_closeCodesAreLabels(self) -> None:
        """WebSocket closes are counted by their code, 1005 among them."""
        metrics = Metrics()
        metrics.wsClosed.labels("1005").inc()
        self.assertIn('code="1005"} 1.0', metrics.render().decode())

    def test_ownRegistry(self) -> None:
        """Each Metrics has its own registry: two services in one process do not collide."""
        a, b = Metrics(), Metrics()
        a.messagesIn.inc()
        self.assertIn("portshare_messages_in_total 1.0", a.render().decode())
        self.assertIn("portshare_messages_in_total 0.0", b.render().decode())
