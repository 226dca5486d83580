"""Triage's check for ``audit verify``: the default agent is the one the last audited ``route`` change made it.

See ``promptctl.record_checks`` for why live state is compared with the trail.
"""

from __future__ import annotations

from collections.abc import Iterator

from promptctl.models import AuditEvent
from triage.models import RoutingPolicy


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
