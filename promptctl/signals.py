"""Model signals that route every access change through ``services.access`` (connected in ``ready()``).

Each receiver takes a snapshot of the users or groups a change touches before
it, another after it, and hands both to ``access_change_record``; the rules
live there.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete, pre_save

from promptctl.services.access import (
    ACCESS_FIELDS,
    access_change_check,
    access_change_record,
    access_edge_recording,
    credentials_change_record,
    group_access_snapshot,
    user_access_snapshot,
    username_check,
)

_BEFORE = "_promptctl_access_before"
_CREDENTIALS = "_promptctl_credentials_set"


def _user_pre_save(sender, instance, update_fields=None, **_kwargs) -> None:
    setattr(instance, _BEFORE, None)
    stored = sender.objects.filter(pk=instance.pk).values("username", "password").first() if instance.pk else None
    if stored is None or stored["username"] != instance.username:
        username_check(instance.username)
    writes_password = update_fields is None or "password" in update_fields
    setattr(instance, _CREDENTIALS, writes_password and (stored is None or stored["password"] != instance.password))
    if update_fields is not None and not set(update_fields) & {"username", *ACCESS_FIELDS}:
        return  # last_login, password, ...: not access
    if not access_edge_recording():
        return
    before = user_access_snapshot(instance)
    if before and all(before[field] == getattr(instance, field) for field in ("username", *ACCESS_FIELDS)):
        return  # a save that changes no access (a password, a name): anyone allowed to save it may
    access_change_check(target=instance)
    setattr(instance, _BEFORE, before)


def _user_post_save(sender, instance, created=False, **_kwargs) -> None:
    if instance.__dict__.pop(_CREDENTIALS, False):
        credentials_change_record(user=instance)
    before = instance.__dict__.pop(_BEFORE, None)
    if before is None:
        return
    verb = "user.create" if created else "user.access"
    access_change_record(target=instance, before=before, after=user_access_snapshot(instance), verb=verb)


def _group_pre_save(sender, instance, **_kwargs) -> None:
    setattr(instance, _BEFORE, None)
    if not access_edge_recording():
        return
    before = group_access_snapshot(instance)
    if before and before["name"] == instance.name:
        return
    access_change_check(target=instance)
    setattr(instance, _BEFORE, before)


def _group_post_save(sender, instance, created=False, **_kwargs) -> None:
    before = instance.__dict__.pop(_BEFORE, None)
    if before is None:
        return
    verb = "group.create" if created else "group.access"
    access_change_record(target=instance, before=before, after=group_access_snapshot(instance), verb=verb)


def _pre_delete(sender, instance, **_kwargs) -> None:
    if not access_edge_recording():
        return
    access_change_check(target=instance)
    snapshot = group_access_snapshot(instance) if isinstance(instance, Group) else user_access_snapshot(instance)
    setattr(instance, _BEFORE, snapshot)


def _post_delete(sender, instance, **_kwargs) -> None:
    before = instance.__dict__.pop(_BEFORE, None)
    if before is None:
        return
    verb = "group.delete" if isinstance(instance, Group) else "user.delete"
    access_change_record(target=instance, before=before, after={}, verb=verb)


def _m2m_targets(instance: Any, reverse: bool, pk_set: set | None, owner: type) -> list[Any]:
    """The owners (users, or groups) whose access an m2m change touches, whichever side it was made from."""
    if not reverse:
        return [instance]
    if pk_set is None:  # a clear from the far side (a group's or a permission's): every owner linked now
        return list(getattr(instance, "group_set" if owner is Group else "user_set").all())
    return list(owner.objects.filter(pk__in=pk_set))


def _m2m_receiver(owner: type):
    snapshot = group_access_snapshot if owner is Group else user_access_snapshot
    verb = "group.access" if owner is Group else "user.access"

    def receiver(sender, instance, action, reverse, pk_set, **_kwargs) -> None:
        if not access_edge_recording():
            return
        if action.startswith("pre_"):
            targets = _m2m_targets(instance, reverse, pk_set, owner)
            for target in targets:
                access_change_check(target=target)
            setattr(instance, _BEFORE, [(target, snapshot(target)) for target in targets])
            return
        for target, before in instance.__dict__.pop(_BEFORE, None) or []:
            access_change_record(target=target, before=before, after=snapshot(target), verb=verb)

    return receiver


def connect() -> None:
    """Connect the receivers (``PromptctlConfig.ready()``); idempotent through dispatch uids."""
    user_model = get_user_model()
    pairs = [
        (pre_save, _user_pre_save, user_model),
        (post_save, _user_post_save, user_model),
        (pre_save, _group_pre_save, Group),
        (post_save, _group_post_save, Group),
        (pre_delete, _pre_delete, user_model),
        (post_delete, _post_delete, user_model),
        (pre_delete, _pre_delete, Group),
        (post_delete, _post_delete, Group),
    ]
    for signal, receiver, sender in pairs:
        signal.connect(receiver, sender=sender, dispatch_uid=f"promptctl.access.{receiver.__name__}.{sender.__name__}")
    for through, owner in (
        (user_model.groups.through, user_model),
        (user_model.user_permissions.through, user_model),
        (Group.permissions.through, Group),
    ):
        m2m_changed.connect(
            _m2m_receiver(owner), sender=through, weak=False, dispatch_uid=f"promptctl.access.m2m.{through.__name__}"
        )
