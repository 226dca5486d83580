"""The request log, its corrections, and asynchronous jobs."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from managed_agents.tickets import ticket_text as compose_ticket_text
from promptctl.records import ImmutableRecord
from triage.models.access import ApiKey
from triage.models.common import OUTCOME_VALUES, Outcome


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
    # Retention (triage.services.retention): the ticket's text (subject, body, reply, request key) is emptied
    # once it is older than PROMPTCTL_RETENTION_TICKET_TEXT_DAYS, and this is stamped; every figure stays.
    redacted_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="when retention emptied the ticket's text"
    )
    # A canary reply drawn for the canary watch (the agent's compare share) is recorded with the call, so a
    # comparison a dead worker lost is found and run again (``canary_comparisons_sweep``).
    compare_drawn = models.BooleanField(
        default=False, editable=False, help_text="drawn to be answered by the production version too"
    )

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            models.Index(fields=["agent", "pin_revision", "canary"], name="triagerequest_canary_window"),
            models.Index(fields=["-received_at"], name="triagerequest_recent"),
            # One per filter the request-log page offers, each ordered like the page (newest first), so a
            # filtered page reads its 100 rows off an index (migration 0009; PostgreSQL also gets a trigram
            # index on UPPER(subject) for the search).
            models.Index(fields=["outcome", "-received_at"], name="triagerequest_outcome_recent"),
            models.Index(fields=["canary", "-received_at"], name="triagerequest_canary_recent"),
            models.Index(fields=["source", "-received_at"], name="triagerequest_source_recent"),
            models.Index(fields=["agent", "-received_at"], name="triagerequest_agent_recent"),
            models.Index(fields=["request_key"], name="triagerequest_request_key"),
            models.Index(fields=["session_id"], name="triagerequest_session"),
            models.Index(
                fields=["agent", "pin_revision", "received_at"],
                condition=models.Q(compare_drawn=True),
                name="triagerequest_compare_drawn",
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(outcome__in=OUTCOME_VALUES), name="triagerequest_outcome_valid"),
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
    # The lease of the newest attempt: which worker process holds it (its heartbeat row, evals.WorkerHeartbeat)
    # and until when. A holder whose heartbeat went stale, or a lease past its end, is dead: the sweep sends
    # the job again (triage.services.jobs.triage_jobs_sweep).
    lease_holder = models.CharField(max_length=255, blank=True, editable=False, help_text="worker node name")
    lease_pid = models.PositiveIntegerField(null=True, blank=True, editable=False)
    leased_at = models.DateTimeField(null=True, blank=True, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    enqueued_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="when a message for the job was last sent"
    )
    resumes = models.PositiveIntegerField(default=0, editable=False, help_text="times the sweep sent the job again")
    redacted_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="when retention emptied the ticket's text"
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "triage job"
        indexes = [models.Index(fields=["status", "created_at"], name="triagejob_status_created")]
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
