"""Runs through real Celery worker processes, the emulator over loopback, and the test database.

The broker is whatever the settings say: the embedded filesystem broker by
default, Redis with ``CELERY_BROKER_URL=redis://...`` (tests marked ``redis``
need it). Nothing of promptctl is mocked.
"""

import time

import pytest
from django.conf import settings as django_settings
from django.db.models import Count

from evals import services
from evals.models import EvalResult, EvalRun
from tests.evals.support import wait_for_run

pytestmark = pytest.mark.slow


def _assert_complete(run: EvalRun) -> None:
    results = EvalResult.objects.filter(run=run)
    assert results.count() == run.unit_total
    duplicates = results.values("case_id", "attempt").annotate(n=Count("id")).filter(n__gt=1)
    assert not duplicates.exists()
    units = set(results.values_list("case_id", "attempt"))
    expected = {(case.pk, attempt) for case in run.testset_version.cases.all() for attempt in range(1, run.repeats + 1)}
    assert units == expected


def test_a_plain_worker_runs_v1_and_v2_and_the_comparison_flags_billing(workers, versions, gating_set, requester):
    workers.start()
    v1, v2 = versions
    baseline = services.eval_run_start(agent_version=v1, testset_version=gating_set, actor=requester)
    candidate = services.eval_run_start(agent_version=v2, testset_version=gating_set, actor=requester)
    for run in (baseline, candidate):
        wait_for_run(run, timeout=90)
        assert run.status == EvalRun.Status.FINISHED, run.status_reason
        _assert_complete(run)
        assert run.started_by == requester
    comparison = services.comparison_create(baseline_run=baseline, candidate_run=candidate)
    assert comparison.regressed and comparison.result["regressed_teams"] == ["billing"]
    assert [f["ticket"] for f in comparison.result["flips"] if f["team"] == "billing"]


def test_sigkill_mid_run_then_a_new_worker_finishes_it_without_duplicates(workers, versions, gating_set, emulator):
    emulator.configure(latency=0.4)
    first = workers.start(concurrency=6)
    run = services.eval_run_start(agent_version=versions[0], testset_version=gating_set, repeats=3)
    # Killed while it holds sessions in flight, so that some units are surely lost with it (on a busy machine
    # the worker can be between units when the eighth result lands).
    wait_for_run(
        run, timeout=60, until=lambda r: r.results.count() >= 8 and emulator.stats()["sessions"]["unarchived"] > 0
    )
    workers.kill(first)
    killed_at = run.results.count()
    assert killed_at < run.unit_total, "the run should still be in the middle when the worker dies"
    run.refresh_from_db()
    assert run.status == EvalRun.Status.RUNNING
    # The replacement worker's own sweep notices the stall (no result for 2 s) and dispatches what is missing.
    workers.start(PROMPTCTL_EVAL_STALL_SECONDS="2", PROMPTCTL_EVAL_SWEEP_SECONDS="1")
    wait_for_run(run, timeout=120)
    assert run.status == EvalRun.Status.FINISHED, run.status_reason
    _assert_complete(run)
    assert run.resume_count >= 1


@pytest.mark.redis
def test_sigkill_on_redis_broker(workers, versions, gating_set, emulator):
    """The same guarantee, required on Redis (late ack + the database-driven sweep)."""
    assert django_settings.CELERY_BROKER_URL.startswith("redis://")
    emulator.configure(latency=0.3)
    first = workers.start(concurrency=8)
    run = services.eval_run_start(agent_version=versions[0], testset_version=gating_set, repeats=2)
    wait_for_run(run, timeout=60, until=lambda r: r.results.count() >= 5)
    workers.kill(first)
    assert run.results.count() < run.unit_total
    workers.start(PROMPTCTL_EVAL_STALL_SECONDS="2", PROMPTCTL_EVAL_SWEEP_SECONDS="1")
    wait_for_run(run, timeout=120)
    assert run.status == EvalRun.Status.FINISHED
    _assert_complete(run)


def test_injected_500s_and_429s_lose_nothing_and_leave_no_session_unarchived(workers, versions, gating_set, emulator):
    emulator.configure(fault_500=0.2, fault_429=0.1, seed=7)
    workers.start()
    run = services.eval_run_start(agent_version=versions[0], testset_version=gating_set, repeats=2)
    wait_for_run(run, timeout=180)
    assert run.status == EvalRun.Status.FINISHED, run.status_reason
    _assert_complete(run)
    assert not run.results.filter(kind=EvalResult.Kind.ERROR).exists(), list(
        run.results.filter(kind=EvalResult.Kind.ERROR).values_list("problem", flat=True)
    )
    stats = emulator.stats()
    assert stats["faults"].get("500", 0) + sum(v for k, v in stats["faults"].items() if "500" in k) > 0
    assert stats["sessions"]["unarchived"] == 0, stats["sessions"]
    assert stats["sessions"]["total"] >= run.unit_total


def test_two_workers_share_one_session_budget_and_never_hit_429(workers, versions, gating_set, emulator):
    # A scaled-down org limit: 20 creates per 2 s; promptctl told the same budget with a burst of 4.
    emulator.configure(create_limit=20, create_window=2.0)
    budget = {
        "PROMPTCTL_SESSION_CREATE_BUDGET": "20",
        "PROMPTCTL_SESSION_CREATE_WINDOW": "2",
        "PROMPTCTL_SESSION_CREATE_BURST": "4",
        "PROMPTCTL_SESSION_CREATE_MARGIN": "0.5",
    }
    workers.start(**budget)
    workers.start(**budget)
    workers.wait_ready()  # the clock times the run, not the workers' start-up
    started = time.monotonic()
    run = services.eval_run_start(agent_version=versions[0], testset_version=gating_set, repeats=3)
    wait_for_run(run, timeout=120)
    elapsed = time.monotonic() - started
    assert run.status == EvalRun.Status.FINISHED
    _assert_complete(run)
    stats = emulator.stats()
    assert stats["faults"].get("create_limit_429", 0) == 0, stats["faults"]
    # 60 creates, 16 per 2.5 s after a burst of 4: (60 - 4) * 2.5 / 16 = 8.75 s; not much more.
    assert 8.5 <= elapsed <= 20, elapsed


def test_cancel_stops_a_running_run(workers, versions, gating_set, emulator):
    emulator.configure(latency=0.5)
    workers.start(concurrency=2)
    run = services.eval_run_start(agent_version=versions[0], testset_version=gating_set, repeats=2)
    wait_for_run(run, timeout=60, until=lambda r: r.results.count() >= 2)
    services.eval_run_cancel(run=run)
    time.sleep(2.0)
    settled = run.results.count()
    time.sleep(1.5)
    run.refresh_from_db()
    assert run.status == EvalRun.Status.CANCELLED
    assert run.results.count() == settled < run.unit_total
