"""What the database itself enforces beyond the schema, set by the tables' owner (``promptctl db roles``)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class RetentionFloor(models.Model):
    """The youngest customer text and history rows any login may remove: one row, written by the owner only.

    ``promptctl db roles`` copies the retention policy (``PROMPTCTL_RETENTION_*_DAYS``) here when it
    grants the runtime role its privileges, and the guard triggers it installs on PostgreSQL refuse a
    redaction or a history deletion younger than these days. The runtime role may only read this
    row, so a login that can run the purge cannot shorten the policy it runs under: lowering the
    policy takes the owner re-running ``db roles``. No row: no floor (SQLite, or roles never granted).
    """

    ticket_text_days = models.PositiveIntegerField(editable=False)
    history_days = models.PositiveIntegerField(editable=False)
    set_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="retentionfloor_one_row")]

    def __str__(self) -> str:
        return f"ticket text {self.ticket_text_days} d, history {self.history_days} d (set {self.set_at:%Y-%m-%d})"
