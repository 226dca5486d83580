"""Shadow mode: a logged ticket sent to a candidate version after the response, to see where it disagrees."""

from __future__ import annotations

import time

from django.db import IntegrityError, transaction

from managed_agents.tickets import ticket_run
from managed_agents.verdicts import allowed_labels
from triage.models import Outcome, ShadowResult, TriageRequest
from triage.services.common import _log_fields

# --- shadow mode ---------------------------------------------------------------------------


def shadow_run(*, request_id: int) -> ShadowResult | None:
    """Send a logged ticket to its shadow candidate and record where it disagrees with production.

    Never affects the caller (it runs after the response, from a task). One
    result per (request, version): a redelivered task finds it and returns it.
    """
    request = TriageRequest.objects.select_related("agent", "shadow_version", "version").filter(pk=request_id).first()
    candidate = request.shadow_version if request is not None else None
    if request is None or candidate is None:
        return None
    existing = ShadowResult.objects.filter(request=request, version=candidate).first()
    if existing is not None:
        return existing
    agent = request.agent
    started = time.monotonic()
    run = ticket_run(
        agent_id=agent.remote_id,
        version=candidate.number,
        environment_id=agent.environment_id,
        text=request.ticket_text,
        allowed=allowed_labels(candidate.system_prompt),
        metadata={"promptctl_shadow": str(request.pk), "candidate": str(candidate.number)},
    )
    latency_ms = round((time.monotonic() - started) * 1000)
    agrees = None
    if run.ok and request.outcome == Outcome.OK:
        agrees = run.team == request.team and run.priority == request.priority
    fields = {**_log_fields(run), "agrees": agrees}
    del fields["format_warning"]  # a shadow result keeps no format warning
    try:
        with transaction.atomic():
            return ShadowResult.objects.create(request=request, version=candidate, latency_ms=latency_ms, **fields)
    except IntegrityError:
        return ShadowResult.objects.get(request=request, version=candidate)
