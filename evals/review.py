"""The evidence as the change-control admin lists and shows it: registered as ``promptctl``'s review evidence.

Change control may not import evals, yet its filing form offers an agent's
comparisons and runs to pick from, and its review page shows a request's
evidence the way the comparison page does (verdict, chart with Wilson
intervals, flipped tickets). Both come from here, through the registry, and the
panel reuses the comparison page's own include and chart, so the two pages
cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from django.template.loader import render_to_string

from evals import charts
from evals.models import Comparison, EvalRun

CHOICES_PER_KIND = 30


def _comparison_label(comparison: Comparison) -> str:
    baseline = comparison.baseline_run.agent_version.number
    candidate = comparison.candidate_run.agent_version.number
    when = comparison.created_at.strftime("%Y-%m-%d %H:%M")
    if comparison.regressed:
        verdict = f"REGRESSED: {', '.join(comparison.result.get('regressed_teams') or [])}"
    else:
        verdict = "no regression"
    return f"Comparison #{comparison.pk}: v{baseline} → v{candidate} — {verdict} ({when})"


def _run_label(run: EvalRun) -> str:
    version = run.agent_version.number
    testset = run.testset_version
    when = run.created_at.strftime("%Y-%m-%d %H:%M")
    if run.status == EvalRun.Status.FINISHED and run.scores:
        overall = run.scores.get("overall") or {}
        verdict = f"finished, {overall.get('correct', '?')}/{overall.get('total', '?')} correct"
    else:
        verdict = run.status
    return f"Run #{run.pk}: v{version} on {testset.testset.name} v{testset.number} — {verdict} ({when})"


def evidence_choices(*, agent: Any) -> list[tuple[str, str]]:
    """The agent's comparisons, then its runs, each newest first, labelled with their verdicts."""
    comparisons = (
        Comparison.objects.filter(agent=agent)
        .select_related("baseline_run__agent_version", "candidate_run__agent_version")
        .order_by("-created_at", "-pk")[:CHOICES_PER_KIND]
    )
    runs = (
        EvalRun.objects.filter(agent_version__agent=agent)
        .select_related("agent_version", "testset_version__testset")
        .order_by("-created_at", "-pk")[:CHOICES_PER_KIND]
    )
    return [(f"comparison:{c.pk}", _comparison_label(c)) for c in comparisons] + [
        (f"run:{r.pk}", _run_label(r)) for r in runs
    ]


def evidence_panel(*, change: Any) -> str:
    """The request's evidence as frozen when it was filed (not as the comparison reads today)."""
    snapshot = change.evidence or {}
    kind = snapshot.get("type")
    if kind == "comparison" and snapshot.get("teams"):
        context = {"summary": snapshot, "chart": charts.comparison_chart({"teams": snapshot["teams"]})}
        return render_to_string("admin/evals/review_evidence.html", context)
    if kind == "run":
        return render_to_string("admin/evals/review_evidence.html", {"run": snapshot})
    return ""


class EvalsReviewEvidence:
    """``promptctl.registry.ReviewEvidence``: the evals app's evidence list and panel."""

    choices = staticmethod(evidence_choices)
    panel = staticmethod(evidence_panel)
