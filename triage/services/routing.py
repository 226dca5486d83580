"""Routing policy: an agent's canary limits and shadow sampling, and which agent is the default."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from promptctl.errors import DomainError
from promptctl.models import Agent
from promptctl.records import saved_by
from triage.models import RoutingPolicy

# --- routing policy -----------------------------------------------------------------------------


def routing_policy_save(*, policy: RoutingPolicy, actor: Any) -> RoutingPolicy:
    """Save an agent's routing policy; making it the default takes the default from any other agent."""
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
        if policy.is_default:
            for other in RoutingPolicy.objects.select_for_update().filter(is_default=True).exclude(pk=policy.pk):
                other.is_default = False
                saved_by(other, actor)
        policy.updated_at = timezone.now()
        saved_by(policy, actor)
    return policy
