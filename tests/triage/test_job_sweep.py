"""The sweep of lost async jobs, shadow runs and canary comparisons, run in this process against the emulator.

A worker that died is played by what it leaves behind: a job row it started
(its lease naming a worker whose heartbeat is stale) and a session tagged with
the job and attempt that already holds the ticket, as the real worker makes
them. The sweep and the resumed run are the real services, the sessions go
through the real SDK to the emulator over loopback HTTP. The SIGKILL of a real
worker process is in ``test_job_resume_workers.py``.
"""

from __future__ import annotations

import time
from datetime import timedelta

from django.utils import timezone

from evals.models import WorkerHeartbeat
from managed_agents.client import client
from managed_agents.tickets import ticket_text
from tests.triage.support import V3, ticket
from triage import services
from triage.models import CanaryComparison, ShadowResult, TriageJob, TriageRequest
from triage.services import jobs
from triage.services.shadow import CANARY_COMPARE_TAG, SHADOW_TAG

DEAD_WORKER = ("dead-worker@test-host", 424242)


def _answered_session(*, agent, version: int, metadata: dict[str, str], text: str, timeout: float = 20.0) -> str:
    """A session as a worker makes it (pinned, tagged, the ticket sent), left unarchived once answered."""
    sessions = client().beta.sessions
    session = sessions.create(
        agent={"type": "agent", "id": agent.remote_id, "version": version},
        environment_id=agent.environment_id,
        metadata=metadata,
    )
    sessions.events.send(session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": text}]}])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(event.type == "agent.message" for event in sessions.events.list(session.id)):
            return session.id
        time.sleep(0.05)
    raise AssertionError(f"session {session.id} did not answer within {timeout}s")


def _dead_worker_heartbeat() -> None:
    long_ago = timezone.now() - timedelta(minutes=5)
    WorkerHeartbeat.objects.create(
        hostname=DEAD_WORKER[0], pid=DEAD_WORKER[1], started_at=long_ago - timedelta(minutes=1), seen_at=long_ago
    )


def test_a_dead_workers_job_is_finished_from_the_answer_its_session_already_had(
    api, production, emulator, eager_tasks, django_capture_on_commit_callbacks
):
    before = emulator.stats()  # the gate's eval run made sessions of its own
    with django_capture_on_commit_callbacks(execute=False):  # the message is lost with the worker
        job_id = api.post("/triage/jobs", ticket(4)).json()["job_id"]
    # The dead worker's attempt 1: it took the lease, made its tagged session, and the model answered.
    job, attempt = jobs._attempt_begin(job_id=job_id, holder=DEAD_WORKER)
    assert attempt == 1 and job.lease_holder == DEAD_WORKER[0] and job.lease_pid == DEAD_WORKER[1]
    _dead_worker_heartbeat()
    dead_session = _answered_session(
        agent=production.agent,
        version=production.v1,
        metadata={jobs.JOB_TAG: job_id, jobs.ATTEMPT_TAG: "1"},
        text=ticket_text(subject=ticket(4)["subject"], body=ticket(4)["body"]),
    )

    shown = api.get(f"/triage/jobs/{job_id}").json()
    assert shown["status"] == "running" and shown["attempts"] == 1
    assert shown["workers_alive"] == 0 and "no Celery worker is consuming" in shown["warning"]
    assert not services.triage_job_lease_live(job=TriageJob.objects.get(pk=job_id))

    with django_capture_on_commit_callbacks(execute=True):
        assert services.triage_jobs_sweep() == [job_id]

    job = TriageJob.objects.get(pk=job_id)
    assert job.status == TriageJob.Status.DONE and job.attempts == 2 and job.resumes == 1
    logged = TriageRequest.objects.get()
    assert job.request == logged and logged.session_id == dead_session and logged.outcome == "ok"
    stats = emulator.stats()
    assert stats["user_messages"]["total"] - before["user_messages"]["total"] == 1
    assert stats["user_messages"]["sessions_with_duplicates"] == 0
    assert stats["sessions"]["total"] - before["sessions"]["total"] == 1
    assert stats["sessions"]["unarchived"] == 0, stats["sessions"]
    done = api.get(f"/triage/jobs/{job_id}").json()
    assert done["status"] == "done" and done["attempts"] == 2 and done["result"]["session_id"] == dead_session
    with django_capture_on_commit_callbacks(execute=True):
        assert services.triage_jobs_sweep() == []  # a final job is never sent again


def test_a_dead_attempts_session_the_ticket_never_reached_is_archived_and_the_job_run_afresh(
    api, production, emulator, eager_tasks, django_capture_on_commit_callbacks
):
    before = emulator.stats()
    with django_capture_on_commit_callbacks(execute=False):
        job_id = api.post("/triage/jobs", ticket(11)).json()["job_id"]
    jobs._attempt_begin(job_id=job_id, holder=DEAD_WORKER)
    _dead_worker_heartbeat()
    # Killed between creating its session and sending the ticket.
    stray = client().beta.sessions.create(
        agent={"type": "agent", "id": production.agent.remote_id, "version": production.v1},
        environment_id=production.agent.environment_id,
        metadata={jobs.JOB_TAG: job_id, jobs.ATTEMPT_TAG: "1"},
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert services.triage_jobs_sweep() == [job_id]

    job = TriageJob.objects.select_related("request").get(pk=job_id)
    assert job.status == TriageJob.Status.DONE and job.attempts == 2
    assert job.request.session_id not in ("", stray.id)
    assert client().beta.sessions.retrieve(stray.id).archived_at is not None
    stats = emulator.stats()
    assert stats["user_messages"]["total"] - before["user_messages"]["total"] == 1
    assert stats["sessions"]["total"] - before["sessions"]["total"] == 2
    assert stats["sessions"]["unarchived"] == 0, stats["sessions"]


def test_a_live_lease_is_left_alone_and_a_second_message_for_it_is_dropped(
    api, production, emulator, django_capture_on_commit_callbacks
):
    before = emulator.stats()["sessions"]["total"]
    with django_capture_on_commit_callbacks(execute=False):
        job_id = api.post("/triage/jobs", ticket(2)).json()["job_id"]
    now = timezone.now()
    WorkerHeartbeat.objects.create(hostname="alive@test-host", pid=7, started_at=now, seen_at=now)
    jobs._attempt_begin(job_id=job_id, holder=("alive@test-host", 7))

    assert services.triage_job_lease_live(job=TriageJob.objects.get(pk=job_id))
    with django_capture_on_commit_callbacks(execute=False) as sent:
        assert services.triage_jobs_sweep() == []
    assert sent == []
    again = services.triage_job_run(job_id=job_id, holder=("other@test-host", 8))  # a duplicate delivery
    assert again.status == TriageJob.Status.RUNNING and again.attempts == 1 and again.lease_pid == 7
    assert emulator.stats()["sessions"]["total"] == before  # no session made

    # Once the holder's heartbeat is stale the lease is dead, and so is one past its end.
    WorkerHeartbeat.objects.filter(pid=7).update(seen_at=now - timedelta(minutes=1))
    assert not services.triage_job_lease_live(job=TriageJob.objects.get(pk=job_id))
    WorkerHeartbeat.objects.filter(pid=7).update(seen_at=timezone.now())
    assert not services.triage_job_lease_live(job=TriageJob.objects.get(pk=job_id), now=now + timedelta(hours=1))


def test_a_queued_job_whose_message_was_lost_is_sent_again_once(
    api, production, emulator, settings, eager_tasks, django_capture_on_commit_callbacks
):
    settings.PROMPTCTL_JOB_REQUEUE_SECONDS = 30
    before = emulator.stats()["user_messages"]["total"]
    with django_capture_on_commit_callbacks(execute=False):
        job_id = api.post("/triage/jobs", ticket(7)).json()["job_id"]
    assert services.triage_jobs_sweep() == []  # too young: its message may still be on its way
    later = timezone.now() + timedelta(seconds=31)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.triage_jobs_sweep(now=later) == [job_id]
    job = TriageJob.objects.get(pk=job_id)
    assert job.status == TriageJob.Status.DONE and job.attempts == 1 and job.resumes == 1
    assert emulator.stats()["user_messages"]["total"] == before + 1


def test_a_lost_shadow_run_is_swept_and_adopts_the_dead_runs_session(
    api, production, people, emulator, settings, eager_tasks, django_capture_on_commit_callbacks
):
    candidate = production.new_version(V3)
    production.policy.shadow_version = production.agent.versions.get(number=candidate)
    production.policy.shadow_percent = 100
    services.routing_policy_save(policy=production.policy, actor=people.admin)
    settings.PROMPTCTL_SHADOW_SWEEP_AFTER_SECONDS = 60
    before = emulator.stats()["user_messages"]["total"]
    with django_capture_on_commit_callbacks(execute=False):  # the shadow run's message is lost
        answer = api.post("/triage", ticket(9)).json()
    request = TriageRequest.objects.get(pk=answer["request_id"])
    assert request.shadow_version.number == candidate
    # The dead run had made its tagged session and sent the ticket; the model answered after the worker died.
    dead_session = _answered_session(
        agent=production.agent,
        version=candidate,
        metadata={SHADOW_TAG: str(request.pk), "candidate": str(candidate)},
        text=request.ticket_text,
    )

    assert services.shadow_runs_sweep() == []  # not due yet
    later = timezone.now() + timedelta(seconds=61)
    assert services.shadow_runs_sweep(now=later) == [request.pk]

    result = ShadowResult.objects.get()
    assert result.request == request and result.version.number == candidate and result.session_id == dead_session
    assert result.outcome == "ok"
    stats = emulator.stats()
    assert stats["user_messages"]["total"] == before + 2  # the call and its one shadow run
    assert stats["user_messages"]["sessions_with_duplicates"] == 0
    assert stats["sessions"]["unarchived"] == 0, stats["sessions"]
    assert services.shadow_runs_sweep(now=later) == []  # one result per (request, version): nothing left


def test_a_lost_canary_comparison_is_swept_and_adopts_the_dead_runs_session(
    api, production, people, emulator, settings, eager_tasks, django_capture_on_commit_callbacks
):
    """The canary watch's comparison of a canary reply is drawn with the call; a worker that died with it loses nothing."""
    v3 = production.new_version(V3)
    production.canary(v3, 50)
    settings.PROMPTCTL_SHADOW_SWEEP_AFTER_SECONDS = 60
    answer = None
    for index in range(40):  # until the canary serves one (half the traffic); its comparison's message is lost
        with django_capture_on_commit_callbacks(execute=False):
            answer = api.post("/triage", ticket(index, request_key=f"lost-compare-{index}")).json()
        if answer["canary"]:
            break
    assert answer and answer["canary"] and answer["valid"]
    request = TriageRequest.objects.get(pk=answer["request_id"])
    assert request.compare_drawn, "the default compare share is 100 %: the draw is in the log"
    assert not TriageRequest.objects.filter(canary=False, compare_drawn=True).exists()
    before = emulator.stats()["user_messages"]["total"]
    dead_session = _answered_session(
        agent=production.agent,
        version=production.v1,
        metadata={CANARY_COMPARE_TAG: str(request.pk), "production": str(production.v1)},
        text=request.ticket_text,
    )

    assert services.canary_comparisons_sweep() == []  # not due yet
    later = timezone.now() + timedelta(seconds=61)
    assert services.canary_comparisons_sweep(now=later) == [request.pk]

    comparison = CanaryComparison.objects.get(request=request)
    assert comparison.session_id == dead_session and comparison.production_version.number == production.v1
    assert comparison.agrees is not None
    stats = emulator.stats()
    assert stats["user_messages"]["total"] == before + 1  # the dead run's one message; none sent again
    assert stats["user_messages"]["sessions_with_duplicates"] == 0
    assert services.canary_comparisons_sweep(now=later) == []  # one comparison per request: nothing left


def test_a_canary_call_not_drawn_for_comparison_is_not_swept(
    api, production, people, emulator, settings, eager_tasks, django_capture_on_commit_callbacks
):
    from tests.triage.test_canary_watch import canary_policy

    v3 = production.new_version(V3)
    production.canary(v3, 50)
    canary_policy(production, people.admin, compare_percent=0)
    with django_capture_on_commit_callbacks(execute=True):
        answers = [api.post("/triage", ticket(index, request_key=f"undrawn-{index}")).json() for index in range(8)]
    assert any(answer["canary"] for answer in answers)
    assert not TriageRequest.objects.filter(compare_drawn=True).exists()
    assert services.canary_comparisons_sweep(now=timezone.now() + timedelta(hours=1, seconds=-1)) == []
    assert not CanaryComparison.objects.exists()
