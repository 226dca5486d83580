"""Test sets, runs and comparisons through the services, units executed in this process.

These tests call the same service a worker's task calls (``eval_unit_execute``)
so the scoring and state rules are checked without a broker; the worker tests
(test_workers.py) check the same through real Celery processes.
"""

import pytest
from django.db import IntegrityError, transaction

from evals import selectors, services
from evals.models import Comparison, EvalResult, EvalRun, TestCase, TestSet
from promptctl.errors import DomainError
from tests.evals.support import TICKETS, execute_all

pytestmark = pytest.mark.usefixtures("generous_budget")


def start(version, testset_version, *, repeats=1, actor=None, django_capture_on_commit_callbacks=None):
    return services.eval_run_start(agent_version=version, testset_version=testset_version, repeats=repeats, actor=actor)


def test_import_stores_contents_once_and_warns_about_p0(gating_set, agent, requester, gatekeeper):
    assert gating_set.case_count == 20 and gating_set.number == 1
    assert gating_set.testset.gating and gating_set.testset.agent == agent
    assert {w["label"] for w in gating_set.label_warnings} == {"P0"}
    again = services.testset_import(name="support-tickets", data=TICKETS.read_bytes(), filename="again.jsonl")
    assert again.created is False and again.version.pk == gating_set.pk
    changed = TICKETS.read_text().replace('"priority": "P0"', '"priority": "P1"')
    newer = services.testset_import(name="support-tickets", data=changed, filename="fixed.jsonl", actor=gatekeeper)
    assert newer.created and newer.version.number == 2
    assert newer.version.label_warnings == []
    assert newer.version.content_hash != gating_set.content_hash
    assert TestCase.objects.filter(version=gating_set).count() == 20


def test_malformed_file_imports_nothing_and_names_every_bad_line(db):
    lines = TICKETS.read_text().splitlines()
    lines[2] = lines[2].replace('"team": "billing"', '"team": ""')
    lines[6] = "{broken"
    lines[9] = lines[0]
    with pytest.raises(services.TestSetFileRefused) as refusal:
        services.testset_import(name="broken", data="\n".join(lines), filename="broken.jsonl")
    message = str(refusal.value)
    assert "line 3: 'team' is empty" in message
    assert "line 7: not valid JSON" in message
    assert "line 10: duplicate id 'TKT-1001' (first on line 1)" in message
    assert "nothing was imported" in message
    assert not TestSet.objects.filter(name="broken").exists()
    assert TestCase.objects.count() == 0


def test_gating_is_one_set_per_agent(gating_set, agent, gatekeeper):
    other = services.testset_import(name="other", data=TICKETS.read_bytes(), filename="t.jsonl", agent=agent).testset
    services.testset_gating_set(testset=other, actor=gatekeeper)
    gating = TestSet.objects.filter(agent=agent, gating=True)
    assert list(gating) == [other]
    with pytest.raises(IntegrityError), transaction.atomic():
        TestSet.objects.filter(pk=gating_set.testset_id).update(gating=True)
    with pytest.raises(DomainError, match="belongs to no agent"):
        services.testset_gating_set(
            testset=services.testset_import(name="loose", data=TICKETS.read_bytes(), filename="t.jsonl").testset,
            actor=gatekeeper,
        )


def test_run_scores_and_finishes_exactly_once(versions, gating_set, requester, django_capture_on_commit_callbacks):
    v1, _ = versions
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run = services.eval_run_start(agent_version=v1, testset_version=gating_set, repeats=2, actor=requester)
    assert len(callbacks) == 1  # the units are dispatched only after the run is committed
    assert run.status == EvalRun.Status.QUEUED and run.unit_total == 40
    run = execute_all(run)
    assert run.status == EvalRun.Status.FINISHED
    assert run.results.count() == 40
    assert run.started_at <= run.finished_at
    teams = run.scores["teams"]
    assert set(teams) == {"billing", "auth", "api-platform", "dashboard"}
    assert all(row["total"] == 5 for row in teams.values())
    # A redelivered unit is a no-op: the stored result comes back, nothing new is written, the run stays finished.
    first = run.results.order_by("pk").first()
    again = services.eval_unit_execute(run_id=run.pk, case_id=first.case_id, attempt=first.attempt)
    assert again is None  # the run is final
    again = services.eval_result_record(run=run, case=first.case, attempt=first.attempt, kind="error", problem="late")
    assert again.pk == first.pk and again.kind == first.kind
    assert run.results.count() == 40
    with pytest.raises(IntegrityError), transaction.atomic():
        EvalResult.objects.bulk_create([EvalResult(run=run, case=first.case, attempt=first.attempt, kind="error")])


def test_results_are_immutable(versions, gating_set):
    run = execute_all(start(versions[0], gating_set))
    result = run.results.first()
    result.kind = "error"
    with pytest.raises(DomainError, match="immutable"):
        result.save()
    with pytest.raises(DomainError):
        result.delete()


def test_v2_regresses_billing_only_and_lists_flips(versions, gating_set, agent):
    v1, v2 = versions
    baseline = execute_all(start(v1, gating_set))
    candidate = execute_all(start(v2, gating_set))
    comparison = services.comparison_create(baseline_run=baseline, candidate_run=candidate)
    summary = selectors.comparison_summary(comparison=comparison)
    assert summary["regressed"] is True
    assert summary["regressed_teams"] == ["billing"]
    billing = summary["teams"]["billing"]
    assert billing["candidate"]["correct"] < billing["baseline"]["correct"] - agent.regression_tolerance
    assert all(not row["regressed"] for team, row in summary["teams"].items() if team != "billing")
    billing_flips = [f["ticket"] for f in summary["flips"] if f["team"] == "billing"]
    assert billing_flips and all(t.startswith("TKT-") for t in billing_flips)
    assert all(f["direction"] == "right_to_wrong" for f in summary["flips"] if f["team"] == "billing")
    assert 0 < summary["mcnemar_p"] <= 1
    assert {w["label"] for w in summary["label_warnings"]} == {"P0"}
    # The same comparison asked for again is the same record.
    assert services.comparison_create(baseline_run=baseline, candidate_run=candidate).pk == comparison.pk
    assert (
        services.comparison_for_versions(agent=agent, baseline_number=v1.number, candidate_number=v2.number).pk
        == comparison.pk
    )


def test_comparison_across_different_contents_is_refused(versions, gating_set, gatekeeper):
    v1, v2 = versions
    changed = TICKETS.read_text().replace('"priority": "P0"', '"priority": "P1"')
    newer = services.testset_import(
        name="support-tickets", data=changed, filename="fixed.jsonl", actor=gatekeeper
    ).version
    baseline = execute_all(start(v1, gating_set))
    candidate = execute_all(start(v2, newer))
    with pytest.raises(DomainError) as refusal:
        services.comparison_create(baseline_run=baseline, candidate_run=candidate)
    message = str(refusal.value)
    assert "different test set contents" in message
    assert gating_set.content_hash[:12] in message and newer.content_hash[:12] in message
    assert Comparison.objects.count() == 0


def test_unfinished_runs_cannot_be_compared(versions, gating_set):
    v1, v2 = versions
    baseline = execute_all(start(v1, gating_set))
    candidate = start(v2, gating_set)
    with pytest.raises(DomainError, match="queued, not finished"):
        services.comparison_create(baseline_run=baseline, candidate_run=candidate)


def test_cancel_stops_remaining_units(versions, gating_set):
    run = start(versions[0], gating_set)
    units = services._missing_units(run)
    services.eval_unit_execute(run_id=run.pk, case_id=units[0][0], attempt=units[0][1])
    services.eval_run_cancel(run=run)
    for case_id, attempt in units[1:]:
        assert services.eval_unit_execute(run_id=run.pk, case_id=case_id, attempt=attempt) is None
    run.refresh_from_db()
    assert run.status == EvalRun.Status.CANCELLED and run.results.count() == 1
    with pytest.raises(DomainError, match="already cancelled"):
        services.eval_run_cancel(run=run)
    with pytest.raises(DomainError, match="only queued or running"):
        services.eval_run_resume(run=run)


def test_unreachable_endpoint_fails_the_run_with_the_reason(versions, gating_set, settings):
    from managed_agents import gateway

    run = start(versions[0], gating_set)
    settings.ANTHROPIC_BASE_URL = ""
    settings.ANTHROPIC_API_KEY = ""
    gateway.client_reset()
    run = execute_all(run)
    assert run.status == EvalRun.Status.FAILED
    assert "every unit failed" in run.status_reason and "ANTHROPIC_API_KEY" in run.status_reason


def test_sweep_resumes_only_stalled_runs(versions, gating_set, django_capture_on_commit_callbacks):
    run = start(versions[0], gating_set)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert services.eval_runs_sweep(stall_seconds=3600) == {}
    assert callbacks == []
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert services.eval_runs_sweep(stall_seconds=0) == {run.pk: 20}
    assert len(callbacks) == 1
    run.refresh_from_db()
    assert run.resume_count == 1 and run.resumed_at is not None


def test_repeats_are_bounded(versions, gating_set):
    with pytest.raises(DomainError, match="between 1 and 20"):
        start(versions[0], gating_set, repeats=0)


def test_runs_and_comparisons_appear_on_the_agent_timeline(agent, versions, gating_set, requester):
    from promptctl import selectors as promptctl_selectors

    v1, v2 = versions
    baseline = execute_all(services.eval_run_start(agent_version=v1, testset_version=gating_set, actor=requester))
    candidate = execute_all(services.eval_run_start(agent_version=v2, testset_version=gating_set))
    comparison = services.comparison_create(baseline_run=baseline, candidate_run=candidate, actor=requester)
    entries = [e for e in promptctl_selectors.agent_timeline(agent=agent) if e.kind in ("eval run", "comparison")]
    summaries = [e.summary for e in entries]
    assert f"started eval run #{baseline.pk}: version {v1.number} on support-tickets v1" in summaries
    assert any(s.startswith(f"eval run #{baseline.pk} finished: ") for s in summaries)
    assert any(f"(comparison #{comparison.pk}): regressed: billing" in s for s in summaries)
    assert entries[0].actor == "rita" and entries[0].url.endswith(f"/evalrun/{baseline.pk}/change/")
