"""Celery tasks of the triage API. Each takes ids, calls one service, and is idempotent.

- ``triage.run_job(job_id)``: an asynchronous triage call. A final job is a
  no-op, and so is one whose attempt a live worker holds (its lease); a job
  left running by a dead worker is started again, adopting the dead attempt's
  session, and only the newest attempt may finish it.
- ``triage.shadow_run(request_id, resume=False)``: a logged ticket sent to its
  shadow candidate. One result per (request, version): a repeat finds it.
  ``resume`` (sent by the sweep): adopt an earlier run's session first.

Lost messages (a SIGKILLed worker's) are found again from the database by
``services.triage_jobs_sweep`` and ``services.shadow_runs_sweep``, which every
worker runs on its sweep timer (registered in ``TriageConfig.ready``).
- ``triage.canary_end(agent_id, pin_revision)``: files the change request that
  ends a canary over its limits (or, under the agent's standing auto-end
  policy, ends it). One per canary: a repeat finds the first.
- ``triage.canary_compare(request_id)``: a ticket the canary answered, run on
  the production version to compare verdicts. One per request: a repeat finds it.
- ``triage.retention_purge()``: the scheduled retention purge (beat, hourly by
  default). A repeat finds nothing more to remove and writes no audit event.
"""

from __future__ import annotations

from celery import shared_task

from evals.tasks import worker_identity
from triage import services
from triage.services import retention


@shared_task(name="triage.run_job", bind=True, ignore_result=True, acks_late=True)
def triage_job_run(self, job_id: str) -> None:
    services.triage_job_run(job_id=job_id, holder=worker_identity(self.request.hostname))


@shared_task(name="triage.shadow_run", ignore_result=True, acks_late=True)
def shadow_run(request_id: int, resume: bool = False) -> None:
    services.shadow_run(request_id=request_id, resume=resume)


@shared_task(name="triage.canary_end", ignore_result=True, acks_late=True)
def canary_end(agent_id: int, pin_revision: int) -> None:
    services.canary_end(agent_id=agent_id, pin_revision=pin_revision)


@shared_task(name="triage.canary_compare", ignore_result=True, acks_late=True)
def canary_compare(request_id: int, resume: bool = False) -> None:
    services.canary_compare(request_id=request_id, resume=resume)


@shared_task(name="triage.retention_purge", ignore_result=True)
def retention_purge() -> None:
    retention.retention_purge(actor=None)
