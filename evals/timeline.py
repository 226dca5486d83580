"""Eval runs and comparisons on an agent's timeline (registered in ``EvalsConfig.ready()``).

Each source is read through ``promptctl.selectors.timeline_window``: the newest ``limit`` rows at or
before the page's cursor, so a timeline page costs the same at any number of runs. A run's ``scores``
JSON is never read: the run's two overall figures are columns of their own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.urls import reverse

from evals.models import Comparison, EvalRun
from promptctl.selectors import TimelineEntry, timeline_window


def _who(user) -> str:
    return user.username if user is not None else "(cli)"


def eval_timeline(agent, *, before: dt.datetime | None = None, limit: int = 50) -> Iterable[TimelineEntry]:
    runs = (
        EvalRun.objects.filter(agent_version__agent=agent)
        .select_related("agent_version", "testset_version__testset", "started_by")
        .only(
            "created_at",
            "finished_at",
            "status",
            "status_reason",
            "overall_correct",
            "overall_total",
            "agent_version__number",
            "testset_version__number",
            "testset_version__testset__name",
            "started_by__username",
        )
    )
    for run in timeline_window(runs, "created_at", before=before, limit=limit):
        where = f"{run.testset_version.testset.name} v{run.testset_version.number}"
        yield TimelineEntry(
            run.created_at,
            "eval run",
            _who(run.started_by),
            f"started eval run #{run.pk}: version {run.agent_version.number} on {where}",
            reverse("admin:evals_evalrun_change", args=[run.pk]),
        )
    for run in timeline_window(runs, "finished_at", before=before, limit=limit):
        if run.status == EvalRun.Status.FINISHED and run.overall_total is not None:
            outcome = f"finished: {run.overall_correct}/{run.overall_total} tickets routed right"
        else:
            outcome = f"{run.status}{': ' + run.status_reason if run.status_reason else ''}"
        yield TimelineEntry(
            run.finished_at,
            "eval run",
            "(workers)",
            f"eval run #{run.pk} {outcome}",
            reverse("admin:evals_evalrun_change", args=[run.pk]),
        )
    comparisons = (
        Comparison.objects.filter(agent=agent)
        .select_related("baseline_run__agent_version", "candidate_run__agent_version", "created_by")
        .defer(
            "baseline_run__scores",
            "candidate_run__scores",
            "baseline_run__agent_version__system_prompt",
            "baseline_run__agent_version__config",
            "candidate_run__agent_version__system_prompt",
            "candidate_run__agent_version__config",
        )
    )
    for comparison in timeline_window(comparisons, "created_at", before=before, limit=limit):
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
