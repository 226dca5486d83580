"""The change-control domain: agents, versions, pins, change requests, approvals, audit.

Rules the models keep (each also held by the database, see ``Meta.constraints``
and the triggers in migration 0002):

- A version is immutable and unique per agent and number; numbers are 64-bit
  and never assumed small or contiguous.
- A pin exists once per agent and channel and moves only by applying a change
  request: ``Pin.change`` names the applied request that set its current state.
- A change request's target, base and evidence are fixed when it is filed, so
  an approval always covers exactly what the reviewer saw.
- An approval's reviewer is never the request's requester (four-eyes rule); the
  requester is copied onto the approval so a check constraint can hold it.
- Audit events are append-only and hash-chained (``promptctl.audit``).

Writes go through ``promptctl.services``; nothing here moves state on its own.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from promptctl.errors import DomainError

PRODUCTION = "production"


class Agent(models.Model):
    """A remote Managed Agents agent and the approval policy for moving its pins."""

    name = models.SlugField(max_length=100, unique=True, help_text="promptctl's name for the agent")
    remote_id = models.CharField(max_length=200, unique=True, editable=False)
    environment_id = models.CharField(max_length=200, blank=True, editable=False)
    model = models.CharField(max_length=200, editable=False)
    latest_version_number = models.BigIntegerField(
        editable=False,
        help_text="the newest version promptctl has seen on the server; new versions are made on top of it",
    )
    required_approvals = models.PositiveSmallIntegerField(
        default=1, help_text="approvals a change request needs before it can be applied"
    )
    approver_group = models.CharField(
        max_length=150, default="reviewers", help_text="only members of this group may approve or reject changes"
    )
    regression_tolerance = models.PositiveIntegerField(
        default=0, help_text="tickets a team may lose in the eval comparison before a promotion is flagged"
    )
    canary_evidence_above_percent = models.PositiveSmallIntegerField(
        default=10,
        help_text="a production canary above this share of traffic needs the same eval evidence as a promotion",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", editable=False
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(required_approvals__gte=1),
                name="agent_required_approvals_at_least_one",
                violation_error_message="An agent needs at least 1 approval per change; 0 would let pins move unreviewed.",
            ),
            models.CheckConstraint(
                condition=~Q(approver_group=""),
                name="agent_approver_group_not_blank",
                violation_error_message="Name the group whose members may approve changes (e.g. reviewers).",
            ),
            models.CheckConstraint(
                condition=Q(canary_evidence_above_percent__lte=99),
                name="agent_canary_evidence_percent_range",
                violation_error_message="The canary evidence threshold is a share of traffic: 0 to 99 percent.",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class AgentVersion(models.Model):
    """One immutable server-side version of an agent, as promptctl recorded it."""

    class Origin(models.TextChoices):
        PROMPTCTL = "promptctl", "made through promptctl"
        OUTSIDE = "outside", "changed outside promptctl"

    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="versions", editable=False)
    number = models.BigIntegerField(editable=False)
    system_prompt = models.TextField(editable=False)
    model = models.CharField(max_length=200, editable=False)
    config = models.JSONField(editable=False, help_text="the version's whole configuration as the server returned it")
    config_sha256 = models.CharField(max_length=64, editable=False)
    origin = models.CharField(max_length=16, choices=Origin.choices, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", editable=False
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False, help_text="when promptctl recorded it")
    server_created_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["agent_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "number"], name="agentversion_unique_number_per_agent"),
            # Lets pins, change requests and (on PostgreSQL) composite foreign keys
            # insist that a version belongs to the agent it is used for.
            models.UniqueConstraint(fields=["id", "agent"], name="agentversion_unique_id_agent"),
            models.CheckConstraint(condition=Q(origin__in=["promptctl", "outside"]), name="agentversion_origin_valid"),
            models.CheckConstraint(
                condition=Q(origin="outside") | Q(created_by__isnull=False),
                name="agentversion_promptctl_origin_has_creator",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.agent.name} v{self.number}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise DomainError(
                f"Version {self.number} of {self.agent.name} is immutable: make a new version instead "
                "(`promptctl version create`)."
            )
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise DomainError(f"Version {self.number} of {self.agent.name} is part of the record and cannot be deleted.")

    @property
    def is_outside(self) -> bool:
        return self.origin == self.Origin.OUTSIDE


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
        indexes = [models.Index(fields=["agent", "channel", "status"], name="changerequest_open_lookup")]
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
