"""Asynchronous triage calls: accepting a job, reading it back, running it once from a task, and resuming it.

Rules, and why:

- Each attempt holds a lease: the worker process running it (its heartbeat
  row, ``evals.WorkerHeartbeat``) and an end (``PROMPTCTL_JOB_LEASE_SECONDS``).
  A message for a job whose lease is live is dropped (another worker is on
  it); only the newest attempt may finish a job.
- The database, not the broker, says what is lost: the embedded broker drops
  the message a SIGKILLed worker held, and Redis holds it back for the
  visibility timeout. ``triage_jobs_sweep`` (every worker's sweep timer) sends
  again a queued job whose message went out too long ago and a running job
  whose holder's heartbeat went stale or whose lease ended.
- A resumed attempt asks the model nothing twice: sessions are tagged with
  the job and attempt, and before sending the ticket again the earlier
  attempts' sessions are looked up; one that holds the ticket is adopted (its
  answer read, or waited for) and the rest archived.
"""

from __future__ import annotations

import functools
import logging
import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from evals.models import WorkerHeartbeat
from managed_agents.adoption import sessions_archive_listed, sessions_tagged
from managed_agents.client import GatewayError
from managed_agents.tickets import TicketRun, ticket_adopt, ticket_run
from promptctl.errors import DomainError
from promptctl.records import saved_by
from triage import selectors
from triage.models import TriageJob, TriageRequest
from triage.pins import Route
from triage.services.apikeys import Principal, api_key_authenticate
from triage.services.common import ApiKeyRefused
from triage.services.serving import Ticket, _failed, _run_fields, _session_metadata, triage_record, triage_route

logger = logging.getLogger(__name__)


# --- asynchronous jobs ------------------------------------------------------------------

# Session metadata keys of a job's attempt: the job, and which attempt made the session.
JOB_TAG = "job"
ATTEMPT_TAG = "job_attempt"


def triage_job_create(*, principal: Principal, agent_name: str | None, ticket: Ticket) -> TriageJob:
    """Accept a call to run later; refused now for an unknown agent or one the key may not call.

    The pin is read again when the job runs: a job serves the version pinned at
    the time it runs, like any other request.
    """
    route = triage_route(principal=principal, agent_name=agent_name, request_key=ticket.request_key)
    from triage import tasks  # lazy: triage.tasks imports triage.services at module level

    with transaction.atomic():
        job = TriageJob(
            agent_id=route.agent_id,
            api_key_id=principal.key_id,
            subject=ticket.subject,
            body=ticket.body,
            request_key=ticket.request_key or "",
            enqueued_at=timezone.now(),
        )
        saved_by(job, None)
        job_id = str(job.pk)
        transaction.on_commit(lambda: tasks.triage_job_run.delay(job_id))
    return job


def triage_job_accept(*, token: str, agent_name: str | None, ticket: Ticket) -> TriageJob:
    """``triage_job_create`` for the key ``token`` names: the API's one database step for a queued call."""
    return triage_job_create(principal=api_key_authenticate(token=token), agent_name=agent_name, ticket=ticket)


def triage_job_read(*, token: str, job_id: str) -> TriageJob:
    """The job ``job_id`` if the key ``token`` names created it (one database step)."""
    return selectors.triage_job_get(api_key_id=api_key_authenticate(token=token).key_id, job_id=job_id)


def _job_finish(
    *,
    job_id: Any,
    attempt: int,
    status: str,
    request: TriageRequest | None = None,
    error_code: str = "",
    error_message: str = "",
) -> TriageJob | None:
    job = TriageJob.objects.select_for_update().get(pk=job_id)
    if job.status in TriageJob.FINAL_STATUSES or job.attempts != attempt:
        return None  # another worker's attempt owns the job now
    job.status = status
    job.request = request
    job.error_code = error_code
    job.error_message = error_message
    job.finished_at = timezone.now()
    return saved_by(job, None)


def triage_job_lease_live(*, job: TriageJob, now: datetime | None = None) -> bool:
    """Whether the job's newest attempt is still held: its lease has not ended and its holder is alive.

    The holder is alive while its heartbeat row is fresh (``PROMPTCTL_WORKER_STALE_SECONDS``). A holder with
    no row yet (a worker between start and first beat, or an attempt run outside a worker) is given one stale
    window from the lease's start; after that only a fresh beat keeps the lease.
    """
    now = now or timezone.now()
    if job.status != TriageJob.Status.RUNNING or job.lease_expires_at is None or job.lease_expires_at <= now:
        return False
    fresh_since = now - timedelta(seconds=settings.PROMPTCTL_WORKER_STALE_SECONDS)
    seen_at = None
    if job.lease_pid is not None:
        seen_at = (
            WorkerHeartbeat.objects.filter(hostname=job.lease_holder, pid=job.lease_pid)
            .values_list("seen_at", flat=True)
            .first()
        )
    if seen_at is None:
        return job.leased_at is not None and job.leased_at >= fresh_since
    return seen_at >= fresh_since


def _attempt_begin(*, job_id: Any, holder: tuple[str, int] | None) -> tuple[TriageJob | None, int | None]:
    """Start the next attempt under the row lock: (the job, its attempt) or (the job, None) when not ours to run."""
    now = timezone.now()
    with transaction.atomic():
        job = TriageJob.objects.select_for_update().select_related("agent", "api_key").filter(pk=job_id).first()
        if job is None:
            logger.warning("job %s does not exist (any more); its message is dropped", job_id)
            return None, None
        if job.status in TriageJob.FINAL_STATUSES:
            return job, None
        if triage_job_lease_live(job=job, now=now):
            logger.info(
                "job %s: attempt %d is held by %s pid %s until %s; this message is dropped",
                job.pk,
                job.attempts,
                job.lease_holder,
                job.lease_pid,
                job.lease_expires_at,
            )
            return job, None
        job.status = TriageJob.Status.RUNNING
        job.attempts += 1
        job.started_at = now
        job.lease_holder, job.lease_pid = (holder[0][:255], holder[1]) if holder else ("", None)
        job.leased_at = now
        job.lease_expires_at = now + timedelta(seconds=settings.PROMPTCTL_JOB_LEASE_SECONDS)
        saved_by(job, None)
        return job, job.attempts


def _earlier_attempts_run(*, job: TriageJob, attempt: int, route: Route, ticket: Ticket) -> TicketRun | None:
    """The answer an earlier attempt's session holds (or will hold), so the ticket is not sent twice.

    The earlier attempts' sessions are found by their tags. The newest one on
    the version routed now that holds this ticket is adopted (read, or waited
    for, then archived); every other one is archived. ``None``: run afresh.
    """
    try:
        tagged = sessions_tagged(agent_id=route.remote_agent_id, metadata={JOB_TAG: str(job.pk)}, since=job.created_at)
    except GatewayError as error:
        logger.warning("job %s: could not look up earlier attempts' sessions (%s); running afresh", job.pk, error)
        return None
    earlier = [
        s for s in tagged if s.metadata.get(ATTEMPT_TAG, "").isdigit() and int(s.metadata[ATTEMPT_TAG]) < attempt
    ]
    run: TicketRun | None = None
    adopted = ""
    for session in reversed(earlier):  # newest first
        if session.version != route.version_number:
            continue
        run = ticket_adopt(session_id=session.session_id, text=ticket.text, allowed=route.allowed)
        if run is not None:
            adopted = session.session_id
            break
    strays = [s.session_id for s in earlier if not s.archived and s.session_id != adopted]
    if strays:
        archived = sessions_archive_listed(session_ids=strays)
        logger.warning("job %s: archived %d session(s) of dead attempts: %s", job.pk, len(archived), archived)
    if run is not None:
        logger.warning("job %s attempt %d: adopted session %s of an earlier attempt", job.pk, attempt, adopted)
    return run


def triage_job_run(*, job_id: Any, holder: tuple[str, int] | None = None) -> TriageJob | None:
    """Run a queued job once: route at run time, one pinned session, log it, finish the job.

    A final job is left alone (a redelivered message is a no-op), and so is a
    job whose attempt is held by a live worker. A job found running with a dead
    holder (``holder`` is this worker: node name and pid, as its heartbeat row
    names it) is started again; the new attempt first adopts what the dead
    attempt's session answered, and only the newest attempt may finish the job.
    """
    job, attempt = _attempt_begin(job_id=job_id, holder=holder)
    if job is None or attempt is None:
        return job
    key = job.api_key
    ticket = Ticket(subject=job.subject, body=job.body, request_key=job.request_key or None)
    received_at = timezone.now()
    started = time.monotonic()
    try:
        if key.revoked_at is not None:
            raise ApiKeyRefused(f"API key {key.name!r} was revoked before the job ran.")
        principal = Principal(
            key_id=key.pk,
            name=key.name,
            all_agents=key.all_agents,
            agent_ids=frozenset(key.agents.values_list("pk", flat=True)),
        )
        route = triage_route(principal=principal, agent_name=job.agent.name, request_key=ticket.request_key)
    except DomainError as refusal:
        with transaction.atomic():
            _job_finish(
                job_id=job.pk,
                attempt=attempt,
                status=TriageJob.Status.FAILED,
                error_code=getattr(refusal, "reason", "refused"),
                error_message=str(refusal),
            )
        job.refresh_from_db()
        return job
    metadata = {
        **_session_metadata(route=route, principal_name=key.name, source="job"),
        JOB_TAG: str(job.pk),
        ATTEMPT_TAG: str(attempt),
    }
    run = _earlier_attempts_run(job=job, attempt=attempt, route=route, ticket=ticket) if attempt > 1 else None
    if run is None:
        run = ticket_run(**_run_fields(route, ticket, metadata))
    with transaction.atomic():
        current = TriageJob.objects.select_for_update().get(pk=job.pk)
        if current.status in TriageJob.FINAL_STATUSES or current.attempts != attempt:
            return current
        request = triage_record(
            route=route,
            api_key_id=key.pk,
            ticket=ticket,
            source=TriageRequest.Source.JOB,
            received_at=received_at,
            latency_ms=round((time.monotonic() - started) * 1000),
            run=run,
        )
        if run.failure is None:
            finished = _job_finish(job_id=job.pk, attempt=attempt, status=TriageJob.Status.DONE, request=request)
        else:
            error = _failed(run, request, route)
            finished = _job_finish(
                job_id=job.pk,
                attempt=attempt,
                status=TriageJob.Status.FAILED,
                request=request,
                error_code=error.outcome,
                error_message=str(error),
            )
    return finished or TriageJob.objects.get(pk=job.pk)


# --- the sweep: jobs a dead worker lost --------------------------------------------------


def triage_jobs_sweep(*, now: datetime | None = None) -> list[str]:
    """Send again every job whose message was lost; returns their ids.

    Lost means: queued, with its last message sent more than
    ``PROMPTCTL_JOB_REQUEUE_SECONDS`` ago (the broker dropped it, or sending
    it failed); or running with a dead lease (holder's heartbeat stale, or the
    lease ended) and no message sent since that attempt began (or that one
    is as old as the bound too). Each is checked again under its row lock, so
    concurrent sweeps on several workers send a job once. A duplicate message
    is harmless anyway: a final job or a live lease makes it a no-op.
    """
    from triage import tasks  # lazy: triage.tasks imports triage.services at module level

    now = now or timezone.now()
    requeue_before = now - timedelta(seconds=settings.PROMPTCTL_JOB_REQUEUE_SECONDS)
    candidates = list(
        TriageJob.objects.filter(
            Q(status=TriageJob.Status.QUEUED, created_at__lt=requeue_before) | Q(status=TriageJob.Status.RUNNING)
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[:500]
    )
    sent: list[str] = []
    for job_id in candidates:
        with transaction.atomic():
            job = TriageJob.objects.select_for_update().filter(pk=job_id).first()
            if job is None or not _lost(job, now=now, requeue_before=requeue_before):
                continue
            job.enqueued_at = now
            job.resumes += 1
            saved_by(job, None)
            sent.append(str(job.pk))
            transaction.on_commit(functools.partial(tasks.triage_job_run.delay, str(job.pk)))
    if sent:
        logger.warning("sweep sent %d lost job(s) again: %s", len(sent), ", ".join(sent))
    return sent


def _lost(job: TriageJob, *, now: datetime, requeue_before: datetime) -> bool:
    last_sent = job.enqueued_at or job.created_at
    if job.status == TriageJob.Status.QUEUED:
        return last_sent < requeue_before
    if job.status != TriageJob.Status.RUNNING or triage_job_lease_live(job=job, now=now):
        return False
    sent_since_attempt = job.leased_at is not None and last_sent > job.leased_at
    return not sent_since_attempt or last_sent < requeue_before
