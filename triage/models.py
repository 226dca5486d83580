"""The internal triage API's records: keys, routing policy, the request log, jobs, shadow and canary results.

Rules the models keep (each also held by the database where it can be):

- An API key is stored only as the SHA-256 of a 256-bit random secret plus a
  short prefix to recognise it by; the secret is shown once and cannot be
  recovered. A key is revoked by stamping ``revoked_at``, never deleted, and
  is scoped either to all agents or to the agents listed.
- Each agent has at most one routing policy, and at most one policy is the
  default (a conditional unique constraint).
- The request log is immutable: a triage call is recorded once, with the
  version and pin revision that served it. A reviewer's correction is a
  separate, history-tracked ``TriageCorrection``, so the log row never changes.
- Shadow results and canary checks are evidence: immutable, one per unit of
  work (unique keys), so a redelivered task changes nothing.
- A job's status is one of four, its finish time is set exactly when it is
  final, and a finished job names the logged request that answered it.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from managed_agents.tickets import ticket_text as compose_ticket_text
from promptctl.models import AgentVersion
from promptctl.records import ImmutableRecord


class Outcome(models.TextChoices):
    """How one session for a triage call ended."""

    OK = "ok", "valid verdict"
    INVALID = "invalid", "invalid output"
    UNAVAILABLE = "unavailable", "upstream unavailable"
    TIMEOUT = "timeout", "session timed out"
    REFUSED = "refused", "upstream refused"
    ABANDONED = "abandoned", "caller went away"


ERROR_OUTCOMES = (Outcome.UNAVAILABLE, Outcome.TIMEOUT, Outcome.REFUSED)
_OUTCOME_VALUES = [value for value, _label in Outcome.choices]


class ApiKey(models.Model):
    """A caller's credential for the triage API; only its hash is stored."""

    name = models.SlugField(max_length=100, unique=True, help_text="who or what uses the key, e.g. helpdesk-prod")
    prefix = models.CharField(
        max_length=16, editable=False, db_index=True, help_text="the key's first characters, to recognise it by"
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    all_agents = models.BooleanField(
        default=False, editable=False, help_text="the key may call every agent (else only the agents listed)"
    )
    agents = models.ManyToManyField("promptctl.Agent", blank=True, related_name="api_keys")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", editable=False
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]
        verbose_name = "API key"
        constraints = [
            models.CheckConstraint(
                condition=Q(revoked_at__isnull=True, revoked_by__isnull=True)
                | Q(revoked_at__isnull=False, revoked_by__isnull=False),
                name="apikey_revoked_has_time_and_actor",
            ),
            models.CheckConstraint(condition=Q(key_hash__regex=r"^[0-9a-f]{64}$"), name="apikey_hash_is_sha256_hex"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class ApiKeyUsage(models.Model):
    """When a key was last used: operational telemetry kept apart so the key's history stays about changes."""

    key = models.OneToOneField(ApiKey, on_delete=models.CASCADE, related_name="usage", editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API key usage"

    def __str__(self) -> str:
        return f"{self.key_id} last used {self.last_used_at}"


class RoutingPolicy(models.Model):
    """How the API serves one agent: default agent, canary limits, shadow sampling."""

    agent = models.OneToOneField("promptctl.Agent", on_delete=models.PROTECT, related_name="routing_policy")
    is_default = models.BooleanField(
        default=False, help_text="serve POST /api/v1/triage (without an agent name) with this agent"
    )
    canary_max_invalid_rate = models.FloatField(
        default=0.10, help_text="end the canary when this share of its replies is invalid (0-1)"
    )
    canary_max_error_rate = models.FloatField(
        default=0.05, help_text="end the canary when this share of its sessions fails (0-1)"
    )
    canary_min_requests = models.PositiveIntegerField(
        default=20, help_text="judge a canary only after this many canary requests"
    )
    shadow_version = models.ForeignKey(
        "promptctl.AgentVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="a candidate version run in the background on sampled live tickets (never answers callers)",
    )
    shadow_percent = models.PositiveSmallIntegerField(
        default=0, help_text="share of live tickets also sent to the shadow version (0-100)"
    )
    updated_at = models.DateTimeField(default=timezone.now, editable=False)
    history = HistoricalRecords()

    class Meta:
        verbose_name = "routing policy"
        verbose_name_plural = "routing policies"
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="routingpolicy_one_default"
            ),
            models.CheckConstraint(
                condition=Q(canary_max_invalid_rate__gte=0, canary_max_invalid_rate__lte=1)
                & Q(canary_max_error_rate__gte=0, canary_max_error_rate__lte=1),
                name="routingpolicy_rates_between_0_and_1",
            ),
            models.CheckConstraint(condition=Q(canary_min_requests__gte=1), name="routingpolicy_min_requests_positive"),
            models.CheckConstraint(
                condition=Q(shadow_percent__gte=0, shadow_percent__lte=100), name="routingpolicy_shadow_percent_range"
            ),
            models.CheckConstraint(
                condition=Q(shadow_percent=0) | Q(shadow_version__isnull=False),
                name="routingpolicy_shadow_sampling_needs_version",
            ),
        ]

    def __str__(self) -> str:
        return f"routing of {self.agent}"


class TriageRequest(ImmutableRecord):
    """One triage call as served: the ticket, who asked, which version answered, and how it ended."""

    immutable_noun = "a logged triage request"

    class Source(models.TextChoices):
        API = "api", "API (synchronous)"
        JOB = "job", "API job (asynchronous)"

    agent = models.ForeignKey("promptctl.Agent", on_delete=models.PROTECT, related_name="+", editable=False)
    channel = models.SlugField(max_length=50, editable=False)
    version = models.ForeignKey(
        "promptctl.AgentVersion", on_delete=models.PROTECT, related_name="triage_requests", editable=False
    )
    pin_revision = models.PositiveBigIntegerField(editable=False, help_text="the pin's revision that routed the call")
    canary = models.BooleanField(editable=False)
    shadow_version = models.ForeignKey(
        "promptctl.AgentVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        editable=False,
        help_text="the candidate this ticket was also sent to in the background",
    )
    api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.PROTECT, related_name="requests", editable=False
    )
    source = models.CharField(max_length=8, choices=Source.choices, editable=False)
    request_key = models.CharField(max_length=200, blank=True, editable=False)
    subject = models.TextField(editable=False)
    body = models.TextField(editable=False)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, editable=False)
    team = models.CharField(max_length=100, blank=True, editable=False)
    priority = models.CharField(max_length=50, blank=True, editable=False)
    problem = models.TextField(blank=True, editable=False, help_text="why the reply was invalid or the session failed")
    format_warning = models.CharField(max_length=300, blank=True, editable=False)
    reply = models.TextField(blank=True, editable=False)
    session_id = models.CharField(max_length=200, blank=True, editable=False)
    latency_ms = models.PositiveIntegerField(editable=False, help_text="from routing to the recorded verdict")
    received_at = models.DateTimeField(editable=False)
    recorded_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            models.Index(fields=["agent", "pin_revision", "canary"], name="triagerequest_canary_window"),
            models.Index(fields=["-received_at"], name="triagerequest_recent"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(outcome__in=_OUTCOME_VALUES), name="triagerequest_outcome_valid"),
            models.CheckConstraint(
                condition=~Q(outcome="ok") | (~Q(team="") & ~Q(priority="")),
                name="triagerequest_ok_has_team_and_priority",
            ),
            models.CheckConstraint(condition=Q(pin_revision__gte=1), name="triagerequest_pin_revision_positive"),
            models.CheckConstraint(condition=Q(source__in=["api", "job"]), name="triagerequest_source_valid"),
        ]

    def __str__(self) -> str:
        verdict = f"{self.team}/{self.priority}" if self.outcome == Outcome.OK else self.outcome
        return f"triage #{self.pk} v{self.version.number if self.version_id else '?'} → {verdict}"

    @property
    def ticket_text(self) -> str:
        return compose_ticket_text(subject=self.subject, body=self.body)


class TriageCorrection(models.Model):
    """A reviewer's corrected verdict for one logged request (the log row itself never changes)."""

    request = models.OneToOneField(TriageRequest, on_delete=models.PROTECT, related_name="correction", editable=False)
    team = models.CharField(max_length=100)
    priority = models.CharField(max_length=50)
    note = models.TextField(blank=True)
    corrected_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", editable=False
    )
    corrected_at = models.DateTimeField(default=timezone.now, editable=False)
    history = HistoricalRecords()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(team="") & ~Q(priority=""), name="triagecorrection_has_labels"),
        ]

    def __str__(self) -> str:
        return f"correction of #{self.request_id}: {self.team}/{self.priority}"


class TriageJob(models.Model):
    """An asynchronous triage call: accepted now, run by a worker, read back by id."""

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    FINAL_STATUSES = (Status.DONE, Status.FAILED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey("promptctl.Agent", on_delete=models.PROTECT, related_name="+", editable=False)
    api_key = models.ForeignKey(ApiKey, on_delete=models.PROTECT, related_name="jobs", editable=False)
    subject = models.TextField(editable=False)
    body = models.TextField(editable=False)
    request_key = models.CharField(max_length=200, blank=True, editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, editable=False)
    attempts = models.PositiveIntegerField(default=0, editable=False, help_text="times a worker started the job")
    request = models.OneToOneField(
        TriageRequest, null=True, blank=True, on_delete=models.PROTECT, related_name="job", editable=False
    )
    error_code = models.CharField(max_length=32, blank=True, editable=False)
    error_message = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True, editable=False)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "triage job"
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "done", "failed"]), name="triagejob_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["done", "failed"], finished_at__isnull=False)
                | Q(status__in=["queued", "running"], finished_at__isnull=True),
                name="triagejob_finished_at_iff_final",
            ),
            models.CheckConstraint(
                condition=~Q(status="done") | Q(request__isnull=False), name="triagejob_done_has_request"
            ),
            models.CheckConstraint(
                condition=~Q(status="failed") | ~Q(error_message=""), name="triagejob_failed_has_message"
            ),
        ]

    def __str__(self) -> str:
        return f"job {self.id} ({self.status})"


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
            models.CheckConstraint(condition=Q(outcome__in=_OUTCOME_VALUES), name="shadowresult_outcome_valid"),
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
        return (
            f"canary v{self.canary_version.number} at {self.canary_percent}% served {self.requests} requests: "
            f"{self.invalid} invalid ({self.invalid_rate:.1%}, limit {self.max_invalid_rate:.1%}), "
            f"{self.errors} failed ({self.error_rate:.1%}, limit {self.max_error_rate:.1%})"
        )


class ShadowCandidate(AgentVersion):
    """A version seen as a shadow candidate: the admin shows its shadow record on it (no table of its own)."""

    class Meta:
        proxy = True
        verbose_name = "shadow candidate"
