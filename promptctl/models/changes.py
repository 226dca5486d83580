"""Change requests, the decisions on them, and the pins they move."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from promptctl.errors import DomainError
from promptctl.models.agents import Agent, AgentVersion
from promptctl.models.common import PRODUCTION


class ChangeRequest(models.Model):
    """A request to move a pin, fixed when filed; approvals and the apply step act on it."""

    class Kind(models.TextChoices):
        PROMOTE = "promote", "promote"
        ROLLBACK = "rollback", "rollback"
        CANARY = "canary", "canary"
        ROUTE = "route", "make default agent"

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        APPROVED = "approved", "approved"
        APPLIED = "applied", "applied"
        REJECTED = "rejected", "rejected"
        WITHDRAWN = "withdrawn", "withdrawn"
        SUPERSEDED = "superseded", "superseded"

    OPEN_STATUSES = (Status.PENDING, Status.APPROVED)
    FINAL_STATUSES = (Status.APPLIED, Status.REJECTED, Status.WITHDRAWN, Status.SUPERSEDED)

    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="change_requests", editable=False)
    channel = models.SlugField(max_length=50, default=PRODUCTION, editable=False)
    kind = models.CharField(max_length=16, choices=Kind.choices, editable=False)
    base_version = models.ForeignKey(
        AgentVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        editable=False,
        help_text="the version pinned on the channel when the request was filed (empty: no pin yet)",
    )
    base_pin_revision = models.PositiveBigIntegerField(
        default=0, editable=False, help_text="the pin's revision when filed; 0 when the channel had no pin"
    )
    target_version = models.ForeignKey(
        AgentVersion, on_delete=models.PROTECT, related_name="change_requests", editable=False
    )
    target_config_sha256 = models.CharField(max_length=64, editable=False)
    canary_percent = models.PositiveSmallIntegerField(default=0, editable=False)
    evidence_type = models.CharField(max_length=32, blank=True, editable=False)
    evidence_id = models.BigIntegerField(null=True, blank=True, editable=False)
    evidence = models.JSONField(default=dict, blank=True, editable=False)
    accept_regression_reason = models.TextField(blank=True, editable=False)
    approvals_required = models.PositiveSmallIntegerField(editable=False)
    reason = models.TextField(editable=False)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", editable=False
    )
    requested_at = models.DateTimeField(default=timezone.now, editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, editable=False)
    status_reason = models.TextField(blank=True, editable=False, help_text="why the request was closed")
    approved_at = models.DateTimeField(null=True, blank=True, editable=False)
    closed_at = models.DateTimeField(null=True, blank=True, editable=False)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", editable=False
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["-requested_at", "-id"]
        permissions = [
            ("approve_changerequest", "Can approve or reject change requests"),
            ("apply_changerequest", "Can apply approved change requests"),
        ]
        # The open-request lookup; the timeline's three moments per agent; the admin list's order and filters
        # (migration 0014: a filtered page reads its rows from an index, not a sort of the table).
        indexes = [
            models.Index(fields=["agent", "channel", "status"], name="changerequest_open_lookup"),
            models.Index(fields=["agent", "requested_at"], name="changerequest_agent_requested"),
            models.Index(fields=["agent", "approved_at"], name="changerequest_agent_approved"),
            models.Index(fields=["agent", "closed_at"], name="changerequest_agent_closed"),
            models.Index(fields=["-requested_at", "-id"], name="changerequest_newest"),
            models.Index(fields=["status", "-requested_at"], name="changerequest_status"),
            models.Index(fields=["kind", "-requested_at"], name="changerequest_kind"),
            models.Index(fields=["channel", "-requested_at"], name="changerequest_channel"),
        ]
        constraints = [
            # Lets approvals (on PostgreSQL) insist that their copied requester is the request's.
            models.UniqueConstraint(fields=["id", "requested_by"], name="changerequest_unique_id_requester"),
            models.CheckConstraint(
                condition=Q(kind__in=["promote", "rollback", "canary", "route"]), name="changerequest_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "approved", "applied", "rejected", "withdrawn", "superseded"]),
                name="changerequest_status_valid",
            ),
            models.CheckConstraint(condition=Q(approvals_required__gte=1), name="changerequest_needs_an_approval"),
            models.CheckConstraint(
                condition=(Q(kind="canary") & Q(canary_percent__gte=1) & Q(canary_percent__lte=99))
                | (~Q(kind="canary") & Q(canary_percent=0)),
                name="changerequest_canary_percent_only_for_canary",
            ),
            models.CheckConstraint(
                condition=~Q(kind__in=["rollback", "canary"]) | Q(base_version__isnull=False),
                name="changerequest_rollback_and_canary_need_a_pin",
            ),
            models.CheckConstraint(
                condition=Q(base_version__isnull=True, base_pin_revision=0)
                | Q(base_version__isnull=False, base_pin_revision__gte=1),
                name="changerequest_base_matches_revision",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "approved"], closed_at__isnull=True)
                | Q(status__in=["applied", "rejected", "withdrawn", "superseded"], closed_at__isnull=False),
                name="changerequest_closed_at_iff_final",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=["approved", "applied"]) | Q(approved_at__isnull=False),
                name="changerequest_approved_has_time",
            ),
            models.CheckConstraint(
                condition=~Q(status="applied") | Q(closed_by__isnull=False),
                name="changerequest_applied_has_applier",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} {self.agent.name}/{self.channel} → v{self.target_version.number}"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES


class Approval(models.Model):
    """One reviewer's decision on one change request; immutable once given."""

    class Decision(models.TextChoices):
        APPROVE = "approve", "approve"
        REJECT = "reject", "reject"

    change = models.ForeignKey(ChangeRequest, on_delete=models.PROTECT, related_name="approvals", editable=False)
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", editable=False)
    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        editable=False,
        help_text="copied from the change request so the database can refuse self-approval",
    )
    decision = models.CharField(max_length=16, choices=Decision.choices, editable=False)
    comment = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["created_at"], name="approval_created")]  # the timeline, newest first
        constraints = [
            models.UniqueConstraint(fields=["change", "reviewer"], name="approval_one_per_reviewer"),
            models.CheckConstraint(condition=~Q(reviewer=F("requester")), name="approval_reviewer_is_not_requester"),
            models.CheckConstraint(condition=Q(decision__in=["approve", "reject"]), name="approval_decision_valid"),
            models.CheckConstraint(
                condition=Q(decision="approve") | ~Q(comment=""), name="approval_rejection_has_comment"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.decision} of #{self.change_id} by {self.reviewer}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise DomainError("A decision on a change request is final; file a new request to decide again.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise DomainError("A decision on a change request is part of the record and cannot be deleted.")


class Pin(models.Model):
    """Which version callers of one agent and channel pass; moved only by applying a change request."""

    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="pins", editable=False)
    channel = models.SlugField(max_length=50, default=PRODUCTION, editable=False)
    version = models.ForeignKey(AgentVersion, on_delete=models.PROTECT, related_name="+", editable=False)
    canary_version = models.ForeignKey(
        AgentVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+", editable=False
    )
    canary_percent = models.PositiveSmallIntegerField(default=0, editable=False)
    revision = models.PositiveBigIntegerField(default=1, editable=False, help_text="counts the pin's moves")
    change = models.ForeignKey(
        ChangeRequest,
        on_delete=models.PROTECT,
        related_name="+",
        editable=False,
        help_text="the applied change request that set this state",
    )
    updated_at = models.DateTimeField(default=timezone.now, editable=False)
    history = HistoricalRecords()

    class Meta:
        ordering = ["agent_id", "channel"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "channel"], name="pin_one_per_agent_channel"),
            models.CheckConstraint(condition=Q(revision__gte=1), name="pin_revision_positive"),
            models.CheckConstraint(
                condition=Q(canary_version__isnull=True, canary_percent=0)
                | (Q(canary_version__isnull=False) & Q(canary_percent__gte=1) & Q(canary_percent__lte=99)),
                name="pin_canary_has_percent",
            ),
            models.CheckConstraint(
                condition=Q(canary_version__isnull=True) | ~Q(canary_version=F("version")),
                name="pin_canary_differs_from_pinned",
            ),
        ]

    def __str__(self) -> str:
        canary = f" (canary v{self.canary_version.number} at {self.canary_percent}%)" if self.canary_version else ""
        return f"{self.agent.name}/{self.channel} → v{self.version.number}{canary}"
