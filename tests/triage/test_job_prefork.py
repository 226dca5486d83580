"""Under a prefork pool a job's lease follows the pool child that runs it.

Real ``celery -A config worker --pool prefork`` processes, the test database
and broker, the emulator over loopback HTTP. The child running a job beats
for itself, so a long session is not taken for a dead one (no second attempt
beside it), and a child killed outright loses its lease within the stale
window even though its worker lives on.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from evals import selectors as eval_selectors
from evals.models import WorkerHeartbeat
from tests.triage.support import ticket, wait_for
from triage.models import TriageJob

pytestmark = pytest.mark.slow

PREFORK = {
    "CELERY_WORKER_POOL": "prefork",
    "PROMPTCTL_WORKER_STALE_SECONDS": "2",
    "PROMPTCTL_EVAL_SWEEP_SECONDS": "1",
    "PROMPTCTL_JOB_REQUEUE_SECONDS": "3",
    "PROMPTCTL_RATE_LIMITER": "off",
}


def _job(job_id: str) -> TriageJob:
    return TriageJob.objects.get(pk=job_id)


def _prefork_job(workers, api, emulator, settings, *, latency: float, index: int):
    """A prefork worker (two children) and one job sent to it: (the worker, messages before, the job id)."""
    settings.PROMPTCTL_WORKER_STALE_SECONDS = 2
    emulator.configure(latency=latency)
    worker = workers.start(concurrency=2, **PREFORK)
    workers.wait_ready()
    before = emulator.stats()["user_messages"]["total"]
    return worker, before, api.post("/triage/jobs", ticket(index)).json()["job_id"]


def test_a_long_job_in_a_pool_child_keeps_its_one_attempt(workers, api, production, emulator, settings):
    # Three stale windows and more: without the child's own beat its lease would read as dead.
    worker, before, job_id = _prefork_job(workers, api, emulator, settings, latency=8.0, index=2)
    running = wait_for("the job runs", lambda: _job(job_id).lease_pid and _job(job_id), timeout=60)
    assert running.lease_pid != worker.pid  # a pool child, not the worker
    beat = wait_for(
        "the child's heartbeat", lambda: WorkerHeartbeat.objects.filter(pid=running.lease_pid).first(), timeout=10
    )
    assert beat.pool_parent_pid == worker.pid and beat.hostname == running.lease_holder
    assert "pool process" in str(beat)
    assert eval_selectors.workers_alive() == 1  # the child beats, but the worker is one worker

    wait_for("the job ends", lambda: _job(job_id).status in TriageJob.FINAL_STATUSES, timeout=90)
    job = _job(job_id)
    assert job.status == TriageJob.Status.DONE, job.error_message
    assert job.attempts == 1 and job.lease_pid == running.lease_pid
    stats = emulator.stats()["user_messages"]
    assert stats["total"] - before == 1 and stats["sessions_with_duplicates"] == 0


def test_a_killed_pool_child_loses_its_lease_while_its_worker_lives(workers, api, production, emulator, settings):
    worker, before, job_id = _prefork_job(workers, api, emulator, settings, latency=12.0, index=5)
    wait_for(
        "the child sent the ticket",
        lambda: emulator.stats()["user_messages"]["total"] - before == 1 and _job(job_id).lease_pid,
        timeout=60,
    )
    child = _job(job_id).lease_pid
    wait_for("the child beats", lambda: WorkerHeartbeat.objects.filter(pid=child).exists(), timeout=10)
    # Past three stale windows and a sweep, alive: its own beat keeps its one attempt.
    time.sleep(6.5)
    assert _job(job_id).attempts == 1
    os.kill(child, signal.SIGKILL)
    killed_at = time.time()

    wait_for("the job ends", lambda: _job(job_id).status in TriageJob.FINAL_STATUSES, timeout=90)
    job = _job(job_id)
    assert job.status == TriageJob.Status.DONE, job.error_message
    assert job.attempts == 2 and job.lease_pid not in (child, worker.pid)
    assert worker.poll() is None  # the worker itself never stopped
    # The second attempt adopted the first one's session: the ticket was sent once.
    stats = emulator.stats()["user_messages"]
    assert stats["total"] - before == 1 and stats["sessions_with_duplicates"] == 0
    beat = WorkerHeartbeat.objects.filter(pid=child).first()
    assert beat is None or beat.seen_at.timestamp() <= killed_at  # the dead child never beat again
