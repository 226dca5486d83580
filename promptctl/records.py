"""Two rules every app's records keep.

- Rows that are part of the record (versions, results, audit events, …) are
  written once: ``ImmutableRecord`` refuses updates and deletes in the ORM, and
  each app backs that with database guards.
- Writes to history-tracked rows name who made them: ``saved_by`` sets the
  acting user django-simple-history records (``None`` for system work) before
  saving, since services run outside the request middleware too (CLI, workers).
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.db import models

from promptctl.errors import DomainError

Row = TypeVar("Row", bound=models.Model)


class ImmutableRecord(models.Model):
    """Written once, never changed or deleted; ``immutable_noun`` names the row in refusals."""

    immutable_noun = "this record"

    class Meta:
        abstract = True

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise DomainError(f"{self.immutable_noun.capitalize()} is immutable: it cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise DomainError(f"{self.immutable_noun.capitalize()} is part of the record and cannot be deleted.")


def saved_by(instance: Row, actor: Any) -> Row:
    """Save ``instance`` with ``actor`` recorded as the history user (system work records none)."""
    # django-simple-history reads the acting user from this attribute when it writes the history row.
    instance._history_user = actor if getattr(actor, "pk", None) else None  # type: ignore[attr-defined]
    instance.save()
    return instance
