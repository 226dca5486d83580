"""What a change request's review page shows, and which buttons each person gets: reads only, no writes.

``change_request_actions`` is the one place that says what a person may do
with a request and, when a button they would expect is missing, why. The
review page asks it instead of guessing, so the page cannot offer a button the
services would refuse: the requester gets no Approve or Reject (four-eyes),
and Apply appears only when applying would succeed; otherwise the reason is
given in words with a link to what fixes it. The services still check
everything again when a button is pressed (the page may be stale).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django.urls import reverse

from promptctl.errors import DomainError
from promptctl.models import Approval, ChangeRequest, Pin
from promptctl.registry import promotion_gate, review_evidence
from promptctl.selectors import change_request_decisions, version_diff
from promptctl.services.users import BOTS

ACTION_LABELS = {"approve": "Approve", "reject": "Reject", "apply": "Apply", "withdraw": "Withdraw"}


@dataclass(frozen=True)
class Blocked:
    """A button this person would look for and does not get: why not, and the page that fixes it (if any)."""

    name: str
    reason: str
    fix_label: str = ""
    fix_url: str = ""


@dataclass(frozen=True)
class ChangeActions:
    allowed: tuple[str, ...] = ()
    blocked: tuple[Blocked, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def may(self, name: str) -> bool:
        return name in self.allowed


def _in_group(user: Any, name: str) -> bool:
    return bool(user.groups.filter(name=name).exists())


def refile_url(*, change: ChangeRequest, **overrides: Any) -> str:
    """The filing form, filled in like ``change`` (the web's way to "file a new request")."""
    query: dict[str, Any] = {
        "agent": change.agent_id,
        "kind": change.kind,
        "channel": change.channel,
        "target_version": change.target_version.number,
    }
    if change.kind == ChangeRequest.Kind.CANARY:
        query["canary_percent"] = change.canary_percent
    query |= {key: value for key, value in overrides.items() if value not in (None, "")}
    return reverse("admin:promptctl_changerequest_add") + "?" + urlencode(query)


def _apply_blocked(*, change: ChangeRequest, approvals: int) -> Blocked | None:
    """Why Apply would be refused now, in the web's words, or ``None`` when it would succeed."""
    if change.status == ChangeRequest.Status.PENDING:
        return Blocked(
            "apply",
            f"Apply waits for approvals: {approvals} of {change.approvals_required} so far. "
            f"A reviewer in {change.agent.approver_group!r} approves it on this page.",
        )
    pin = Pin.objects.filter(agent=change.agent_id, channel=change.channel).first()
    if (pin.revision if pin else 0) != change.base_pin_revision:
        now = f"v{pin.version.number}" if pin else "no version"
        return Blocked(
            "apply",
            f"The {change.channel} pin moved since this request was filed (it is now at {now}): applying would "
            "supersede it. File a new request against the pin as it is now.",
            "File a new request",
            refile_url(change=change),
        )
    gate = promotion_gate()
    stale = gate.stale_reason(change=change)
    if stale:
        return Blocked(
            "apply",
            f"The evidence is stale: {stale}. Applying would supersede this request; file a new one with fresh evidence.",
            "File a new request",
            refile_url(change=change),
        )
    if change.kind == ChangeRequest.Kind.ROUTE:
        return None
    evidence = change.evidence or {}
    if evidence.get("regressed") and not change.accept_regression_reason.strip():
        teams = ", ".join(evidence.get("regressed_teams") or [])
        return Blocked(
            "apply",
            f"The evidence flags a regression ({teams}) and this request does not accept it. Fix the prompt and "
            "compare again; or, if the regression is intended, withdraw this request and file one that gives a "
            "reason to accept it (it needs one more approval).",
            "File a request that accepts the regression",
            refile_url(change=change, evidence=f"{change.evidence_type}:{change.evidence_id}"),
        )
    try:
        gate.apply_gate(change=change)
    except DomainError as refusal:
        return Blocked("apply", refusal.web_message(), "File a new request", refile_url(change=change))
    return None


def change_request_actions(*, change: ChangeRequest, user: Any) -> ChangeActions:
    """The buttons ``user`` gets on ``change``'s page, and why the ones they would expect are missing.

    The same rules the services keep (``_require_reviewer``, the withdraw rule,
    ``change_request_apply`` and the promotion gate), asked before the button is
    drawn rather than after it is pressed.
    """
    if change.status not in ChangeRequest.OPEN_STATUSES:
        return ChangeActions()
    allowed: list[str] = []
    blocked: list[Blocked] = []
    notes: list[str] = []
    decisions = change_request_decisions(change=change)
    is_requester = user.pk == change.requested_by_id
    own = change.approvals.filter(reviewer_id=user.pk).first()
    reviewer = (
        user.is_active
        and user.has_perm("promptctl.approve_changerequest")
        and not _in_group(user, BOTS)
        and _in_group(user, change.agent.approver_group)
    )
    if is_requester:
        notes.append("You filed this request: a different reviewer must approve or reject it (four-eyes rule).")
    elif own is not None:
        verb = "approved" if own.decision == Approval.Decision.APPROVE else "rejected"
        notes.append(f"You {verb} this request; a decision is final.")
    elif reviewer:
        if change.status == ChangeRequest.Status.PENDING:
            allowed.append("approve")
        allowed.append("reject")
    elif user.has_perm("promptctl.approve_changerequest"):
        notes.append(
            f"Only members of the {change.agent.approver_group!r} group decide on changes to {change.agent.name}."
        )
    if user.has_perm("promptctl.apply_changerequest") and not decisions["rejections"]:
        why = _apply_blocked(change=change, approvals=decisions["approvals"])
        if why is None:
            allowed.append("apply")
        else:
            blocked.append(why)
    if is_requester or user.is_superuser:
        allowed.append("withdraw")
    return ChangeActions(allowed=tuple(allowed), blocked=tuple(blocked), notes=tuple(notes))


def change_request_moves(*, change: ChangeRequest) -> str:
    """One line saying what moves: the channel, from → to, and the canary share only for a canary."""
    agent = change.agent.name
    base = f"v{change.base_version.number}" if change.base_version is not None else "no version"
    target = f"v{change.target_version.number}"
    if change.kind == ChangeRequest.Kind.CANARY:
        rest = 100 - change.canary_percent
        return (
            f"Canary on {agent}/{change.channel}: {target} gets {change.canary_percent}% of traffic, "
            f"{base} keeps {rest}%"
        )
    if change.kind == ChangeRequest.Kind.ROUTE:
        return f"Make {agent} the triage API's default agent (serving {target})"
    verb = "Roll back" if change.kind == ChangeRequest.Kind.ROLLBACK else "Promote"
    return f"{verb} {agent}/{change.channel}: {base} → {target}"


def change_request_review(*, change: ChangeRequest, user: Any) -> dict[str, Any]:
    """Everything the review page shows, decision first: what moves, diff, evidence, approvals, the buttons."""
    decisions = change_request_decisions(change=change)
    evidence = change.evidence or {}
    diff = None
    base = change.base_version
    if base is not None and base.pk != change.target_version_id:
        diff = version_diff(agent=change.agent, left_number=base.number, right_number=change.target_version.number)
    provider = review_evidence()
    panel = provider.panel(change=change) if provider is not None and evidence else ""
    return {
        "moves": change_request_moves(change=change),
        "diff": diff,
        "evidence": evidence,
        "evidence_panel": panel,
        "evidence_summary": "" if panel else (evidence.get("summary") or evidence.get("reference") or ""),
        "gate_inputs_changed": (evidence.get("gate_inputs_changed") or {}).get("summary", ""),
        "approvals": decisions["approvals"],
        "approvals_text": f"{decisions['approvals']} of {change.approvals_required} approvals",
        "decisions": list(change.approvals.select_related("reviewer").order_by("created_at", "pk")),
        "actions": change_request_actions(change=change, user=user),
    }
