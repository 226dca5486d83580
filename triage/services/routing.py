"""Routing policy: an agent's canary limits and shadow sampling, and which agent is the default.

Which agent answers ``POST /api/v1/triage`` decides which version serves those
production callers, so it moves only by an approved change request (kind
``route``), like a pin: ``routing_policy_save`` refuses to switch the default,
and ``DefaultAgentApplier`` (registered for ``route`` in ``TriageConfig.ready()``)
makes the switch when ``promptctl.services.change_request_apply`` applies an
approved request, in that transaction, with an audit event naming the request.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from promptctl.audit import audit_record
from promptctl.errors import DomainError, Fix
from promptctl.models import Agent
from promptctl.records import saved_by
from triage.models import RoutingPolicy
from triage.services.common import _require

# --- routing policy -----------------------------------------------------------------------------


def _route_fix(agent_name: str) -> Fix:
    return Fix(
        cli=f"File one: `promptctl change request --agent {agent_name} --kind route --reason TEXT` (admin: Change "
        "requests › File a change request, kind 'make default agent'); a reviewer approves it, then it is applied.",
        web=f"File one for {agent_name}: Change requests › File a change request, kind 'make default agent'; "
        "a reviewer approves it, then it is applied.",
        link=("admin:promptctl_changerequest_add", ()),
    )


def routing_policy_save(*, policy: RoutingPolicy, actor: Any) -> RoutingPolicy:
    """Save an agent's routing policy; the default agent is not changed here (a ``route`` change request does it).

    The canary limits decide when a canary is rolled back, so the change is
    permission-checked and audited (``routing.policy``: the fields before and after).
    """
    _require(actor, "change_routingpolicy", f"change the routing policy of {policy.agent.name}")
    shadow = policy.shadow_version
    if shadow is not None and shadow.agent_id != policy.agent_id:
        raise DomainError(
            f"The shadow version must be a version of {policy.agent.name}; v{shadow.number} belongs "
            f"to {shadow.agent.name}."
        )
    if policy.shadow_percent and not policy.shadow_version_id:
        raise DomainError("Choose the shadow version to sample live tickets to, or set the shadow percentage to 0.")
    with transaction.atomic():
        Agent.objects.select_for_update().get(pk=policy.agent_id)
        stored = RoutingPolicy.objects.filter(pk=policy.pk).values_list("is_default", flat=True).first()
        if bool(policy.is_default) != bool(stored):
            doing = "make" if policy.is_default else "stop"
            raise DomainError(
                f"Refused: the default agent changes which version serves POST /api/v1/triage, so it moves only by "
                f"an approved change request, not by saving a routing policy (tried to {doing} {policy.agent.name} "
                "the default).",
                code="default_agent_needs_change_request",
                fields=("is_default",),
                fix=_route_fix(policy.agent.name),
            )
        before = _policy_snapshot(RoutingPolicy.objects.filter(pk=policy.pk).first())
        policy.updated_at = timezone.now()
        saved_by(policy, actor)
        after = _policy_snapshot(policy)
        if after != before:
            audit_record(
                actor=actor, verb="routing.policy", target=policy, agent_id=policy.agent_id, before=before, after=after
            )
    return policy


def _policy_snapshot(policy: RoutingPolicy | None) -> dict[str, Any] | None:
    if policy is None:
        return None
    return {
        "canary_max_invalid_rate": policy.canary_max_invalid_rate,
        "canary_max_error_rate": policy.canary_max_error_rate,
        "canary_min_requests": policy.canary_min_requests,
        "shadow_version": policy.shadow_version.number if policy.shadow_version else None,
        "shadow_percent": policy.shadow_percent,
    }


class DefaultAgentApplier:
    """``promptctl.registry.ChangeApplier`` for ``route`` requests: make the request's agent the default."""

    def filing_check(self, *, agent: Agent, channel: str) -> None:
        if RoutingPolicy.objects.filter(agent=agent, is_default=True).exists():
            raise DomainError(f"{agent.name} is the default agent already: nothing would change.")

    def apply(self, *, change: Any, actor: Any) -> str:
        """Switch the default in the caller's transaction (the agent, pin and request are locked) and audit it."""
        agent = change.agent
        previous = list(
            RoutingPolicy.objects.select_for_update(of=("self",)).select_related("agent").filter(is_default=True)
        )
        before = {"default_agent": previous[0].agent.name if previous else None}
        for other in previous:
            if other.agent_id != agent.pk:
                other.is_default = False
                other.updated_at = timezone.now()
                saved_by(other, actor)
        policy = RoutingPolicy.objects.select_for_update().filter(agent=agent).first()
        if policy is None:
            policy = RoutingPolicy(agent=agent)
        policy.is_default = True
        policy.updated_at = timezone.now()
        saved_by(policy, actor)
        audit_record(
            actor=actor,
            verb="routing.default",
            target=policy,
            agent_id=agent.pk,
            before=before,
            after={"default_agent": agent.name, "change": change.pk, "version": change.target_version.number},
        )
        was = f" (was {before['default_agent']})" if before["default_agent"] else ""
        return f"{agent.name} is now the default agent of POST /api/v1/triage{was}"
