"""Agents and their immutable versions."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from promptctl.errors import DomainError


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
    config_sha256 = models.CharField(
        max_length=64, editable=False, help_text="SHA-256 of the whole stored config; moves with SDK upgrades"
    )
    # Nullable only so SQLite can add the column without rebuilding the table (which would drop its
    # guard triggers); migration 0010 fills every row and services always set it.
    config_canonical_sha256 = models.CharField(
        max_length=64,
        null=True,
        editable=False,
        help_text="SHA-256 of the behaviour-defining fields (managed_agents.confighash); what drift checks compare",
    )
    origin = models.CharField(max_length=16, choices=Origin.choices, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", editable=False
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False, help_text="when promptctl recorded it")
    server_created_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["agent_id", "number"]
        # The timeline reads an agent's versions newest first; the admin filters on origin (migration 0014).
        indexes = [
            models.Index(fields=["agent", "created_at"], name="agentversion_agent_created"),
            models.Index(fields=["origin", "agent"], name="agentversion_origin"),
        ]
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

    @property
    def config_hash(self) -> str:
        """The configuration hash to compare and show: the canonical one (``managed_agents.confighash``)."""
        return self.config_canonical_sha256 or self.config_sha256

    def config_hash_matches(self, sha256: str) -> bool:
        """Whether ``sha256`` names this version's configuration.

        Change requests filed before migration 0010 hold the whole-dump hash (their
        columns are frozen), so it is accepted too: both hashes of an immutable row are fixed.
        """
        return sha256 in {self.config_hash, self.config_sha256}
