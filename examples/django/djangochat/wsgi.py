"""
The WSGI application portshare serves::

    twistd -n --pidfile= portshare --wsgi djangochat.wsgi.application
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djangochat.settings")
application = get_wsgi_application()
