"""
A Flask site and portshare's chat on ONE port: the site's pages, its login form and its
session cookie at C{/}, the chat under C{/chat} (C{/chat/ws}, C{/chat/sse}, C{/chat/api},
C{/chat/client.js}), one origin for both, so the page's script opens the chat's WebSocket with
no CORS and no second port.  Run it from this directory::

    twistd -n --pidfile= portshare --wsgi flaskchat:app

and open http://localhost:8080/.  The nick you sign in with is kept in Flask's own session
(a signed cookie, C{session}); the page passes it to C{connect()} of C{/chat/client.js}.

With users (the chat knows who is who, and nobody takes another's nick), give the site and
the chat one secret::

    head -c 32 /dev/urandom > jwt.secret
    PORTSHARE_JWT_SECRET_FILE=jwt.secret twistd -n --pidfile= portshare \
        --wsgi flaskchat:app --auth required --jwt-secret-file jwt.secret

At login the site then also sets the cookie C{portshare_token}: a JSON Web Token naming the
user, which the browser sends with the chat's WebSocket handshake by itself (same origin).
"""

from __future__ import annotations

import os
import secrets

from flask import Flask, jsonify, redirect, render_template, request, session
from werkzeug.wrappers import Response

app = Flask(__name__)
# a fixed key in production (FLASK_SECRET_KEY), so that sessions outlive a restart
app.secret_key = os.environ.get("FLASK_SECRET_KEY") or secrets.token_hex(32)
app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")

#: the chat's rooms this site offers (the chat itself takes any valid room name)
ROOMS = ("lobby", "support")


def validNick(nick: str) -> bool:
    """The chat's own rule for a nick: 1 to 32 printable characters."""
    return 0 < len(nick) <= 32 and nick.isprintable()


@app.get("/")
def index() -> str | Response:
    """The site's page with the chat in it; only for someone signed in."""
    nick = session.get("nick")
    if not nick:
        return redirect("/login", code=303)
    room = request.args.get("room", ROOMS[0])
    if room not in ROOMS:
        room = ROOMS[0]
    return render_template("index.html", nick=nick, room=room, rooms=ROOMS)


@app.get("/login")
def loginPage() -> str:
    return render_template("login.html", error=None)


@app.post("/login")
def login() -> tuple[str, int] | Response:
    """The form's POST: the nick goes into the session cookie, then back to the page."""
    nick = request.form.get("nick", "").strip()
    if not validNick(nick):
        return render_template("login.html", error="A nick is 1 to 32 printable characters."), 400
    session["nick"] = nick
    response = redirect("/", code=303)
    token = chatToken(nick)
    if token is not None:  # the chat's users come from the site's login
        response.set_cookie(
            "portshare_token", token, max_age=TOKEN_SECONDS, httponly=True, samesite="Lax"
        )
    return response


#: how long a chat token lasts; signing in again (or reloading after it) gives a new one
TOKEN_SECONDS = 12 * 3600


def chatToken(nick: str) -> str | None:
    """A token for the chat (C{--auth ... --jwt-secret-file}), when the site has the secret."""
    path = os.environ.get("PORTSHARE_JWT_SECRET_FILE")
    if not path:
        return None
    import time

    import jwt  # PyJWT: portshare's own dependency

    with open(path, "rb") as f:
        secret = f.read().strip()
    now = int(time.time())
    claims = {"sub": "user:" + nick, "name": nick, "iat": now, "exp": now + TOKEN_SECONDS}
    return jwt.encode(claims, secret, algorithm="HS256")


@app.post("/logout")
def logout() -> Response:
    session.clear()
    response = redirect("/login", code=303)
    response.delete_cookie("portshare_token")
    return response


@app.get("/api/me")
def me() -> Response:
    """The site's own /api: portshare's is at /chat/api, so the two never meet."""
    return jsonify({"nick": session.get("nick")})
