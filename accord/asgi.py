"""ASGI entry point: Django's HTTP views and the live chat's WebSockets (accord/chat/routing.py)."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "accord.settings")
django_http = get_asgi_application()  # first: it sets Django up before the consumers import models

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from accord.chat.routing import websocket_urlpatterns  # noqa: E402


def _http() -> object:
    if settings.DEBUG:  # the demo serves its static files itself, as runserver does
        from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

        return ASGIStaticFilesHandler(django_http)
    return django_http


application = ProtocolTypeRouter({
    "http": _http(),
    # The session cookie identifies agents; visitors present their chat's token (origins are checked per socket).
    "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
})
