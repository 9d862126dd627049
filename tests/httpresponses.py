"""What the HTTP tests read off a connection: the response, parsed."""

from __future__ import annotations

from portshare.testing import MemoryConnection


def response(c: MemoryConnection) -> tuple[int, dict[bytes, bytes], bytes]:
    head, _, body = c.read().partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = dict(line.lower().split(b": ", 1) for line in lines[1:] if b": " in line)
    return int(lines[0].split()[1]), headers, body


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


def dechunk(body: bytes) -> bytes:
    """The payload of a chunked HTTP body (what a client reads once it decodes it)."""
    out = b""
    while body:
        size, _, body = body.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            break
        out, body = out + body[:n], body[n + 2 :]
    return out
