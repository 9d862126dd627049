"""
A Flask application with what a real one does: a page with a form, a POST with a body, a
redirect, a cookie set and read back, its own C{/api} (which must not meet portshare's), and
a page that says what WSGI told it.

    twistd portshare --wsgi tests.apps.flaskapp.app
"""

from __future__ import annotations

import time
from pathlib import Path

from flask import Flask, jsonify, make_response, redirect, request

app = Flask(__name__)

FORM = """<!doctype html>
<html><head><title>flask app</title></head><body>
<h1>the flask app</h1>
<form method="post" action="/submit"><input name="name"><textarea name="note"></textarea>
<button>send</button></form>
</body></html>
"""


@app.get("/")
def index() -> str:
    return FORM


@app.post("/submit")
def submit():  # type: ignore[no-untyped-def]
    name = request.form.get("name", "")
    note = request.form.get("note", "")
    response = make_response(redirect("/hello", code=303))
    response.set_cookie("name", name, httponly=True, samesite="Lax")
    response.headers["X-Note-Length"] = str(len(note))
    return response


@app.get("/hello")
def hello() -> str:
    return f"hello, {request.cookies.get('name', 'stranger')}"


@app.get("/api/items")
def items():  # type: ignore[no-untyped-def]
    return jsonify({"items": ["from", "the", "flask", "app"]})


@app.get("/environ")
def environ():  # type: ignore[no-untyped-def]
    e = request.environ
    return jsonify(
        {
            key: e.get(key)
            for key in (
                "SCRIPT_NAME",
                "PATH_INFO",
                "QUERY_STRING",
                "REMOTE_ADDR",
                "REQUEST_METHOD",
                "wsgi.url_scheme",
                "HTTP_HOST",
            )
        }
    )


@app.get("/sleep")
def sleep() -> str:
    """
    Answers after ?seconds=S (for the graceful shutdown test); a file C{sleeping} in the
    working directory says the request has reached the application.
    """
    Path("sleeping").write_text("")
    time.sleep(float(request.args.get("seconds", "0.5")))
    return "slept"
