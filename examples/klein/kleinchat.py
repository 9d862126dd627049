"""
A klein application and portshare's chat on ONE port, in one twisted.web tree: klein's
routes at C{/}, the chat under C{/chat}.  Run it from this directory::

    twistd -n --pidfile= portshare --resource kleinchat.app.resource

and open http://localhost:8080/.  klein has no sessions of its own here: the nick you sign in
with is kept in a cookie signed with HMAC (C{nick}), which the page reads back and passes to
C{connect()} of C{/chat/client.js}.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from html import escape
from typing import Any

from klein import Klein

app = Klein()

# a fixed key in production (KLEIN_SECRET_KEY), so that sign-ins outlive a restart
SECRET = (os.environ.get("KLEIN_SECRET_KEY") or secrets.token_hex(32)).encode()
COOKIE = b"nick"


def validNick(nick: str) -> bool:
    """The chat's own rule for a nick: 1 to 32 printable characters."""
    return 0 < len(nick) <= 32 and nick.isprintable()


def sign(nick: str) -> bytes:
    """C{HEX(nick).MAC}: the cookie's value (hex keeps it within a cookie's characters)."""
    value = nick.encode().hex().encode()
    return value + b"." + hmac.new(SECRET, value, hashlib.sha256).hexdigest().encode()


def signedNick(cookie: bytes | None) -> str | None:
    """The nick of a cookie made by L{sign}, or C{None} for anything else."""
    value, _, mac = (cookie or b"").partition(b".")
    expected = hmac.new(SECRET, value, hashlib.sha256).hexdigest().encode()
    if not value or not hmac.compare_digest(mac, expected):
        return None
    try:
        return bytes.fromhex(value.decode()).decode()
    except ValueError:
        return None


LOGIN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>Sign in - klein + portshare</title></head>
<body><h1>Sign in</h1>{error}
<form method="post" action="/login"><label for="nick">Nick</label>
<input id="nick" name="nick" maxlength="32" required autofocus>
<button type="submit">Sign in</button></form></body></html>
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>#lobby - klein + portshare</title></head>
<body>
<p>Signed in as <strong id="me">{nick}</strong>.</p>
<section id="chat" data-nick="{nick}" data-room="lobby">
  <h2>#lobby <small id="status" data-state="connecting">connecting…</small></h2>
  <ul id="messages"></ul>
  <form id="say"><input id="text" autocomplete="off"><button>Say</button></form>
</section>
<script type="module" src="/page.js"></script>
</body></html>
"""

# the page's script, as its own file (a page with a strict CSP can load it)
SCRIPT = """import { connect } from '/chat/client.js';

const box = document.getElementById('chat');
const room = box.dataset.room;
const chat = connect({ nick: box.dataset.nick });
chat.join(room);
chat.addEventListener('statechange', () => {
  document.getElementById('status').dataset.state = chat.state.status;
  document.getElementById('status').textContent = chat.state.status;
});
chat.addEventListener('message', (e) => {
  const li = document.createElement('li');
  li.textContent = e.detail.msg.nick + ': ' + e.detail.msg.text;
  document.getElementById('messages').append(li);
});
document.getElementById('say').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = document.getElementById('text');
  if (input.value.trim() && chat.say(room, input.value)) input.value = '';
});
"""


def html(request: Any, body: str, code: int = 200) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/html; charset=utf-8")
    return body.encode()


@app.route("/", methods=["GET"])
def index(request: Any) -> bytes:
    nick = signedNick(request.getCookie(COOKIE))
    if nick is None:
        request.redirect(b"/login")
        request.setResponseCode(303)
        return b""
    return html(request, PAGE.format(nick=escape(nick)))


@app.route("/login", methods=["GET"])
def loginPage(request: Any) -> bytes:
    return html(request, LOGIN.format(error=""))


@app.route("/login", methods=["POST"])
def login(request: Any) -> bytes:
    """The form's POST: a signed cookie with the nick, then back to the page (303)."""
    nick = request.args.get(b"nick", [b""])[0].decode("utf-8", "replace").strip()
    if not validNick(nick):
        error = '<p id="error">A nick is 1 to 32 printable characters.</p>'
        return html(request, LOGIN.format(error=error), 400)
    request.addCookie(COOKIE, sign(nick), path=b"/", httpOnly=True, sameSite="lax")
    request.redirect(b"/")
    request.setResponseCode(303)
    return b""


@app.route("/page.js", methods=["GET"])
def script(request: Any) -> bytes:
    request.setHeader(b"content-type", b"text/javascript; charset=utf-8")
    return SCRIPT.encode()


@app.route("/api/me", methods=["GET"])
def me(request: Any) -> bytes:
    """The application's own /api: portshare's is at /chat/api."""
    request.setHeader(b"content-type", b"application/json")
    return json.dumps({"nick": signedNick(request.getCookie(COOKIE))}).encode()
