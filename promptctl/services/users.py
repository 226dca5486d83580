"""Users and their roles: the role groups and the permissions each holds, and creating staff users."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.db.models import Q

from promptctl.audit import audit_record
from promptctl.errors import DomainError
from promptctl.registry import registry
from promptctl.services.access import access_recorded_by_service

REQUESTERS = "requesters"
REVIEWERS = "reviewers"
ROLES = ("requester", "reviewer", "admin")

# Who may do what in change control, as "app_label.codename"; apps above add theirs through the
# registry (frozen copies live in promptctl migration 0003 and evals migration 0002;
# docs/CHANGE_CONTROL.md explains it).
ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    REQUESTERS: (
        "promptctl.view_agent",
        "promptctl.add_agent",
        "promptctl.view_agentversion",
        "promptctl.add_agentversion",
        "promptctl.view_pin",
        "promptctl.view_changerequest",
        "promptctl.add_changerequest",
        "promptctl.apply_changerequest",
        "promptctl.view_approval",
        "promptctl.view_auditevent",
    ),
    REVIEWERS: (
        "promptctl.view_agent",
        "promptctl.view_agentversion",
        "promptctl.view_pin",
        "promptctl.view_changerequest",
        "promptctl.approve_changerequest",
        "promptctl.apply_changerequest",
        "promptctl.view_approval",
        "promptctl.view_auditevent",
    ),
}


def roles_ensure() -> dict[str, Group]:
    """The ``requesters`` and ``reviewers`` groups with at least their permissions (idempotent; extras an admin added stay)."""
    groups: dict[str, Group] = {}
    for group_name, codenames in registry.role_permissions.items():
        group, _created = Group.objects.get_or_create(name=group_name)
        wanted = Q()
        for qualified in codenames:
            app_label, codename = qualified.split(".", 1)
            wanted |= Q(content_type__app_label=app_label, codename=codename)
        permissions = list(Permission.objects.filter(wanted).select_related("content_type"))
        missing = set(codenames) - {f"{p.content_type.app_label}.{p.codename}" for p in permissions}
        if missing:
            raise DomainError(f"Permissions {sorted(missing)} do not exist yet: run `python manage.py migrate`.")
        group.permissions.add(*permissions)
        groups[group_name] = group
    return groups


def user_create(*, username: str, role: str, password: str | None = None, email: str = "") -> Any:
    """A staff user in the role's group; ``admin`` is a superuser in both groups (so they may also review)."""
    if role not in ROLES:
        raise DomainError(f"Unknown role {role!r}: choose one of {', '.join(ROLES)}.")
    user_model = get_user_model()
    if not username or user_model.objects.filter(username=username).exists():
        raise DomainError(f"User {username!r} already exists (or the name is empty): pick another name.")
    groups = roles_ensure()
    with transaction.atomic(), access_recorded_by_service():
        user = user_model(username=username, email=email, is_staff=True, is_superuser=(role == "admin"))
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save()
        if role == "requester":
            user.groups.add(groups[REQUESTERS])
        elif role == "reviewer":
            user.groups.add(groups[REVIEWERS])
        else:
            user.groups.add(groups[REQUESTERS], groups[REVIEWERS])
        audit_record(actor=None, verb="user.create", target=user, after={"username": username, "role": role})
    return user
