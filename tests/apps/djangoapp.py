"""
A minimal Django project configured in code (no settings module, no manage.py): one view.

    twistd portshare --wsgi tests.apps.djangoapp.application
"""

from __future__ import annotations

from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="portshare-tests-only-not-a-secret",
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["*"],
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
        USE_TZ=True,
    )

from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, JsonResponse
from django.urls import path


def greet(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"framework": "django", "method": request.method, "path": request.path})


urlpatterns = [path("django/", greet)]

application = get_wsgi_application()
