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
- Raw SQL against the database file bypasses the ORM and so this record; that
  is what the keyed audit chain's checkpoints and the database roles are for
  (docs/OPERATIONS.md).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from promptctl.audit import audit_record
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
    """The user bound by ``acting_user_bind``, else the signed-in user of the web request being served, else None."""
    bound = _acting_user.get()
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
    fresh = get_user_model().objects.filter(pk=user.pk).values(*ACCESS_FIELDS).first()
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


def _changed(side: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """The keys of ``side`` whose value differs in ``other`` (so the event shows only what moved)."""
    if not side:
        return {}
    return {key: value for key, value in side.items() if other.get(key) != value or key in ("name",)}
