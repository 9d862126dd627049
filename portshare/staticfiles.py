"""
The web client's files (or C{--static DIR}) at C{/}: served from memory after the first
request, with one C{stat} per request to notice changes, the security headers on every page,
no directory listings and no way out of the directory.
"""

from __future__ import annotations

import hashlib
import os
import stat
from importlib import resources
from pathlib import Path
from typing import Any

from twisted.web.http import NOT_MODIFIED, datetimeToString, stringToDatetime
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request
from twisted.web.static import File, getTypeAndEncoding

from portshare.errors import METHOD_NOT_ALLOWED, PortshareError
from portshare.httpjson import notFound, writeError

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


class MemoryFile(Resource):
    """
    One static file held in memory, its response headers built once: what
    L{StaticFiles} answers C{GET} and C{HEAD} with while the file on disk is unchanged.

    The body carries the same headers L{File} would send (C{Content-Type}, C{Content-Encoding},
    C{Content-Length}, C{Last-Modified}, C{Accept-Ranges}), the security headers, and a strong
    C{ETag} (a hash of the content, the same in every worker).  C{If-None-Match} and then
    C{If-Modified-Since} are answered 304; a C{Range} request is handed to the L{File} it was
    read from, which re-reads the disk.
    """

    isLeaf = True

    def __init__(self, file: StaticFiles, identity: tuple[int, ...], body: bytes) -> None:
        super().__init__()
        #: the L{File} this was read from (for C{Range} requests and refusals)
        self.file = file
        #: the file's path on disk
        self.path: str = file.path
        #: C{(st_dev, st_ino, st_size, st_mtime_ns)} of the file when it was read
        self.identity = identity
        self.body = body
        #: whole seconds, rounded up as File's C{setLastModified} does
        self.mtime = -(-identity[3] // 1_000_000_000)
        self.etag = b'"%s"' % hashlib.blake2b(body, digest_size=16).hexdigest().encode("ascii")
        common = [
            *SECURITY_HEADERS.items(),
            (b"last-modified", datetimeToString(self.mtime)),
            (b"etag", self.etag),
        ]
        self.notModifiedHeaders = common
        kind, encoding = getTypeAndEncoding(
            file.basename(), file.contentTypes, file.contentEncodings, file.defaultType
        )
        headers = [*common, (b"accept-ranges", b"bytes")]
        if kind:
            headers.append((b"content-type", kind.encode("ascii")))
        if encoding:
            headers.append((b"content-encoding", encoding.encode("ascii")))
        headers.append((b"content-length", b"%d" % len(body)))
        self.headers = headers

    def render(self, request: Request) -> Any:
        method = request.method
        if (method != b"GET" and method != b"HEAD") or request.getHeader(b"range") is not None:
            return self.file.render(request)  # a 405, or File's byte ranges from the disk
        setHeader = request.responseHeaders.setRawHeaders
        if self.notModified(request):
            request.setResponseCode(NOT_MODIFIED)
            for name, value in self.notModifiedHeaders:
                setHeader(name, [value])
            request.write(b"")  # no body, and no Content-Length: 0 for the representation
            request.finish()
            return NOT_DONE_YET
        for name, value in self.headers:
            setHeader(name, [value])
        request.write(b"" if method == b"HEAD" else self.body)
        request.finish()
        return NOT_DONE_YET

    def notModified(self, request: Request) -> bool:
        """
        Whether the client's copy is current (RFC 9110 13.2.2): C{If-None-Match} decides when
        sent, else C{If-Modified-Since}.
        """
        match = request.getHeader(b"if-none-match")
        if match is not None:
            for tag in match.split(b","):
                tag = tag.strip()
                if tag == b"*" or tag.removeprefix(b"W/") == self.etag:
                    return True
            return False
        since = request.getHeader(b"if-modified-since")
        if since is None:
            return False
        try:
            return stringToDatetime(since.split(b";", 1)[0]) >= self.mtime
        except ValueError:
            return False


class StaticCache:
    """
    The static files served so far, in memory, by request path (the segments under the
    static root).  Each hit costs one C{os.stat} to check that the file is still the one read
    (same device, inode, size and modification time); a file changed, replaced or removed on
    disk is dropped and read again by the ordinary L{File} lookup, with every check.
    Only regular files up to C{maxFileSize} are held, up to C{maxBytes} in all; the rest are
    streamed by L{File} as before.
    """

    def __init__(self, maxFileSize: int = 1024 * 1024, maxBytes: int = 32 * 1024 * 1024) -> None:
        self.maxFileSize = maxFileSize
        self.maxBytes = maxBytes
        self.size = 0
        self.entries: dict[tuple[bytes, ...], MemoryFile] = {}

    def lookup(self, key: tuple[bytes, ...]) -> MemoryFile | None:
        """The file held for C{key}, if it is still the one on disk."""
        entry = self.entries.get(key)
        if entry is None:
            return None
        try:
            st = os.stat(entry.path)
        except OSError:
            self.evict(key)
            return None
        if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != entry.identity:
            self.evict(key)
            return None
        return entry

    def evict(self, key: tuple[bytes, ...]) -> None:
        """Forget what is held for C{key}."""
        entry = self.entries.pop(key, None)
        if entry is not None:
            self.size -= len(entry.body)

    def load(self, key: tuple[bytes, ...], file: StaticFiles) -> MemoryFile | None:
        """
        Read C{file} (already found and checked by L{StaticFiles.getChild}) into memory for
        C{key}; C{None} when it is not a regular file, is too large, or changed while read.
        """
        try:
            with open(file.path, "rb") as f:
                before = os.fstat(f.fileno())
                if (
                    not stat.S_ISREG(before.st_mode)
                    or before.st_size > self.maxFileSize
                    or self.size + before.st_size > self.maxBytes
                ):
                    return None
                body = f.read(before.st_size + 1)
                after = os.fstat(f.fileno())
        except OSError:
            return None  # File answers it (404, 403) as before
        identity = (before.st_dev, before.st_ino, before.st_size, before.st_mtime_ns)
        if (
            len(body) != before.st_size
            or (
                after.st_dev,
                after.st_ino,
                after.st_size,
                after.st_mtime_ns,
            )
            != identity
        ):
            return None  # being written: stream it this time
        self.evict(key)
        entry = MemoryFile(file, identity, body)
        self.entries[key] = entry
        self.size += len(body)
        return entry


#: the types the web client's files are served with on every machine
MODULE_TYPES = {".js": "text/javascript", ".mjs": "text/javascript"}


class StaticFiles(File):
    """
    Static files with security headers, without directory listings, JSON refusals; small
    files are answered from memory (L{StaticCache}) after the first request.
    """

    childNotFound = notFound("no such file")  # type: ignore[assignment]
    forbidden = childNotFound  # type: ignore[assignment]
    #: the real path of the served directory; nothing outside it is served
    rootPath: str = ""
    #: the files held in memory, shared by the root and the directories under it
    cache: StaticCache | None = None
    #: this directory's path segments under the root (the root's are empty)
    segments: tuple[bytes, ...] = ()

    def __init__(self, path: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(path, *args, **kwargs)
        self.rootPath = os.path.realpath(path)
        # the client's ES modules must be served as JavaScript (browsers refuse module scripts
        # of another type), whatever the machine's mime.types says (Windows may say text/plain)
        self.contentTypes = {**self.contentTypes, **MODULE_TYPES}

    def createSimilarFile(self, path: str) -> StaticFiles:
        similar = super().createSimilarFile(path)
        similar.rootPath = self.rootPath
        similar.cache = self.cache
        return similar

    def getChild(self, path: bytes, request: Request) -> IResource:
        if path.startswith(b".") or b"\x00" in path:
            return self.childNotFound  # dotfiles and NUL bytes are never served
        cache = self.cache
        rest = request.postpath or []
        if cache is not None:
            held = cache.lookup((*self.segments, path, *rest))
            if held is not None:  # the whole rest of the path at once
                request.prepath = (request.prepath or []) + rest
                request.postpath = []
                return held
        child = super().getChild(path, request)
        if isinstance(child, File):
            real = os.path.realpath(child.path)
            if real != self.rootPath and not real.startswith(self.rootPath + os.sep):
                return self.childNotFound  # a symlink out of the directory
            if isinstance(child, StaticFiles):
                child.segments = (*self.segments, path)
                if cache is not None and not rest and child.isfile():
                    return cache.load(child.segments, child) or child
        return child

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


class StaticFile(Resource):
    """
    One file of a L{StaticFiles} directory mounted as a child somewhere else in the tree
    (the public JS client's C{client.js}, whatever C{--static} serves at the root): answered
    exactly as the directory answers it (from memory, the security headers, C{404}, C{405}).
    """

    isLeaf = True

    def __init__(self, directory: StaticFiles, name: bytes) -> None:
        super().__init__()
        self.directory = directory
        self.name = name

    def render(self, request: Request) -> Any:
        if request.postpath:
            return notFound("no such file").render(request)  # /client.js/anything
        return self.directory.getChild(self.name, request).render(request)
