"""Tests for L{portshare.service}: listening, addresses, start and stop order."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.error import CannotListenError
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from portshare.service import PortshareService, Settings, formatAddress


class FormatAddressTests(SynchronousTestCase):
    def test_forms(self) -> None:
        """Addresses read the way endpoint strings are written."""
        self.assertEqual(formatAddress(IPv4Address("TCP", "127.0.0.1", 80)), "tcp:127.0.0.1:80")
        self.assertEqual(formatAddress(IPv6Address("TCP", "::1", 80)), "tcp6:[::1]:80")
        self.assertEqual(
            formatAddress(IPv4Address("TCP", "1.2.3.4", 443), secure=True), "ssl:1.2.3.4:443"
        )
        self.assertEqual(formatAddress(UNIXAddress(b"/run/p.sock")), "unix:/run/p.sock")


class ListeningTests(SynchronousTestCase):
    def test_everyPortServesTheOneTracker(self) -> None:
        """Each --port listens with the same factory, and the bound addresses are logged."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        reactor = MemoryReactorClock()
        service = PortshareService(Settings(ports=("tcp:0", "tcp:8081")), reactor)
        service.startService()
        factories = [server[1] for server in reactor.tcpServers]
        self.assertEqual(factories, [service.tracker, service.tracker])
        self.assertEqual(len(service.listening), 2)
        logged = [e["address"] for e in events if e.get("log_format") == "listening on {address}"]
        self.assertEqual(logged, service.listening)
        self.successResultOf(service.stopService())
        self.assertEqual(service.listening, [])

    def test_nvxStatusIsLoggedAndExported(self) -> None:
        """Start-up says whether Autobahn's native accelerator frames the WebSockets, and
        /metrics exports the same as portshare_autobahn_nvx."""
        from autobahn import websocket

        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        service = PortshareService(Settings(ports=("tcp:0",)), MemoryReactorClock())
        service.startService()
        self.addCleanup(service.stopService)
        said = [e["nvx"] for e in events if "nvx" in e]
        self.assertEqual(said, [bool(websocket.USES_NVX)])
        expected = f"portshare_autobahn_nvx {1.0 if websocket.USES_NVX else 0.0}"
        self.assertIn(expected, service.metrics.render().decode())

    def test_bindFailureFailsStart(self) -> None:
        """A port that cannot be bound fails the start instead of being logged and forgotten."""

        class Busy(MemoryReactorClock):
            def listenTCP(self, *args: object, **kwargs: object) -> None:
                raise CannotListenError("", 8080, OSError("address in use"))

        service = PortshareService(Settings(ports=("tcp:8080",)), Busy())
        self.assertRaises(CannotListenError, service.privilegedStartService)

    def test_stopReportsUnhealthy(self) -> None:
        """While stopping, the service says why it does not accept work."""
        service = PortshareService(Settings(ports=("tcp:0",)), MemoryReactorClock())
        service.startService()
        self.assertIsNone(service.unavailableReason())
        self.successResultOf(service.stopService())
        self.assertEqual(service.unavailableReason(), "shutting down")


class GracefulStopTests(SynchronousTestCase):
    def test_inflightRequestsFinish(self) -> None:
        """Stopping waits for HTTP requests in flight and lets them answer."""
        from twisted.internet.defer import Deferred

        from portshare.broker.memory import MemoryBroker
        from portshare.testing import MemoryConnection

        class SlowHistory(MemoryBroker):
            pending: Deferred[object] = Deferred()

            def history(self, room: str, since: int, limit: int) -> Deferred[object]:
                return self.pending

        reactor = MemoryReactorClock()
        broker = SlowHistory(10, 10)
        service = PortshareService(
            Settings(ports=("tcp:0",), shutdownTimeout=30), reactor, broker=broker
        )
        service.startService()
        c = MemoryConnection(service)
        c.send(b"GET /api/rooms/r/messages HTTP/1.1\r\nHost: x\r\n\r\n")
        stopped = service.stopService()
        self.assertNoResult(stopped)
        broker.pending.callback(("e", ()))
        self.assertIn(b"HTTP/1.1 200", c.read())
        self.successResultOf(stopped)

    def test_inflightGiveUpAfterTimeout(self) -> None:
        """A request still in flight after the shutdown timeout does not hold the stop."""
        from twisted.internet.defer import Deferred

        from portshare.broker.memory import MemoryBroker
        from portshare.testing import MemoryConnection

        class NeverHistory(MemoryBroker):
            def history(self, room: str, since: int, limit: int) -> Deferred[object]:
                return Deferred()

        reactor = MemoryReactorClock()
        service = PortshareService(
            Settings(ports=("tcp:0",), shutdownTimeout=2), reactor, broker=NeverHistory(10, 10)
        )
        service.startService()
        MemoryConnection(service).send(b"GET /api/rooms/r/messages HTTP/1.1\r\nHost: x\r\n\r\n")
        stopped = service.stopService()
        reactor.advance(1.9)
        self.assertNoResult(stopped)
        reactor.advance(0.1)
        self.successResultOf(stopped)

    def test_webSocketsAreNotRequestsInFlight(self) -> None:
        """
        A request that became a WebSocket (or was refused in the handshake) is over as HTTP:
        it is not kept as in flight, so a stop does not wait out the timeout for it.
        """
        import txaio.testutil
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        from portshare.testing import MemoryConnection

        reactor = MemoryReactorClock()
        with txaio.testutil.replace_loop(reactor):
            service = PortshareService(Settings(ports=("tcp:0",), shutdownTimeout=30), reactor)
            service.startService()
            chat = MemoryConnection(service)
            self.assertTrue(chat.handshake().startswith(b"HTTP/1.1 101"))
            refused = MemoryConnection(service, port=40001)
            head = refused.handshake(origin="http://elsewhere.example")
            self.assertTrue(head.startswith(b"HTTP/1.1 403"), head)
            self.assertEqual(service.site.inflight, set())
            for c in (chat, refused):
                c.protocol.connectionLost(Failure(ConnectionDone()))
            self.successResultOf(service.stopService())


class AdminEndpointTests(SynchronousTestCase):
    """--admin-port: the operators' paths on their own listener and connection cap."""

    def get(self, factory: Any, path: str, port: int = 41000) -> tuple[int, bytes]:
        from portshare.testing import MemoryConnection, parseResponse

        c = MemoryConnection(factory, port=port)
        c.send(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        response, _ = parseResponse(c.read())
        c.lose()
        if response is None:
            return 0, b""  # refused: the connection was closed without an answer
        return response.status, response.body

    def test_pathsMoveToTheAdminEndpoint(self) -> None:
        """With an admin endpoint, /healthz, /metrics and /api/connections answer there and
        are 404 on the public port; the chat's own API stays public."""
        from portshare.testing import startedService

        service = startedService(self, ports=("tcp:0",), adminPorts=("tcp:0",))
        self.assertEqual(len(service.reactor.tcpServers), 2)
        for path in ("/healthz", "/metrics", "/api/connections"):
            self.assertEqual(self.get(service.adminTracker, path)[0], 200, path)
            self.assertEqual(self.get(service.tracker, path)[0], 404, path)
        self.assertEqual(self.get(service.tracker, "/api/rooms")[0], 200)
        self.assertEqual(self.get(service.adminTracker, "/api/rooms")[0], 404)
        self.assertEqual(self.get(service.adminTracker, "/")[0], 404)

    def test_pathsKeptPublic(self) -> None:
        """--admin-paths-public keeps them on the public port as well."""
        from portshare.testing import startedService

        service = startedService(self, adminPorts=("tcp:0",), adminPathsPublic=True)
        for path in ("/healthz", "/metrics", "/api/connections"):
            self.assertEqual(self.get(service.tracker, path)[0], 200, path)
            self.assertEqual(self.get(service.adminTracker, path)[0], 200, path)

    def test_floodOnThePublicPortLeavesHealthChecks(self) -> None:
        """The public port full (its cap reached) does not refuse the admin endpoint, whose
        own cap is separate and bounded too."""
        from portshare.limits import Limits
        from portshare.testing import MemoryConnection, startedService

        service = startedService(
            self,
            adminPorts=("tcp:0",),
            limits=Limits(maxConnections=3, adminMaxConnections=2),
        )
        from twisted.internet.address import IPv4Address

        held = [MemoryConnection(service, port=42000 + n) for n in range(3)]
        peer = IPv4Address("TCP", "127.0.0.1", 42010)
        self.assertIsNone(service.tracker.buildProtocol(peer))  # the public port is full
        self.assertEqual(self.get(service.adminTracker, "/healthz"), (200, b'{"status":"ok"}'))
        admins = [MemoryConnection(service.adminTracker, port=43000 + n) for n in range(2)]
        self.assertIsNone(service.adminTracker.buildProtocol(peer))  # its own cap, reached
        del held, admins

    def test_badEndpoint(self) -> None:
        """An admin endpoint string that does not parse is refused, naming the field."""
        with self.assertRaises(ValueError) as raised:
            Settings(adminPorts=("nonsense:1",))
        self.assertIn("adminPorts", str(raised.exception))
        self.assertRaises(ValueError, Settings, adminPathsPublic=True)
