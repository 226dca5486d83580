"""Plain views that are not the admin."""

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness and readiness for process managers: the database must answer."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:  # noqa: BLE001 - reported, not raised
        return JsonResponse({"status": "unavailable", "database": str(error)}, status=503)
    return JsonResponse({"status": "ok"})


# A small icon (a check mark on the admin's blue), so browsers do not log a 404 for /favicon.ico on every page.
FAVICON_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    '<rect width="16" height="16" rx="3" fill="#417690"/>'
    '<path d="M4 8.5l2.5 2.5L12 5.5" stroke="#fff" stroke-width="2" fill="none"/></svg>'
)


def favicon(request: HttpRequest) -> HttpResponse:
    """The site's icon; cached for a day."""
    response = HttpResponse(FAVICON_SVG, content_type="image/svg+xml")
    response["Cache-Control"] = "public, max-age=86400"
    return response
