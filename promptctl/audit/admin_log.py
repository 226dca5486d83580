"""The admin's "Recent actions" fed from the audit path: one Django ``LogEntry`` per audited act of a person.

Services change the record through ``audit_record``, whichever door they were
called through (admin, CLI, API, tasks), so writing the ``LogEntry`` here makes
the admin's index list what each person did everywhere, not only the few
saves the admin makes itself. System acts (no person) get no entry: the admin's
list is "my actions". The entry points at the changed object when it has an
admin page, else at the audit event, and says the audit verb.
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import models

ADDING_SUFFIXES = (".create", ".import", ".add", ".start")


def admin_log_record(*, actor: Any, verb: str, target: models.Model | None, event: models.Model) -> None:
    """Write the admin's ``LogEntry`` for an audited act of ``actor`` (in the caller's transaction)."""
    if actor is None or not getattr(actor, "pk", None) or not getattr(actor, "is_authenticated", False):
        return
    shown = target if target is not None and target.pk is not None else event
    LogEntry.objects.create(
        user_id=actor.pk,
        content_type=ContentType.objects.get_for_model(shown, for_concrete_model=False),
        object_id=str(shown.pk),
        object_repr=str(shown)[:200],
        action_flag=ADDITION if verb.endswith(ADDING_SUFFIXES) else CHANGE,
        change_message=verb,
    )
