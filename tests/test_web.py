"""
Tests for L{portshare.web} and L{portshare.connections}: request limits, connection limits,
static files, over the real site and tracker in memory.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_twisted
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import combinedLogFormatter, datetimeToString
from twisted.web.resource import getChildForRequest
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from portshare.limits import Limits
from portshare.testing import MemoryConnection, startedService
from portshare.web import accessLogLine


def response(c: MemoryConnection) -> tuple[int, dict[bytes, bytes], bytes]:
    head, _, body = c.read().partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = dict(line.lower().split(b": ", 1) for line in lines[1:] if b": " in line)
    return int(lines[0].split()[1]), headers, body


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


class ConnectionLimitTests(SynchronousTestCase):
    def connect(self, service: Any, host: str) -> Any:
        transport = StringTransport(peerAddress=IPv4Address("TCP", host, 5000))
        protocol = service.tracker.buildProtocol(transport.getPeer())
        if protocol is not None:
            protocol.makeConnection(transport)
        return protocol

    def test_perAddressAndTotal(self) -> None:
        """Connections beyond the per-address or total limit are refused and counted."""
        service = startedService(self, limits=Limits(maxConnections=3, maxConnectionsPerAddress=2))
        a1, a2 = self.connect(service, "10.0.0.1"), self.connect(service, "10.0.0.1")
        self.assertIsNone(self.connect(service, "10.0.0.1"))
        self.assertIsNotNone(self.connect(service, "10.0.0.2"))
        self.assertIsNone(self.connect(service, "10.0.0.3"))
        a1.connectionLost(None)
        self.assertIsNotNone(self.connect(service, "10.0.0.1"))
        refused = service.metrics.refusedConnections
        self.assertEqual(refused.labels("max-connections-per-address")._value.get(), 1)
        self.assertEqual(refused.labels("max-connections")._value.get(), 1)
        self.assertIsNotNone(a2)

    def test_slowlorisCut(self) -> None:
        """A connection that has not completed a request within --request-timeout is cut,
        however slowly it keeps sending; one that did is kept."""
        service = startedService(self, limits=Limits(requestTimeout=10))
        loris = MemoryConnection(service)
        good = MemoryConnection(service)
        good.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        for _ in range(9):
            loris.send(b"X")
            service.reactor.advance(1)
        self.assertFalse(loris.transport.disconnecting)
        service.reactor.advance(1)
        self.assertTrue(loris.transport.disconnected)
        self.assertFalse(good.transport.disconnected)

    def test_upgradedNotCut(self) -> None:
        """A WebSocket opened in time is not cut by the request timeout."""
        service = startedService(self, limits=Limits(requestTimeout=10))
        c = MemoryConnection(service)
        c.handshake()
        service.reactor.advance(11)
        self.assertFalse(c.transport.disconnected)


class StaticFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        root = Path(self.mktemp())
        (root / "sub").mkdir(parents=True)
        (root / "index.html").write_text("<p>home</p>")
        (root / ".secret").write_text("nope")
        outside = Path(self.mktemp())
        outside.mkdir()
        (outside / "passwd").write_text("root:x")
        os.symlink(outside / "passwd", root / "escape")
        self.service = startedService(self, staticDir=root)

    def get(self, path: bytes) -> int:
        c = MemoryConnection(self.service)
        c.send(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        return response(c)[0]

    def test_refusals(self) -> None:
        """Dotfiles, symlinks out of the directory, dot segments, NUL and listings are 404s."""
        for path in (
            b"/.secret",
            b"/escape",
            b"/%2e%2e/etc/passwd",
            b"/sub/../.secret",
            b"/a%00b",
            b"/sub/",
        ):
            self.assertEqual(self.get(path), 404, path)

    def test_securityHeaders(self) -> None:
        """Pages carry a Content-Security-Policy and nosniff."""
        c = MemoryConnection(self.service)
        c.send(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, _ = response(c)
        self.assertEqual(status, 200)
        self.assertIn(b"frame-ancestors 'none'", headers[b"content-security-policy"])
        self.assertEqual(headers[b"x-content-type-options"], b"nosniff")


class MemoryFileTests(SynchronousTestCase):
    """Static files answered from memory: the same answers as L{File}, fresh from the disk."""

    def setUp(self) -> None:
        self.root = Path(self.mktemp()).absolute()
        (self.root / "sub").mkdir(parents=True)
        (self.root / "index.html").write_text("<p>home</p>")
        (self.root / "sub" / "app.js").write_text("let a = 1;")
        self.outside = Path(self.mktemp()).absolute()
        self.outside.mkdir()
        (self.outside / "passwd").write_text("root:x")
        self.service = startedService(self, staticDir=self.root)
        self.cache = self.service.root.cache

    def request(
        self, path: bytes, method: bytes = b"GET", headers: bytes = b""
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        c = MemoryConnection(self.service)
        c.send(method + b" " + path + b" HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        return response(c)

    def streamed(self, *segments: bytes) -> bytes:
        """GET a path through the tree with a request that pulls File's producer to the end."""
        request = DummyRequest(list(segments))
        self.assertEqual(
            getChildForRequest(self.service.root, request).render(request), NOT_DONE_YET
        )
        return b"".join(request.written)

    def rewrite(self, path: Path, text: str, mtime: int) -> None:
        path.write_text(text)
        os.utime(path, ns=(mtime, mtime))

    def test_heldAfterFirstRequest(self) -> None:
        """A file is read once and then answered from memory with File's headers and more."""
        first = self.request(b"/")
        self.assertIn((b"",), self.cache.entries)
        second = self.request(b"/")
        self.assertEqual(first, second)
        status, headers, body = second
        mtime = math.ceil((self.root / "index.html").stat().st_mtime)
        self.assertEqual((status, body), (200, b"<p>home</p>"))
        self.assertEqual(headers[b"content-type"], b"text/html")
        self.assertEqual(headers[b"content-length"], b"11")
        self.assertEqual(headers[b"accept-ranges"], b"bytes")
        self.assertEqual(headers[b"last-modified"], datetimeToString(mtime).lower())
        self.assertEqual(headers[b"x-frame-options"], b"deny")
        self.assertEqual(headers[b"server"], b"portshare")
        self.assertRegex(headers[b"etag"], rb'^"[0-9a-f]{32}"$')

    def test_nestedFile(self) -> None:
        """A file in a subdirectory is held under its whole path and served with its type."""
        self.request(b"/sub/app.js")
        status, headers, body = self.request(b"/sub/app.js")
        self.assertIn((b"sub", b"app.js"), self.cache.entries)
        self.assertEqual((status, body), (200, b"let a = 1;"))
        self.assertIn(b"javascript", headers[b"content-type"])

    def test_changedFileServedFresh(self) -> None:
        """A file changed on disk, even to the same size, is served as it is now."""
        page = self.root / "index.html"
        self.rewrite(page, "<p>home</p>", 1_000_000_000_000_000_000)
        self.assertEqual(self.request(b"/")[2], b"<p>home</p>")
        self.rewrite(page, "<p>away</p>", 1_000_000_001_000_000_000)
        self.assertEqual(self.request(b"/")[2], b"<p>away</p>")
        page.write_text("<p>much longer</p>")
        self.assertEqual(self.request(b"/")[2], b"<p>much longer</p>")
        self.assertEqual(self.cache.size, len(b"<p>much longer</p>"))

    def test_removedFile(self) -> None:
        """A held file removed from disk is a 404, and no longer held."""
        self.request(b"/sub/app.js")
        (self.root / "sub" / "app.js").unlink()
        self.assertEqual(self.request(b"/sub/app.js")[0], 404)
        self.assertEqual(self.cache.entries, {})

    def test_symlinkRetargetedOutside(self) -> None:
        """A held symlink that is pointed out of the directory is refused again."""
        link = self.root / "link"
        os.symlink(self.root / "index.html", link)
        self.assertEqual(self.request(b"/link")[0], 200)
        link.unlink()
        os.symlink(self.outside / "passwd", link)
        self.assertEqual(self.request(b"/link")[0], 404)

    def test_refusedPathsNeverHeld(self) -> None:
        """Dotfiles, listings and missing files leave nothing in memory."""
        (self.root / ".secret").write_text("nope")
        for path in (b"/.secret", b"/sub/", b"/missing", b"/sub/../.secret"):
            self.assertEqual(self.request(path)[0], 404, path)
        self.assertEqual(self.cache.entries, {})

    def test_ifNoneMatch(self) -> None:
        """The ETag (plain, weak or in a list) gets a 304 without a body; another gets a 200."""
        etag = self.request(b"/")[1][b"etag"]
        for condition in (etag, b"W/" + etag, b'"other", ' + etag, b"*"):
            status, headers, body = self.request(b"/", headers=b"If-None-Match: %s\r\n" % condition)
            self.assertEqual((status, body), (304, b""), condition)
            self.assertEqual(headers[b"etag"], etag)
            self.assertNotIn(b"content-length", headers)
        status = self.request(b"/", headers=b'If-None-Match: "other"\r\n')[0]
        self.assertEqual(status, 200)

    def test_ifModifiedSince(self) -> None:
        """If-Modified-Since at or after the file's time is a 304, unless If-None-Match differs."""
        since = self.request(b"/")[1][b"last-modified"]
        self.assertEqual(self.request(b"/", headers=b"If-Modified-Since: %s\r\n" % since)[0], 304)
        old = b"If-Modified-Since: Thu, 01 Jan 1970 00:00:01 GMT\r\n"
        self.assertEqual(self.request(b"/", headers=old)[0], 200)
        both = b'If-Modified-Since: %s\r\nIf-None-Match: "other"\r\n' % since
        self.assertEqual(self.request(b"/", headers=both)[0], 200)
        self.assertEqual(self.request(b"/", headers=b"If-Modified-Since: junk\r\n")[0], 200)

    def test_head(self) -> None:
        """HEAD gets the headers of GET, Content-Length included, and no body."""
        self.request(b"/")
        status, headers, body = self.request(b"/", method=b"HEAD")
        self.assertEqual((status, headers[b"content-length"], body), (200, b"11", b""))

    def test_range(self) -> None:
        """A Range request for a held file is answered by File from the disk: 206 and the bytes."""
        self.request(b"/")
        request = DummyRequest([b""])  # it pulls File's producer to the end at once
        request.requestHeaders.setRawHeaders(b"range", [b"bytes=3-6"])
        self.assertEqual(self.cache.entries[(b"",)].render(request), NOT_DONE_YET)
        self.assertEqual((request.responseCode, b"".join(request.written)), (206, b"home"))
        headers = request.responseHeaders
        self.assertEqual(headers.getRawHeaders(b"content-range"), [b"bytes 3-6/11"])
        self.assertEqual(headers.getRawHeaders(b"x-content-type-options"), [b"nosniff"])

    def test_otherMethodsRefused(self) -> None:
        """Other methods on a held file are a JSON 405 that says which methods are allowed."""
        self.request(b"/")
        status, headers, body = self.request(b"/", method=b"DELETE")
        self.assertEqual((status, orjson.loads(body)["error"]), (405, "method_not_allowed"))
        self.assertEqual(headers[b"allow"], b"get, head")

    def test_largeFilesStreamed(self) -> None:
        """Files over the size limit, or over the total, are streamed by File and not held."""
        self.cache.maxFileSize = 5
        self.assertEqual(self.streamed(b""), b"<p>home</p>")
        self.assertEqual(self.cache.entries, {})
        self.cache.maxFileSize = 100
        self.cache.maxBytes = 15
        self.request(b"/")
        self.assertEqual(self.streamed(b"sub", b"app.js"), b"let a = 1;")
        self.assertEqual(list(self.cache.entries), [(b"",)])


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


def exchange(port: int, request: bytes) -> tuple[bytes, bool]:
    """
    Send C{request} on a new loopback connection and read until the server closes it.

    @return: what came back, and whether the server closed the connection (EOF, or a reset
        after its answer) rather than leaving it open.
    """
    import contextlib
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with contextlib.suppress(OSError):  # closed while the rest was sent: read the answer
            sock.sendall(request)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except TimeoutError:
            return data, False
        except OSError:
            pass
        return data, True


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
