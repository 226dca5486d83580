"""Users and their roles: the role groups and the permissions each holds, and creating staff users.

Roles: ``requester``, ``reviewer``, ``admin`` (a superuser in both groups) and
``bot``, a service account for CI: requester permissions plus membership of
``bots``, which the approval services refuse (``change_request_approve`` and
``_reject``), so a bot's token can file and apply changes but never pass the
four-eyes gate, even if someone later adds it to a reviewer group.

The first admin is made by the operator without an actor (bootstrap); every
later user is made by an actor holding ``auth.add_user``.
"""

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
from promptctl.services.common import permission_require

REQUESTERS = "requesters"
REVIEWERS = "reviewers"
BOTS = "bots"
ROLES = ("requester", "reviewer", "admin", "bot")

# Who may do what in change control, as "app_label.codename"; apps above add theirs through the
# registry (frozen copies live in promptctl migrations 0003 and 0013 and evals migration 0002;
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
        "promptctl.view_deploymentbinding",
        "promptctl.view_versionintent",
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
        "promptctl.view_deploymentbinding",
        "promptctl.view_versionintent",
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


def user_create(*, username: str, role: str, password: str | None = None, email: str = "", actor: Any = None) -> Any:
    """A staff user in the role's group; ``admin`` is a superuser in both groups (so they may also review).

    ``actor`` None is the operator's own bootstrap (and the demo); a given actor needs ``auth.add_user``.
    """
    if actor is not None:
        permission_require(
            user=actor,
            permission="auth.add_user",
            doing="create users",
            next_step="Ask an admin to add the user.",
        )
    if role not in ROLES:
        raise DomainError(f"Unknown role {role!r}: choose one of {', '.join(ROLES)}.")
    user_model = get_user_model()
    if not username or user_model.objects.filter(username=username).exists():
        raise DomainError(f"User {username!r} already exists (or the name is empty): pick another name.")
    groups = roles_ensure()
    with transaction.atomic(), access_recorded_by_service():
        user = user_model(username=username, email=email, is_staff=(role != "bot"), is_superuser=(role == "admin"))
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save()
        if role == "requester":
            user.groups.add(groups[REQUESTERS])
        elif role == "reviewer":
            user.groups.add(groups[REVIEWERS])
        elif role == "bot":
            user.groups.add(groups[REQUESTERS], Group.objects.get_or_create(name=BOTS)[0])
        else:
            user.groups.add(groups[REQUESTERS], groups[REVIEWERS])
        audit_record(actor=actor, verb="user.create", target=user, after={"username": username, "role": role})
    return user
