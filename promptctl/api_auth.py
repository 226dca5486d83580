"""Personal tokens on the HTTP API: ``Authorization: Bearer pctlu_...`` acts as the token's owner.

Rules, and why:

- Every call reads the token row and its user (``token_authenticate``), so a
  revocation, an expiry or a deactivated user applies to the next call.
- A read-only token is refused (403) on anything but GET/HEAD/OPTIONS, before
  the view runs.
- What a call does is recorded as the token's user, and each audit event names
  the token (``AuditEvent.token_ref``). The binding must end with the call:
  the API runs sync views on reused threads and async views on one event loop,
  so a context variable set inside ``authenticate`` and never reset would leak
  into the next request served there. Two safe places hold it:

  1. ``RequestIdMiddleware`` opens an empty token scope for every request and
     closes it when the request ends; ``authenticate`` fills that scope, so the
     whole request (its database steps too: they copy the context) sees it.
  2. Views call services inside ``with acting(request):``, which binds the token
     and ``acting_user_bind`` for exactly that block. Use it always: it also
     works where no middleware ran (ninja's test client), and it is the one
     place that reads ``request.auth``.

Engineer B's views: ``principal = request.auth`` (a ``TokenPrincipal``), pass
``principal.user`` as the services' actor, inside ``with acting(request):``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.http import HttpRequest
from ninja.errors import HttpError
from ninja.security import HttpBearer

from promptctl.middleware import token_bind, token_scope_fill
from promptctl.services.access import acting_user_bind
from promptctl.services.tokens import TokenPrincipal, TokenRefused, token_authenticate

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class PersonalTokenAuth(HttpBearer):
    """``request.auth`` becomes the ``TokenPrincipal``; a bad token is 401, a read-only one writing is 403."""

    def authenticate(self, request: HttpRequest, token: str) -> TokenPrincipal:
        # Synchronous on purpose: ninja calls it directly for sync views and in a thread for async ones.
        try:
            principal = token_authenticate(secret=token)
        except TokenRefused as refusal:
            raise HttpError(401, str(refusal)) from refusal
        if principal.read_only and request.method not in SAFE_METHODS:
            raise HttpError(
                403,
                f"Token {principal.name!r} is read-only: it may read, never change anything. "
                "Use a token made without read-only for this.",
            )
        token_scope_fill(principal.ref, principal.user)
        request.user = principal.user  # django-simple-history and the admin's helpers read it
        return principal


@contextmanager
def acting(request: HttpRequest) -> Iterator[TokenPrincipal]:
    """Run a view's service calls as the request's token: its user acts, its events name it; reset on exit."""
    principal = request.auth  # type: ignore[attr-defined]
    if not isinstance(principal, TokenPrincipal):
        raise HttpError(401, "No personal token: send `Authorization: Bearer pctlu_...`.")
    with token_bind(principal.ref, principal.user), acting_user_bind(principal.user):
        yield principal
