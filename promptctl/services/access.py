"""Who may do what: every change to a user's access or a group's permissions is audited, whichever door it came through.

Rules, and why:

- A reviewer's approval is only worth the review that made them a reviewer. A
  superuser adding a sock-puppet user to ``reviewers`` from Django's own user
  admin, or from ``manage.py shell``, changes who can pass the gate, so it must
  leave the same record as ``promptctl user add``.
- Django's user and group admin, ``createsuperuser`` and the shell all write
  through the ORM, so the record is kept at the ORM's edge: model signals
  (connected in ``PromptctlConfig.ready()``, ``promptctl/signals.py``) call
  ``access_change_record`` for every change of a user's groups, direct
  permissions, superuser/staff/active flags, a group's permissions, and a user
  or group deleted. The audit event is written in the transaction of the
  change (the admin's own, or one opened for it).
- The actor is the person the web request or command is acting for
  (``acting_user_bind``; the admin's request user otherwise). A change made
  with no one bound (a shell, ``createsuperuser``) is recorded with no actor,
  so it reads as "outside promptctl" in the trail rather than passing as
  nobody's.
- A known actor without ``auth.change_user`` (users) or ``auth.change_group``
  (groups) is refused before anything is written (``access_change_check``).
- Passwords set through any door are recorded too (``user.credentials``: a
  fingerprint of the stored hash, never the hash), so a reviewer's password
  reset in the database, to approve as them, is named by ``audit verify``.
- User names are ASCII (``username_check``): no name can pass for another.
- Raw SQL against the database bypasses the ORM and so this record; what it
  changes is named by ``audit verify`` (``promptctl.record_checks``), and the
  database roles refuse it to the app's own login (docs/OPERATIONS.md).
"""

from __future__ import annotations

import contextvars
import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from promptctl.audit import audit_record
from promptctl.errors import DomainError
from promptctl.middleware import token_user_current
from promptctl.services.common import permission_require

ACCESS_FIELDS = ("is_active", "is_staff", "is_superuser")

_acting_user: contextvars.ContextVar[Any] = contextvars.ContextVar("promptctl_acting_user", default=None)
_recorded_by_service: contextvars.ContextVar[bool] = contextvars.ContextVar("promptctl_access_service", default=False)


@contextmanager
def acting_user_bind(user: Any) -> Iterator[Any]:
    """Run a block on behalf of ``user``: access changes inside it are recorded as theirs."""
    token = _acting_user.set(user)
    try:
        yield user
    finally:
        _acting_user.reset(token)


def acting_user_current() -> Any:
    """The user bound by ``acting_user_bind`` or the request's token, else the signed-in user of the web request being served, else None."""
    bound = _acting_user.get() or token_user_current()  # the request's personal token (promptctl.api_auth)
    if bound is not None:
        return bound
    from simple_history.models import HistoricalRecords  # the request its middleware keeps for history rows

    request = getattr(HistoricalRecords.context, "request", None)
    user = getattr(request, "user", None)
    return user if getattr(user, "is_authenticated", False) else None


@contextmanager
def access_recorded_by_service() -> Iterator[None]:
    """A service that writes its own audit event for an access change (``user_create``) turns the edge record off."""
    token = _recorded_by_service.set(True)
    try:
        yield
    finally:
        _recorded_by_service.reset(token)


def access_edge_recording() -> bool:
    return not _recorded_by_service.get()


def user_access_snapshot(user: Any) -> dict[str, Any]:
    """What decides what ``user`` may do: flags, groups and direct permissions, as stored now."""
    if user.pk is None:
        return {}
    # The name too: the standing auto-end account and the trail's readers know a user by it.
    fresh = get_user_model().objects.filter(pk=user.pk).values("username", *ACCESS_FIELDS).first()
    if fresh is None:
        return {}
    return {
        **fresh,
        "groups": sorted(Group.objects.filter(user__pk=user.pk).values_list("name", flat=True)),
        "permissions": _permission_names(user.user_permissions.all()),
    }


def group_access_snapshot(group: Group) -> dict[str, Any]:
    if group.pk is None or not Group.objects.filter(pk=group.pk).exists():
        return {}
    return {"name": group.name, "permissions": _permission_names(group.permissions.all())}


def _permission_names(permissions) -> list[str]:
    return sorted(
        f"{app_label}.{codename}"
        for app_label, codename in permissions.values_list("content_type__app_label", "codename")
    )


def access_change_check(*, target: Any) -> None:
    """Refuse, before anything is written, an access change by a known actor without the right to make it."""
    actor = acting_user_current()
    if actor is None:
        return
    is_group = isinstance(target, Group)
    permission_require(
        user=actor,
        permission="auth.change_group" if is_group else "auth.change_user",
        doing=f"change the access of {'group' if is_group else 'user'} {target}",
        next_step="Ask an admin to make this change.",
    )


def access_change_record(*, target: Any, before: dict[str, Any], after: dict[str, Any], verb: str) -> None:
    """Audit one change of a user's or a group's access, as the acting user (checked by ``access_change_check``).

    A no-op when nothing that decides access changed (a user saving their last
    login, say).
    """
    if before == after:
        return
    with transaction.atomic():
        audit_record(
            actor=acting_user_current(),
            verb=verb,
            target=target,
            object_type="auth.group" if isinstance(target, Group) else "auth.user",
            before=_changed(before, after),
            after=_changed(after, before),
        )


def credential_fingerprint(password_hash: str) -> str:
    """What the trail keeps of a password: SHA-256 of its stored hash (salted already), never the hash itself."""
    return hashlib.sha256(password_hash.encode("utf-8")).hexdigest()


def credentials_change_record(*, user: Any) -> None:
    """Audit that ``user``'s password was set (whoever set it, and through whatever door); no check, only the record.

    ``audit verify`` compares the fingerprint with the stored hash, so a
    password written straight into the database is named.
    """
    with transaction.atomic():
        audit_record(
            actor=acting_user_current(),
            verb="user.credentials",
            target=user,
            object_type="auth.user",
            after={"fingerprint": credential_fingerprint(user.password), "usable": user.has_usable_password()},
        )


USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9_.@+-]{1,150}$")


def username_check(username: str) -> None:
    """ASCII names only: a reviewer called "bоb" (Cyrillic о) or "bob\u200b" must not read as bob in the trail."""
    if not USERNAME_PATTERN.match(username or ""):
        raise DomainError(
            f"User name {username!r} is not allowed: use ASCII letters, digits and . _ @ + - only (at most 150), "
            "so that no name can pass for another in the audit trail."
        )


def _changed(side: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """The keys of ``side`` whose value differs in ``other`` (so the event shows only what moved)."""
    if not side:
        return {}
    return {key: value for key, value in side.items() if other.get(key) != value or key in ("name",)}
