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
ROLE_GROUPS = {
    "requester": ["requesters"],
    "reviewer": ["reviewers"],
    "admin": ["requesters", "reviewers"],
    "bot": ["requesters", "bots"],
}


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
            # The live policy is in the sentence, so an archive's state baseline (promptctl.audit.segments)
            # accepts this agent only with the policy it had when its creation was archived.
            now = _agent_snapshot(agent)
            policy = ", ".join(f"{key} {now.get(key)!r}" for key in POLICY_KEYS)
            yield f"agent {agent.name} has no audited creation: it was inserted outside promptctl (policy: {policy})."
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


def _access_replayed(user_id: int, *, before: int | None = None) -> dict[str, Any]:
    """A user's access as the trail tells it (up to event ``before``): the service's ``user.create``, then each change."""
    state: dict[str, Any] = {}
    events = AuditEvent.objects.filter(object_type="auth.user", object_id=str(user_id)).order_by("sequence")
    if before is not None:
        events = events.filter(sequence__lt=before)
    for verb, after in events.values_list("verb", "after"):
        after = after if isinstance(after, dict) else {}
        if verb == "user.create" and "role" in after:
            state = {"groups": ROLE_GROUPS.get(after["role"], []), "is_superuser": after["role"] == "admin"}
        elif verb in ("user.create", "user.access"):
            state.update({key: value for key, value in after.items() if key in ("groups", "is_superuser")})
        elif verb == "user.delete":
            state = {}
    return state


def change_requests_match_record() -> Iterator[str]:
    """Each change request is what its last audited transition left, and was filed through promptctl at all."""
    from promptctl.audit import json_normalize
    from promptctl.models import ChangeRequest
    from promptctl.services.common import _change_snapshot

    requests = ChangeRequest.objects.select_related("agent", "base_version", "target_version", "requested_by")
    for change in requests.order_by("pk"):
        events = AuditEvent.objects.filter(
            agent_id_ref=change.agent_id, object_type="promptctl.changerequest", object_id=str(change.pk)
        )
        if not events.filter(verb="change.request").exists():
            yield f"change request #{change.pk} ({change.kind} v{change.target_version.number}) has no audited filing: it was written outside promptctl."
            continue
        if change.status in ("approved", "applied") and not events.filter(verb="change.approved").exists():
            yield (
                f"change request #{change.pk} is {change.status}, but the trail never records it approved: its "
                "approval was written outside promptctl."
            )
        recorded = events.order_by("-sequence").values_list("after", flat=True).first()
        now = json_normalize(_change_snapshot(change))
        if recorded != now:
            changed = sorted(key for key in now if (recorded or {}).get(key) != now[key])
            yield (
                f"change request #{change.pk} differs from its last audited transition in {', '.join(changed)} "
                f"(now {change.status}): it was changed outside promptctl."
            )


def approvals_match_record() -> Iterator[str]:
    """Each decision has its event, by that reviewer, who could decide for that agent at that moment of the trail."""
    from promptctl.models import Approval

    decisions = Approval.objects.select_related("reviewer", "change__agent").order_by("pk")
    for approval in decisions:
        event = (
            AuditEvent.objects.filter(
                agent_id_ref=approval.change.agent_id,
                object_type="promptctl.approval",
                object_id=str(approval.pk),
                verb=f"approval.{approval.decision}",
            )
            .values("sequence", "after")
            .first()
        )
        who = approval.reviewer.username
        if event is None or (event["after"] or {}).get("reviewer") != who:
            yield (
                f"{approval.decision} by {who} on change request #{approval.change_id} has no audit event of its own: "
                "it was written outside promptctl."
            )
            continue
        group = _approver_group_then(approval.change.agent_id, event["sequence"])
        access = _access_replayed(approval.reviewer_id, before=event["sequence"])
        if "bots" in access.get("groups", ()):
            yield (
                f"{who} decided on change request #{approval.change_id} at event #{event['sequence']}, but the trail "
                f"says {who} was then a service account (in bots), which never approves: it left bots outside it."
            )
        elif not access.get("is_superuser") and group not in access.get("groups", ()):
            yield (
                f"{who} decided on change request #{approval.change_id} at event #{event['sequence']}, but the trail "
                f"says {who} was then neither in {group} nor a superuser: the power to approve was granted outside it."
            )


def _approver_group_then(agent_id: int, sequence: int) -> str:
    recorded = (
        AuditEvent.objects.filter(
            agent_id_ref=agent_id,
            object_type="promptctl.agent",
            verb__in=("agent.create", "agent.policy"),
            sequence__lt=sequence,
        )
        .order_by("-sequence")
        .values_list("after", flat=True)
        .first()
    )
    return (recorded or {}).get("approver_group") or "reviewers"


def credentials_match_record() -> Iterator[str]:
    """Everyone who can approve, or has, logs in with the credentials the trail last recorded for them."""
    from promptctl.models import Approval
    from promptctl.services.access import credential_fingerprint

    groups = set(Agent.objects.values_list("approver_group", flat=True)) | {"reviewers"}
    deciders = set(Approval.objects.values_list("reviewer_id", flat=True))
    users = (
        get_user_model()
        .objects.filter(Q(is_superuser=True) | Q(groups__name__in=groups) | Q(pk__in=deciders))
        .distinct()
    )
    for user in users.order_by("pk"):
        recorded = (
            AuditEvent.objects.filter(object_type="auth.user", object_id=str(user.pk), verb="user.credentials")
            .order_by("-sequence")
            .values_list("after", flat=True)
            .first()
        )
        if (recorded or {}).get("fingerprint") != credential_fingerprint(user.password):
            yield f"user {user.username}'s password was set outside promptctl (no audit event records it)."
