"""Retention: customer text is kept only as long as the operator's policy says; figures are kept for ever.

Rules, and why:

- Ticket text (a logged request's ``subject``, ``body``, ``reply`` and
  ``request_key``, a finished job's ``subject``, ``body`` and ``request_key``,
  and those fields in the job's history copies) is emptied once it is older
  than ``PROMPTCTL_RETENTION_TICKET_TEXT_DAYS``, and the row is stamped
  ``redacted_at``. Customer text is personal data; nothing promptctl decides
  reads it after the call was served.
- Every figure stays: outcome, version, pin revision, canary flag, latency,
  team, priority, problem, corrections, shadow results and canary
  comparisons. Canary limits, the canary watch, shadow evidence and eval
  comparisons read only these, so they give the same answers after a purge.
- No row is exempt. Frozen evidence (canary checks, promotion snapshots)
  holds numbers and request ids, not text; a ticket added to a test set was
  copied into the set's own cases (``triage_requests_to_testset``), which
  retention does not touch, so the log row can lose its text.
- Jobs still queued or running keep their text (a worker needs it to run).
- History rows (django-simple-history, every tracked model) older than
  ``PROMPTCTL_RETENTION_HISTORY_DAYS`` are deleted, except each object's
  latest history row, so every object keeps a record of its current state and
  who made it. (simple-history's ``clean_old_history`` deletes those too,
  which is why its logic is not used as is.)
- One purge is one transaction with one ``retention.purge`` audit event
  carrying the counts and the cutoffs: all or nothing, and the trail says
  what was removed. A purge that finds nothing writes no event. A dry run
  counts and changes nothing.
- The request log's database guard (triage migration 0010) allows exactly
  this UPDATE and no other. On PostgreSQL the runtime role runs the purge (the
  hourly task, the command) with a column-level UPDATE on the text columns
  and DELETE on history tables, bounded by guards ``promptctl db roles``
  installs: exactly the redaction, never younger than the retention floor the
  owner set, never an object's latest history row
  (``promptctl.services.database_roles``). A policy shorter than that floor is
  refused by the database, and the purge says how to put it right.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.apps import apps
from django.db import DatabaseError, models, transaction
from django.db.models import Max
from django.db.models.functions import Now
from django.utils import timezone
from simple_history.models import HistoricalChanges

from promptctl.audit import audit_record
from promptctl.errors import DomainError, Fix
from promptctl.registry import Redaction, RetentionPolicy
from triage.models import TriageJob, TriageRequest

REQUEST_TEXT_FIELDS = ("subject", "body", "reply", "request_key")
JOB_TEXT_FIELDS = ("subject", "body", "request_key")


def redactions() -> list[Redaction]:
    """The tables whose text a purge empties in place: the request log and the jobs' history copies.

    (Jobs themselves are mutable rows; the runtime role updates them anyway.) ``promptctl db roles``
    grants UPDATE on exactly these columns and guards them on PostgreSQL.
    """
    return [
        Redaction(TriageRequest, REQUEST_TEXT_FIELDS, "redacted_at", "received_at"),
        Redaction(TriageJob.history.model, JOB_TEXT_FIELDS, "redacted_at", "history_date"),
    ]


@dataclass(frozen=True)
class RetentionPurge:
    """What a purge removed (or, dry, would remove)."""

    dry_run: bool
    ticket_text_before: datetime
    history_before: datetime
    requests_redacted: int
    jobs_redacted: int
    job_history_redacted: int
    history_deleted: dict[str, int]

    @property
    def history_deleted_total(self) -> int:
        return sum(self.history_deleted.values())

    @property
    def changed(self) -> bool:
        return bool(
            self.requests_redacted or self.jobs_redacted or self.job_history_redacted or self.history_deleted_total
        )

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ticket_text_before"] = self.ticket_text_before.isoformat()
        data["history_before"] = self.history_before.isoformat()
        data["history_deleted_total"] = self.history_deleted_total
        return data

    def sentence(self) -> str:
        verb = "would redact" if self.dry_run else "redacted"
        removed = "would delete" if self.dry_run else "deleted"
        return (
            f"Retention {verb} the ticket text of {self.requests_redacted} logged requests, {self.jobs_redacted} jobs "
            f"and {self.job_history_redacted} job history rows (older than {self.ticket_text_before:%Y-%m-%d %H:%M} "
            f"UTC), and {removed} {self.history_deleted_total} history rows (older than "
            f"{self.history_before:%Y-%m-%d %H:%M} UTC, each object's latest kept)."
        )


def _history_models() -> list[type[models.Model]]:
    return sorted(
        (model for model in apps.get_models() if issubclass(model, HistoricalChanges)),
        key=lambda model: model._meta.label_lower,
    )


def _history_prunable(history_model: type[models.Model], before: datetime) -> models.QuerySet:
    """History rows older than ``before`` that are not their object's latest row."""
    object_key = history_model.instance_type._meta.pk.attname  # type: ignore[attr-defined]
    latest = history_model.objects.values(object_key).annotate(latest=Max("history_id")).values("latest")  # type: ignore[attr-defined]
    return history_model.objects.filter(history_date__lt=before).exclude(history_id__in=latest)  # type: ignore[attr-defined]


def _requests_due(before: datetime) -> models.QuerySet:
    return TriageRequest.objects.filter(received_at__lt=before, redacted_at__isnull=True)


def _jobs_due(before: datetime) -> models.QuerySet:
    return TriageJob.objects.filter(
        created_at__lt=before, redacted_at__isnull=True, status__in=TriageJob.FINAL_STATUSES
    )


def _job_history_due(before: datetime) -> models.QuerySet:
    """History copies of finished jobs' text older than the cutoff that still hold text."""
    history_model = TriageJob.history.model
    unfinished = TriageJob.objects.exclude(status__in=TriageJob.FINAL_STATUSES).values("pk")
    return (
        history_model.objects.filter(history_date__lt=before, redacted_at__isnull=True)
        .exclude(id__in=unfinished)
        .exclude(subject="", body="", request_key="")
    )


def retention_purge(
    *, actor: Any = None, dry_run: bool = False, policy: RetentionPolicy | None = None
) -> RetentionPurge:
    """Empty old ticket text and prune old history rows under ``policy`` (the settings' by default).

    One transaction, one ``retention.purge`` audit event with the counts
    (none when nothing was due). ``actor`` is ``None`` for the scheduled
    task; a person running the command must be a superuser, since the purge
    removes data for good.
    """
    if not dry_run and actor is not None and not getattr(actor, "is_superuser", False):
        raise DomainError(
            f"{actor.username} may not purge: it deletes customer text and history for good, so it takes a "
            "superuser. Ask an admin to run `promptctl retention purge`, or leave it to the scheduled task."
        )
    policy = policy or RetentionPolicy.from_settings()
    now = timezone.now()
    text_before = now - timedelta(days=policy.ticket_text_days)
    history_before = now - timedelta(days=policy.history_days)
    try:
        return _purge(
            actor=actor, dry_run=dry_run, policy=policy, now=now, text_before=text_before, history_before=history_before
        )
    except DatabaseError as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "retention floor" not in message:
            raise
        raise DomainError(
            f"The database refused the purge: {message.removeprefix('promptctl: ')}. The policy "
            f"({policy.ticket_text_days} days of ticket text, {policy.history_days} of history) is shorter than the "
            "floor the tables' owner set; nothing was changed.",
            code="retention_floor",
            fix=Fix(
                cli="run `promptctl db roles --runtime-role <role>` as the owner (DATABASE_OWNER_URL) to set the "
                "floor to the policy, or raise PROMPTCTL_RETENTION_*_DAYS back to it",
                web="ask the database's owner to run `promptctl db roles` with the new retention policy",
            ),
        ) from error


def _purge(
    *,
    actor: Any,
    dry_run: bool,
    policy: RetentionPolicy,
    now: datetime,
    text_before: datetime,
    history_before: datetime,
) -> RetentionPurge:
    with transaction.atomic():
        requests = _requests_due(text_before)
        jobs = _jobs_due(text_before)
        job_history = _job_history_due(text_before)
        if dry_run:
            counts = (requests.count(), jobs.count(), job_history.count())
        else:
            blank = {field: "" for field in REQUEST_TEXT_FIELDS}
            # The one UPDATE the log's guard allows (0010_retention): text emptied, the stamp set, nothing else.
            # Stamped by the database's clock: the guard checks the stamp against it (PostgreSQL).
            redacted_requests = requests.update(**blank, redacted_at=Now())
            job_blank = {field: "" for field in JOB_TEXT_FIELDS}
            # Jobs first: their redaction is itself a history row (stamped), then older copies are emptied.
            redacted_jobs = _jobs_redact(jobs, job_blank=job_blank, now=now)
            redacted_job_history = job_history.update(**job_blank, redacted_at=Now())
            counts = (redacted_requests, redacted_jobs, redacted_job_history)
        history_deleted: dict[str, int] = {}
        job_history_model = TriageJob.history.model
        for history_model in _history_models():
            prunable = _history_prunable(history_model, history_before)
            removed = prunable.count() if dry_run else prunable.delete()[0]
            if dry_run and history_model is job_history_model:
                # The redaction adds a history row to each job due, so its latest row so far becomes prunable.
                removed += _jobs_latest_history_before(jobs, history_before)
            if removed:
                history_deleted[history_model._meta.label_lower] = removed
        result = RetentionPurge(
            dry_run=dry_run,
            ticket_text_before=text_before,
            history_before=history_before,
            requests_redacted=counts[0],
            jobs_redacted=counts[1],
            job_history_redacted=counts[2],
            history_deleted=history_deleted,
        )
        if not dry_run and result.changed:
            audit_record(
                actor=actor,
                verb="retention.purge",
                object_type="triage.retention",
                object_id=now.isoformat(),
                after={
                    **{key: value for key, value in result.as_dict().items() if key != "dry_run"},
                    "ticket_text_days": policy.ticket_text_days,
                    "history_days": policy.history_days,
                },
            )
    return result


def _jobs_latest_history_before(jobs: models.QuerySet, before: datetime) -> int:
    """How many of ``jobs`` have a latest history row older than ``before`` (a dry run's count of what it frees)."""
    history_model = TriageJob.history.model
    latest = (
        history_model.objects.filter(id__in=jobs.values("pk"))
        .values("id")
        .annotate(latest=Max("history_date"))
        .filter(latest__lt=before)
    )
    return latest.count()


def _jobs_redact(jobs: models.QuerySet, *, job_blank: dict[str, str], now: datetime) -> int:
    """Empty finished jobs' text through simple-history's bulk update, so each job's history records the redaction."""
    from simple_history.utils import bulk_update_with_history

    rows = list(jobs.select_for_update())
    for job in rows:
        for field, value in job_blank.items():
            setattr(job, field, value)
        job.redacted_at = now
    if rows:
        bulk_update_with_history(
            rows,
            TriageJob,
            [*job_blank, "redacted_at"],
            batch_size=500,
            default_change_reason="retention: ticket text redacted",
        )
    return len(rows)
