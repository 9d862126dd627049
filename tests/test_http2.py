"""
HTTP/2 on a TLS endpoint (ALPN h2), next to WebSocket over HTTP/1.1 on the same ssl: port.

The HTTP/2 client is the h2 library (Twisted's own HTTP/2 dependency): in memory, on a
transport that says ALPN chose h2, against the real tracker, site and Twisted HTTP/2 connection
on a L{MemoryReactorClock}; and end to end over a blocking TLS socket in a thread, so that the
service runs on the real reactor meanwhile.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import orjson
import pytest
import pytest_twisted
from twisted.internet import reactor, threads
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from portshare import _twistedhttp
from portshare.limits import Limits
from portshare.service import PortshareService, Settings
from portshare.testing import connectChat, startedService
from tests.harness import selfSignedCertificate


class H2Client:
    """
    One HTTP/2 connection to a service in memory: the h2 library as the client (it sends
    what it is told, headers HTTP/2 forbids included), the service's real tracker and site.
    """

    def __init__(self, service: Any, settle: bool = True) -> None:
        """
        @param settle: exchange the connection prefaces (and SETTINGS) at once, as a client
            that waits for the server's SETTINGS before its first request does.
        """
        self.service = service
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.transport.negotiatedProtocol = b"h2"  # type: ignore[attr-defined]
        self.protocol = service.tracker.buildProtocol(self.transport.getPeer())
        self.protocol.makeConnection(self.transport)
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(
                client_side=True,
                header_encoding=None,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
            )
        )
        self.conn.initiate_connection()
        self.events: list[Any] = []
        self.responses: dict[int, dict[str, Any]] = {}
        if settle:
            self.exchange()

    def request(
        self,
        path: bytes = b"/healthz",
        headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
        method: bytes = b"GET",
        end: bool = True,
        pseudo: list[tuple[bytes, bytes]] | None = None,
    ) -> int:
        """Open a stream with a request; @return: its id (sent at the next exchange)."""
        sid: int = self.conn.get_next_available_stream_id()
        if pseudo is None:
            pseudo = [
                (b":method", method),
                (b":path", path),
                (b":scheme", b"https"),
                (b":authority", b"localhost"),
            ]
        self.conn.send_headers(sid, [*pseudo, *headers], end_stream=end)
        self.responses[sid] = {"headers": {}, "body": b"", "ended": False, "reset": None}
        return sid

    def exchange(self) -> None:
        """Send what the client has, and let the server answer, until both are quiet."""
        for _ in range(50):
            data = self.conn.data_to_send()
            if data:
                self.protocol.dataReceived(data)
            self.service.reactor.advance(0)
            answer = self.transport.value()
            self.transport.clear()
            if not data and not answer:
                return
            for event in self.conn.receive_data(answer) if answer else ():
                self.events.append(event)
                response = self.responses.get(getattr(event, "stream_id", 0))
                if isinstance(event, h2.events.ResponseReceived) and response is not None:
                    response["headers"] = dict(event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
                    if response is not None:
                        response["body"] += event.data
                elif isinstance(event, h2.events.StreamEnded) and response is not None:
                    response["ended"] = True
                elif isinstance(event, h2.events.StreamReset) and response is not None:
                    response["reset"] = event.error_code
        raise AssertionError("the exchange did not settle")

    def response(self, sid: int) -> tuple[int, dict[bytes, bytes], Any]:
        """The status, headers and JSON body of stream C{sid}'s complete answer."""
        r = self.responses[sid]
        assert r["ended"], r
        body = orjson.loads(r["body"]) if r["body"] else None
        return int(r["headers"][b":status"]), r["headers"], body

    def terminated(self) -> list[Any]:
        return [e for e in self.events if isinstance(e, h2.events.ConnectionTerminated)]


class H2MemoryTests(SynchronousTestCase):
    """HTTP/2 requests that HTTP/2 forbids or that pass the stream limit, in memory."""

    def setUp(self) -> None:
        self.service = startedService(self, limits=Limits(maxConcurrentStreams=4))

    def test_upgradeRefusedOnItsStream(self) -> None:
        """
        A request with an C{Upgrade} header (which HTTP/2 forbids) is answered 400 with a
        JSON reason on its own stream; the connection and its other streams go on.
        """
        client = H2Client(self.service)
        ws = client.request(b"/ws", [(b"upgrade", b"websocket")])
        health = client.request()
        client.exchange()
        status, headers, body = client.response(ws)
        self.assertEqual((status, body["error"]), (400, "bad_request"))
        self.assertIn("HTTP/2 has no Upgrade", body["reason"])
        self.assertEqual(headers[b"server"], b"portshare")
        self.assertEqual(headers[b"content-type"], b"application/json")
        status, headers, body = client.response(health)
        self.assertEqual((status, body, headers[b"server"]), (200, {"status": "ok"}, b"portshare"))
        self.assertEqual(client.terminated(), [])
        self.assertFalse(client.transport.disconnecting)
        again = client.request()
        client.exchange()
        self.assertEqual(client.response(again)[0], 200)
        self.assertEqual(self.service.metrics.httpErrors.labels("400")._value.get(), 1)

    def test_connectionSpecificFields(self) -> None:
        """Every connection-specific field and C{TE} other than trailers get the 400."""
        client = H2Client(self.service)
        refused = [
            client.request(headers=[(name, value)])
            for name, value in [
                (b"connection", b"keep-alive"),
                (b"keep-alive", b"timeout=5"),
                (b"proxy-connection", b"keep-alive"),
                (b"te", b"gzip"),
            ]
        ]
        client.exchange()
        for sid in refused:
            status, _, body = client.response(sid)
            self.assertEqual((status, body["error"]), (400, "bad_request"))
            self.assertIn("connection-specific header field", body["reason"])
        allowed = client.request(headers=[(b"te", b"trailers")])
        client.exchange()
        self.assertEqual(client.response(allowed)[0], 200)
        self.assertEqual(client.terminated(), [])

    def test_refusedWhileTheBodyComes(self) -> None:
        """
        A refused request whose body is still coming is answered, then reset with
        C{NO_ERROR} (stop sending); body frames already on the way are dropped.
        """
        client = H2Client(self.service)
        sid = client.request(
            b"/api/rooms/r/messages", [(b"transfer-encoding", b"chunked")], b"POST", end=False
        )
        client.conn.send_data(sid, b'{"nick": "a", ')
        client.exchange()
        status, _, body = client.response(sid)
        self.assertEqual((status, body["error"]), (400, "bad_request"))
        self.assertEqual(client.responses[sid]["reset"], h2.errors.ErrorCodes.NO_ERROR)
        after = client.request()
        client.exchange()
        self.assertEqual(client.response(after)[0], 200)
        self.assertEqual(self.service.hub.metrics.messagesIn._value.get(), 0)

    def test_otherMalformedRequests(self) -> None:
        """A request h2 finds malformed otherwise (no :path here) is a 400 on its stream."""
        client = H2Client(self.service)
        sid = client.request(pseudo=[(b":method", b"GET"), (b":scheme", b"https")])
        upper = client.request(headers=[(b"X-Upper", b"1")])
        client.exchange()
        for stream in (sid, upper):
            status, _, body = client.response(stream)
            self.assertEqual((status, body["error"]), (400, "bad_request"))
            self.assertTrue(body["reason"].startswith("malformed HTTP/2 request"), body)
        self.assertEqual(client.terminated(), [])

    def test_streamLimitAnnounced(self) -> None:
        """The server announces its stream limit (C{Limits.maxConcurrentStreams})."""
        client = H2Client(self.service)
        self.assertEqual(client.conn.remote_settings.max_concurrent_streams, 4)

    def test_streamsBeyondTheLimitRefused(self) -> None:
        """
        Streams a client opens beyond the limit before it has read the server's SETTINGS
        (many clients do) are reset with C{REFUSED_STREAM}, not the whole connection;
        retried, they are served.
        """
        fresh = H2Client(self.service, settle=False)  # requests in its first flight
        streams = [fresh.request(b"/sse?room=r") for _ in range(4)]  # streams that stay open
        extra = [fresh.request() for _ in range(2)]
        fresh.exchange()
        for sid in extra:
            self.assertEqual(fresh.responses[sid]["reset"], h2.errors.ErrorCodes.REFUSED_STREAM)
        for sid in streams:
            self.assertIsNone(fresh.responses[sid]["reset"])
            self.assertEqual(fresh.responses[sid]["headers"][b":status"], b"200")
        self.assertEqual(fresh.terminated(), [])
        fresh.conn.reset_stream(streams[0])
        fresh.exchange()
        retried = fresh.request()
        fresh.exchange()
        self.assertEqual(fresh.response(retried)[0], 200)

    def test_beyondTheAcknowledgedLimit(self) -> None:
        """
        A client that goes beyond the limit after acknowledging it breaks the protocol: h2
        ends the connection with C{GOAWAY PROTOCOL_ERROR}.
        """
        client = H2Client(self.service)
        for _ in range(4):
            client.request(b"/sse?room=r")
        client.exchange()
        client.conn.remote_settings = h2.settings.Settings(client=False)  # ignore the limit
        client.request()
        client.exchange()
        [goaway] = client.terminated()
        self.assertEqual(goaway.error_code, h2.errors.ErrorCodes.PROTOCOL_ERROR)

    def test_onTheSiteReactor(self) -> None:
        """The HTTP/2 connection is portshare's, on the service's (injected) reactor."""
        client = H2Client(self.service)
        channel = client.protocol.wrappedProtocol._channel
        self.assertIsInstance(channel, _twistedhttp.PortshareH2Connection)
        self.assertIs(channel._reactor, self.service.reactor)
        self.assertEqual(self.service.tracker.rows()[0]["protocol"], "h2")


class FenceTests(SynchronousTestCase):
    """portshare's overrides of Twisted's private HTTP code match the installed Twisted."""

    def test_mirrorsInstalledTwisted(self) -> None:
        """
        The installed Twisted switches to HTTP/2 and dispatches h2's events as the mirrored
        one does; when this fails, re-read portshare/_twistedhttp.py against Twisted's source.
        """
        self.assertTrue(_twistedhttp.SWITCH_MIRRORED)
        self.assertTrue(_twistedhttp.DISPATCH_MIRRORED)
        self.assertIsNone(_twistedhttp.fenceWarning())

    def test_fallbackIsTwistedsOwn(self) -> None:
        """
        Without the mirrored dispatch, h2 validates as it always did: a forbidden header
        ends the connection with GOAWAY, and ordinary requests are served.
        """
        self.patch(_twistedhttp, "DISPATCH_MIRRORED", False)
        self.assertIn("GOAWAY", _twistedhttp.fenceWarning() or "")
        service = startedService(self, limits=Limits(maxConcurrentStreams=4))
        client = H2Client(service)
        self.assertEqual(client.conn.remote_settings.max_concurrent_streams, 4)
        ok = client.request()
        client.exchange()
        self.assertEqual(client.response(ok)[0], 200)
        client.request(b"/ws", [(b"upgrade", b"websocket")])
        client.exchange()
        [goaway] = client.terminated()
        self.assertEqual(goaway.error_code, h2.errors.ErrorCodes.PROTOCOL_ERROR)

    def test_streamConnectionNamed(self) -> None:
        """Twisted's H2Stream still keeps its connection in C{_conn}, which connectionOf
        reads; without it connectionOf falls back to the stream's own transport (None)."""
        from twisted.web._http2 import H2Stream

        self.assertIn("_conn", H2Stream.__init__.__code__.co_names)
        self.assertIsNone(H2Stream.transport)

        class Stream(H2Stream):  # type: ignore[misc]
            def __init__(self) -> None:
                pass

        request: Any = type("R", (), {})()
        request.channel = Stream()
        self.assertIsNone(_twistedhttp.connectionOf(request))
        request.channel._conn = type("C", (), {"transport": "the tracker row"})()
        self.assertEqual(_twistedhttp.connectionOf(request), "the tracker row")

    def test_fallbackLogged(self) -> None:
        """A site on a Twisted that the fence does not mirror says so when it starts."""
        from twisted.internet.testing import EventLoggingObserver
        from twisted.logger import globalLogPublisher

        self.patch(_twistedhttp, "SWITCH_MIRRORED", False)
        service = startedService(self)
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        service.site.startFactory()
        [event] = [e for e in events if "fence" in e]
        self.assertEqual(event["log_level"].name, "warn")
        self.assertIn("Twisted's own settings", event["fence"])

    def test_switchFallback(self) -> None:
        """Without the mirrored switch, Twisted's own HTTP/2 connection serves."""
        from twisted.web._http2 import H2Connection

        self.patch(_twistedhttp, "SWITCH_MIRRORED", False)
        self.assertIn("Twisted's own settings", _twistedhttp.fenceWarning() or "")
        service = startedService(self)
        client = H2Client(service, settle=False)
        client.protocol.dataReceived(client.conn.data_to_send())
        channel = client.protocol.wrappedProtocol._channel
        self.assertIs(type(channel), H2Connection)
        self.assertTrue(client.transport.value())  # its preface: SETTINGS
        client.protocol.connectionLost(None)


def h2Exchange(
    port: int,
    cafile: Path,
    requests: list[tuple[str, str, bytes | None] | tuple[str, str, bytes | None, list[Any]]],
    stream: str | None,
) -> dict[str, Any]:
    """
    Open one TLS connection offering h2 and http/1.1, send every request on its own stream
    (all at once, multiplexed; a fourth item adds headers, even those HTTP/2 forbids), and
    read until each has ended; with C{stream}, also GET that path and read from it until a
    message event came.

    @return: the ALPN protocol, the responses as (status, headers, body) in request order, the
        first bytes of the stream, whether the server sent GOAWAY, and the stream limit it
        announced.
    """
    import h2.config
    import h2.connection
    import h2.events

    context = ssl.create_default_context(cafile=str(cafile))
    context.set_alpn_protocols(["h2", "http/1.1"])
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock = context.wrap_socket(raw, server_hostname="localhost")
    try:
        result: dict[str, Any] = {"alpn": sock.selected_alpn_protocol()}
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(
                client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False
            )
        )
        conn.initiate_connection()
        ids: dict[int, int] = {}
        responses: dict[int, dict[str, Any]] = {}
        result["goaway"] = False
        for n, (method, path, body, *extra) in enumerate(requests):
            sid = conn.get_next_available_stream_id()
            ids[sid] = n
            headers = [
                (":method", method),
                (":path", path),
                (":scheme", "https"),
                (":authority", f"localhost:{port}"),
            ]
            if body is not None:
                headers += [
                    ("content-type", "application/json"),
                    ("content-length", str(len(body))),
                ]
            headers += extra[0] if extra else []
            conn.send_headers(sid, headers, end_stream=body is None)
            if body is not None:
                conn.send_data(sid, body, end_stream=True)
            responses[sid] = {"headers": {}, "body": b"", "ended": False}
        streamId = None
        if stream is not None:
            streamId = conn.get_next_available_stream_id()
            conn.send_headers(
                streamId,
                [
                    (":method", "GET"),
                    (":path", stream),
                    (":scheme", "https"),
                    (":authority", f"localhost:{port}"),
                ],
                end_stream=True,
            )
            responses[streamId] = {"headers": {}, "body": b"", "ended": False}
        sock.sendall(conn.data_to_send())

        def done() -> bool:
            finished = all(r["ended"] for sid, r in responses.items() if sid != streamId)
            return finished and (
                streamId is None or b"event: message" in responses[streamId]["body"]
            )

        while not done():
            data = sock.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    responses[event.stream_id]["headers"] = {
                        (k.decode() if isinstance(k, bytes) else k): (
                            v.decode() if isinstance(v, bytes) else v
                        )
                        for k, v in event.headers
                    }
                elif isinstance(event, h2.events.DataReceived):
                    responses[event.stream_id]["body"] += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                    responses[event.stream_id]["ended"] = True
                    responses[event.stream_id]["reset"] = isinstance(event, h2.events.StreamReset)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    result["goaway"] = True
            sock.sendall(conn.data_to_send())
        ordered = sorted((n, sid) for sid, n in ids.items())
        result["responses"] = [
            (
                int(responses[sid]["headers"].get(":status", 0)),
                responses[sid]["headers"],
                responses[sid]["body"],
            )
            for _, sid in ordered
        ]
        if streamId is not None:
            result["stream"] = responses[streamId]
        result["maxStreams"] = conn.remote_settings.max_concurrent_streams
        conn.close_connection()
        sock.sendall(conn.data_to_send())
        return result
    finally:
        sock.close()


@pytest.mark.e2e
@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_h2PagesAndApiWithWebSocketOnOnePort(tmp_path: Path) -> None:
    """
    On one ssl: endpoint a client offering h2 gets HTTP/2 (ALPN) for the page, the API and
    SSE, several requests multiplexed on one connection, while a WebSocket on the same port
    speaks HTTP/1.1 (its client offers no h2) and the chat reaches both.  A request with an
    Upgrade header gets a JSON 400 on its stream, not a GOAWAY; the server announces the
    default stream limit.
    """
    from twisted.internet.ssl import Certificate, optionsForClientTLS

    keyPath, certPath = selfSignedCertificate(tmp_path)
    endpoint = f"ssl:0:interface=127.0.0.1:privateKey={keyPath}:certKey={certPath}"
    service = PortshareService(Settings(ports=(endpoint,), limits=Limits(maxBody=1024)), reactor)
    service.startService()
    try:
        port = int(service.listening[0].rsplit(":", 1)[1])
        trust = Certificate.loadPEM(certPath.read_bytes())
        chat = await connectChat(
            reactor, port, tls=optionsForClientTLS("localhost", trustRoot=trust)
        )
        chat.send(type="join", room="both", nick="ws", ref=1)
        assert (await chat.until("joined"))["ref"] == 1
        result = await threads.deferToThread(
            h2Exchange,
            port,
            certPath,
            [
                ("GET", "/", None),
                ("GET", "/healthz", None),
                ("POST", "/api/rooms/both/messages", orjson.dumps({"nick": "h2", "text": "hi"})),
                ("GET", "/ws", None),
                ("GET", "/api/connections", None),
                ("POST", "/api/rooms/both/messages", b"x" * 2000),
                ("GET", "/ws", None, [("upgrade", "websocket"), ("connection", "upgrade")]),
            ],
            "/sse?room=both&since=0",
        )
        assert result["alpn"] == "h2"
        assert result["maxStreams"] == 100
        assert not result["goaway"]
        page, health, posted, ws, connections, tooLarge, upgrade = result["responses"]
        # Upgrade over HTTP/2: 400 on this stream, the others go on
        assert upgrade[0] == 400 and upgrade[1]["server"] == "portshare"
        assert orjson.loads(upgrade[2])["error"] == "bad_request"
        # over --max-body: 413 on this stream, the body dropped unread; the others go on
        assert (tooLarge[0], orjson.loads(tooLarge[2])["error"]) == (413, "too_large")
        assert page[0] == 200 and b"<html" in page[2].lower()
        assert page[1].get("content-security-policy")
        assert (health[0], orjson.loads(health[2])) == (200, {"status": "ok"})
        assert (posted[0], orjson.loads(posted[2])) == (201, {"offset": 1})
        assert ws[0] == 426 and orjson.loads(ws[2])["error"] == "upgrade_required"
        rows = orjson.loads(connections[2])["connections"]
        assert {r["protocol"] for r in rows} >= {"websocket", "h2"}
        h2row = next(r for r in rows if r["protocol"] == "h2")
        assert h2row["requests"] >= 4
        sse = result["stream"]
        assert sse["headers"][":status"] == "200"
        assert sse["headers"]["content-type"].startswith("text/event-stream")
        assert b"event: joined" in sse["body"] and b'"text":"hi"' in sse["body"]
        message = await chat.until("message")
        assert (message["nick"], message["text"]) == ("h2", "hi")
        chat.dropConnection(abort=True)
    finally:
        await service.stopService()


@pytest.mark.e2e
@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_http11StillServedOnTls(tmp_path: Path) -> None:
    """A client offering only http/1.1 (or no ALPN) gets HTTP/1.1 on the same endpoint."""
    keyPath, certPath = selfSignedCertificate(tmp_path)
    endpoint = f"ssl:0:interface=127.0.0.1:privateKey={keyPath}:certKey={certPath}"
    service = PortshareService(Settings(ports=(endpoint,)), reactor)
    service.startService()
    try:
        port = int(service.listening[0].rsplit(":", 1)[1])

        def get() -> tuple[str | None, bytes]:
            context = ssl.create_default_context(cafile=str(certPath))
            context.set_alpn_protocols(["http/1.1"])
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                context.wrap_socket(raw, server_hostname="localhost") as sock,
            ):
                sock.sendall(
                    b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                )
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
                return sock.selected_alpn_protocol(), data

        alpn, data = await threads.deferToThread(get)
        assert alpn == "http/1.1"
        assert data.startswith(b"HTTP/1.1 200")
    finally:
        await service.stopService()
