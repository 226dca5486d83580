"""Requests to the ASGI application production serves (``config.asgi``), in-process (no tests here).

The same application object as uvicorn's, so a test exercises the API's own
handler and middleware chain. A synchronous test waits on it
(``async_to_sync``), so its database steps run in the test's thread and see
the test's rows. As Django's test client does, the request signals are kept
from closing the test's connection, which holds the test's transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx2
from asgiref.sync import async_to_sync
from django.core.signals import request_finished, request_started
from django.db import close_old_connections


@contextmanager
def _test_connection_kept() -> Iterator[None]:
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def asgi_request(
    method: str, path: str, *, content: bytes | None = None, headers: dict[str, str] | None = None
) -> httpx2.Response:
    from config.asgi import application

    async def send() -> httpx2.Response:
        transport = httpx2.ASGITransport(app=application)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.request(method, path, content=content, headers=headers or {})

    with _test_connection_kept():
        return async_to_sync(send)()
