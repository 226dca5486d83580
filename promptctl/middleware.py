"""promptctl's own middleware: request ids for the audit trail, security headers for the API.

Every audit event carries the id of the web request or CLI command that made
it, so one action's events can be found together. The web takes a client's
``X-Request-ID`` when it is a sane token, else makes one; the CLI makes one
per command (``request_id_bind``). Likewise the personal token a request or
command acts through (``token_bind``), so its events name it too.
"""

from __future__ import annotations

import contextvars
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.middleware.security import SecurityMiddleware

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


class _TokenSlot:
    """The personal token a request or command acts through: filled once it is known, emptied with its scope."""

    __slots__ = ("ref", "user")

    def __init__(self, ref: str = "", user: Any = None) -> None:
        self.ref = ref
        self.user = user


_current_token: contextvars.ContextVar[_TokenSlot | None] = contextvars.ContextVar("promptctl_token", default=None)


def token_current() -> str:
    """The token (``"id:prefix"``) the request or command being served acts through, or ``""``."""
    slot = _current_token.get()
    return slot.ref if slot is not None else ""


def token_user_current() -> Any:
    """The user of that token, or None."""
    slot = _current_token.get()
    return slot.user if slot is not None else None


@contextmanager
def token_bind(ref: str = "", user: Any = None) -> Iterator[None]:
    """Run a block as acting through the token ``ref`` (empty: a scope whose token is filled in later).

    Every request gets an empty scope from ``RequestIdMiddleware``; the API's
    authentication fills it (``token_scope_fill``), and it is emptied when the
    request ends, whichever threads the request's parts ran on: the slot is one
    object shared by every copy of the request's context.
    """
    reset = _current_token.set(_TokenSlot(ref, user))
    try:
        yield
    finally:
        _current_token.reset(reset)


def token_scope_fill(ref: str, user: Any) -> bool:
    """Record the request's token in its scope; False when there is no scope (a view called without middleware)."""
    slot = _current_token.get()
    if slot is None:
        return False
    slot.ref, slot.user = ref, user
    return True


class RequestIdMiddleware:
    """Binds a request id for the request and echoes it in the response header.

    Async-capable: a sync-only middleware would make Django hold a thread for
    the whole of every async view below it (a triage call waits on a session).
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    @staticmethod
    def _request_id(request: HttpRequest) -> str:
        offered = request.headers.get(HEADER, "")
        request_id = offered if _ACCEPTABLE.match(offered) else request_id_new()
        request.request_id = request_id  # type: ignore[attr-defined]
        return request_id

    def __call__(self, request: HttpRequest):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        with request_id_bind(self._request_id(request)) as request_id, token_bind():
            response = self.get_response(request)
        response[HEADER] = request_id
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        with request_id_bind(self._request_id(request)) as request_id, token_bind():
            response = await self.get_response(request)
        response[HEADER] = request_id
        return response


class ApiSecurityMiddleware(SecurityMiddleware):
    """Django's SecurityMiddleware (HTTPS redirect, HSTS, nosniff, referrer policy) for the async API.

    Its hooks only read settings and headers, so on the async path they run on
    the event loop instead of a thread hop each (``MiddlewareMixin.__acall__``).
    """

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        response = self.process_request(request)
        if response is None:
            response = await self.get_response(request)  # type: ignore[misc]  # async chain: a coroutine function
        return self.process_response(request, response)
