"""Route requests: making an agent the triage API's default, filed like any change and approved by someone else.

Which agent serves ``POST /api/v1/triage`` decides which version answers
production callers, so it moves only by an approved change request. Change
control cannot import triage (the layers point down), so triage registers the
applier for the ``route`` kind in ``promptctl.registry``; filing asks it
whether the switch would change anything, and ``change_request_apply`` asks it
to carry out the approved request. A route request carries no eval evidence:
the agent keeps the production version its own gate let through, which is the
request's target (and what reviewers see).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from promptctl.audit import audit_record
from promptctl.errors import DomainError, Fix
from promptctl.models import PRODUCTION, Agent, ChangeRequest, Pin
from promptctl.records import saved_by
from promptctl.registry import change_applier
from promptctl.services.common import _change_snapshot
from promptctl.services.notifications import change_notify


def route_request_create(
    *, agent: Agent, target_number: int | None, reason: str, actor: Any, channel: str
) -> ChangeRequest:
    """File a request to make ``agent`` the default agent; it moves no pin, so it carries no eval evidence."""
    applier = change_applier(ChangeRequest.Kind.ROUTE)
    if applier is None:
        raise DomainError("No app carries out route requests here (is the triage app installed?).")
    if channel != PRODUCTION:
        raise DomainError(
            "The default agent serves the production pin: file a route request on the production channel."
        )
    reason = (reason or "").strip()
    if not reason:
        raise DomainError("Give a reason: reviewers and auditors read it to know why the default agent should change.")
    with transaction.atomic():
        agent = Agent.objects.select_for_update().get(pk=agent.pk)
        pin = Pin.objects.select_related("version").filter(agent=agent, channel=PRODUCTION).first()
        if pin is None:
            raise DomainError(
                f"{agent.name} has no production pin, so it cannot serve as the default agent: promote a version first."
            )
        if target_number is not None and target_number != pin.version.number:
            raise DomainError(
                f"A route request makes {agent.name} the default at its production version v{pin.version.number};",
                code="route_target_not_production",
                fields=("target_version",),
                fix=Fix(
                    cli=f"leave out --to, or give --to {pin.version.number}.",
                    web=f"leave the target version empty, or give {pin.version.number}.",
                ),
            )
        applier.filing_check(agent=agent, channel=PRODUCTION)
        change = saved_by(
            ChangeRequest(
                agent=agent,
                channel=PRODUCTION,
                kind=ChangeRequest.Kind.ROUTE,
                base_version=pin.version,
                base_pin_revision=pin.revision,
                target_version=pin.version,
                target_config_sha256=pin.version.config_hash,
                approvals_required=agent.required_approvals,
                reason=reason,
                requested_by=actor,
            ),
            actor,
        )
        audit_record(
            actor=actor, verb="change.request", target=change, agent_id=agent.pk, after=_change_snapshot(change)
        )
        change_notify(change=change, event="change.filed", actor=actor)
    return change
