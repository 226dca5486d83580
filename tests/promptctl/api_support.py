"""Helpers for the change-control API tests (no tests or fixtures here): personal tokens and a client per person.

``Caller`` sends requests with one person's token through Django's test client
(the request passes the URL resolver, the API's auth, views and error
handlers as in production); ``tests.asgi_support`` and ``config.children``
serve the same application over ASGI and a real uvicorn process.
"""

from __future__ import annotations

import json
from typing import Any

from django.test import Client

from promptctl import services


def token_for(user: Any, *, name: str = "t", read_only: bool = False) -> str:
    """A new personal token's secret for ``user``, made by ``user`` (as a person makes their own)."""
    return services.token_create(user=user, actor=user, name=name, read_only=read_only).secret


class Caller:
    """One token's view of ``/api/v1``: ``get``/``post`` answer Django test responses."""

    def __init__(self, secret: str | None) -> None:
        self.secret = secret
        self.client = Client()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"} if self.secret else {}

    def get(self, path: str, **query: Any):
        return self.client.get("/api/v1" + path, query, headers=self._headers())

    def post(self, path: str, payload: Any = None, *, raw: bytes | None = None):
        body = raw if raw is not None else (b"" if payload is None else json.dumps(payload).encode())
        return self.client.post("/api/v1" + path, body, content_type="application/json", headers=self._headers())


def caller_for(user: Any, *, read_only: bool = False, name: str = "t") -> Caller:
    return Caller(token_for(user, read_only=read_only, name=name))
