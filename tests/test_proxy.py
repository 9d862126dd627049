"""
Tests for L{portshare.proxy}: C{--proxy} through the service's real tree, in memory.  The
client is a L{MemoryConnection}; the backend is the other end of the connection the Agent
opens on the L{MemoryReactorClock} (L{FakeBackend}); every timeout runs on that clock.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import orjson
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers
from twisted.web.test.requesthelper import DummyRequest

from portshare.apps import ProxyApp
from portshare.limits import Limits
from portshare.proxies import parseNetworks
from portshare.proxy import Backend, forwardingHeaders, parseBackend
from portshare.testing import MemoryConnection, startedService
from tests.httpresponses import dechunk

BACKEND = "http://127.0.0.1:8000"


class FakeBackend:
    """The backend's side of the connections the proxy opens, on the test's reactor."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.accepted = 0

    @property
    def attempts(self) -> int:
        """Connections the proxy has tried to open so far."""
        return len(self.reactor.tcpClients)

    def accept(self) -> tuple[Any, StringTransport]:
        """Complete the proxy's oldest connection attempt not handled yet."""
        host, port, factory, _, _ = self.reactor.tcpClients[self.accepted]
        self.accepted += 1
        protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
        protocol.makeConnection(transport)
        self.reactor.advance(0)  # the request body's cooperative writes
        return protocol, transport

    def refuse(self) -> None:
        """Fail the oldest connection attempt not handled yet: connection refused."""
        _, _, factory, _, _ = self.reactor.tcpClients[self.accepted]
        connector = self.reactor.connectors[self.accepted]
        self.accepted += 1
        factory.clientConnectionFailed(connector, Failure(ConnectionRefusedError()))


def head(data: bytes) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    """A request or response: its first line, its headers (in order), and its body."""
    top, _, body = data.partition(b"\r\n\r\n")
    lines = top.split(b"\r\n")
    fields = [tuple(line.split(b": ", 1)) for line in lines[1:]]
    return lines[0], [(n.lower(), v) for n, v in fields], body  # type: ignore[misc]


def values(fields: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [v for n, v in fields if n == name]


class ProxyCase(SynchronousTestCase):
    """A started service with --proxy BACKEND on a memory reactor, and its fake backend."""

    def setUp(self) -> None:
        self.service = self.start()

    def start(self, **settings: Any) -> Any:
        settings.setdefault("app", ProxyApp(BACKEND, connectTimeout=5, responseTimeout=30))
        service = startedService(self, **settings)
        self.backend = FakeBackend(service.reactor)
        return service

    def client(self, port: int = 40000) -> MemoryConnection:
        return MemoryConnection(self.service, port)

    def relay(
        self, request: bytes, answer: bytes, client: MemoryConnection | None = None
    ) -> tuple[bytes, MemoryConnection, StringTransport]:
        """Send C{request}, answer it with C{answer} from the backend; @return: what the
        backend received, the client, and the backend's transport."""
        c = client or self.client()
        c.send(request)
        protocol, transport = self.backend.accept()
        received = transport.value()
        protocol.dataReceived(answer)
        return received, c, transport


class RelayTests(ProxyCase):
    def test_getIsRelayedAndAnswered(self) -> None:
        """A GET for a path portshare does not serve reaches the backend with the client's
        target, and the backend's status, headers and body come back."""
        received, c, _ = self.relay(
            b"GET /shop/cart?id=7 HTTP/1.1\r\nHost: app.example\r\nAccept: text/html\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n"
            b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nServer: backend/1\r\n\r\nhello",
        )
        line, fields, _ = head(received)
        self.assertEqual(line, b"GET /shop/cart?id=7 HTTP/1.1")
        self.assertEqual(values(fields, b"host"), [b"app.example"])
        self.assertEqual(values(fields, b"accept"), [b"text/html"])
        status, answer, body = head(c.read())
        self.assertEqual(status, b"HTTP/1.1 200 OK")
        self.assertEqual(body, b"hello")
        self.assertEqual(values(answer, b"set-cookie"), [b"a=1", b"b=2"])
        self.assertEqual(values(answer, b"server"), [b"backend/1"])
        self.assertEqual(values(answer, b"content-length"), [b"5"])
        self.assertEqual(values(answer, b"content-type"), [b"text/html"])

    def test_baseUrlPath(self) -> None:
        """A backend URL with a path puts it before every relayed target."""
        self.service = self.start(app=ProxyApp("http://127.0.0.1:8000/base/"))
        received, _, _ = self.relay(
            b"GET /x?y=1 HTTP/1.1\r\nHost: h\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
        )
        self.assertTrue(received.startswith(b"GET /base/x?y=1 HTTP/1.1\r\n"), received)

    def test_postBodyStreamedWithItsLength(self) -> None:
        """A POST's body reaches the backend with the length portshare read; the client's
        framing headers (Expect, Transfer-Encoding) are not relayed."""
        body = b"name=ann&note=" + b"x" * 3000
        received, c, _ = self.relay(
            b"POST /form HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body),
            b"HTTP/1.1 303 See Other\r\nLocation: /done\r\nContent-Length: 0\r\n\r\n",
        )
        line, fields, sent = head(received)
        self.assertEqual(line, b"POST /form HTTP/1.1")
        self.assertEqual(values(fields, b"content-length"), [b"%d" % len(body)])
        self.assertEqual(values(fields, b"transfer-encoding"), [])
        self.assertEqual(sent, body)
        status, answer, _ = head(c.read())
        self.assertEqual(
            (status, values(answer, b"location")), (b"HTTP/1.1 303 See Other", [b"/done"])
        )

    def test_chunkedRequestBodyIsSentWithALength(self) -> None:
        """A chunked request body is relayed with a Content-Length, never as chunks: the
        backend never parses the client's framing."""
        received, _, _ = self.relay(
            b"PUT /doc HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
        )
        _, fields, sent = head(received)
        self.assertEqual(values(fields, b"content-length"), [b"11"])
        self.assertEqual(values(fields, b"transfer-encoding"), [])
        self.assertEqual(sent, b"hello world")

    def test_hopByHopHeadersRemovedBothWays(self) -> None:
        """Connection, the fields it names, Keep-Alive, TE, Upgrade, Proxy-* are not relayed
        to the backend, nor back from it."""
        received, c, _ = self.relay(
            b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret-Hop\r\n"
            b"X-Secret-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: h2c\r\n"
            b"Proxy-Authorization: Basic eA==\r\nProxy-Connection: keep-alive\r\n"
            b"X-Kept: yes\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n"
            b"Keep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nUpgrade: foo\r\n"
            b"X-Also-Kept: yes\r\nContent-Length: 0\r\n\r\n",
        )
        _, fields, _ = head(received)
        names = {n for n, _ in fields}
        for gone in (b"x-secret-hop", b"keep-alive", b"te", b"upgrade", b"proxy-authorization",
                     b"proxy-connection"):  # fmt: skip
            self.assertNotIn(gone, names)
        self.assertEqual(values(fields, b"x-kept"), [b"yes"])
        self.assertNotIn(b"keep-alive", values(fields, b"connection"))
        _, answer, _ = head(c.read())
        names = {n for n, _ in answer}
        for gone in (b"keep-alive", b"proxy-authenticate", b"upgrade"):
            self.assertNotIn(gone, names)
        self.assertEqual(values(answer, b"x-also-kept"), [b"yes"])

    def test_bareLineFeedsFromTheBackendAreNormalised(self) -> None:
        """A backend head with a bare LF inside a header line (a response-splitting try) is
        read as two lines, as RFC 9112 2.2 lets a recipient, and written to the client as
        CRLF lines: the client and portshare see the same message boundaries."""
        _, c, _ = self.relay(
            b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-Split: a\nX-Second: b\r\nContent-Length: 2\r\n\r\nok",
        )
        raw = c.read()
        top, _, body = raw.partition(b"\r\n\r\n")
        self.assertNotIn(b"\n", top.replace(b"\r\n", b""))
        self.assertNotIn(b"\r", top.replace(b"\r\n", b""))
        self.assertIn(b"\r\nX-Split: a\r\n", raw)
        self.assertEqual(body, b"ok")

    def test_controlCharactersInBackendValues(self) -> None:
        """A bare CR inside a backend header value reaches the client as a space (never as a
        line end); a value holding a NUL is not passed on."""
        _, c, _ = self.relay(
            b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-Bad: a\rb\r\nX-Nul: a\x00b\r\nContent-Length: 2\r\n\r\nok",
        )
        raw = c.read()
        self.assertIn(b"\r\nX-Bad: a b\r\n", raw)
        self.assertNotIn(b"X-Nul", raw)
        self.assertTrue(raw.endswith(b"\r\n\r\nok"), raw)

    def test_headKeepsTheLength(self) -> None:
        """A HEAD's answer keeps the backend's Content-Length and has no body."""
        _, c, _ = self.relay(
            b"HEAD /file HTTP/1.1\r\nHost: h\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: text/plain\r\n\r\n",
        )
        status, answer, body = head(c.read())
        self.assertEqual((status, values(answer, b"content-length"), body),
                         (b"HTTP/1.1 200 OK", [b"1234"], b""))  # fmt: skip

    def test_closeDelimitedBodyIsComplete(self) -> None:
        """A backend answering without a length (HTTP/1.0 style, ended by closing) gives a
        complete chunked response to an HTTP/1.1 client."""
        c = self.client()
        c.send(b"GET /old HTTP/1.1\r\nHost: h\r\n\r\n")
        protocol, _ = self.backend.accept()
        protocol.dataReceived(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nold school")
        protocol.connectionLost(Failure(ConnectionDone()))
        _status, answer, body = head(c.read())
        self.assertEqual(values(answer, b"transfer-encoding"), [b"chunked"])
        self.assertEqual(dechunk(body), b"old school")
        self.assertFalse(c.transport.disconnecting)

    def test_noContentTypeAdded(self) -> None:
        """An answer without Content-Type gets none from twisted.web's default."""
        _, c, _ = self.relay(
            b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"
        )
        _, answer, _ = head(c.read())
        self.assertEqual(values(answer, b"content-type"), [])


class ForwardingTests(ProxyCase):
    def forwarded(self, request: bytes, port: int = 40000) -> list[tuple[bytes, bytes]]:
        received, _, _ = self.relay(
            request, b"HTTP/1.1 204 No Content\r\n\r\n", client=self.client(port)
        )
        return head(received)[1]

    def test_clientForwardedForIsNotTrusted(self) -> None:
        """From a peer that is not a --trusted-proxy, what the client wrote in
        X-Forwarded-For, -Proto, -Host, Forwarded and X-Real-IP is replaced by the truth:
        the peer's address alone."""
        fields = self.forwarded(
            b"GET /x HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 6.6.6.6\r\n"
            b"X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n"
            b"Forwarded: for=6.6.6.6;proto=https\r\nX-Real-IP: 6.6.6.6\r\n\r\n"
        )
        self.assertEqual(values(fields, b"x-forwarded-for"), [b"127.0.0.1"])
        self.assertEqual(values(fields, b"x-forwarded-proto"), [b"http"])
        self.assertEqual(values(fields, b"x-forwarded-host"), [b"shop.example"])
        self.assertEqual(
            values(fields, b"forwarded"), [b"for=127.0.0.1;host=shop.example;proto=http"]
        )
        self.assertEqual(values(fields, b"x-real-ip"), [b"127.0.0.1"])
        self.assertNotIn(b"6.6.6.6", b"".join(v for _, v in fields))

    def test_trustedProxyChainIsKeptAndExtended(self) -> None:
        """From a --trusted-proxy, its X-Forwarded-For and Forwarded are kept and the peer
        appended; its X-Forwarded-Proto and -Host are kept; X-Real-IP is the client."""
        self.service = self.start(trustedProxies=parseNetworks(["127.0.0.0/8"]))
        fields = self.forwarded(
            b"GET /x HTTP/1.1\r\nHost: internal:8080\r\nX-Forwarded-For: 203.0.113.9\r\n"
            b"X-Forwarded-Proto: https\r\nX-Forwarded-Host: shop.example\r\n"
            b'Forwarded: for=203.0.113.9;proto=https;host="shop.example"\r\n\r\n'
        )
        self.assertEqual(values(fields, b"x-forwarded-for"), [b"203.0.113.9, 127.0.0.1"])
        self.assertEqual(values(fields, b"x-forwarded-proto"), [b"https"])
        self.assertEqual(values(fields, b"x-forwarded-host"), [b"shop.example"])
        self.assertEqual(
            values(fields, b"forwarded"),
            [b'for=203.0.113.9;proto=https;host="shop.example", '
             b'for=127.0.0.1;host="internal:8080";proto=http'],
        )  # fmt: skip
        self.assertEqual(values(fields, b"x-real-ip"), [b"203.0.113.9"])

    def test_ipv6PeerInForwarded(self) -> None:
        """An IPv6 peer is a quoted, bracketed node in Forwarded (RFC 7239 6)."""
        request = DummyRequest([b"x"])
        request.client = IPv6Address("TCP", "2001:db8::1", 5000)
        request.requestHeaders = Headers({b"host": [b"h"]})
        request.isSecure = lambda: False  # type: ignore[method-assign]
        headers = dict(forwardingHeaders(request, ()))
        self.assertEqual(headers[b"forwarded"], [b'for="[2001:db8::1]";host=h;proto=http'])
        self.assertEqual(headers[b"x-forwarded-for"], [b"2001:db8::1"])


class RefusalTests(ProxyCase):
    """What must never reach the backend does not: no connection is even opened."""

    def assertRefused(self, request: bytes, status: int) -> bytes:
        c = self.client()
        c.send(request)
        self.assertEqual(self.backend.attempts, 0, request)
        answer = c.read()
        self.assertTrue(answer.startswith(b"HTTP/1.1 %d " % status), answer)
        return answer

    def test_portsharesOwnPathsNeverReachTheBackend(self) -> None:
        """/healthz, /metrics and everything under the chat's prefix (also written with
        percent-escapes) are answered by portshare's tree."""
        for path in (b"/healthz", b"/metrics", b"/chat/api/rooms", b"/%63hat/api/rooms",
                     b"/chat/", b"/chat/sse?room=a"):  # fmt: skip
            c = self.client()
            c.send(b"GET %s HTTP/1.1\r\nHost: h\r\n\r\n" % path)
            self.assertEqual(self.backend.attempts, 0, path)
            self.assertTrue(c.read().startswith(b"HTTP/1.1 200 "), path)
        c = self.client()
        self.assertTrue(c.handshake(path="/chat/ws").startswith(b"HTTP/1.1 101 "))
        self.assertEqual(self.backend.attempts, 0)

    def test_bothLengthAndTransferEncoding(self) -> None:
        """Content-Length with Transfer-Encoding (the classic desync) is a 400."""
        self.assertRefused(
            b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n"
            b"\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: h\r\n\r\n",
            400,
        )

    def test_twoLengths(self) -> None:
        """Two Content-Length headers are a 400."""
        self.assertRefused(
            b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 20\r\n\r\nx", 400
        )

    def test_obfuscatedTransferEncoding(self) -> None:
        """A transfer coding other than chunked (or a disguised one) is a 400."""
        for coding in (b"xchunked", b"chunked, identity", b" chunked\x0b"):
            self.setUp()
            self.assertRefused(
                b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: %s\r\n\r\n0\r\n\r\n" % coding,
                400,
            )

    def test_headerInjectionWithCarriageReturn(self) -> None:
        """A bare CR or LF inside a header value (header injection) is a 400."""
        for value in (b"a\rX-Injected: 1", b"a\nX-Injected: 1"):
            self.setUp()
            self.assertRefused(b"GET /x HTTP/1.1\r\nHost: h\r\nX-Note: %s\r\n\r\n" % value, 400)

    def test_absoluteFormTargetAndBadBytes(self) -> None:
        """A target that is not a path (absolute-form, which would name another host) is a
        JSON 400; so are several Host headers."""
        answer = self.assertRefused(b"GET http://evil.example/ HTTP/1.1\r\nHost: h\r\n\r\n", 400)
        self.assertIn(b'"error":"bad_request"', answer)
        self.setUp()
        self.assertRefused(b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400)

    def test_oversizedBodyIs413BeforeTheBackend(self) -> None:
        """A body over --max-body is 413 before it is read, and never reaches the backend,
        announced or chunked."""
        self.service = self.start(limits=Limits(maxBody=100))
        self.assertRefused(b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n", 413)
        self.service = self.start(limits=Limits(maxBody=100))
        self.assertRefused(
            b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"60\r\n" + b"x" * 96 + b"\r\n10\r\n" + b"y" * 16 + b"\r\n",
            413,
        )

    def test_obsFoldIsNormalised(self) -> None:
        """A folded header (obs-fold) reaches the backend as one line."""
        received, _, _ = self.relay(
            b"GET /x HTTP/1.1\r\nHost: h\r\nX-Long: one\r\n  two\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
        )
        self.assertEqual(values(head(received)[1], b"x-long"), [b"one two"])


class FailureTests(ProxyCase):
    def json(self, c: MemoryConnection) -> tuple[bytes, Any]:
        status, _, body = head(c.read())
        return status, orjson.loads(dechunk(body) if not body.startswith(b"{") else body)

    def test_refusedIs502(self) -> None:
        """A backend that refuses the connection gets the client a JSON 502, without the
        backend's address; the log has it."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        c = self.client()
        c.send(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
        self.backend.refuse()
        status, body = self.json(c)
        self.assertEqual(status, b"HTTP/1.1 502 Bad Gateway")
        self.assertEqual(
            body, {"error": "bad_gateway", "reason": "the application is not available"}
        )
        logged = [e for e in events if e.get("backend") == BACKEND and e.get("status") == 502]
        self.assertEqual(len(logged), 1)
        self.assertIn("ConnectionRefusedError", logged[0]["why"])

    def test_connectTimeoutIs504(self) -> None:
        """A backend that does not accept the connection within the connect timeout: 504."""
        c = self.client()
        c.send(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
        self.service.reactor.advance(4.9)
        self.assertEqual(c.read(), b"")
        self.service.reactor.advance(0.2)
        status, body = self.json(c)
        self.assertEqual(status, b"HTTP/1.1 504 Gateway Time-out")
        self.assertEqual(body["error"], "gateway_timeout")
        self.assertIn("accept a connection within 5", body["reason"])
        self.assertTrue(self.service.reactor.connectors[0].stoppedConnecting)

    def test_responseTimeoutIs504(self) -> None:
        """A backend that accepts but does not answer within the response timeout: 504, and
        the backend's connection is dropped."""
        c = self.client()
        c.send(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
        _, transport = self.backend.accept()
        self.service.reactor.advance(29)
        self.assertEqual(c.read(), b"")
        self.service.reactor.advance(1.5)
        status, body = self.json(c)
        self.assertEqual(status, b"HTTP/1.1 504 Gateway Time-out")
        self.assertIn("did not answer within 30", body["reason"])
        self.assertTrue(transport.disconnecting or transport.disconnected)

    def test_stalledBodyCutsTheClient(self) -> None:
        """A backend that stops in the middle of its body for the response timeout: the
        client's connection is cut (so it cannot take the part for the whole)."""
        c = self.client()
        c.send(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
        protocol, _transport = self.backend.accept()
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst ")
        self.service.reactor.advance(20)
        protocol.dataReceived(b"more ")
        self.service.reactor.advance(20)  # 40 s since the head, 20 since the last piece
        self.assertFalse(c.transport.disconnected)
        self.service.reactor.advance(10.5)
        self.assertTrue(c.transport.disconnected)
        self.assertTrue(c.read().endswith(b"first more "))

    def test_truncatedBodyCutsTheClient(self) -> None:
        """A backend that closes before the length it announced: the client is cut too."""
        c = self.client()
        c.send(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
        protocol, _ = self.backend.accept()
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(c.transport.disconnected)

    def test_twoLengthsFromTheBackendIs502(self) -> None:
        """A backend answer with two different Content-Lengths (a desync the other way) is a
        502, not relayed."""
        c = self.client()
        c.send(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
        protocol, _ = self.backend.accept()
        protocol.dataReceived(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\nok"
        )
        status, body = self.json(c)
        self.assertEqual((status, body["error"]), (b"HTTP/1.1 502 Bad Gateway", "bad_gateway"))

    def test_malformedAnswerIs502(self) -> None:
        """A backend that answers something that is not HTTP: 502."""
        c = self.client()
        c.send(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
        protocol, _ = self.backend.accept()
        protocol.dataReceived(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        status, body = self.json(c)
        self.assertEqual((status, body["error"]), (b"HTTP/1.1 502 Bad Gateway", "bad_gateway"))


class StreamingTests(ProxyCase):
    def test_bodyStreamsAsItArrives(self) -> None:
        """Each piece of the backend's body is written to the client as it arrives, not
        gathered first."""
        c = self.client()
        c.send(b"GET /stream HTTP/1.1\r\nHost: h\r\n\r\n")
        protocol, _ = self.backend.accept()
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        protocol.dataReceived(b"6\r\nfirst\n\r\n")
        self.assertIn(b"first\n", c.read())
        protocol.dataReceived(b"7\r\nsecond\n\r\n0\r\n\r\n")
        self.assertIn(b"second\n", c.read())

    def test_slowClientPausesTheBackend(self) -> None:
        """While the client's socket is full, the backend's is paused (nothing piles up in
        portshare); when it drains, the backend resumes."""
        c = self.client()
        c.send(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n")
        protocol, backend = self.backend.accept()
        protocol.dataReceived(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n" + b"x" * 65536
        )
        self.assertEqual(backend.producerState, "producing")
        c.transport.producer.pauseProducing()  # the client's socket buffer is full
        self.assertEqual(backend.producerState, "paused")
        self.service.reactor.advance(120)  # a slow client is not a stalled backend
        self.assertFalse(c.transport.disconnected)
        c.transport.producer.resumeProducing()
        self.assertEqual(backend.producerState, "producing")

    def test_clientGoneAbortsTheBackend(self) -> None:
        """A client that goes away mid-body stops the backend's response."""
        c = self.client()
        c.send(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n")
        protocol, backend = self.backend.accept()
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nxx")
        c.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(backend.producerState == "stopped" or backend.disconnecting)

    def test_clientGoneBeforeTheAnswer(self) -> None:
        """A client that goes away before the backend answered cancels the backend's
        request."""
        c = self.client()
        c.send(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
        _, backend = self.backend.accept()
        c.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(backend.disconnecting or backend.disconnected)


class BackendURLTests(SynchronousTestCase):
    def test_accepted(self) -> None:
        """http and https URLs, with a port or the scheme's, an IPv6 host, a base path."""
        self.assertEqual(parseBackend("http://127.0.0.1:8000"), Backend("http", "127.0.0.1", 8000))
        self.assertEqual(
            parseBackend("https://app.internal"), Backend("https", "app.internal", 443)
        )
        self.assertEqual(parseBackend("http://[::1]:81/base/"), Backend("http", "::1", 81, "/base"))
        self.assertEqual(parseBackend("http://[::1]:81").origin, "http://[::1]:81")
        ipaddress.ip_address(parseBackend("http://[::1]:81").host)

    def test_refused(self) -> None:
        """Other schemes, no host, credentials, queries, fragments and bad ports are refused."""
        for url, why in [
            ("ftp://x", "must start with http"),
            ("127.0.0.1:8000", "must start with http"),
            ("http://", "has no host"),
            ("http://u:p@h:1", "credentials"),
            ("http://h:1/?q=1", "query"),
            ("http://h:1/#f", "fragment"),
            ("http://h:99999", "not a URL"),
        ]:
            with self.assertRaises(ValueError) as caught:
                parseBackend(url)
            self.assertIn(why, str(caught.exception), url)
