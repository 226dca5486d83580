"""The audit trail's rows: events and the chain head (the rules live in ``promptctl.audit``)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from promptctl.errors import DomainError


class AuditEvent(models.Model):
    """One append-only, hash-chained record of a change; see ``promptctl.audit``."""

    sequence = models.PositiveBigIntegerField(unique=True, editable=False)
    occurred_at = models.DateTimeField(editable=False)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", editable=False
    )
    actor_username = models.CharField(max_length=150, blank=True, editable=False)
    verb = models.CharField(max_length=64, editable=False)
    object_type = models.CharField(max_length=100, editable=False)
    object_id = models.CharField(max_length=64, editable=False)
    object_repr = models.CharField(max_length=300, blank=True, editable=False)
    agent_id_ref = models.BigIntegerField(
        null=True, blank=True, editable=False, db_index=True, help_text="the agent the event concerns, if any"
    )
    before = models.JSONField(null=True, blank=True, editable=False)
    after = models.JSONField(null=True, blank=True, editable=False)
    request_id = models.CharField(max_length=100, blank=True, editable=False)
    previous_hash = models.CharField(max_length=64, editable=False)
    hash = models.CharField(
        max_length=64,
        unique=True,
        editable=False,
        help_text="HMAC-SHA256 under key_id; plain SHA-256 if key_id is empty",
    )
    key_id = models.CharField(
        max_length=32, blank=True, default="", editable=False, help_text="the audit key's id; empty: before keying"
    )
    token_ref = models.CharField(
        max_length=40,
        blank=True,
        default="",
        editable=False,
        help_text="the personal token the change came through (id:prefix); empty: none (operator, web session)",
    )

    class Meta:
        ordering = ["sequence"]
        constraints = [models.CheckConstraint(condition=Q(sequence__gte=1), name="auditevent_sequence_positive")]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.verb} {self.object_type}:{self.object_id}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise DomainError("Audit events are append-only: they cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise DomainError("Audit events are append-only: they cannot be deleted.")


class AuditChainHead(models.Model):
    """The single row holding the chain's last sequence and hash; locked to serialize appends."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    sequence = models.PositiveBigIntegerField(default=0, editable=False)
    hash = models.CharField(max_length=64, default="0" * 64, editable=False)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="auditchainhead_single_row")]

    def __str__(self) -> str:
        return f"audit chain head at #{self.sequence}"
