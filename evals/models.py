"""Test sets, eval runs, results and comparisons.

Rules the models keep (each also held by the database where it can be):

- A test set's contents never change: each import of different contents is a
  new ``TestSetVersion`` identified by the SHA-256 of its cases; importing the
  same contents again is the same version. Runs name the version they used.
- An agent has at most one gating test set (a conditional unique constraint);
  a gating set always belongs to an agent.
- One ``EvalResult`` per (run, case, attempt): the unique key that makes a
  redelivered task harmless.
- A run's status is one of five, and its finish time is set exactly when it
  is in a final state.
- Results and comparisons are evidence: immutable once written (``save``
  refuses updates, ``delete`` refuses), with no update service and read-only admin.

evals points at promptctl (versions, agents); promptctl never imports evals
models: the evals app registers its promotion gate in ``promptctl.registry`` (``EvalsConfig.ready()``).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from managed_agents.tickets import ticket_text as compose_ticket_text
from promptctl.records import ImmutableRecord


class TestSet(models.Model):
    """A named, versioned collection of labelled tickets; optionally an agent's gating set."""

    name = models.SlugField(max_length=100, unique=True)
    agent = models.ForeignKey(
        "promptctl.Agent",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="testsets",
        help_text="the agent whose prompt the labels are checked against",
    )
    gating = models.BooleanField(
        default=False, help_text="the set production promotions of this agent are judged on (one per agent)"
    )
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", editable=False
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]
        permissions = [
            ("change_gating_testset", "Can choose an agent's gating test set and import new versions of it"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["agent"], condition=Q(gating=True), name="testset_one_gating_per_agent"),
            models.CheckConstraint(condition=Q(gating=False) | Q(agent__isnull=False), name="testset_gating_has_agent"),
        ]

    __test__ = False  # not a pytest test class

    def __str__(self) -> str:
        return self.name


class TestSetVersion(ImmutableRecord):
    """One immutable set of contents of a test set."""

    immutable_noun = "a test set version"
    __test__ = False

    testset = models.ForeignKey(TestSet, on_delete=models.PROTECT, related_name="versions", editable=False)
    number = models.PositiveIntegerField(editable=False)
    content_hash = models.CharField(max_length=64, editable=False, db_index=True)
    case_count = models.PositiveIntegerField(editable=False)
    source_name = models.CharField(max_length=300, blank=True, editable=False)
    source_format = models.CharField(max_length=8, editable=False)
    allowed_labels = models.JSONField(
        default=dict, blank=True, editable=False, help_text="the labels the agent's prompt allowed at import"
    )
    label_warnings = models.JSONField(
        default=list, blank=True, editable=False, help_text="labels the agent's prompt cannot produce"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", editable=False
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["testset_id", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["testset", "number"], name="testsetversion_unique_number"),
            models.UniqueConstraint(fields=["testset", "content_hash"], name="testsetversion_unique_contents"),
            models.CheckConstraint(condition=Q(number__gte=1), name="testsetversion_number_positive"),
            models.CheckConstraint(condition=Q(case_count__gte=1), name="testsetversion_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.testset.name} v{self.number} ({self.content_hash[:12]})"


class TestCase(ImmutableRecord):
    """One labelled ticket of one test set version."""

    immutable_noun = "a test case"
    __test__ = False

    version = models.ForeignKey(TestSetVersion, on_delete=models.PROTECT, related_name="cases", editable=False)
    position = models.PositiveIntegerField(editable=False)
    external_id = models.CharField(max_length=200, editable=False, help_text="the ticket id from the file")
    subject = models.TextField(editable=False)
    body = models.TextField(editable=False)
    team = models.CharField(max_length=100, editable=False)
    priority = models.CharField(max_length=50, editable=False)
    tags = models.JSONField(default=list, blank=True, editable=False)

    class Meta:
        ordering = ["version_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["version", "external_id"], name="testcase_unique_id_per_version"),
            models.UniqueConstraint(fields=["version", "position"], name="testcase_unique_position"),
        ]

    def __str__(self) -> str:
        return self.external_id

    @property
    def ticket_text(self) -> str:
        """What the agent is sent, exactly as the tutorial sent it."""
        return compose_ticket_text(subject=self.subject, body=self.body)


class EvalRun(models.Model):
    """One agent version scored on one test set version, each ticket ``repeats`` times."""

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        FINISHED = "finished", "finished"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)
    FINAL_STATUSES = (Status.FINISHED, Status.FAILED, Status.CANCELLED)
    MAX_REPEATS = 20

    agent_version = models.ForeignKey(
        "promptctl.AgentVersion", on_delete=models.PROTECT, related_name="eval_runs", editable=False
    )
    testset_version = models.ForeignKey(TestSetVersion, on_delete=models.PROTECT, related_name="runs", editable=False)
    repeats = models.PositiveSmallIntegerField(default=1, editable=False)
    unit_total = models.PositiveIntegerField(editable=False, help_text="cases × repeats: results the run needs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, editable=False)
    status_reason = models.TextField(blank=True, editable=False)
    allowed_labels = models.JSONField(
        default=dict, blank=True, editable=False, help_text="labels the version's prompt allows (from its template)"
    )
    label_warnings = models.JSONField(default=list, blank=True, editable=False)
    scores = models.JSONField(null=True, blank=True, editable=False, help_text="computed once, when the run finishes")
    # scores["overall"]'s two figures, copied when the run finishes: lists and the timeline read these
    # instead of the scores JSON (which holds every ticket of the run).
    overall_correct = models.PositiveIntegerField(null=True, blank=True, editable=False)
    overall_total = models.PositiveIntegerField(null=True, blank=True, editable=False)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", editable=False
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True, editable=False, help_text="when the first unit began")
    finished_at = models.DateTimeField(null=True, blank=True, editable=False)
    resume_count = models.PositiveIntegerField(default=0, editable=False)
    resumed_at = models.DateTimeField(null=True, blank=True, editable=False)
    history = HistoricalRecords(excluded_fields=["scores"])

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "created_at"], name="evalrun_status_lookup"),
            models.Index(fields=["-created_at", "-id"], name="evalrun_recent"),  # the runs list's order
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "finished", "failed", "cancelled"]),
                name="evalrun_status_valid",
            ),
            models.CheckConstraint(condition=Q(repeats__gte=1) & Q(repeats__lte=20), name="evalrun_repeats_range"),
            models.CheckConstraint(condition=Q(unit_total__gte=1), name="evalrun_has_units"),
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running"], finished_at__isnull=True)
                | Q(status__in=["finished", "failed", "cancelled"], finished_at__isnull=False),
                name="evalrun_finished_at_iff_final",
            ),
            models.CheckConstraint(
                condition=~Q(status="finished") | Q(scores__isnull=False), name="evalrun_finished_has_scores"
            ),
        ]

    def __str__(self) -> str:
        return f"run #{self.pk}"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES


class EvalResult(ImmutableRecord):
    """What the agent answered for one ticket in one attempt of one run."""

    immutable_noun = "an eval result"

    class Kind(models.TextChoices):
        OK = "ok", "ok"
        INVALID = "invalid", "invalid output"
        ERROR = "error", "error"

    run = models.ForeignKey(EvalRun, on_delete=models.PROTECT, related_name="results", editable=False)
    case = models.ForeignKey(TestCase, on_delete=models.PROTECT, related_name="results", editable=False)
    attempt = models.PositiveSmallIntegerField(editable=False, help_text="1..repeats")
    kind = models.CharField(max_length=16, choices=Kind.choices, editable=False)
    predicted_team = models.CharField(max_length=100, blank=True, editable=False)
    predicted_priority = models.CharField(max_length=50, blank=True, editable=False)
    raw_reply = models.TextField(blank=True, editable=False)
    problem = models.TextField(blank=True, editable=False, help_text="why the output is invalid, or the error")
    format_warning = models.TextField(blank=True, editable=False)
    latency_seconds = models.FloatField(null=True, blank=True, editable=False)
    session_id = models.CharField(max_length=200, blank=True, editable=False)
    attempts = models.PositiveIntegerField(default=0, editable=False, help_text="HTTP attempts the unit took")
    task_attempts = models.PositiveSmallIntegerField(default=1, editable=False, help_text="worker tries of the unit")
    usage = models.JSONField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["run_id", "case_id", "attempt"]
        indexes = [
            models.Index(fields=["run", "created_at"], name="evalresult_run_progress"),
            models.Index(fields=["kind", "run"], name="evalresult_kind"),  # the results list's filter
        ]
        constraints = [
            models.UniqueConstraint(fields=["run", "case", "attempt"], name="evalresult_one_per_unit"),
            models.CheckConstraint(condition=Q(attempt__gte=1), name="evalresult_attempt_positive"),
            models.CheckConstraint(condition=Q(kind__in=["ok", "invalid", "error"]), name="evalresult_kind_valid"),
            models.CheckConstraint(
                condition=~Q(kind="ok") | (~Q(predicted_team="") & ~Q(predicted_priority="")),
                name="evalresult_ok_has_labels",
            ),
        ]

    def __str__(self) -> str:
        return f"run #{self.run_id} {self.case_id}#{self.attempt}: {self.kind}"


class Comparison(ImmutableRecord):
    """A frozen baseline-vs-candidate comparison: the evidence a promotion carries."""

    immutable_noun = "a comparison"

    agent = models.ForeignKey("promptctl.Agent", on_delete=models.PROTECT, related_name="comparisons", editable=False)
    baseline_run = models.ForeignKey(EvalRun, on_delete=models.PROTECT, related_name="+", editable=False)
    candidate_run = models.ForeignKey(EvalRun, on_delete=models.PROTECT, related_name="+", editable=False)
    content_hash = models.CharField(max_length=64, editable=False, help_text="the test set contents both runs used")
    tolerance = models.PositiveIntegerField(editable=False, help_text="the agent's regression tolerance at the time")
    regressed = models.BooleanField(editable=False)
    mcnemar_p = models.FloatField(editable=False)
    result = models.JSONField(editable=False, help_text="per-team table, flips, verdict (evals.scoring.runs_compare)")
    label_warnings = models.JSONField(default=list, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", editable=False
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # the comparisons list's order and its "regressed" filter (its agent filter uses the agent key's index)
            models.Index(fields=["-created_at", "-id"], name="comparison_recent"),
            models.Index(fields=["regressed", "-created_at"], name="comparison_regressed_recent"),
        ]
        constraints = [
            models.CheckConstraint(condition=~Q(baseline_run=F("candidate_run")), name="comparison_two_different_runs"),
            models.CheckConstraint(
                condition=Q(mcnemar_p__gte=0) & Q(mcnemar_p__lte=1), name="comparison_p_value_range"
            ),
        ]

    def __str__(self) -> str:
        return f"comparison #{self.pk}"


class WorkerHeartbeat(models.Model):
    """A live Celery worker's heartbeat: written every few seconds, deleted on a clean shutdown.

    A row whose ``seen_at`` is older than ``PROMPTCTL_WORKER_STALE_SECONDS`` is a
    worker that died without saying so (SIGKILL, a lost host). A database row
    works for every broker and every host, so the CLI, the admin and the API
    can all tell whether anything is consuming the queue.
    """

    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    seen_at = models.DateTimeField(default=timezone.now, db_index=True)
    # A prefork pool's child beats for the tasks it runs (their leases name it), under its worker's pid;
    # only the workers themselves (null here) are counted as workers.
    pool_parent_pid = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hostname", "pid"], name="workerheartbeat_one_per_process")]

    def __str__(self) -> str:
        if self.pool_parent_pid is not None:
            return f"worker {self.hostname} pid {self.pool_parent_pid}, pool process {self.pid}"
        return f"worker {self.hostname} pid {self.pid}"
