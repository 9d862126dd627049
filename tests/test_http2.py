"""
HTTP/2 on a TLS endpoint (ALPN h2), next to WebSocket over HTTP/1.1 on the same ssl: port.

The HTTP/2 client is the h2 library (Twisted's own HTTP/2 dependency) over a blocking TLS
socket in a thread, so that the service runs on the real reactor meanwhile.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_twisted
from twisted.internet import reactor, threads

from portshare.limits import Limits
from portshare.service import PortshareService, Settings
from portshare.testing import connectChat, selfSignedCertificate

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(30)]


def h2Exchange(
    port: int, cafile: Path, requests: list[tuple[str, str, bytes | None]], stream: str | None
) -> dict[str, Any]:
    """
    Open one TLS connection offering h2 and http/1.1, send every request on its own stream
    (all at once, multiplexed), and read until each has ended; with C{stream}, also GET that
    path and read from it until a message event came.

    @return: the ALPN protocol, the responses as (status, headers, body) in request order, and
        the first bytes of the stream.
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
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        ids: dict[int, int] = {}
        responses: dict[int, dict[str, Any]] = {}
        for n, (method, path, body) in enumerate(requests):
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
        conn.close_connection()
        sock.sendall(conn.data_to_send())
        return result
    finally:
        sock.close()


@pytest_twisted.ensureDeferred
async def test_h2PagesAndApiWithWebSocketOnOnePort(tmp_path: Path) -> None:
    """
    On one ssl: endpoint a client offering h2 gets HTTP/2 (ALPN) for the page, the API and
    SSE, several requests multiplexed on one connection, while a WebSocket on the same port
    speaks HTTP/1.1 (its client offers no h2) and the chat reaches both.
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
            ],
            "/sse?room=both&since=0",
        )
        assert result["alpn"] == "h2"
        page, health, posted, ws, connections, tooLarge = result["responses"]
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
