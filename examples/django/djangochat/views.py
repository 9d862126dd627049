"""
The project's views: its own login page (a form with Django's CSRF token), a session kept in
Django's signed session cookie, and the page with the chat in it, which passes the session's
nick to C{connect()} of portshare's C{/chat/client.js}.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

ROOMS = ("lobby", "support")


def validNick(nick: str) -> bool:
    """The chat's own rule for a nick: 1 to 32 printable characters."""
    return 0 < len(nick) <= 32 and nick.isprintable()


def index(request: HttpRequest) -> HttpResponse:
    nick = request.session.get("nick")
    if not nick:
        return redirect("login")
    room = request.GET.get("room", ROOMS[0])
    if room not in ROOMS:
        room = ROOMS[0]
    return render(request, "djangochat/index.html", {"nick": nick, "room": room, "rooms": ROOMS})


@require_http_methods(["GET", "POST"])
def login(request: HttpRequest) -> HttpResponse:
    """GET: the form; POST: the nick into the session, then back to the page (303)."""
    if request.method == "POST":
        nick = request.POST.get("nick", "").strip()
        if validNick(nick):
            request.session["nick"] = nick
            response = redirect("index")
            response.status_code = 303
            return response
        error = "A nick is 1 to 32 printable characters."
        return render(request, "djangochat/login.html", {"error": error}, status=400)
    return render(request, "djangochat/login.html", {"error": None})


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    request.session.flush()
    return redirect("login")


def me(request: HttpRequest) -> JsonResponse:
    """The project's own /api: portshare's is at /chat/api."""
    return JsonResponse({"nick": request.session.get("nick")})
