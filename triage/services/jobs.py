"""Asynchronous triage calls: accepting a job, reading it back, and running it once from a task."""

from __future__ import annotations

import logging
import time
from typing import Any

from django.db import transaction
from django.utils import timezone

from managed_agents.tickets import ticket_run
from promptctl.errors import DomainError
from promptctl.records import saved_by
from triage import selectors
from triage.models import TriageJob, TriageRequest
from triage.services.apikeys import Principal, api_key_authenticate
from triage.services.common import ApiKeyRefused
from triage.services.serving import Ticket, _failed, _run_fields, _session_metadata, triage_record, triage_route

logger = logging.getLogger(__name__)


# --- asynchronous jobs ------------------------------------------------------------------


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


def triage_job_run(*, job_id: Any) -> TriageJob | None:
    """Run a queued job once: route at run time, one pinned session, log it, finish the job.

    A final job is left alone (a redelivered message is a no-op). A job found
    running was started by a worker that died: it is started again, and only
    the newest attempt may finish it.
    """
    with transaction.atomic():
        job = TriageJob.objects.select_for_update().select_related("agent", "api_key").filter(pk=job_id).first()
        if job is None:
            logger.warning("job %s does not exist (any more); its message is dropped", job_id)
            return None
        if job.status in TriageJob.FINAL_STATUSES:
            return job
        job.status = TriageJob.Status.RUNNING
        job.attempts += 1
        job.started_at = timezone.now()
        saved_by(job, None)
        attempt = job.attempts
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
    metadata = {**_session_metadata(route=route, principal_name=key.name, source="job"), "job": str(job.pk)}
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
