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
        # The admin's filters, each read newest first (migration 0014).
        indexes = [
            models.Index(fields=["verb", "-sequence"], name="auditevent_verb"),
            models.Index(fields=["object_type", "-sequence"], name="auditevent_object_type"),
        ]
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


class AuditSegment(models.Model):
    """A sealed, exported stretch of the chain (events ``first_sequence``..``last_sequence``); see ``promptctl.audit.segments``.

    Insert-only but for ``archived_at``/``archived_events``, set once when the
    segment's events are deleted; the database refuses deleting the row and
    refuses deleting any audit event no archived segment covers (migration 0015).
    """

    number = models.PositiveIntegerField(unique=True, editable=False)
    first_sequence = models.PositiveBigIntegerField(editable=False)
    last_sequence = models.PositiveBigIntegerField(unique=True, editable=False)
    last_mac = models.CharField(max_length=64, editable=False, help_text="the MAC of event last_sequence (the seal)")
    previous_seal_mac = models.CharField(max_length=64, editable=False, help_text="the previous segment's seal")
    file_mac = models.CharField(max_length=64, editable=False, help_text="the MAC over the exported file")
    export_path = models.CharField(max_length=500, editable=False)
    export_verified = models.BooleanField(default=False, editable=False)
    key_id = models.CharField(max_length=32, editable=False, help_text="the audit key that MACed file and row")
    row_mac = models.CharField(max_length=64, editable=False, help_text="MAC over this row's sealed fields")
    sealed_at = models.DateTimeField(editable=False)
    archived_at = models.DateTimeField(null=True, blank=True, editable=False)
    archived_events = models.PositiveBigIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["number"]
        constraints = [
            models.CheckConstraint(
                condition=Q(first_sequence__gte=1) & Q(last_sequence__gte=models.F("first_sequence")),
                name="auditsegment_range_valid",
            )
        ]

    def __str__(self) -> str:
        return f"audit segment {self.number}: #{self.first_sequence} to #{self.last_sequence}"

    def delete(self, *args, **kwargs):
        raise DomainError("Audit segments are part of the record: they cannot be deleted.")
