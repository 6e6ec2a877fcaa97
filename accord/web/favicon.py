"""/favicon.ico: browsers and bookmarks ask for it at the root whatever the page links."""

from __future__ import annotations

from pathlib import Path

from django.http import FileResponse, HttpRequest
from django.views.decorators.http import require_safe

ICON = Path(__file__).resolve().parent / "static" / "web" / "favicon.ico"


@require_safe
def favicon(request: HttpRequest) -> FileResponse:
    response = FileResponse(ICON.open("rb"), content_type="image/vnd.microsoft.icon")
    response["Cache-Control"] = "public, max-age=86400"
    return response
