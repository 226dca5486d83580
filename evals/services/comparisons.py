"""Comparisons: two finished runs of one agent on the same test set contents, frozen with their statistics."""

from __future__ import annotations

from typing import Any

from evals import selectors
from evals.models import Comparison, EvalRun, TestSet
from evals.scoring import runs_compare
from promptctl.errors import DomainError, Fix
from promptctl.models import Agent

# --- comparisons ------------------------------------------------------------------


def _merged_warnings(*runs: EvalRun) -> list[dict]:
    seen: set[tuple] = set()
    merged = []
    for run in runs:
        for warning in run.label_warnings or []:
            key = (warning.get("ticket"), warning.get("field"), warning.get("label"))
            if key not in seen:
                seen.add(key)
                merged.append(warning)
    return merged


def _run_name(run: EvalRun) -> str:
    version = run.testset_version
    return (
        f"run #{run.pk} (v{run.agent_version.number} on {version.testset.name} v{version.number}, "
        f"contents {version.content_hash[:12]})"
    )


def comparison_create(*, baseline_run: EvalRun, candidate_run: EvalRun, actor: Any = None) -> Comparison:
    """Freeze a comparison of two finished runs of one agent on the same test set contents.

    Refused for different contents (tickets or labels differ, so counts would
    not mean the same thing). An identical comparison made earlier (same runs,
    same tolerance) is returned instead of a copy.
    """
    if baseline_run.pk == candidate_run.pk:
        raise DomainError(f"Baseline and candidate are the same run #{baseline_run.pk}: compare two different runs.")
    for role, run in (("baseline", baseline_run), ("candidate", candidate_run)):
        if run.status != EvalRun.Status.FINISHED:
            raise DomainError(
                f"The {role} {_run_name(run)} is {run.status}, not finished: only finished runs can be compared.",
                code="run_unfinished",
                fields=(role,),
                fix=Fix(
                    cli=f"Follow it with `promptctl eval show {run.pk}`.",
                    web="Follow it on its run page.",
                    link=("admin:evals_evalrun_change", (run.pk,)),
                ),
            )
    agent = baseline_run.agent_version.agent
    if candidate_run.agent_version.agent_id != agent.pk:
        raise DomainError(
            f"The runs belong to different agents ({agent.name} and {candidate_run.agent_version.agent.name}): "
            "compare versions of one agent."
        )
    baseline_hash = baseline_run.testset_version.content_hash
    candidate_hash = candidate_run.testset_version.content_hash
    if baseline_hash != candidate_hash:
        raise DomainError(
            f"Refused: the runs used different test set contents, so their counts are not comparable. "
            f"Baseline {_run_name(baseline_run)}; candidate {_run_name(candidate_run)}.",
            code="runs_not_comparable",
            fields=("baseline", "candidate"),
            fix=Fix(
                cli=f"Run both versions on the same test set version, e.g. `promptctl eval run --agent {agent.name} "
                f"--version {baseline_run.agent_version.number} --testset {candidate_run.testset_version.testset.name}`.",
                web=f"Run both versions on the same test set version, e.g. start a run of "
                f"v{baseline_run.agent_version.number} on {candidate_run.testset_version.testset.name} "
                "(Eval runs, Start run), then compare again.",
                link=("admin:evals_evalrun_add", ()),
            ),
        )
    tolerance = agent.regression_tolerance
    existing = Comparison.objects.filter(
        baseline_run=baseline_run, candidate_run=candidate_run, tolerance=tolerance
    ).first()
    if existing is not None:
        return existing
    # Both runs are finished (checked above), and a finished run has its scores.
    result = runs_compare(baseline=baseline_run.scores or {}, candidate=candidate_run.scores or {}, tolerance=tolerance)
    return Comparison.objects.create(
        agent=agent,
        baseline_run=baseline_run,
        candidate_run=candidate_run,
        content_hash=baseline_hash,
        tolerance=tolerance,
        regressed=result["regressed"],
        mcnemar_p=result["mcnemar_p"],
        result=result,
        label_warnings=_merged_warnings(baseline_run, candidate_run),
        created_by=actor if getattr(actor, "pk", None) else None,
    )


def comparison_for_versions(
    *, agent: Agent, baseline_number: int, candidate_number: int, testset: TestSet | None = None, actor: Any = None
) -> Comparison:
    """Compare the latest finished run of each version on ``testset`` (the agent's gating set by default)."""
    testset = testset or selectors.testset_gating_for(agent=agent)
    if testset is None:
        raise DomainError(
            f"Agent {agent.name} has no gating test set.",
            code="gating_set_missing",
            fields=("testset",),
            fix=Fix(
                cli="Pass --testset NAME, or import one with "
                f"`promptctl testset import FILE --name NAME --agent {agent.name} --gating`.",
                web=f"Pick a test set, or upload one for {agent.name} with Gating ticked (Test sets, Upload).",
                link=("admin:evals_testset_add", ()),
            ),
        )
    runs = {}
    for role, number in (("baseline", baseline_number), ("candidate", candidate_number)):
        version = agent.versions.filter(number=number).first()
        if version is None:
            raise DomainError(
                f"{agent.name} has no version {number}.",
                code="version_not_found",
                fields=(role,),
                fix=Fix(
                    cli=f"`promptctl version list --agent {agent.name}` lists them.",
                    web="Agent versions lists them.",
                    link=("admin:promptctl_agentversion_changelist", ()),
                ),
            )
        run = selectors.eval_run_latest_finished(agent_version=version, testset=testset)
        if run is None:
            raise DomainError(
                f"Version {number} of {agent.name} has no finished run on test set {testset.name!r} ({role}).",
                code="run_missing",
                fields=(role,),
                fix=Fix(
                    cli="Start one: "
                    f"`promptctl eval run --agent {agent.name} --version {number} --testset {testset.name} --wait`.",
                    web=f"Start one: Eval runs, Start run, with v{number} on {testset.name}.",
                    link=("admin:evals_evalrun_add", ()),
                ),
            )
        runs[role] = run
    return comparison_create(baseline_run=runs["baseline"], candidate_run=runs["candidate"], actor=actor)
