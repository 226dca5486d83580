"""How the web process serves: TCP_NODELAY on every connection, static files beside Django.

Both are here so that the production process (``promptctl.processes web``), the
demo, the benchmarks and the load tests serve exactly alike.
"""

from __future__ import annotations

import re
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol


class NoDelayH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with TCP_NODELAY set on every connection.

    With ``--workers`` > 1 uvicorn binds the listening socket itself with
    protocol number 0, and asyncio sets TCP_NODELAY only on sockets whose
    protocol is IPPROTO_TCP; Nagle's algorithm then meets delayed ACKs and each
    small response waits about 40 ms.
    """

    def connection_made(self, transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        super().connection_made(transport)


def static_files_wrap(django_application):
    """Serve ``STATIC_URL`` beside the Django application, outside its middleware chain.

    Static files in middleware would be a sync-only layer above every async
    view. In development Django's own handler serves them from the apps; in
    production WhiteNoise serves what ``collectstatic`` put in ``STATIC_ROOT``
    (hashed names from the manifest storage, so they may be cached for good).
    """
    from django.conf import settings

    if settings.DEBUG:
        from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

        return ASGIStaticFilesHandler(django_application)

    from asgiref.wsgi import WsgiToAsgi
    from whitenoise import WhiteNoise

    def not_found(environ, start_response):
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not Found"]

    prefix = "/" + settings.STATIC_URL.strip("/") + "/"
    hashed_name = re.compile(r"\.[0-9a-f]{12}\.\w+$")  # what the manifest storage writes
    static = WsgiToAsgi(
        WhiteNoise(
            not_found,
            root=str(settings.STATIC_ROOT),
            prefix=prefix,
            max_age=60,
            immutable_file_test=lambda path, url: bool(hashed_name.search(url)),
        )
    )

    async def application(scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith(prefix):
            return await static(scope, receive, send)
        return await django_application(scope, receive, send)

    return application
