"""Eval runs and comparisons on an agent's timeline (registered in ``EvalsConfig.ready()``)."""

from __future__ import annotations

from collections.abc import Iterable

from django.urls import reverse

from evals.models import Comparison, EvalRun
from promptctl.selectors import TimelineEntry


def _who(user) -> str:
    return user.username if user is not None else "(cli)"


def eval_timeline(agent) -> Iterable[TimelineEntry]:
    runs = EvalRun.objects.filter(agent_version__agent=agent).select_related(
        "agent_version", "testset_version__testset", "started_by"
    )
    for run in runs:
        url = reverse("admin:evals_evalrun_change", args=[run.pk])
        where = f"{run.testset_version.testset.name} v{run.testset_version.number}"
        yield TimelineEntry(
            run.created_at,
            "eval run",
            _who(run.started_by),
            f"started eval run #{run.pk}: version {run.agent_version.number} on {where}",
            url,
        )
        if run.finished_at:
            if run.status == EvalRun.Status.FINISHED and run.scores:
                overall = run.scores["overall"]
                outcome = f"finished: {overall['correct']}/{overall['total']} tickets routed right"
            else:
                outcome = f"{run.status}{': ' + run.status_reason if run.status_reason else ''}"
            yield TimelineEntry(run.finished_at, "eval run", "(workers)", f"eval run #{run.pk} {outcome}", url)
    comparisons = Comparison.objects.filter(agent=agent).select_related(
        "baseline_run__agent_version", "candidate_run__agent_version", "created_by"
    )
    for comparison in comparisons:
        verdict = (
            f"regressed: {', '.join(comparison.result['regressed_teams'])}" if comparison.regressed else "no regression"
        )
        yield TimelineEntry(
            comparison.created_at,
            "comparison",
            _who(comparison.created_by),
            f"compared version {comparison.baseline_run.agent_version.number} → "
            f"{comparison.candidate_run.agent_version.number} (comparison #{comparison.pk}): {verdict}, "
            f"{len(comparison.result['flips'])} flipped ticket(s)",
            reverse("admin:evals_comparison_change", args=[comparison.pk]),
        )
