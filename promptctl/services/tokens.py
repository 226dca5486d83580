"""Personal access tokens: who is at the keyboard, proven by a secret only they hold.

Rules, and why:

- A token acts as exactly one user, its owner. The four-eyes rule is only as
  good as the proof of who approved, so nobody creates a token for another
  person: a user creates their own; an admin (``auth.change_user``) may create
  one for a service account only (a bot: in the ``bots`` group, in no
  reviewer group, not a superuser), since a bot has no one to log in as.
- The secret (``pctlu_`` + 256 random bits) is returned once, by
  ``token_create``, and never stored: the row keeps its SHA-256 and a short
  prefix to recognise it by, like the triage API's keys.
- Every use reads the row and the user: a revoked or expired token, or one
  whose user was deactivated, is refused on its next call.
- Creating and revoking are audited in the same transaction (name, prefix,
  read-only, expiry, owner; never the secret or its hash).
- The last use is recorded to within a minute, at most once a minute per
  process, by a conditional UPDATE that bypasses the history (a write per
  call would contend and flood the history with telemetry).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from promptctl.audit import audit_record
from promptctl.errors import DomainError, Fix
from promptctl.models import PersonalToken
from promptctl.records import saved_by
from promptctl.services.common import permission_require
from promptctl.services.users import BOTS, REVIEWERS

SECRET_PREFIX = "pctlu_"
SHOWN_PREFIX_LENGTH = 12
MAX_EXPIRY_DAYS = 3650
USAGE_RESOLUTION = timedelta(minutes=1)
_TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")


class TokenRefused(DomainError):
    """A token that cannot act: unknown, revoked, expired, or its user is inactive."""


@dataclass(frozen=True)
class IssuedToken:
    """A new token and its secret; the secret exists only here and is never stored."""

    token: PersonalToken
    secret: str


@dataclass(frozen=True)
class TokenPrincipal:
    """Who a checked token acts as."""

    user: Any
    token_id: int
    read_only: bool
    prefix: str = ""
    name: str = ""
    expires_at: Any = None

    @property
    def ref(self) -> str:
        """How audit events name the token: ``"id:prefix"``."""
        return f"{self.token_id}:{self.prefix}"


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def user_is_bot(user: Any) -> bool:
    """A service account: in ``bots``, in no reviewer group, not a superuser (so it can never pass the gate)."""
    if user.is_superuser:
        return False
    names = set(user.groups.values_list("name", flat=True))
    return BOTS in names and REVIEWERS not in names


def token_create(
    *, user: Any, actor: Any, name: str, expires_in_days: int | None = 90, read_only: bool = False
) -> IssuedToken:
    """Issue a token acting as ``user``; the secret is returned once and stored only hashed."""
    if actor is None or not actor.is_active:
        raise DomainError("Tokens are created by a signed-in, active user: sign in, or use your own token.")
    if not user.is_active:
        raise DomainError(f"{user.username} is inactive: a token for them could never be used.")
    if user.pk != actor.pk:
        permission_require(
            user=actor,
            permission="auth.change_user",
            doing=f"create a token for {user.username}",
            next_step=Fix(
                cli=f"{user.username} creates their own token (`promptctl token create`, or admin: Personal tokens).",
                web=f"{user.username} creates their own token (Personal tokens, Add personal token).",
            ),
        )
        if not user_is_bot(user):
            raise DomainError(
                f"{actor.username} may not create a token for {user.username}: a token proves who acts, so a person "
                "creates their own.",
                code="token_for_a_person",
                fields=("user",),
                fix=Fix(
                    cli="Admins create tokens only for service accounts (`promptctl user add NAME --role bot`).",
                    web="Admins create tokens only for service accounts (users in the bots group).",
                ),
            )
    name = (name or "").strip()
    if not _TOKEN_NAME.match(name):
        raise DomainError(
            f"Token name {name!r} is not allowed: use letters, digits, spaces, dots, dashes and underscores "
            "(e.g. laptop or ci), at most 100 characters."
        )
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_EXPIRY_DAYS:
        raise DomainError(
            f"A token expires after 1 to {MAX_EXPIRY_DAYS} days, not {expires_in_days}: pick a number in that "
            "range, or no expiry."
        )
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    now = timezone.now()
    try:
        with transaction.atomic():
            token = saved_by(
                PersonalToken(
                    user=user,
                    name=name,
                    prefix=secret[:SHOWN_PREFIX_LENGTH],
                    key_hash=token_hash(secret),
                    read_only=read_only,
                    expires_at=now + timedelta(days=expires_in_days) if expires_in_days is not None else None,
                    created_at=now,
                    created_by=actor,
                ),
                actor,
            )
            audit_record(actor=actor, verb="token.create", target=token, after=_token_snapshot(token))
    except IntegrityError as error:
        raise DomainError(
            f"{user.username} already has a live token named {name!r}: pick another name or revoke that one first."
        ) from error
    return IssuedToken(token=token, secret=secret)


def token_revoke(*, token: PersonalToken, actor: Any) -> PersonalToken:
    """Revoke ``token`` (its owner, or an admin): its next call is refused, since every call reads the row."""
    if actor is None or not actor.is_active:
        raise DomainError("Tokens are revoked by a signed-in, active user.")
    if token.user_id != actor.pk:
        permission_require(
            user=actor,
            permission="auth.change_user",
            doing=f"revoke a token of {token.user.username}",
            next_step="Ask them or an admin to revoke it.",
        )
    with transaction.atomic():
        token = PersonalToken.objects.select_for_update().select_related("user").get(pk=token.pk)
        if token.revoked_at is not None:
            raise DomainError(f"Token {token.name!r} was already revoked on {token.revoked_at:%Y-%m-%d %H:%M:%S} UTC.")
        before = _token_snapshot(token)
        token.revoked_at = timezone.now()
        token.revoked_by = actor
        saved_by(token, actor)
        audit_record(actor=actor, verb="token.revoke", target=token, before=before, after={"revoked": True})
    return token


def _token_snapshot(token: PersonalToken) -> dict[str, Any]:
    """What a token is, for the audit trail (never its secret or hash)."""
    return {
        "user": token.user.username,
        "name": token.name,
        "prefix": token.prefix,
        "read_only": token.read_only,
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
    }


def token_authenticate(*, secret: str) -> TokenPrincipal:
    """The user ``secret`` acts as, read from the database now; refused with a one-line reason."""
    if not secret or len(secret) > 200 or not secret.startswith(SECRET_PREFIX):
        raise TokenRefused(
            f"This is not a promptctl personal token (they start with {SECRET_PREFIX}).",
            code="token_unreadable",
            fix=Fix(
                cli="Create one with `promptctl token create` or in the admin (Personal tokens).",
                web="Create one under Personal tokens.",
                link=("admin:promptctl_personaltoken_add", ()),
            ),
        )
    digest = token_hash(secret)
    token = PersonalToken.objects.filter(key_hash=digest).select_related("user").first()
    if token is None:
        raise TokenRefused("This personal token is not known to promptctl (mistyped, or from another installation).")
    if token.revoked_at is not None:
        raise TokenRefused(
            f"Token {token.name!r} ({token.prefix}…) was revoked on {token.revoked_at:%Y-%m-%d %H:%M:%S} UTC: "
            "create a new one."
        )
    now = timezone.now()
    if token.expires_at is not None and token.expires_at <= now:
        raise TokenRefused(
            f"Token {token.name!r} ({token.prefix}…) expired on {token.expires_at:%Y-%m-%d %H:%M:%S} UTC: "
            "create a new one."
        )
    if not token.user.is_active:
        raise TokenRefused(f"Token {token.name!r} belongs to {token.user.username}, who is inactive and cannot act.")
    _token_touch(token.pk, digest, now)
    return TokenPrincipal(
        user=token.user,
        token_id=token.pk,
        read_only=token.read_only,
        prefix=token.prefix,
        name=token.name,
        expires_at=token.expires_at,
    )


_last_touched: dict[str, float] = {}


def _token_touch(token_id: int, digest: str, now: Any) -> None:
    """Record the last use, at most once a minute per process (remembered by hash: ids can be reused)."""
    monotonic = time.monotonic()
    if monotonic - _last_touched.get(digest, -1e9) < USAGE_RESOLUTION.total_seconds():
        return
    _last_touched[digest] = monotonic
    PersonalToken.objects.filter(pk=token_id).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - USAGE_RESOLUTION)
    ).update(last_used_at=now)


def token_get(*, user: Any, name: str) -> PersonalToken:
    """``user``'s live token named ``name``."""
    token = PersonalToken.objects.filter(user=user, name=name, revoked_at__isnull=True).select_related("user").first()
    if token is None:
        raise DomainError(
            f"{user.username} has no live token named {name!r}.",
            code="token_not_found",
            fields=("name",),
            fix=Fix(cli="`promptctl token list` shows them.", web="Personal tokens lists them."),
        )
    return token


def token_owner_get(*, username: str) -> Any:
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise DomainError(
            f"Unknown user {username!r}.",
            code="user_not_found",
            fields=("user",),
            fix=Fix(
                cli=f"Create it with `promptctl user add {username} --role ...`.", web="An admin adds it under Users."
            ),
        )
    return user
