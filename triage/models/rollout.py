"""Shadow and canary rollout: shadow results, canary checks, canary policies and comparisons, shadow candidates."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from promptctl.models import AgentVersion
from promptctl.records import ImmutableRecord
from triage.models.common import OUTCOME_VALUES, Outcome
from triage.models.requests import TriageRequest


class ShadowResult(ImmutableRecord):
    """What a candidate version answered for a live ticket that production also answered."""

    immutable_noun = "a shadow result"

    request = models.ForeignKey(TriageRequest, on_delete=models.PROTECT, related_name="shadow_results", editable=False)
    version = models.ForeignKey(
        "promptctl.AgentVersion", on_delete=models.PROTECT, related_name="shadow_results", editable=False
    )
    outcome = models.CharField(max_length=16, choices=Outcome.choices, editable=False)
    team = models.CharField(max_length=100, blank=True, editable=False)
    priority = models.CharField(max_length=50, blank=True, editable=False)
    problem = models.TextField(blank=True, editable=False)
    reply = models.TextField(blank=True, editable=False)
    session_id = models.CharField(max_length=200, blank=True, editable=False)
    latency_ms = models.PositiveIntegerField(editable=False)
    agrees = models.BooleanField(
        null=True,
        blank=True,
        editable=False,
        help_text="team and priority match production's; empty when either side has no valid verdict",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["request", "version"], name="shadowresult_one_per_request_and_version"),
            models.CheckConstraint(condition=Q(outcome__in=OUTCOME_VALUES), name="shadowresult_outcome_valid"),
            models.CheckConstraint(
                condition=Q(agrees__isnull=True) | Q(outcome="ok"), name="shadowresult_agreement_needs_a_verdict"
            ),
        ]

    def __str__(self) -> str:
        return f"shadow of #{self.request_id} on v{self.version.number}: {self.outcome}"


class CanaryCheck(ImmutableRecord):
    """A canary that crossed its agent's limits, the numbers that crossed, and the change request filed to end it."""

    immutable_noun = "a canary check"

    agent = models.ForeignKey("promptctl.Agent", on_delete=models.PROTECT, related_name="+", editable=False)
    channel = models.SlugField(max_length=50, editable=False)
    canary_change = models.OneToOneField(
        "promptctl.ChangeRequest",
        on_delete=models.PROTECT,
        related_name="+",
        editable=False,
        help_text="the applied change request that started the canary (one check ends one canary)",
    )
    pin_revision = models.PositiveBigIntegerField(editable=False)
    canary_version = models.ForeignKey(
        "promptctl.AgentVersion", on_delete=models.PROTECT, related_name="+", editable=False
    )
    canary_percent = models.PositiveSmallIntegerField(editable=False)
    requests = models.PositiveIntegerField(editable=False)
    invalid = models.PositiveIntegerField(editable=False)
    errors = models.PositiveIntegerField(editable=False)
    max_invalid_rate = models.FloatField(editable=False)
    max_error_rate = models.FloatField(editable=False)
    tripped_by = models.CharField(
        max_length=200, blank=True, editable=False, help_text="which limits the canary crossed"
    )
    compared = models.PositiveIntegerField(
        default=0, editable=False, help_text="canary calls also answered by the production version"
    )
    disagreements = models.PositiveIntegerField(
        default=0, editable=False, help_text="compared calls where the two verdicts' team or priority differ"
    )
    max_disagreement_rate = models.FloatField(default=0.2, editable=False)
    min_compared = models.PositiveIntegerField(default=10, editable=False)
    labels = models.JSONField(
        default=dict,
        editable=False,
        help_text="per team of the production verdict: compared, disagreements, rate",
    )
    examples = models.JSONField(default=list, editable=False, help_text="ids of logged requests that disagreed")
    auto_ended = models.BooleanField(
        default=False,
        editable=False,
        help_text="promptctl approved and applied the rollback under the agent's standing canary_auto_end policy",
    )
    end_change = models.OneToOneField(
        "promptctl.ChangeRequest",
        on_delete=models.PROTECT,
        related_name="+",
        editable=False,
        help_text="the change request promptctl filed to end the canary",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(requests__gte=1)
                & Q(invalid__lte=models.F("requests"))
                & Q(errors__lte=models.F("requests")),
                name="canarycheck_counts_consistent",
            ),
            models.CheckConstraint(
                condition=Q(disagreements__lte=models.F("compared")), name="canarycheck_disagreements_of_compared"
            ),
        ]

    def __str__(self) -> str:
        return f"canary v{self.canary_version.number} of {self.agent} ended by #{self.end_change_id}"

    @property
    def invalid_rate(self) -> float:
        return self.invalid / self.requests

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests

    def summary(self) -> str:
        text = (
            f"canary v{self.canary_version.number} at {self.canary_percent}% served {self.requests} requests: "
            f"{self.invalid} invalid ({self.invalid_rate:.1%}, limit {self.max_invalid_rate:.1%}), "
            f"{self.errors} failed ({self.error_rate:.1%}, limit {self.max_error_rate:.1%})"
        )
        if self.compared:
            rate = self.disagreements / self.compared
            labels = ", ".join(
                f"{team} {figures['disagreements']}/{figures['compared']}"
                for team, figures in sorted(self.labels.items())
            )
            text += (
                f"; disagreed with production on {self.disagreements} of {self.compared} compared ({rate:.1%}, "
                f"limit {self.max_disagreement_rate:.1%}; by production's team: {labels})"
            )
        return text


class CanaryPolicy(models.Model):
    """How a live canary of one agent is watched beyond invalid replies and errors, and whether promptctl ends it.

    Changed only through ``canary_policy_save`` (permission-checked, audited).
    ``auto_end`` is a standing approval: the person who turned it on
    (``auto_end_granted_by``, an eligible reviewer of the agent at the time)
    agreed in advance that a canary tripping the watch is rolled back at once.
    """

    agent = models.OneToOneField("promptctl.Agent", on_delete=models.PROTECT, related_name="canary_policy")
    compare_percent = models.PositiveSmallIntegerField(
        default=100,
        help_text="share of valid canary replies also answered by the production version, to compare (0-100)",
    )
    disagreement_limit = models.FloatField(
        default=0.2,
        help_text="end the canary when its verdicts differ from production's on more than this share, overall "
        "or for any one team of production's verdict (0-1)",
    )
    min_compared = models.PositiveIntegerField(
        default=10, help_text="compared calls (overall, or of one team) before the disagreement limit can trip"
    )
    auto_end = models.BooleanField(
        default=False,
        help_text="when the canary trips, promptctl approves and applies its own rollback at once "
        "(off: one person must approve it)",
    )
    auto_end_granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", editable=False
    )
    auto_end_granted_at = models.DateTimeField(null=True, blank=True, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)
    history = HistoricalRecords()

    class Meta:
        verbose_name = "canary policy"
        verbose_name_plural = "canary policies"
        constraints = [
            models.CheckConstraint(
                condition=Q(compare_percent__gte=0, compare_percent__lte=100), name="canarypolicy_compare_percent_range"
            ),
            models.CheckConstraint(
                condition=Q(disagreement_limit__gte=0, disagreement_limit__lte=1),
                name="canarypolicy_disagreement_limit_range",
            ),
            models.CheckConstraint(condition=Q(min_compared__gte=1), name="canarypolicy_min_compared_positive"),
            models.CheckConstraint(
                condition=Q(auto_end=False) | Q(auto_end_granted_by__isnull=False, auto_end_granted_at__isnull=False),
                name="canarypolicy_auto_end_names_who_granted_it",
            ),
        ]

    def __str__(self) -> str:
        return f"canary watch of {self.agent}"


class CanaryComparison(ImmutableRecord):
    """What the production version answered for a ticket the canary served, and whether the two agree."""

    immutable_noun = "a canary comparison"

    request = models.OneToOneField(
        TriageRequest, on_delete=models.PROTECT, related_name="canary_comparison", editable=False
    )
    agent = models.ForeignKey("promptctl.Agent", on_delete=models.PROTECT, related_name="+", editable=False)
    pin_revision = models.PositiveBigIntegerField(editable=False)
    production_version = models.ForeignKey(
        "promptctl.AgentVersion", on_delete=models.PROTECT, related_name="+", editable=False
    )
    outcome = models.CharField(max_length=16, choices=Outcome.choices, editable=False)
    team = models.CharField(max_length=100, blank=True, editable=False, help_text="production's team")
    priority = models.CharField(max_length=50, blank=True, editable=False, help_text="production's priority")
    problem = models.TextField(blank=True, editable=False)
    reply = models.TextField(blank=True, editable=False)
    session_id = models.CharField(max_length=200, blank=True, editable=False)
    latency_ms = models.PositiveIntegerField(editable=False)
    agrees = models.BooleanField(
        null=True,
        blank=True,
        editable=False,
        help_text="team and priority match the canary's; empty when production gave no valid verdict",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["agent", "pin_revision"], name="canarycomparison_window")]
        constraints = [
            models.CheckConstraint(condition=Q(outcome__in=OUTCOME_VALUES), name="canarycomparison_outcome_valid"),
            models.CheckConstraint(
                condition=Q(agrees__isnull=True) | Q(outcome="ok"), name="canarycomparison_agreement_needs_a_verdict"
            ),
        ]

    def __str__(self) -> str:
        return f"canary call #{self.request_id} on production v{self.production_version.number}: {self.outcome}"


class ShadowCandidate(AgentVersion):
    """A version seen as a shadow candidate: the admin shows its shadow record on it (no table of its own)."""

    class Meta:
        proxy = True
        verbose_name = "shadow candidate"
