"""
A plain HTTP backend for C{--proxy} tests: Python's own C{http.server} in a thread, on
127.0.0.1 and a free port, speaking HTTP/1.1 (keep-alive, chunked) as most backends do.

    GET|POST|... /echo     JSON: what it received (method, target, headers, body)
    GET /page              an HTML page that sets two cookies
    GET /slow?seconds=S    answers after S seconds (504 tests)
    GET /stream            chunked: "first", then waits for `release`, then "second"
    GET /big?bytes=N       N bytes with a Content-Length, written 64 KiB at a time
    GET /truncated         says Content-Length: 100, sends 10 bytes and closes
    GET /reset             closes the connection without an answer
    GET /bad-header        a header value with a bare LF in it (a response-splitting try)
    GET /redirect          303 to /page
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet

    def _send(self, status: int, body: bytes, kind: str, extra: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(length) if length else b""

    def _echo(self) -> None:
        body = self._body()
        self.server.seen.append(self.path)
        answer = {
            "method": self.command,
            "target": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body": body.decode("latin-1"),
        }
        self._send(200, json.dumps(answer).encode(), "application/json")

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        route = url.path
        if route.startswith("/echo"):
            self._echo()
            return
        self.server.seen.append(self.path)
        if route == "/page":
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Set-Cookie", "a=1; Path=/")
            self.send_header("Set-Cookie", "b=2; Path=/")
            self.send_header("Server", "backend/1.0")
            body = b"<html><body>the backend's page</body></html>"
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        elif route == "/slow":
            time.sleep(float(query.get("seconds", ["2"])[0]))
            self._send(200, b"slow answer", "text/plain")
        elif route == "/stream":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (b"first\n", None, b"second\n"):
                if piece is None:
                    self.server.release.wait(10)
                    continue
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        elif route == "/big":
            size = int(query.get("bytes", ["1048576"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            piece = b"x" * 65536
            left = size
            while left > 0:
                chunk = piece[: min(left, len(piece))]
                self.wfile.write(chunk)
                left -= len(chunk)
        elif route == "/truncated":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.wfile.flush()
            self.close_connection = True
        elif route == "/reset":
            self.close_connection = True
        elif route == "/bad-header":
            self.send_response(200)
            self.send_header("X-Split", "a\nInjected: yes")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        elif route == "/redirect":
            self._send(303, b"", "text/plain", {"Location": "/page"})
        else:
            self._send(404, b'{"backend": "not found"}', "application/json")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        self._echo()

    do_PUT = do_PATCH = do_DELETE = do_POST


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        #: the targets it was asked for, in order
        self.seen: list[str] = []
        #: set to let /stream send its second piece
        self.release = threading.Event()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client (portshare) that went away mid-answer, as after a 504: not an error."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def startBackend() -> tuple[Server, threading.Thread]:
    """A started backend and its thread (stop: C{server.shutdown(); server.server_close()})."""
    server = Server()
    thread = threading.Thread(target=server.serve_forever, name="backend", daemon=True)
    thread.start()
    return server, thread
