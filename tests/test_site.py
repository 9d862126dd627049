"""
Tests for L{portshare.site} (and the HTTP/1.1 channel of L{portshare._twistedhttp} under it):
request limits and refusals, the access log line, over the real site and tracker in memory.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import pytest_twisted
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import combinedLogFormatter
from twisted.web.test.requesthelper import DummyRequest

from portshare.limits import Limits
from portshare.site import accessLogLine
from portshare.testing import MemoryConnection, startedService
from tests.httpresponses import exchange, response


class RequestLimitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.service = startedService(
            self, limits=Limits(maxBody=100, maxHeaders=5, maxHeaderBytes=400)
        )

    def test_bodyRefusedBeforeReading(self) -> None:
        """A Content-Length over --max-body is answered 413 at once, before any body byte."""
        c = MemoryConnection(self.service)
        c.send(b"POST /api/rooms/r/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        status, headers, body = response(c)
        self.assertEqual((status, orjson.loads(body)["error"]), (413, "too_large"))
        self.assertEqual(headers[b"connection"], b"close")
        self.assertEqual(headers[b"server"], b"portshare")
        self.assertTrue(c.transport.disconnecting)
        self.assertEqual(self.service.metrics.httpErrors.labels("413")._value.get(), 1)

    def test_chunkedBodyCut(self) -> None:
        """A chunked body is cut with 413 as soon as it passes --max-body."""
        c = MemoryConnection(self.service)
        c.send(
            b"POST /api/rooms/r/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        c.send(b"64\r\n" + b"a" * 100 + b"\r\n")
        self.assertEqual(c.read(), b"")
        c.send(b"64\r\n" + b"a" * 100 + b"\r\n")
        self.assertEqual(response(c)[0], 413)
        self.assertEqual(self.service.hub.metrics.messagesIn._value.get(), 0)

    def test_keepAliveServesManyRequests(self) -> None:
        """Under the limits, one connection serves several requests (HTTP/1.1 keep-alive)."""
        c = MemoryConnection(self.service)
        for _ in range(3):
            c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(response(c)[0], 200)
        self.assertEqual(self.service.tracker.rows()[0]["requests"], 3)

    def test_localAddressAskedOnce(self) -> None:
        """Requests on one connection ask the socket for its local address once (it was a
        getsockname() per request), and each request still gets it."""
        c = MemoryConnection(self.service)
        asked: list[object] = []
        getHost = c.transport.getHost

        def counting() -> Any:
            asked.append(None)
            return getHost()

        c.transport.getHost = counting  # type: ignore[method-assign]
        hosts = []
        original = self.service.site.requestFactory.process

        def process(request: Any) -> None:
            hosts.append(request.getHost())
            original(request)

        self.patch(self.service.site.requestFactory, "process", process)
        for _ in range(3):
            c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(response(c)[0], 200)
        self.assertEqual(len(asked), 1)
        self.assertEqual(hosts, [getHost()] * 3)


class RequestHeadRefusalTests(SynchronousTestCase):
    """
    A request head over the limits, or one that does not parse, is answered with a status and a
    JSON reason, C{Server: portshare} and C{Connection: close}, and the connection is closed:
    through the real tracker, site and twisted.web HTTPChannel.
    """

    def setUp(self) -> None:
        self.service = startedService(self, limits=Limits(maxHeaders=5, maxHeaderBytes=400))

    def refused(self, *chunks: bytes) -> tuple[int, dict[bytes, bytes], Any]:
        """Send C{chunks}; @return: the refusal, checked to be a closing JSON answer."""
        c = MemoryConnection(self.service)
        for chunk in chunks:
            c.send(chunk)
        status, headers, body = response(c)
        self.assertEqual(headers[b"server"], b"portshare")
        self.assertEqual(headers[b"connection"], b"close")
        self.assertEqual(headers[b"content-type"], b"application/json")
        self.assertEqual(int(headers[b"content-length"]), len(body))
        self.assertTrue(c.transport.disconnecting)
        c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # nothing more is read
        self.assertEqual(c.read(), b"")
        return status, headers, orjson.loads(body)

    def errorsCounted(self, status: int) -> float:
        return float(self.service.metrics.httpErrors.labels(str(status))._value.get())

    def test_requestLineTooLong(self) -> None:
        """A request line longer than --max-header-bytes is answered 414, not dropped."""
        status, _, body = self.refused(b"GET /" + b"a" * 65536 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(status, 414)
        self.assertEqual(
            body, {"error": "too_large", "reason": "the request line is longer than 400 bytes"}
        )
        self.assertEqual(self.errorsCounted(414), 1)

    def test_requestLineTooLongWithoutEnd(self) -> None:
        """A request line that passes the limit is refused before its end has arrived."""
        status, _, _ = self.refused(b"GET /" + b"a" * 200, b"a" * 300)
        self.assertEqual(status, 414)

    def test_headerLineTooLong(self) -> None:
        """One header line longer than --max-header-bytes is answered 431, not dropped."""
        status, _, body = self.refused(b"GET / HTTP/1.1\r\nX-Big: " + b"y" * 500 + b"\r\n\r\n")
        self.assertEqual(status, 431)
        self.assertEqual(
            body, {"error": "too_large", "reason": "a header line is longer than 400 bytes"}
        )
        self.assertEqual(self.errorsCounted(431), 1)

    def test_headersTooLarge(self) -> None:
        """A request line and headers together over --max-header-bytes are answered 431."""
        status, _, body = self.refused(
            b"GET / HTTP/1.1\r\nX-1: " + b"y" * 200 + b"\r\nX-2: " + b"y" * 200 + b"\r\n\r\n"
        )
        self.assertEqual(status, 431)
        self.assertEqual(
            body,
            {
                "error": "too_large",
                "reason": "the request line and headers are larger than 400 bytes",
            },
        )

    def test_tooManyHeaders(self) -> None:
        """More headers than --max-headers are answered 431."""
        status, _, body = self.refused(
            b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(8)) + b"\r\n"
        )
        self.assertEqual(status, 431)
        self.assertEqual(body, {"error": "too_large", "reason": "more than 5 headers"})
        self.assertEqual(self.errorsCounted(431), 1)

    def test_limitsAreInclusive(self) -> None:
        """A head of exactly --max-headers headers and --max-header-bytes bytes is served."""
        line = b"GET /healthz HTTP/1.1"
        headers = [b"X-%d: " % i for i in range(5)]
        room = 400 - len(line) - sum(map(len, headers))
        headers[0] += b"y" * room
        c = MemoryConnection(self.service)
        c.send(line + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n")
        self.assertEqual(response(c)[0], 200)
        c.send(line + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"X: y\r\n\r\n")
        self.assertEqual(response(c)[0], 431)

    def test_secondRequestCountedAfresh(self) -> None:
        """Each request on a keep-alive connection has the whole limit to itself."""
        c = MemoryConnection(self.service)
        request = b"GET /healthz HTTP/1.1\r\nX-A: " + b"y" * 300 + b"\r\n\r\n"
        for _ in range(3):
            c.send(request)
            self.assertEqual(response(c)[0], 200)

    def test_malformedRequestLine(self) -> None:
        """A request line that does not parse is answered with a JSON 400."""
        status, _, body = self.refused(b"GARBAGE\r\n\r\n")
        self.assertEqual(status, 400)
        self.assertEqual(body, {"error": "bad_request", "reason": "malformed HTTP request"})
        self.assertEqual(self.errorsCounted(400), 1)

    def test_malformedHeader(self) -> None:
        """A header line without a colon is answered with a JSON 400."""
        status, _, body = self.refused(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n")
        self.assertEqual((status, body["error"]), (400, "bad_request"))

    def test_optionsStar(self) -> None:
        """C{OPTIONS *}, which twisted.web answers itself, says C{Server: portshare} too."""
        c = MemoryConnection(self.service)
        c.send(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, _ = response(c)
        self.assertEqual((status, headers[b"server"]), (200, b"portshare"))
        c.send(b"GET * HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, _ = response(c)
        self.assertEqual((status, headers[b"server"]), (405, b"portshare"))

    def test_applicationServerHeaderKept(self) -> None:
        """A resource that names its own C{Server} keeps it (an app behind --resource)."""
        from twisted.web.resource import Resource

        class Named(Resource):
            isLeaf = True

            def render_GET(self, request: Any) -> bytes:
                request.setHeader(b"server", b"my-app")
                return b"hi"

        self.service.root.putChild(b"named", Named())
        c = MemoryConnection(self.service)
        c.send(b"GET /named HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(response(c)[1][b"server"], b"my-app")


class AccessLogTests(SynchronousTestCase):
    def request(self, **headers: bytes) -> DummyRequest:
        request = DummyRequest([b""])
        request.client = IPv4Address("TCP", "10.0.0.1", 1234)
        request.uri = b"/"
        request.code = 200
        request.sentLength = 5610
        for name, value in headers.items():
            if name == "uri":
                request.uri = value
            else:
                request.requestHeaders.setRawHeaders(name.replace("_", "-"), [value])
        return request

    def test_sameAsTwisted(self) -> None:
        """The access log line is twisted.web's combined line, odd bytes and quotes included."""
        odd = [bytes([i]) for i in range(256)]
        odd += [b'a"b', b"it's", b'it\'s "x"', b"\\", b"\\'", b"caf\xc3\xa9", b""]
        for value in odd:
            for request in (
                self.request(uri=b"/?" + value),
                self.request(user_agent=value),
                self.request(referer=value),
            ):
                self.assertEqual(
                    accessLogLine("[t]", request), combinedLogFormatter("[t]", request), value
                )

    def test_notAnIPAddress(self) -> None:
        """A request over a UNIX socket, with no body sent, is logged with C{-} for both."""
        request = self.request()
        request.client = UNIXAddress(b"/run/portshare.sock")
        request.sentLength = 0
        self.assertEqual(accessLogLine("[t]", request), combinedLogFormatter("[t]", request))


@pytest.mark.e2e
@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_refusalsOverLoopback() -> None:
    """
    Over a real socket, with the default limits: every request head over a limit, or
    malformed, is answered with its status, a JSON reason and C{Server: portshare}, and the
    connection is closed; C{OPTIONS *} says C{Server: portshare} too.
    """
    from twisted.internet import reactor, threads

    from portshare.service import PortshareService, Settings

    service = PortshareService(Settings(ports=("tcp:0:interface=127.0.0.1",)), reactor)
    service.startService()
    try:
        port = int(service.listening[0].rsplit(":", 1)[1])
        cases = [
            (b"GET /" + b"a" * 65536 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "too_large"),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 20000 + b"\r\n\r\n",
                431,
                "too_large",
            ),
            (
                b"GET / HTTP/1.1\r\n"
                + b"".join(b"X-%d: %s\r\n" % (i, b"y" * 1000) for i in range(20))
                + b"\r\n",
                431,
                "too_large",
            ),
            (
                b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(70)) + b"\r\n",
                431,
                "too_large",
            ),
            (b"GARBAGE\r\n\r\n", 400, "bad_request"),
        ]
        for request, status, code in cases:
            data, closed = await threads.deferToThread(exchange, port, request)
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            headers = dict(line.lower().split(b": ", 1) for line in lines[1:])
            assert int(lines[0].split()[1]) == status, data
            assert orjson.loads(body)["error"] == code
            assert headers[b"server"] == b"portshare"
            assert headers[b"connection"] == b"close"
            assert closed
        data, closed = await threads.deferToThread(
            exchange, port, b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert data.startswith(b"HTTP/1.1 200 ") and b"\r\nServer: portshare\r\n" in data
        assert closed
    finally:
        await service.stopService()
