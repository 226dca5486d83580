"""Request ids for the audit trail.

Every audit event carries the id of the web request or CLI command that made
it, so one action's events can be found together. The web takes a client's
``X-Request-ID`` when it is a sane token, else makes one; the CLI makes one
per command (``request_id_bind``).
"""

from __future__ import annotations

import contextvars
import re
import uuid
from contextlib import contextmanager
from typing import Callable, Iterator

from django.http import HttpRequest, HttpResponse

HEADER = "X-Request-ID"
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")
_current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("promptctl_request_id", default="")


def request_id_current() -> str:
    """The id of the request or command being served, or ``""`` outside of one."""
    return _current_request_id.get()


def request_id_new() -> str:
    return uuid.uuid4().hex


@contextmanager
def request_id_bind(request_id: str | None = None) -> Iterator[str]:
    """Run a block under ``request_id`` (a fresh one when not given)."""
    value = request_id or request_id_new()
    token = _current_request_id.set(value)
    try:
        yield value
    finally:
        _current_request_id.reset(token)


class RequestIdMiddleware:
    """Binds a request id for the request and echoes it in the response header."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        offered = request.headers.get(HEADER, "")
        request_id = offered if _ACCEPTABLE.match(offered) else request_id_new()
        request.request_id = request_id
        with request_id_bind(request_id):
            response = self.get_response(request)
        response[HEADER] = request_id
        return response
