"""Shadow runs: a logged ticket answered again by another version after the response, to see where they disagree.

- Shadow mode: a sampled live ticket is sent to a candidate version
  (``shadow_run``); production answered the caller.
- The canary watch: a sampled ticket the canary answered is sent to the
  production version (``canary_compare``), so a canary that answers validly
  but differently (the tutorial's v2 sends billing tickets to api-platform) is
  seen, not only one whose replies are invalid or fail.

Both run from tasks after the response (the caller never waits), with the
network call outside any transaction, and keep one result per unit of work
(a redelivered task finds it).
"""

from __future__ import annotations

import time

from django.db import IntegrityError, transaction

from managed_agents.tickets import ticket_run
from managed_agents.verdicts import allowed_labels
from promptctl.models import Pin
from triage import selectors
from triage.models import CanaryComparison, Outcome, ShadowResult, TriageRequest
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


# --- the canary watch: production answers a sample of the canary's tickets ----------------------


def canary_compare(*, request_id: int) -> CanaryComparison | None:
    """Run a ticket the canary answered on the production version, record both verdicts, check the limit.

    Only while the canary that served it still runs (the pin is at the call's
    revision): the production version compared is the one pinned beside it.
    A canary reply that was not a valid verdict is not compared (the invalid
    and error limits count it). When the comparisons cross the agent's
    disagreement limit, ``triage.canary_end`` is sent on commit.
    """
    from triage import tasks  # lazy: triage.tasks imports triage.services at module level

    request = TriageRequest.objects.select_related("agent").filter(pk=request_id, canary=True).first()
    if request is None or request.outcome != Outcome.OK:
        return None
    existing = CanaryComparison.objects.filter(request=request).first()
    if existing is not None:
        return existing
    pin = Pin.objects.select_related("version").filter(agent_id=request.agent_id, channel=request.channel).first()
    if pin is None or pin.revision != request.pin_revision or not pin.canary_version_id:
        return None
    production, agent = pin.version, request.agent
    started = time.monotonic()
    run = ticket_run(
        agent_id=agent.remote_id,
        version=production.number,
        environment_id=agent.environment_id,
        text=request.ticket_text,
        allowed=allowed_labels(production.system_prompt),
        metadata={"promptctl_canary_compare": str(request.pk), "production": str(production.number)},
    )
    latency_ms = round((time.monotonic() - started) * 1000)
    agrees = (run.team == request.team and run.priority == request.priority) if run.ok else None
    fields = {**_log_fields(run), "agrees": agrees}
    del fields["format_warning"]
    try:
        with transaction.atomic():
            comparison = CanaryComparison.objects.create(
                request=request,
                agent_id=request.agent_id,
                pin_revision=request.pin_revision,
                production_version=production,
                latency_ms=latency_ms,
                **fields,
            )
            if agrees is not None and selectors.canary_disagreement_over(
                agent_id=request.agent_id, channel=request.channel, pin_revision=request.pin_revision
            ):
                agent_id, revision = request.agent_id, request.pin_revision
                transaction.on_commit(lambda: tasks.canary_end.delay(agent_id, revision))
    except IntegrityError:
        return CanaryComparison.objects.get(request=request)
    return comparison
