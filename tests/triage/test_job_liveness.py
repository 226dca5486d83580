"""A queued job's status answer says whether a live worker will pick it up, and how to start one if not."""

from __future__ import annotations

import os
import socket

from django.utils import timezone

from evals.services.workers import worker_heartbeat_beat, worker_heartbeat_remove
from tests.triage.support import ticket


def test_a_queued_job_with_no_live_worker_carries_the_warning(api, production, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):  # no worker takes it: it stays queued
        job_id = api.post("/triage/jobs", ticket(4)).json()["job_id"]
    queued = api.get(f"/triage/jobs/{job_id}").json()
    assert queued["status"] == "queued" and queued["workers_alive"] == 0
    assert "no Celery worker is consuming" in queued["warning"] and "celery -A config worker" in queued["warning"]
    assert "the job stays queued" in queued["warning"]

    # The beat a worker writes on its timer (evals.tasks) makes it count.
    worker_heartbeat_beat(hostname=f"test@{socket.gethostname()}", pid=os.getpid(), started_at=timezone.now())
    seen = api.get(f"/triage/jobs/{job_id}").json()
    assert seen["workers_alive"] == 1 and seen["warning"] is None

    worker_heartbeat_remove(hostname=f"test@{socket.gethostname()}", pid=os.getpid())
    assert api.get(f"/triage/jobs/{job_id}").json()["workers_alive"] == 0


def test_a_finished_job_carries_no_warning(api, production, eager_tasks, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job_id = api.post("/triage/jobs", ticket(5)).json()["job_id"]
    done = api.get(f"/triage/jobs/{job_id}").json()
    assert done["status"] == "done" and done["workers_alive"] == 0 and done["warning"] is None
