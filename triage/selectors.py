"""Reads of the triage API's records: canary and shadow numbers, jobs, keys, the timeline.

Selectors never write. Each aggregate is one query however many rows there
are (the canary window is served by the ``triagerequest_canary_window`` index; the
per-call canary check reads one ``CanaryCounter`` row).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Max, Q

from evals import selectors as evals_selectors
from promptctl.errors import DomainError, Fix
from promptctl.models import Agent, AgentVersion
from promptctl.selectors import TimelineEntry, timeline_window
from triage import pins
from triage.models import (
    ERROR_OUTCOMES,
    ApiKey,
    CanaryCheck,
    CanaryComparison,
    CanaryCounter,
    CanaryPolicy,
    Outcome,
    RoutingPolicy,
    ShadowResult,
    TriageJob,
    TriageRequest,
)


class JobNotFound(DomainError):
    """No job with that id belongs to the caller's key."""


@dataclass(frozen=True)
class CanaryStats:
    requests: int
    invalid: int
    errors: int

    @property
    def invalid_rate(self) -> float:
        return self.invalid / self.requests if self.requests else 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def canary_stats(*, agent_id: int, pin_revision: int) -> CanaryStats:
    """How the canary of one pin state has done so far: requests it served, invalid replies, failed sessions.

    One read of the pin revision's ``CanaryCounter`` row (kept with every canary log insert), so the check that
    runs on every canary call costs the same at 10 rows or 10 million; ``canary_stats_counted`` is the same
    figure counted over the log.
    """
    counts = (
        CanaryCounter.objects.filter(agent_id=agent_id, pin_revision=pin_revision)
        .values("requests", "invalid", "errors")
        .first()
    )
    if counts is None:
        return CanaryStats(requests=0, invalid=0, errors=0)
    return CanaryStats(requests=counts["requests"], invalid=counts["invalid"], errors=counts["errors"])


def canary_stats_counted(*, agent_id: int, pin_revision: int) -> CanaryStats:
    """``canary_stats`` counted over every logged canary request of the pin revision (audits and tests; scans)."""
    counts = TriageRequest.objects.filter(agent_id=agent_id, pin_revision=pin_revision, canary=True).aggregate(
        requests=Count("pk"),
        invalid=Count("pk", filter=Q(outcome=Outcome.INVALID)),
        errors=Count("pk", filter=Q(outcome__in=ERROR_OUTCOMES)),
    )
    return CanaryStats(requests=counts["requests"], invalid=counts["invalid"], errors=counts["errors"])


# --- canary limits ---------------------------------------------------------------------------


_POLICY_DEFAULTS = {
    name: RoutingPolicy._meta.get_field(name).default  # type: ignore[union-attr]  # concrete fields, not relations
    for name in ("canary_max_invalid_rate", "canary_max_error_rate", "canary_min_requests")
}


def _canary_limits(agent_id: int) -> dict[str, Any]:
    values = RoutingPolicy.objects.filter(agent_id=agent_id).values(*_POLICY_DEFAULTS).first()
    return values or dict(_POLICY_DEFAULTS)


def canary_limits_crossed(stats: CanaryStats, limits: dict[str, Any]) -> list[str]:
    """The routing policy's limits a canary's figures cross (none before ``canary_min_requests`` calls).

    The one place the rule lives: the per-call check and the check that ends the canary both ask it.
    """
    if stats.requests < limits["canary_min_requests"]:
        return []
    crossed = []
    if stats.invalid_rate > limits["canary_max_invalid_rate"]:
        crossed.append("invalid output")
    if stats.error_rate > limits["canary_max_error_rate"]:
        crossed.append("failed sessions")
    return crossed


def canary_over_limits(*, route: pins.Route) -> bool:
    """Whether the canary that served ``route`` newly crossed its agent's limits (small indexed reads).

    False once a check has ended this canary, so later canary calls do not queue the task again.
    """
    if CanaryCheck.objects.filter(canary_change_id=route.pin_change_id).exists():
        return False
    stats = canary_stats(agent_id=route.agent_id, pin_revision=route.pin_revision)
    return bool(canary_limits_crossed(stats, _canary_limits(route.agent_id)))


# --- the canary watch: disagreement with production -------------------------------------------


_WATCH_DEFAULTS = {
    name: CanaryPolicy._meta.get_field(name).default  # type: ignore[union-attr]  # concrete fields
    for name in ("compare_percent", "disagreement_limit", "min_compared", "auto_end")
}


def canary_policy_values(*, agent_id: int) -> dict[str, Any]:
    """The agent's canary watch settings (the defaults when it has no ``CanaryPolicy`` row)."""
    values = CanaryPolicy.objects.filter(agent_id=agent_id).values(*_WATCH_DEFAULTS).first()
    return values or dict(_WATCH_DEFAULTS)


def canary_policy_for(*, agent: Agent) -> CanaryPolicy:
    """The agent's canary policy, or an unsaved one with the defaults."""
    return CanaryPolicy.objects.filter(agent=agent).first() or CanaryPolicy(agent=agent)


@dataclass(frozen=True)
class CanaryWatch:
    """How often a canary's verdicts differed from production's on the same tickets, overall and per team."""

    compared: int
    disagreements: int
    labels: dict[str, dict[str, Any]]
    limit: float
    min_compared: int

    @property
    def rate(self) -> float:
        return self.disagreements / self.compared if self.compared else 0.0

    def tripped(self) -> list[str]:
        """What crossed the limit: ``overall`` and/or ``team <name>``, each only after ``min_compared`` calls."""
        crossed = []
        if self.compared >= self.min_compared and self.rate > self.limit:
            crossed.append("overall")
        for team, figures in sorted(self.labels.items()):
            if figures["compared"] >= self.min_compared and figures["rate"] > self.limit:
                crossed.append(f"team {team}")
        return crossed


def canary_watch(*, agent_id: int, pin_revision: int) -> CanaryWatch:
    """The canary of one pin state against production so far: one grouped query over its comparisons."""
    policy = canary_policy_values(agent_id=agent_id)
    rows = (
        CanaryComparison.objects.filter(agent_id=agent_id, pin_revision=pin_revision, agrees__isnull=False)
        .values("team")
        .annotate(compared=Count("pk"), disagreements=Count("pk", filter=Q(agrees=False)))
        .order_by("team")
    )
    labels = {
        row["team"]: {
            "compared": row["compared"],
            "disagreements": row["disagreements"],
            "rate": round(row["disagreements"] / row["compared"], 4),
        }
        for row in rows
    }
    return CanaryWatch(
        compared=sum(figures["compared"] for figures in labels.values()),
        disagreements=sum(figures["disagreements"] for figures in labels.values()),
        labels=labels,
        limit=policy["disagreement_limit"],
        min_compared=policy["min_compared"],
    )


def canary_disagreement_examples(*, agent_id: int, pin_revision: int, count: int = 5) -> list[int]:
    """Ids of the first logged canary calls whose verdict production did not share."""
    return list(
        CanaryComparison.objects.filter(agent_id=agent_id, pin_revision=pin_revision, agrees=False)
        .order_by("request_id")
        .values_list("request_id", flat=True)[:count]
    )


def canary_disagreement_over(*, agent_id: int, channel: str, pin_revision: int) -> bool:
    """Whether the canary of this pin state newly crossed its disagreement limit (no check has ended it yet)."""
    if CanaryCheck.objects.filter(agent_id=agent_id, channel=channel, pin_revision=pin_revision).exists():
        return False
    return bool(canary_watch(agent_id=agent_id, pin_revision=pin_revision).tripped())


@dataclass(frozen=True)
class ShadowSummary:
    """A candidate version's shadow record: how often it disagreed with production, and how often it failed."""

    version_id: int
    total: int
    compared: int
    disagreements: int
    invalid: int
    errors: int

    @property
    def disagreement_rate(self) -> float | None:
        return self.disagreements / self.compared if self.compared else None

    @property
    def invalid_rate(self) -> float | None:
        return self.invalid / self.total if self.total else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "version_id": self.version_id,
            "shadow_runs": self.total,
            "compared": self.compared,
            "disagreements": self.disagreements,
            "disagreement_rate": self.disagreement_rate,
            "invalid": self.invalid,
            "invalid_rate": self.invalid_rate,
            "errors": self.errors,
        }

    def sentence(self) -> str:
        if not self.total:
            return "no shadow runs yet"
        disagreement = f"{self.disagreement_rate:.1%}" if self.disagreement_rate is not None else "n/a"
        return (
            f"{self.total} shadow runs on live tickets: disagreed with production on {self.disagreements} of "
            f"{self.compared} compared ({disagreement}); {self.invalid} invalid outputs ({self.invalid_rate:.1%}); "
            f"{self.errors} failed sessions"
        )


def shadow_summaries(*, version_ids: Iterable[int]) -> dict[int, ShadowSummary]:
    """Shadow summaries of several versions in one grouped query (versions without runs are absent)."""
    rows = (
        ShadowResult.objects.filter(version_id__in=list(version_ids))
        .values("version_id")
        .annotate(
            total=Count("pk"),
            compared=Count("pk", filter=Q(agrees__isnull=False)),
            disagreements=Count("pk", filter=Q(agrees=False)),
            invalid=Count("pk", filter=Q(outcome=Outcome.INVALID)),
            errors=Count("pk", filter=Q(outcome__in=ERROR_OUTCOMES)),
        )
    )
    return {row["version_id"]: ShadowSummary(**row) for row in rows}


def shadow_summary(*, version_id: int) -> ShadowSummary:
    """The shadow record of one version (all zeros when it never ran in shadow)."""
    return shadow_summaries(version_ids=[version_id]).get(
        version_id, ShadowSummary(version_id=version_id, total=0, compared=0, disagreements=0, invalid=0, errors=0)
    )


def shadow_disagreements(*, version_id: int) -> Any:
    """The live tickets where the candidate's verdict differed from production's, newest first."""
    return (
        ShadowResult.objects.filter(version_id=version_id, agrees=False)
        .select_related("request", "request__version", "version")
        .order_by("-created_at")
    )


def routing_policy_for(*, agent: Agent) -> RoutingPolicy:
    """The agent's routing policy, or an unsaved one with the defaults."""
    return RoutingPolicy.objects.filter(agent=agent).first() or RoutingPolicy(agent=agent)


def shadow_evidence(*, version: AgentVersion) -> dict[str, Any]:
    """A candidate's shadow numbers as a snapshot, for promotion evidence and the admin."""
    return shadow_summary(version_id=version.pk).as_dict()


def triage_job_get(*, api_key_id: int, job_id: str | uuid.UUID) -> TriageJob:
    """The job with that id if the caller's key created it; other keys' jobs do not exist for them."""
    try:
        key = job_id if isinstance(job_id, uuid.UUID) else uuid.UUID(str(job_id))
    except ValueError:
        key = None
    job = None
    if key is not None:
        job = (
            TriageJob.objects.select_related("agent", "request", "request__version", "request__agent")
            .filter(pk=key, api_key_id=api_key_id)
            .first()
        )
    if job is None:
        raise JobNotFound(
            f"There is no job {job_id} for this API key. Job ids come from POST /api/v1/triage/jobs; "
            "a job is visible only to the key that created it."
        )
    return job


def triage_job_liveness(*, job: TriageJob) -> dict[str, Any]:
    """Live workers for a job's status answer, and a warning while the job waits on none."""
    alive = evals_selectors.workers_alive()
    waiting = job.status in (TriageJob.Status.QUEUED, TriageJob.Status.RUNNING)
    warning = (
        evals_selectors.workers_missing_message(what="the job", status=job.status) if waiting and not alive else None
    )
    return {"workers_alive": alive, "warning": warning}


def api_key_get(*, name: str) -> ApiKey:
    key = ApiKey.objects.filter(name=name).first()
    if key is None:
        raise DomainError(
            f"There is no API key named {name!r}.",
            code="api_key_not_found",
            fields=("name",),
            fix=Fix(cli="`promptctl apikey list` shows them.", web="API keys lists them."),
        )
    return key


def api_key_list() -> Any:
    return ApiKey.objects.select_related("usage", "created_by").prefetch_related("agents").order_by("name")


# --- promotion evidence (registered in TriageConfig.ready()) ----------------------------


def promotion_evidence_with_shadow(snapshot: dict, target_version) -> dict:
    """Add the candidate's shadow record (live tickets it ran on beside production), when it has one."""
    shadow = shadow_summary(version_id=target_version.pk)
    if not shadow.total:
        return snapshot
    snapshot["shadow"] = {**shadow.as_dict(), "sentence": shadow.sentence()}
    snapshot["summary"] = f"{snapshot.get('summary', '')} Shadow: {shadow.sentence()}.".strip()
    return snapshot


# --- the agent timeline (promptctl's extension point) ------------------------------


def timeline_canary_checks(
    agent: Agent, *, before: dt.datetime | None = None, limit: int = 50
) -> Iterable[TimelineEntry]:
    checks = CanaryCheck.objects.filter(agent=agent).select_related("canary_version")
    for check in timeline_window(checks, "created_at", before=before, limit=limit):
        yield TimelineEntry(
            check.created_at,
            "canary check",
            "promptctl",
            f"{check.summary()}; "
            + (
                f"ended the canary under the standing auto-end policy (change request #{check.end_change_id})"
                if check.auto_ended
                else f"filed change request #{check.end_change_id} to end the canary"
            ),
        )


def timeline_shadow(agent: Agent, *, before: dt.datetime | None = None, limit: int = 50) -> Iterable[TimelineEntry]:
    """One entry per shadowed version, at its latest shadow run: three queries whatever the number of versions."""
    latest_rows = (
        ShadowResult.objects.filter(version__agent=agent)
        .values("version_id")
        .annotate(latest=Max("created_at"))
        .order_by("-latest", "-version_id")
    )
    if before is not None:
        latest_rows = latest_rows.filter(latest__lte=before)
    latest = {row["version_id"]: row["latest"] for row in latest_rows[:limit]}
    if not latest:
        return
    summaries = shadow_summaries(version_ids=latest)
    numbers = dict(AgentVersion.objects.filter(pk__in=latest).values_list("pk", "number"))
    for version_id, at in latest.items():
        summary = summaries.get(version_id)
        if summary is None:  # a race with retention removed its results since the first query
            continue
        yield TimelineEntry(at, "shadow", "promptctl", f"version {numbers[version_id]}: {summary.sentence()}")
