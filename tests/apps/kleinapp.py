"""
A klein application, mounted by its resource method.

    twistd portshare --resource tests.apps.kleinapp.app.resource
"""

from __future__ import annotations

from typing import Any

from klein import Klein

app = Klein()


@app.route("/")
def home(request: Any) -> str:
    return "klein home"


@app.route("/klein/<name>")
def hello(request: Any, name: str) -> str:
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return f"hello from klein, {name}"


@app.route("/klein-form", methods=["POST"])
def form(request: Any) -> str:
    return f"klein got {len(request.content.read())} bytes"
