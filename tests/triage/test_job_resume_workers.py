"""A SIGKILLed worker's async job and shadow run finish on another worker, with nothing asked or recorded twice.

Real ``celery -A config worker`` processes (``tests.evals.support.Workers``)
on the test broker (the embedded filesystem broker by default; Redis with
``CELERY_BROKER_URL=redis://...``), the test database, and the emulator over
loopback HTTP. The killed worker's messages are gone (the embedded broker
drops what a consumer took; Redis holds them back for the visibility
timeout), so only the database-driven sweep on the new worker can finish them.
"""

from __future__ import annotations

import time

import pytest
from django.db.models import Count

from managed_agents.adoption import sessions_tagged
from tests.triage.support import V3, ticket, wait_for
from triage import services
from triage.models import ShadowResult, TriageJob, TriageRequest
from triage.services import jobs

pytestmark = pytest.mark.slow

# Bounds scaled down so the test takes seconds: heartbeats stale after 2 s, a sweep every second.
FAST = {
    "PROMPTCTL_WORKER_STALE_SECONDS": "2",
    "PROMPTCTL_EVAL_SWEEP_SECONDS": "1",
    "PROMPTCTL_JOB_REQUEUE_SECONDS": "3",
    "PROMPTCTL_SHADOW_SWEEP_AFTER_SECONDS": "8",
    "PROMPTCTL_RATE_LIMITER": "off",
}
MODEL_SECONDS = 4.0  # the emulator's time to answer: long enough to kill a worker while it waits


def test_a_sigkilled_workers_job_and_shadow_run_finish_on_another_worker_without_duplicates(
    workers, api, production, people, emulator, settings
):
    settings.PROMPTCTL_WORKER_STALE_SECONDS = 2  # what the API's liveness answer counts as alive
    candidate = production.new_version(V3)
    production.policy.shadow_version = production.agent.versions.get(number=candidate)
    production.policy.shadow_percent = 100
    services.routing_policy_save(policy=production.policy, actor=people.admin)
    emulator.configure(latency=MODEL_SECONDS)
    first = workers.start(concurrency=4, **FAST)
    workers.wait_ready()
    before = emulator.stats()

    # A synchronous call (its shadow run goes to the worker) and an async job (the worker runs it).
    answer = api.post("/triage", ticket(3)).json()
    job_id = api.post("/triage/jobs", ticket(6)).json()["job_id"]
    # Killed while it holds both sessions in flight: the tickets sent, the model not done answering.
    wait_for(
        "the worker holds the job's and the shadow run's sessions",
        lambda: (
            emulator.stats()["user_messages"]["total"] - before["user_messages"]["total"] == 3
            and emulator.stats()["sessions"]["by_status"]["running"] >= 2
        ),
        timeout=60,
    )
    workers.kill(first)
    job = TriageJob.objects.get(pk=job_id)
    assert job.status == TriageJob.Status.RUNNING and job.attempts == 1 and job.lease_holder == workers.nodes[0]
    dead = sessions_tagged(agent_id=production.agent.remote_id, metadata={jobs.JOB_TAG: job_id})
    assert [s.metadata[jobs.ATTEMPT_TAG] for s in dead] == ["1"] and not dead[0].archived

    # With no live worker the job reads as running, with the warning and the command to start one.
    wait_for(
        "the job status says no worker is alive",
        lambda: api.get(f"/triage/jobs/{job_id}").json()["warning"],
        timeout=15,
    )
    waiting = api.get(f"/triage/jobs/{job_id}").json()
    assert waiting["status"] == "running" and waiting["attempts"] == 1 and waiting["workers_alive"] == 0
    assert "celery -A config worker" in waiting["warning"] and "the job stays running" in waiting["warning"]

    workers.start(concurrency=4, **FAST)
    wait_for(
        "the job finishes on the new worker",
        lambda: TriageJob.objects.get(pk=job_id).status in TriageJob.FINAL_STATUSES,
        timeout=90,
    )
    job = TriageJob.objects.select_related("request").get(pk=job_id)
    assert job.status == TriageJob.Status.DONE, job.error_message
    assert job.attempts == 2 and job.lease_holder == workers.nodes[1]
    # The new attempt reused the answer the dead attempt's session had: same session, no second message.
    assert job.request.session_id == dead[0].session_id and job.request.source == TriageRequest.Source.JOB
    shown = api.get(f"/triage/jobs/{job_id}").json()
    assert shown["status"] == "done" and shown["attempts"] == 2 and shown["warning"] is None

    # Both logged requests (the call and the job) get exactly one shadow result each.
    wait_for("both shadow results are recorded", lambda: ShadowResult.objects.count() >= 2, timeout=90)
    time.sleep(2.5)  # a few more sweep passes: nothing more may be recorded or sent
    assert TriageRequest.objects.count() == 2
    assert set(TriageRequest.objects.values_list("pk", flat=True)) == {answer["request_id"], job.request_id}
    per_request = ShadowResult.objects.values("request_id", "version_id").annotate(n=Count("id"))
    assert sorted(row["request_id"] for row in per_request) == sorted([answer["request_id"], job.request_id])
    assert all(row["n"] == 1 for row in per_request)

    stats = emulator.stats()
    # The call, its shadow run, the job and the job's shadow run: four tickets, each sent once.
    assert stats["user_messages"]["total"] - before["user_messages"]["total"] == 4, stats["user_messages"]
    assert stats["user_messages"]["sessions_with_duplicates"] == 0
    wait_for("every session is archived", lambda: emulator.stats()["sessions"]["unarchived"] == 0, timeout=15)
    assert [
        s.archived for s in sessions_tagged(agent_id=production.agent.remote_id, metadata={jobs.JOB_TAG: job_id})
    ] == [True]
