"""Whether a live worker consumes the queue, as every door shows it: heartbeats from real Celery workers.

With no worker, ``eval run --wait`` (server-side and the client), the run's API
answer and the run page say so with the command that starts one; a worker's
heartbeat appears when it is ready, goes stale when it is SIGKILLed, and is
removed when it stops cleanly. ``PROMPTCTL_WORKER_STALE_SECONDS`` is cut to
3 s here to keep the waits short (the default is 15 s).
"""

from __future__ import annotations

import io
import json
import time

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from evals import selectors
from evals.models import EvalRun, WorkerHeartbeat
from tests.cli_support import token_env, token_secret_for
from tests.evals.support import wait_for_run
from tests.promptctl.api_support import caller_for
from tests.promptctl_client.support import client_env, run_client

pytestmark = pytest.mark.slow

STALE = 3


@pytest.fixture
def short_stale(settings):
    settings.PROMPTCTL_WORKER_STALE_SECONDS = STALE


def promptctl(*args: str, user) -> tuple[int, str, str, float]:
    """``manage.py promptctl ARGS`` with ``user``'s own token: (exit code, stdout, stderr, seconds taken)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    code = 0
    began = time.monotonic()
    with token_env(token_secret_for(user)):
        try:
            call_command("promptctl", *args, stdout=stdout, stderr=stderr)
        except SystemExit as exit_:
            code = int(exit_.code or 0)
    return code, stdout.getvalue(), stderr.getvalue(), time.monotonic() - began


def _wait_for_heartbeats(count: int, *, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while selectors.workers_alive() < count:
        assert time.monotonic() < deadline, f"no {count} live worker heartbeat(s) within {timeout:.0f}s"
        time.sleep(0.2)


def test_with_no_worker_eval_run_wait_says_so_and_exits_nonzero(workers, agent, gating_set, requester, short_stale):
    code, _out, err, took = promptctl("eval", "run", "--agent", agent.name, "--version", "1", "--wait", user=requester)
    assert code != 0
    assert took < 15, took
    assert f"no Celery worker is consuming (none seen for {STALE} s)" in err, err
    assert "celery -A config worker" in err and "make worker" in err
    run = EvalRun.objects.get()
    assert run.status == EvalRun.Status.QUEUED  # nothing lost: it goes on when a worker starts

    # The API answer and the run page say the same while it waits.
    shown = caller_for(requester).get(f"/runs/{run.pk}").json()
    assert shown["workers_alive"] == 0 and shown["worker_stale_seconds"] == STALE
    assert "celery -A config worker" in shown["worker_warning"]
    from django.test import Client

    browser = Client()
    browser.force_login(requester)
    page = browser.get(reverse("admin:evals_evalrun_change", args=[run.pk]))
    assert page.status_code == 200
    assert 'id="run-worker-warning"' in page.content.decode()


def test_with_no_worker_the_client_says_so_and_exits_1(workers, agent, gating_set, requester, tmp_path):
    from config.children import api_server

    home = tmp_path / "home"
    home.mkdir()
    extra = {"PROMPTCTL_WORKER_STALE_SECONDS": str(STALE), "CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL}
    with api_server(
        settings_dict=connection.settings_dict, emulator_url=django_settings.ANTHROPIC_BASE_URL, extra_env=extra
    ) as server:
        env = client_env(home, PROMPTCTL_URL=server.base_url, PROMPTCTL_TOKEN=token_secret_for(requester))
        began = time.monotonic()
        result = run_client("eval", "run", "--agent", agent.name, "--version", "1", "--wait", env=env, timeout=60)
        took = time.monotonic() - began
    assert result.code == 1, (result.out, result.err)
    assert took < 15, took
    assert f"no Celery worker is consuming (none seen for {STALE} s)" in result.err, result.err
    assert "the run stays queued" in result.err


def test_a_live_worker_beats_finishes_the_run_and_removes_its_row_on_a_clean_stop(
    workers, agent, gating_set, requester, short_stale
):
    workers.start(concurrency=4, PROMPTCTL_WORKER_STALE_SECONDS=str(STALE))
    _wait_for_heartbeats(1)
    beat = WorkerHeartbeat.objects.get()
    assert beat.hostname == workers.nodes[0] and beat.pid > 0
    first_seen = beat.seen_at
    code, out, err, _took = promptctl(
        "--json", "eval", "run", "--agent", agent.name, "--version", "1", "--wait", user=requester
    )
    assert code == 0, err
    assert json.loads(out)["status"] == "finished"
    time.sleep(STALE / 3 + 0.5)
    beat.refresh_from_db()
    assert beat.seen_at > first_seen  # it keeps beating
    workers.stop_all()  # SIGTERM: Celery's warm shutdown, worker_shutdown removes the row
    assert not WorkerHeartbeat.objects.exists()
    assert selectors.workers_alive() == 0


def test_a_sigkilled_worker_stops_counting_within_the_stale_window(workers, agent, gating_set, requester, short_stale):
    process = workers.start(concurrency=2, PROMPTCTL_WORKER_STALE_SECONDS=str(STALE))
    _wait_for_heartbeats(1)
    workers.kill(process)
    killed_at = time.monotonic()
    while selectors.workers_alive():
        assert time.monotonic() - killed_at < STALE + 2, "a dead worker still counts as alive"
        time.sleep(0.2)
    assert WorkerHeartbeat.objects.count() == 1  # it had no chance to say goodbye: the row went stale

    # A run started now waits on no one, and its API answer says so.
    rita = caller_for(requester)
    started = rita.post("/runs", {"agent": agent.name, "version": 1})
    assert started.status_code == 201, started.content
    answer = started.json()
    assert answer["workers_alive"] == 0 and "resumes when one starts" in answer["worker_warning"]

    # A new worker picks it up; the old row stays stale and does not count.
    workers.start(concurrency=4, PROMPTCTL_WORKER_STALE_SECONDS=str(STALE))
    run = wait_for_run(EvalRun.objects.get(pk=answer["id"]), timeout=120)
    assert run.status == EvalRun.Status.FINISHED, run.status_reason
    assert selectors.workers_alive() == 1
    shown = rita.get(f"/runs/{run.pk}").json()
    assert shown["workers_alive"] == 1 and shown["worker_warning"] is None
