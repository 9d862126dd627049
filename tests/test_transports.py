"""
The handshakes of docs/transports.md, captured from the real tree in memory: every transcript
in that page is produced here, byte for byte (the Date header aside), and this test fails when
the page and the code part ways.  Regenerate the transcripts with
C{python -m tests.test_transports}.
"""

from __future__ import annotations

import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from portshare.broker.memory import MemoryBroker
from portshare.testing import (
    MemoryConnection,
    clientFrame,
    handshakeRequest,
    serverFrames,
)

DOC = Path(__file__).parent.parent / "docs" / "transports.md"
DATE = re.compile(rb"^Date: .*$", re.MULTILINE | re.IGNORECASE)


def _service(testCase: object) -> object:
    import txaio.testutil
    from twisted.internet.testing import MemoryReactorClock

    from portshare.service import PortshareService, Settings

    reactor = MemoryReactorClock()
    reactor.advance(1_700_000_000)
    loop = txaio.testutil.replace_loop(reactor)
    loop.__enter__()
    broker = MemoryBroker(1000, 100, newEpoch=lambda: "5f0c1d2e3a4b")
    service = PortshareService(Settings(ports=("tcp:0",)), reactor, broker=broker)
    service.startService()

    def stop() -> None:
        service.stopService()
        loop.__exit__(None, None, None)

    testCase.addCleanup(stop)  # type: ignore[attr-defined]
    return service


def _show(sent: bytes, received: bytes) -> str:
    """A transcript: client lines prefixed C{> }, server lines C{< }."""
    received = DATE.sub(b"Date: (now)", received)
    out = []
    for prefix, data in (("> ", sent), ("< ", received)):
        for line in data.decode("utf-8", "replace").split("\n"):
            out.append(prefix + line.rstrip("\r"))
        if out[-1] == prefix:
            out.pop()
    return "\n".join(out)


def _frames(data: bytes) -> str:
    return "\n".join(
        f"< [frame opcode={op} {len(p)} bytes] {p.decode()}" for op, p in serverFrames(data)
    )


def transcripts(testCase: object) -> dict[str, str]:
    """Every transcript of docs/transports.md, by name."""
    service: object = _service(testCase)
    hub = service.hub  # type: ignore[attr-defined]
    hub.publish("lobby", "ann", "hello")
    result = {}

    c = MemoryConnection(service, port=50001)
    first = b"GET /healthz HTTP/1.1\r\nHost: example:8080\r\n\r\n"
    c.send(first)
    one = c.read()
    second = b"GET /api/rooms HTTP/1.1\r\nHost: example:8080\r\n\r\n"
    c.send(second)
    result["keepalive"] = _show(first, one) + "\n" + _show(second, c.read())

    c = MemoryConnection(service, port=50002)
    request = handshakeRequest(path="/ws", protocols="portshare.chat.v1", host="example:8080")
    c.send(request)
    head, _, rest = c.read().partition(b"\r\n\r\n")
    join = b'{"type":"join","room":"lobby","nick":"bob","since":0,"ref":1}'
    c.send(clientFrame(join))
    result["websocket"] = (
        _show(request, head + b"\r\n\r\n")
        + f"\n> [masked frame opcode=1 {len(join)} bytes] {join.decode()}\n"
        + _frames(rest + c.read())
    )

    c = MemoryConnection(service, port=50003)
    request = (
        b"GET /ws HTTP/1.1\r\nHost: example:8080\r\nUpgrade: portshare-lines\r\n"
        b"Connection: Upgrade\r\n\r\n"
    )
    c.send(request)
    switched = c.read()
    lines = b"NICK cat\nJOIN lobby 0\nSAY lobby hi from a terminal\n"
    c.send(lines)
    result["lines"] = _show(request, switched) + "\n" + _show(lines, c.read())

    c = MemoryConnection(service, port=50004)
    request = (
        b"GET /ws HTTP/1.1\r\nHost: example:8080\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
    )
    c.send(request)
    result["unknown"] = _show(request, c.read())

    c = MemoryConnection(service, port=50005)
    request = (
        b"GET /sse?room=lobby&room=news&nick=dee HTTP/1.1\r\nHost: example:8080\r\n"
        b"Accept: text/event-stream\r\nLast-Event-ID: lobby=5f0c1d2e3a4b:1\r\n\r\n"
    )
    c.send(request)
    opened = c.read()
    hub.publish("news", "ann", "breaking")
    result["sse"] = _show(request, opened + c.read())
    service.reactor.advance(15)  # type: ignore[attr-defined]
    result["sse-keepalive"] = _show(b"", c.read())
    return result


def _fenced(text: str) -> str:
    return "```\n" + text + "\n```"


class TransportsDocTests(SynchronousTestCase):
    def test_docShowsTheWire(self) -> None:
        """Every handshake shown in docs/transports.md is what the code sends today."""
        doc = DOC.read_text()
        for name, text in transcripts(self).items():
            self.assertIn(_fenced(text), doc, f"docs/transports.md: transcript {name!r}")


if __name__ == "__main__":

    class _Case(SynchronousTestCase):
        def runTest(self) -> None: ...

    case = _Case()
    for name, text in transcripts(case).items():
        print(f"--- {name}\n{_fenced(text)}\n")
    case.doCleanups()
