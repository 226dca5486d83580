"""Triage's checks for ``audit verify``: the default agent is the one the last audited ``route`` change made it,
and each canary counter equals what the request log holds (the canary limits read the counter).

See ``promptctl.record_checks`` for why live state is compared with the trail.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count, Q

from promptctl.models import AuditEvent
from triage.models import CanaryCounter, Outcome, RoutingPolicy, TriageRequest
from triage.selectors import ERROR_OUTCOMES


def default_agent_matches_record() -> Iterator[str]:
    recorded = (
        AuditEvent.objects.filter(verb="routing.default").order_by("-sequence").values_list("after", flat=True).first()
    )
    recorded_name = recorded.get("default_agent") if isinstance(recorded, dict) else None
    defaults = sorted(RoutingPolicy.objects.filter(is_default=True).values_list("agent__name", flat=True))
    if defaults != ([recorded_name] if recorded_name else []):
        now = ", ".join(defaults) or "no agent"
        was = recorded_name or "no agent (no route change was ever applied)"
        yield (
            f"the default agent of POST /api/v1/triage is {now}, but the last audited route change made it {was}: "
            "it was switched outside promptctl."
        )


def canary_counters_match_the_log() -> Iterator[str]:
    """A counter edited in SQL would hide a failing canary from its limits; the log it sums is append-only."""
    logged = {
        (row["agent_id"], row["pin_revision"]): (row["requests"], row["invalid"], row["errors"])
        for row in TriageRequest.objects.filter(canary=True)
        .order_by()
        .values("agent_id", "pin_revision")
        .annotate(
            requests=Count("pk"),
            invalid=Count("pk", filter=Q(outcome=Outcome.INVALID)),
            errors=Count("pk", filter=Q(outcome__in=ERROR_OUTCOMES)),
        )
    }
    counted = {
        (row["agent_id"], row["pin_revision"]): (row["requests"], row["invalid"], row["errors"])
        for row in CanaryCounter.objects.values("agent_id", "pin_revision", "requests", "invalid", "errors")
    }
    for key in sorted(set(logged) | set(counted)):
        if logged.get(key, (0, 0, 0)) != counted.get(key, (0, 0, 0)):
            agent_id, revision = key
            yield (
                f"the canary counter of agent #{agent_id} pin revision {revision} says (requests, invalid, errors) = "
                f"{counted.get(key, (0, 0, 0))}, but the request log holds {logged.get(key, (0, 0, 0))}: "
                "it was changed outside promptctl, so the canary limits read wrong numbers."
            )
