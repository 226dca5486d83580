"""Reads of the evals domain: lookups by name, progress, and the data the CLI and admin show."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Max, Q
from django.utils import timezone

from evals.models import Comparison, EvalResult, EvalRun, TestSet, TestSetVersion, WorkerHeartbeat
from evals.scoring import CaseLabel, Outcome, run_score
from promptctl.errors import DomainError, Fix
from promptctl.models import Agent, AgentVersion
from promptctl.selectors import NotFound


def testset_get(*, name: str) -> TestSet:
    testset = TestSet.objects.select_related("agent").filter(name=name).first()
    if testset is None:
        known = ", ".join(TestSet.objects.values_list("name", flat=True)[:20]) or "none yet"
        raise NotFound(
            f"There is no test set {name!r} (known: {known}).",
            code="testset_not_found",
            fields=("testset",),
            fix=Fix(
                cli=f"Import one with `promptctl testset import FILE --name {name}`.",
                web="Upload one (Test sets, Upload).",
                link=("admin:evals_testset_add", ()),
            ),
        )
    return testset


def testset_gating_for(*, agent: Agent) -> TestSet | None:
    return TestSet.objects.filter(agent=agent, gating=True).first()


def testset_version_latest(*, testset: TestSet) -> TestSetVersion:
    version = testset.versions.order_by("-number").first()
    if version is None:
        raise DomainError(f"Test set {testset.name!r} has no contents yet: import a file into it.")
    return version


def testset_version_for_run(*, agent: Agent, name: str | None) -> TestSetVersion:
    """The latest contents of test set ``name``, or of the agent's gating set when no name is given."""
    if name:
        testset = testset_get(name=name)
    else:
        found = testset_gating_for(agent=agent)
        if found is None:
            raise DomainError(
                f"{agent.name} has no gating test set.",
                code="gating_set_missing",
                fields=("testset",),
                fix=Fix(cli="Pass --testset NAME.", web="Pick a test set."),
            )
        testset = found
    return testset_version_latest(testset=testset)


def eval_run_get(*, run_id: int) -> EvalRun:
    run = (
        EvalRun.objects.select_related("agent_version__agent", "testset_version__testset", "started_by")
        .filter(pk=run_id)
        .first()
    )
    if run is None:
        raise NotFound(
            f"There is no eval run #{run_id}.",
            code="eval_run_not_found",
            fix=Fix(
                cli="`promptctl eval run ...` starts one.",
                web="Eval runs, Start run starts one.",
                link=("admin:evals_evalrun_add", ()),
            ),
        )
    return run


def comparison_get(*, comparison_id: int) -> Comparison:
    comparison = (
        Comparison.objects.select_related(
            "agent",
            "baseline_run__agent_version",
            "candidate_run__agent_version",
            "baseline_run__testset_version__testset",
        )
        .filter(pk=comparison_id)
        .first()
    )
    if comparison is None:
        raise NotFound(
            f"There is no comparison #{comparison_id}.",
            code="comparison_not_found",
            fix=Fix(
                cli="`promptctl eval compare ...` makes one.",
                web="Press Compare on an eval run's page to make one.",
                link=("admin:evals_evalrun_changelist", ()),
            ),
        )
    return comparison


def eval_run_latest_finished(*, agent_version: AgentVersion, testset: TestSet) -> EvalRun | None:
    """The newest finished run of ``agent_version`` on any version of ``testset``."""
    return (
        EvalRun.objects.select_related("agent_version__agent", "testset_version__testset")
        .filter(agent_version=agent_version, testset_version__testset=testset, status=EvalRun.Status.FINISHED)
        .order_by("-finished_at", "-pk")
        .first()
    )


def eval_run_progress(*, run: EvalRun) -> dict[str, Any]:
    """Counts of recorded results by kind, for progress bars (one query)."""
    counts = run.results.aggregate(
        done=Count("id"),
        ok=Count("id", filter=Q(kind=EvalResult.Kind.OK)),
        invalid=Count("id", filter=Q(kind=EvalResult.Kind.INVALID)),
        errors=Count("id", filter=Q(kind=EvalResult.Kind.ERROR)),
        last=Max("created_at"),
    )
    total = run.unit_total
    return {
        "run": run.pk,
        "status": run.status,
        "done": counts["done"],
        "total": total,
        "ok": counts["ok"],
        "invalid": counts["invalid"],
        "errors": counts["errors"],
        "percent": round(100.0 * counts["done"] / total, 1) if total else 0.0,
        "last_result_at": counts["last"].isoformat() if counts["last"] else None,
    }


def eval_run_score(*, run: EvalRun) -> dict:
    """Scores computed from the results stored so far (final once the run has finished)."""
    cases = [
        CaseLabel(id=external_id, team=team, priority=priority)
        for external_id, team, priority in run.testset_version.cases.values_list("external_id", "team", "priority")
    ]
    outcomes = [
        Outcome(
            ticket=row["case__external_id"],
            attempt=row["attempt"],
            kind=row["kind"],
            team=row["predicted_team"] or None,
            priority=row["predicted_priority"] or None,
            latency_seconds=row["latency_seconds"],
        )
        for row in run.results.values(
            "case__external_id", "attempt", "kind", "predicted_team", "predicted_priority", "latency_seconds"
        )
    ]
    allowed = {key: tuple(value) for key, value in (run.allowed_labels or {}).items()}
    return run_score(cases=cases, outcomes=outcomes, allowed=allowed)


def _seconds(start, end) -> float | None:
    return (end - start).total_seconds() if start and end else None


def eval_run_summary(*, run: EvalRun, with_scores: bool = True) -> dict[str, Any]:
    """A run as plain data: what, on what, state, timings, progress and (when finished) scores."""
    version = run.testset_version
    data: dict[str, Any] = {
        "id": run.pk,
        "agent": run.agent_version.agent.name,
        "version": run.agent_version.number,
        "testset": version.testset.name,
        "testset_version": version.number,
        "content_hash": version.content_hash,
        "repeats": run.repeats,
        "status": run.status,
        "status_reason": run.status_reason,
        "started_by": run.started_by.username if run.started_by else None,
        "created_at": run.created_at.isoformat(),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "wall_seconds": _seconds(run.started_at, run.finished_at),
        "queue_seconds": _seconds(run.created_at, run.started_at),
        "resume_count": run.resume_count,
        "progress": eval_run_progress(run=run),
        "label_warnings": run.label_warnings,
    }
    if with_scores:
        scores = run.scores if run.scores is not None else eval_run_score(run=run)
        data["scores"] = {key: value for key, value in scores.items() if key != "tickets"}
        data["tickets"] = scores["tickets"]
    return data


def comparison_summary(*, comparison: Comparison) -> dict[str, Any]:
    """A comparison as plain data; the keys the CLI's ``--json`` promises come first."""
    result = comparison.result
    baseline = comparison.baseline_run
    candidate = comparison.candidate_run
    return {
        "id": comparison.pk,
        "evidence": f"comparison:{comparison.pk}",
        "agent": comparison.agent.name,
        "regressed": comparison.regressed,
        "regressed_teams": result["regressed_teams"],
        "teams": result["teams"],
        "overall": result["overall"],
        "flips": result["flips"],
        "mcnemar_p": comparison.mcnemar_p,
        "right_to_wrong": result["right_to_wrong"],
        "wrong_to_right": result["wrong_to_right"],
        "unpaired": result["unpaired"],
        "tolerance": comparison.tolerance,
        "baseline": {"run": baseline.pk, "version": baseline.agent_version.number},
        "candidate": {"run": candidate.pk, "version": candidate.agent_version.number},
        "testset": baseline.testset_version.testset.name,
        "testset_version": baseline.testset_version.number,
        "content_hash": comparison.content_hash,
        "label_warnings": comparison.label_warnings,
        "created_at": comparison.created_at.isoformat(),
    }


def testset_version_as_dict(*, version: TestSetVersion, created: bool) -> dict[str, Any]:
    """What ``testset import`` answers: the version stored (``created`` False when the same contents were there)."""
    return {
        "testset": version.testset.name,
        "version": version.number,
        "created": created,
        "content_hash": version.content_hash,
        "cases": version.case_count,
        "gating": version.testset.gating,
        "agent": version.testset.agent.name if version.testset.agent else None,
        "label_warnings": version.label_warnings,
    }


def testset_list_summary() -> list[dict[str, Any]]:
    """Every test set with its latest version, for listings."""
    rows = []
    for testset in TestSet.objects.select_related("agent").order_by("name"):
        latest = testset.versions.order_by("-number").first()
        rows.append(
            {
                "name": testset.name,
                "agent": testset.agent.name if testset.agent else None,
                "gating": testset.gating,
                "version": latest.number if latest else None,
                "cases": latest.case_count if latest else 0,
                "content_hash": latest.content_hash if latest else None,
                "warnings": len(latest.label_warnings) if latest else 0,
            }
        )
    return rows


# --- workers' liveness ----------------------------------------------------------------


def workers_alive(*, max_age: float | None = None) -> int:
    """How many workers wrote a heartbeat within ``max_age`` seconds (default: the stale window); pool children not."""
    seconds = settings.PROMPTCTL_WORKER_STALE_SECONDS if max_age is None else max_age
    fresh = WorkerHeartbeat.objects.filter(seen_at__gte=timezone.now() - timedelta(seconds=seconds))
    return fresh.filter(pool_parent_pid__isnull=True).count()


def workers_missing_message(*, what: str = "the run", status: str = "queued") -> str:
    """The one line every door shows when nothing consumes the queue, with the command that fixes it."""
    return (
        f"no Celery worker is consuming (none seen for {settings.PROMPTCTL_WORKER_STALE_SECONDS:g} s): "
        f"start one with `celery -A config worker` (or `make worker`); {what} stays {status} and resumes when one starts."
    )


def eval_run_shown(*, run: EvalRun, with_scores: bool = True) -> dict[str, Any]:
    """A run as ``eval show`` and ``GET /api/v1/runs/{id}`` answer: its summary and whether a worker is alive."""
    return {**eval_run_summary(run=run, with_scores=with_scores), **eval_run_liveness(run=run)}


def eval_run_liveness(*, run: EvalRun) -> dict[str, Any]:
    """For the run's API answer and page: live workers, the stale window, and a warning when the run waits on none."""
    alive = workers_alive()
    warning = workers_missing_message(status=run.status) if run.is_active and not alive else None
    return {
        "workers_alive": alive,
        "worker_stale_seconds": settings.PROMPTCTL_WORKER_STALE_SECONDS,
        "worker_warning": warning,
    }
