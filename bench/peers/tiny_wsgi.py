"""
The tiny WSGI application of the benchmark's C{portshare-app} server: portshare with an
application mounted (C{--wsgi tiny_wsgi.app --chat-prefix /chat}), so that the fan-out
with an application on the port can be measured against the fan-out without one (issue 14).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def app(environ: dict[str, Any], startResponse: Callable[..., Any]) -> Iterable[bytes]:
    """C{200 hello} for every path: the chat's own paths never reach it."""
    body = b"hello from the application\n"
    startResponse("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
