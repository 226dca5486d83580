"""Checks that the live state the gate depends on is what the audit trail says it is.

Why: the keyed chain proves that no event was changed or removed, but an
insider with the database (raw SQL, triggers switched off) can change the
state itself without writing an event: move a pin, lower an agent's approval
policy, make a sock-puppet a superuser. Each check replays the trail's last
word on one kind of state and compares it with the database; ``audit verify``
runs every check registered in ``promptctl.registry`` (the apps above add
theirs: the default agent, the gating test set) and names each difference.

A check is a function returning problem sentences; it only reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Q

from promptctl.models import Agent, AuditEvent, Pin
from promptctl.services.common import _agent_snapshot, _pin_snapshot

POLICY_KEYS = ("required_approvals", "approver_group", "regression_tolerance", "canary_evidence_above_percent")
ROLE_GROUPS = {"requester": ["requesters"], "reviewer": ["reviewers"], "admin": ["requesters", "reviewers"]}


def _last_after(**filters: Any) -> dict[str, Any] | None:
    row = AuditEvent.objects.filter(**filters).order_by("-sequence").values_list("after", flat=True).first()
    return row if isinstance(row, dict) else None


def pins_match_record() -> Iterator[str]:
    """Each pin is where its last ``pin.move`` event left it."""
    for pin in Pin.objects.select_related("agent", "version", "canary_version").order_by("pk"):
        recorded = _last_after(agent_id_ref=pin.agent_id, verb="pin.move", object_id=str(pin.pk))
        now = _pin_snapshot(pin)
        if recorded != now:
            yield (
                f"pin {pin.agent.name}/{pin.channel} is at {_pin_words(now)} but its last audited move left it at "
                f"{_pin_words(recorded)}: it was moved outside promptctl."
            )


def _pin_words(snapshot: dict[str, Any] | None) -> str:
    if not snapshot:
        return "nothing (no audited move)"
    canary = (
        f", canary v{snapshot['canary_version']} at {snapshot['canary_percent']}%"
        if snapshot.get("canary_version")
        else ""
    )
    return f"v{snapshot.get('version')}{canary} (revision {snapshot.get('revision')}, change #{snapshot.get('change')})"


def agent_policies_match_record() -> Iterator[str]:
    """Each agent's approval policy is what its last audited create or policy change set."""
    for agent in Agent.objects.order_by("pk"):
        recorded = _last_after(
            agent_id_ref=agent.pk, object_type="promptctl.agent", verb__in=("agent.create", "agent.policy")
        )
        if recorded is None:
            yield f"agent {agent.name} has no audited creation: it was inserted outside promptctl."
            continue
        now = _agent_snapshot(agent)
        changed = [key for key in POLICY_KEYS if key in recorded and recorded[key] != now[key]]
        if changed:
            words = ", ".join(f"{key} {recorded[key]!r} → {now[key]!r}" for key in changed)
            yield f"agent {agent.name}'s approval policy differs from its last audited change ({words})."


def approvers_match_record() -> Iterator[str]:
    """Everyone who can approve (superusers, members of the approver groups) got that power in the trail."""
    groups = set(Agent.objects.values_list("approver_group", flat=True)) | {"reviewers"}
    approvers = get_user_model().objects.filter(Q(is_superuser=True) | Q(groups__name__in=groups)).distinct()
    for user in approvers.prefetch_related("groups").order_by("pk"):
        recorded = _access_replayed(user.pk)
        held = {group.name for group in user.groups.all()} & groups
        granted = set(recorded.get("groups", ())) & groups
        if user.is_superuser and not recorded.get("is_superuser"):
            yield f"user {user.username} is a superuser, but no audit event made them one."
        if held - granted:
            yield f"user {user.username} is in {', '.join(sorted(held - granted))}, but no audit event put them there."


def _access_replayed(user_id: int) -> dict[str, Any]:
    """A user's access as the trail tells it: the service's ``user.create`` (a role), then each recorded change."""
    state: dict[str, Any] = {}
    events = AuditEvent.objects.filter(object_type="auth.user", object_id=str(user_id)).order_by("sequence")
    for verb, after in events.values_list("verb", "after"):
        after = after if isinstance(after, dict) else {}
        if verb == "user.create" and "role" in after:
            state = {"groups": ROLE_GROUPS.get(after["role"], []), "is_superuser": after["role"] == "admin"}
        elif verb in ("user.create", "user.access"):
            state.update({key: value for key, value in after.items() if key in ("groups", "is_superuser")})
        elif verb == "user.delete":
            state = {}
    return state
