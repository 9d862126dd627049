"""Tests for L{portshare.staticfiles}: the web client's files, from memory, over the real site."""

from __future__ import annotations

import math
import os
from pathlib import Path

import orjson
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import datetimeToString
from twisted.web.resource import getChildForRequest
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from portshare.testing import MemoryConnection, startedService
from tests.httpresponses import response


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


class ModuleTypeTests(SynchronousTestCase):
    def test_modulesAreJavaScript(self) -> None:
        """The web client's ES modules are served as text/javascript even where the machine's
        MIME table says otherwise (browsers refuse module scripts of another type)."""
        from portshare.staticfiles import StaticFiles

        self.patch(StaticFiles, "contentTypes", {".js": "text/plain", ".css": "text/css"})
        service = startedService(self)
        for path in (b"/main.js", b"/client.js", b"/client/connection.js"):
            c = MemoryConnection(service)
            c.send(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, _ = response(c)
            self.assertEqual((status, headers[b"content-type"]), (200, b"text/javascript"), path)


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
