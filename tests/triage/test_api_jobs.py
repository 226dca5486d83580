"""Asynchronous mode: 202 with a job id now, a worker runs it, the result is read back by id."""

from __future__ import annotations

import time

import pytest
from django.conf import settings as django_settings
from django.db import connection

from config.children import WorkerProcess, child_env
from tests.triage.support import Api, People, ProductionAgent, ticket
from triage import services
from triage.models import Outcome, TriageJob, TriageRequest


def test_job_is_accepted_with_202_run_and_read_back(api, production, eager_tasks, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        accepted = api.post("/triage/jobs", ticket(6, request_key="order-88"))
    assert accepted.status_code == 202, accepted.content
    body = accepted.json()
    assert body["status"] == "queued" and accepted["Location"] == body["url"] == f"/api/v1/triage/jobs/{body['job_id']}"
    queued = api.get(f"/triage/jobs/{body['job_id']}").json()
    assert queued["status"] == "queued" and queued["result"] is None and queued["error"] is None
    assert not TriageRequest.objects.exists(), "nothing runs before the worker picks the job up"

    for callback in callbacks:  # the commit hook sends the task; eager mode runs it here
        callback()
    done = api.get(f"/triage/jobs/{body['job_id']}")
    assert done.status_code == 200
    job = done.json()
    assert job["status"] == "done" and job["finished_at"] and job["agent"] == "ticket-triage"
    assert job["result"]["version"] == production.v1 and job["result"]["valid"] is True
    logged = TriageRequest.objects.get(pk=job["result"]["request_id"])
    assert logged.source == TriageRequest.Source.JOB and logged.request_key == "order-88"
    assert (logged.team, logged.priority) == (job["result"]["team"], job["result"]["priority"])


def test_running_a_finished_job_again_is_a_no_op(api, production, eager_tasks, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job_id = api.post("/agents/ticket-triage/triage/jobs", ticket(1)).json()["job_id"]
    job = TriageJob.objects.get(pk=job_id)
    assert job.status == TriageJob.Status.DONE and job.attempts == 1
    services.triage_job_run(job_id=job_id)
    job.refresh_from_db()
    assert job.attempts == 1 and TriageRequest.objects.count() == 1
    assert services.triage_job_run(job_id="00000000-0000-0000-0000-000000000000") is None


def test_a_job_whose_session_fails_reports_the_error(
    api, production, emulator, settings, eager_tasks, django_capture_on_commit_callbacks
):
    settings.PROMPTCTL_MAX_ATTEMPTS = 1
    emulator.configure(fault_500=1.0)
    with django_capture_on_commit_callbacks(execute=True):
        job_id = api.post("/triage/jobs", ticket(2)).json()["job_id"]
    job = api.get(f"/triage/jobs/{job_id}").json()
    assert job["status"] == "failed" and job["result"] is None
    assert job["error"]["code"] == Outcome.UNAVAILABLE and "could not create a session" in job["error"]["message"]
    assert TriageRequest.objects.get().outcome == Outcome.UNAVAILABLE


def test_jobs_are_visible_only_to_the_key_that_created_them(
    api, production, people, eager_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        job_id = api.post("/triage/jobs", ticket(3)).json()["job_id"]
    other = Api(services.api_key_create(name="other", actor=people.admin, all_agents=True).secret)
    assert other.get(f"/triage/jobs/{job_id}").status_code == 404
    for missing in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        response = api.get(f"/triage/jobs/{missing}")
        assert response.status_code == 404 and "no job" in response.json()["detail"]


def test_job_for_an_unknown_agent_is_refused_at_once(api, production):
    response = api.post("/agents/nobody/triage/jobs", ticket(0))
    assert response.status_code == 404 and not TriageJob.objects.exists()


@pytest.mark.slow
def test_a_real_worker_runs_queued_jobs(transactional_db, emulator, settings):
    """The whole path: API process, broker, a Celery worker process, the database, the emulator."""
    settings.PROMPTCTL_RATE_LIMITER = "off"
    people = People()
    production = ProductionAgent(people)
    client = Api(services.api_key_create(name="async-caller", actor=people.admin, all_agents=True).secret)
    env = child_env(settings_dict=connection.settings_dict, emulator_url=django_settings.ANTHROPIC_BASE_URL)
    env["PROMPTCTL_RATE_LIMITER"] = "off"
    job_ids = [client.post("/triage/jobs", ticket(index)).json()["job_id"] for index in range(5)]
    with WorkerProcess(env=env) as worker:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = [client.get(f"/triage/jobs/{job_id}").json()["status"] for job_id in job_ids]
            if all(state == "done" for state in states):
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"jobs did not finish: {states}\n{worker.log()[-3000:]}")
    results = [client.get(f"/triage/jobs/{job_id}").json()["result"] for job_id in job_ids]
    assert all(result["version"] == production.v1 and result["valid"] for result in results)
    assert TriageRequest.objects.filter(source=TriageRequest.Source.JOB).count() == 5
