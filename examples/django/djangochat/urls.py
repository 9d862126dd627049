"""The project's own paths; portshare keeps its chat under /chat, so none of these meet it."""

from __future__ import annotations

from django.urls import path

from djangochat import views

urlpatterns = [
    path("", views.index, name="index"),
    path("login/", views.login, name="login"),
    path("logout/", views.logout, name="logout"),
    path("api/me", views.me, name="me"),
]
