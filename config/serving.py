"""How the web process serves: the API's own handler, TCP_NODELAY on every connection, static files beside Django.

All here so that the production process (``config.processes web``), the
demo, the benchmarks and the load tests serve exactly alike.
"""

from __future__ import annotations

import re
import socket
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response
from django.utils.module_loading import import_string
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from promptctl.dbsteps import sync_caller_waiting

API_PATH_PREFIX = "/api/"


class ApiHandler(ASGIHandler):
    """Django's ASGI handler for the API's paths: same settings and URLs, only the API's middleware.

    On the async path Django runs every hook of a classic middleware
    (``MiddlewareMixin``) in a thread hop of its own. The admin's chain of nine
    would add over a dozen thread switches to each API call, for sessions,
    CSRF, messages and frame options an API does not use. The API's chain is
    ``PROMPTCTL_API_MIDDLEWARE``: async-capable middleware with no view,
    template-response or exception hooks.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        if not is_async:
            raise ImproperlyConfigured("ApiHandler serves ASGI only.")
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        handler = convert_exception_to_response(self._get_response_async)
        for path in reversed(settings.PROMPTCTL_API_MIDDLEWARE):
            factory = import_string(path)
            hooks = [
                hook
                for hook in ("process_view", "process_template_response", "process_exception")
                if hasattr(factory, hook)
            ]
            if not getattr(factory, "async_capable", False) or hooks:
                raise ImproperlyConfigured(
                    f"{path} cannot be in PROMPTCTL_API_MIDDLEWARE: the API's chain takes async-capable middleware "
                    f"without view, template-response or exception hooks{f' (it has {hooks})' if hooks else ''}."
                )
            handler = convert_exception_to_response(factory(handler))
        self._middleware_chain = handler

    async def __call__(self, scope, receive, send):
        # Django gives each request a thread of its own for its synchronous parts (here only the
        # request_started/finished signal receivers: views and middleware are async, database
        # steps run in promptctl.dbsteps), made and joined per request. The API's run on one
        # long-lived thread instead. A synchronous caller waiting on the loop (the test client)
        # keeps Django's default, so its thread and transaction stay the ones used.
        if sync_caller_waiting():
            return await super().__call__(scope, receive, send)
        async with ThreadSensitiveContext(executor=_signal_thread()):
            return await super().__call__(scope, receive, send)


_signal_executor: ThreadPoolExecutor | None = None


def _signal_thread() -> ThreadPoolExecutor:
    global _signal_executor
    if _signal_executor is None:
        _signal_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="promptctl-api-signals")
    return _signal_executor


def api_dispatch(django_application, api_application, prefix: str = API_PATH_PREFIX):
    """Send HTTP requests under ``prefix`` to the API's handler, everything else to Django's."""

    async def application(scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith(prefix):
            return await api_application(scope, receive, send)
        return await django_application(scope, receive, send)

    return application


class NoDelayHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (the C HTTP parser) with TCP_NODELAY set on every connection.

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
