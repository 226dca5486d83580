"""Change requests: filing, approving, rejecting, withdrawing, and applying them, which moves a pin.

Anything that changes which version serves production moves only by an
approved change request: a pin (``promote``, ``rollback``, ``canary``), and
which agent the triage API serves by default (``route``, carried out by the
applier triage registers in ``promptctl.registry``, since change control may
not import the apps above it). A ``route`` request names the agent that becomes
the default; its target is that agent's production version when filed, and it
is approved like any other change (never by its requester).

Applying refuses what no longer holds when the request was judged: a pin that
moved since filing, or evidence measured on gate inputs that changed since
filing (``promotion_gate().stale_reason``, e.g. the agent's gating test set).
Either supersedes the request, and the refusal says what changed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import transaction
from django.utils import timezone

from promptctl.audit import audit_record
from promptctl.errors import DomainError, Fix
from promptctl.models import PRODUCTION, Agent, Approval, ChangeRequest, Pin
from promptctl.records import saved_by
from promptctl.registry import change_applier, promotion_gate
from promptctl.selectors import change_request_decisions, previously_pinned_numbers
from promptctl.services.common import ChangeConflict, PermissionRefused, _change_snapshot, _pin_snapshot, _require
from promptctl.services.deployments import (
    FollowOutcome,
    deployments_behind_refusal,
    deployments_finish_apply,
    deployments_follow_later,
    deployments_follow_record,
    deployments_moves_for_change,
    deployments_put_back,
)
from promptctl.services.notifications import change_notify
from promptctl.services.routes import route_request_create
from promptctl.services.users import BOTS

_CHANNEL = re.compile(r"^[a-z][a-z0-9-]{0,49}$")


def change_request_create(
    *,
    agent: Agent,
    kind: str,
    target_number: int | None,
    reason: str,
    actor: Any,
    channel: str = PRODUCTION,
    canary_percent: int | None = None,
    evidence_ref: str | None = None,
    accept_regression_reason: str = "",
    filed_by_promptctl: bool = False,
) -> ChangeRequest:
    """File a request to move ``channel``'s pin; its target, base and evidence are frozen here.

    ``approvals_required`` is the agent's policy, plus one when the requester
    accepts a regression, so accepting one always needs an extra pair of eyes.
    A rollback promptctl files itself (``filed_by_promptctl``: ending a canary
    that crossed its limits) needs one approval: no person asked for it, so any
    one eligible reviewer is the second pair of eyes; applying still needs it.

    A ``route`` request (make ``agent`` the triage API's default) targets the
    agent's production version; ``target_number`` may be left out.
    """
    _require(actor, "add_changerequest", "file change requests")
    if filed_by_promptctl and kind != ChangeRequest.Kind.ROLLBACK:
        raise DomainError("promptctl files only rollbacks on its own (ending a canary); other kinds need a person.")
    if kind not in ChangeRequest.Kind.values:
        raise DomainError(f"Unknown kind {kind!r}: choose promote, rollback, canary or route.")
    if kind == ChangeRequest.Kind.ROUTE:
        return route_request_create(
            agent=agent, target_number=target_number, reason=reason, actor=actor, channel=channel
        )
    if target_number is None:
        raise DomainError(
            "",
            code="target_version_missing",
            fields=("target_version",),
            fix=Fix(
                cli=f"A {kind} request needs the target version (--to VERSION).",
                web=f"A {kind} request needs the target version: pick the version to move to.",
            ),
        )
    if not _CHANNEL.match(channel or ""):
        raise DomainError(f"Channel {channel!r} is not allowed: use lowercase letters, digits and dashes.")
    reason = (reason or "").strip()
    if not reason:
        raise DomainError("Give a reason: reviewers and auditors read it to know why the pin should move.")
    accept_regression_reason = (accept_regression_reason or "").strip()
    target = agent.versions.filter(number=target_number).first()
    if target is None:
        raise DomainError(
            f"{agent.name} has no version {target_number} recorded.",
            code="version_not_found",
            fields=("target_version",),
            fix=Fix(
                cli=f"If it was made on the server, run `promptctl agent sync --agent {agent.name}` first; "
                f"`promptctl version list --agent {agent.name}` lists them.",
                web="If it was made on the server, press Sync from server on the agent's page first; "
                "Agent versions lists them.",
                link=("admin:promptctl_agent_change", (agent.pk,)),
            ),
        )
    if kind == ChangeRequest.Kind.CANARY:
        if canary_percent is None or not 1 <= canary_percent <= 99:
            raise DomainError(
                "",
                code="canary_percent_out_of_range",
                fields=("canary_percent",),
                fix=Fix(
                    cli="A canary needs --percent between 1 and 99 (the share of traffic that gets the target).",
                    web="A canary needs a canary percent between 1 and 99 (the share of traffic that gets the target).",
                ),
            )
    elif canary_percent:
        raise DomainError(
            "",
            code="canary_percent_not_applicable",
            fields=("canary_percent",),
            fix=Fix(
                cli="--percent only applies to canary requests.",
                web="A canary percent only applies to canary requests: leave it empty.",
            ),
        )
    with transaction.atomic():
        agent = Agent.objects.get(pk=agent.pk)  # the policy as it stands now, not as the caller last read it
        pin = Pin.objects.select_related("version", "canary_version").filter(agent=agent, channel=channel).first()
        pinned = pin.version if pin else None
        canary_running = bool(pin and pin.canary_version_id)
        if kind in (ChangeRequest.Kind.ROLLBACK, ChangeRequest.Kind.CANARY) and pin is None:
            raise DomainError(
                f"{agent.name} has no {channel} pin yet, so there is nothing to {kind}: promote a version first."
            )
        if pinned is not None and target.pk == pinned.pk and not (kind != ChangeRequest.Kind.CANARY and canary_running):
            raise DomainError(
                f"Version {target.number} is already the {channel} pin of {agent.name}: nothing would change."
            )
        if kind == ChangeRequest.Kind.ROLLBACK:
            earlier = previously_pinned_numbers(agent=agent, channel=channel)
            if target.number not in earlier:
                listed = ", ".join(f"v{n}" for n in sorted(earlier)) or "none"
                raise DomainError(
                    f"A rollback must target a version that was {channel} before; v{target.number} never was "
                    f"(earlier {channel} versions: {listed}). To move to a new version, file a promotion."
                )
        evidence = promotion_gate().evidence_resolve(
            agent=agent,
            channel=channel,
            kind=kind,
            target_version=target,
            evidence_ref=evidence_ref,
            accept_regression_reason=accept_regression_reason,
            canary_percent=canary_percent or 0,
        )
        _regression_accepted_or_refuse(evidence=evidence, accept_regression_reason=accept_regression_reason)
        change = saved_by(
            ChangeRequest(
                agent=agent,
                channel=channel,
                kind=kind,
                base_version=pinned,
                base_pin_revision=pin.revision if pin else 0,
                target_version=target,
                target_config_sha256=target.config_hash,
                canary_percent=canary_percent or 0,
                evidence_type=evidence.get("evidence_type", "") or "",
                evidence_id=evidence.get("evidence_id"),
                evidence=evidence.get("evidence") or {},
                accept_regression_reason=accept_regression_reason,
                approvals_required=1
                if filed_by_promptctl
                else agent.required_approvals + (1 if accept_regression_reason else 0),
                reason=reason,
                requested_by=actor,
            ),
            actor,
        )
        audit_record(
            actor=actor, verb="change.request", target=change, agent_id=agent.pk, after=_change_snapshot(change)
        )
        change_notify(change=change, event="canary.tripped" if filed_by_promptctl else "change.filed", actor=actor)
    return change


def _regression_accepted_or_refuse(*, evidence: dict[str, Any], accept_regression_reason: str) -> None:
    """Refuse at filing a gated request whose evidence flags a regression it does not accept.

    Such a request could be approved but never applied (the gate refuses it at
    apply), so reviewers would spend their time on it for nothing: the requester
    hears it now, with the form still filled in.
    """
    frozen = evidence.get("evidence") or {}
    if not (frozen.get("gate") and frozen.get("regressed")) or accept_regression_reason:
        return
    teams = ", ".join(frozen.get("regressed_teams") or []) or "a team"
    lost = [flip["ticket"] for flip in frozen.get("flips") or [] if flip.get("direction") == "right_to_wrong"]
    flipped = f" Tickets it now gets wrong: {', '.join(lost)}." if lost else ""
    raise DomainError(
        f"Refused: {evidence.get('evidence_type')} #{evidence.get('evidence_id')} flags a regression ({teams}) and "
        f"this request does not accept it, so it could be approved but never applied.{flipped}",
        code="regression_not_accepted",
        fields=("accept_regression_reason",),
        fix=Fix(
            cli="Fix the prompt and compare again; or, if the regression is intended, file again with "
            "--accept-regression REASON (it then needs one more approval than the policy).",
            web="Fix the prompt and compare again; or, if the regression is intended, fill in “Accept a flagged "
            "regression because” and file again (it then needs one more approval than the policy).",
        ),
    )


def _change_locked(change: ChangeRequest) -> ChangeRequest:
    return (
        ChangeRequest.objects.select_for_update(of=("self",))
        .select_related("agent", "target_version", "base_version", "requested_by")
        .get(pk=change.pk)
    )


def _state_refusal(change: ChangeRequest, doing: str) -> ChangeConflict:
    status = change.status
    if status == ChangeRequest.Status.APPLIED:
        why = "it was already applied"
    elif status == ChangeRequest.Status.SUPERSEDED:
        why = f"it was superseded ({change.status_reason})" if change.status_reason else "it was superseded"
    elif status == ChangeRequest.Status.REJECTED:
        why = f"it was rejected ({change.status_reason})" if change.status_reason else "it was rejected"
    elif status == ChangeRequest.Status.WITHDRAWN:
        why = "its requester withdrew it"
    elif status == ChangeRequest.Status.APPROVED:
        why = "it is already approved and waits to be applied"
    else:
        why = f"it is {status}"
    return ChangeConflict(f"Cannot {doing} change request #{change.pk}: {why}.")


def _close(change: ChangeRequest, *, status: str, actor: Any, reason: str) -> None:
    before = _change_snapshot(change)
    change.status = status
    change.status_reason = reason
    change.closed_at = timezone.now()
    change.closed_by = actor
    saved_by(change, actor)
    audit_record(
        actor=actor,
        verb=f"change.{status}",
        target=change,
        agent_id=change.agent_id,
        before=before,
        after=_change_snapshot(change),
    )


def reviewer_eligible(*, user: Any, agent: Agent) -> bool:
    """Whether ``user`` could approve a change to ``agent`` now: ``_require_reviewer``'s rule, four-eyes aside."""
    return bool(
        user is not None
        and user.is_active
        and not user.groups.filter(name=BOTS).exists()
        and user.has_perm("promptctl.approve_changerequest")
        and user.groups.filter(name=agent.approver_group).exists()
    )


def _require_reviewer(reviewer: Any, change: ChangeRequest, doing: str) -> None:
    if reviewer.groups.filter(name=BOTS).exists():
        raise PermissionRefused(
            f"{reviewer.username} is a service account (a bot) and cannot {doing} change request #{change.pk}: "
            "only a person may pass the four-eyes gate. Ask a reviewer to decide."
        )
    if reviewer.pk == change.requested_by_id:
        raise PermissionRefused(
            f"{reviewer.username} filed change request #{change.pk} and cannot {doing} it: "
            "a different reviewer must decide (four-eyes rule; this applies to admins too)."
        )
    _require(reviewer, "approve_changerequest", f"{doing} change requests")
    group = change.agent.approver_group
    if not reviewer.groups.filter(name=group).exists():
        raise PermissionRefused(
            f"{reviewer.username} may not {doing} changes to {change.agent.name}: only members of the "
            f"{group!r} group may. Ask an admin to add them, or to pick another reviewer."
        )


def _decision_record(*, change: ChangeRequest, reviewer: Any, decision: str, comment: str) -> Approval:
    if change.approvals.filter(reviewer=reviewer).exists():
        raise DomainError(f"{reviewer.username} already decided on change request #{change.pk}; a decision is final.")
    approval = Approval.objects.create(
        change=change, reviewer=reviewer, requester_id=change.requested_by_id, decision=decision, comment=comment
    )
    audit_record(
        actor=reviewer,
        verb=f"approval.{decision}",
        target=approval,
        agent_id=change.agent_id,
        after={"change": change.pk, "reviewer": reviewer.username, "decision": decision, "comment": comment},
    )
    return approval


def change_request_approve(*, change: ChangeRequest, reviewer: Any, comment: str = "") -> Approval:
    """Record ``reviewer``'s approval; the request becomes approved when it has the approvals it needs."""
    with transaction.atomic():
        change = _change_locked(change)
        _require_reviewer(reviewer, change, "approve")
        if change.status != ChangeRequest.Status.PENDING:
            raise _state_refusal(change, "approve")
        approval = _decision_record(
            change=change, reviewer=reviewer, decision=Approval.Decision.APPROVE, comment=(comment or "").strip()
        )
        if change_request_decisions(change=change)["approvals"] >= change.approvals_required:
            before = _change_snapshot(change)
            change.status = ChangeRequest.Status.APPROVED
            change.approved_at = timezone.now()
            saved_by(change, reviewer)
            audit_record(
                actor=reviewer,
                verb="change.approved",
                target=change,
                agent_id=change.agent_id,
                before=before,
                after=_change_snapshot(change),
            )
        change_notify(change=change, event="change.approved", actor=reviewer)
    return approval


def change_request_reject(*, change: ChangeRequest, reviewer: Any, comment: str) -> Approval:
    """Record a rejection; one rejection by any eligible reviewer closes the request."""
    comment = (comment or "").strip()
    if not comment:
        raise DomainError("A rejection needs a comment: say what the requester should change.")
    with transaction.atomic():
        change = _change_locked(change)
        _require_reviewer(reviewer, change, "reject")
        if change.status not in ChangeRequest.OPEN_STATUSES:
            raise _state_refusal(change, "reject")
        approval = _decision_record(
            change=change, reviewer=reviewer, decision=Approval.Decision.REJECT, comment=comment
        )
        _close(
            change,
            status=ChangeRequest.Status.REJECTED,
            actor=reviewer,
            reason=f"rejected by {reviewer.username}: {comment}",
        )
        change_notify(change=change, event="change.rejected", actor=reviewer)
    return approval


def change_request_withdraw(*, change: ChangeRequest, actor: Any) -> ChangeRequest:
    """The requester (or a superuser) takes back an open request."""
    with transaction.atomic():
        change = _change_locked(change)
        if actor.pk != change.requested_by_id and not actor.is_superuser:
            raise DomainError(
                f"Only {change.requested_by.username}, who filed change request #{change.pk}, may withdraw it; "
                "a reviewer who disagrees should reject it with a comment."
            )
        if change.status not in ChangeRequest.OPEN_STATUSES:
            raise _state_refusal(change, "withdraw")
        _close(change, status=ChangeRequest.Status.WITHDRAWN, actor=actor, reason=f"withdrawn by {actor.username}")
        change_notify(change=change, event="change.withdrawn", actor=actor)
    return change


def change_request_apply(*, change: ChangeRequest, actor: Any) -> Pin:
    """Move the pin as an approved request says, or refuse and say why.

    Refused when the request is not approved, when its approvals are short of
    what it was filed with, when the promotion gate refuses, or when the pin
    moved (or the gate's inputs changed) since the request was filed: then the
    request is superseded (that much is committed) and the message names what
    changed. Applying supersedes every other open request for the same pin,
    since they were filed against a state that no longer holds. A ``route``
    request moves no pin: the registered applier makes its agent the default,
    and only other route requests for the same agent are superseded.

    Deployments bound to the channel follow a promotion or rollback (moved on
    the server first, recorded with the pin's move); if some could not be
    moved, the pin still moves and ``DeploymentsBehind`` names them, and
    applying the request again finishes them (``promptctl.services.deployments``).
    """
    _require(actor, "apply_changerequest", "apply change requests")
    finished = deployments_finish_apply(change=change, actor=actor)  # applied again: its deployments catch up
    if finished is not None:
        return finished
    # Remote first (no network call under the locks below): bound deployments move to the target, and the
    # transaction records which did beside the pin's move (promptctl.services.deployments).
    followed = deployments_moves_for_change(change=change)
    superseded_message: str | None = None
    with _deployments_put_back_on_refusal(followed, actor), transaction.atomic():
        agent = Agent.objects.select_for_update().get(pk=change.agent_id)
        pin = (
            Pin.objects.select_for_update(of=("self",))
            .select_related("version", "canary_version", "agent")
            .filter(agent=agent, channel=change.channel)
            .first()
        )
        change = _change_locked(change)
        if change.status != ChangeRequest.Status.APPROVED:
            if change.status == ChangeRequest.Status.PENDING:
                decisions = change_request_decisions(change=change)
                raise DomainError(
                    f"Cannot apply change request #{change.pk}: it is not approved yet "
                    f"({decisions['approvals']} of {change.approvals_required} approvals). Ask a reviewer in "
                    f"{change.agent.approver_group!r} to approve it."
                )
            raise _state_refusal(change, "apply")
        decisions = change_request_decisions(change=change)
        if decisions["rejections"]:
            raise DomainError(f"Cannot apply change request #{change.pk}: a reviewer rejected it.")
        if decisions["approvals"] < change.approvals_required:
            raise DomainError(
                f"Cannot apply change request #{change.pk}: it has {decisions['approvals']} of the "
                f"{change.approvals_required} approvals it needs."
            )
        if not change.target_version.config_hash_matches(change.target_config_sha256):
            raise DomainError(
                f"Cannot apply change request #{change.pk}: version {change.target_version.number}'s configuration "
                "no longer matches what was approved. Report this: versions are immutable."
            )
        current_revision = pin.revision if pin else 0
        routing = change.kind == ChangeRequest.Kind.ROUTE
        stale = promotion_gate().stale_reason(change=change)
        # A route request names the production version it makes the default: a moved pin makes it stale too.
        if current_revision != change.base_pin_revision:
            superseded_message = _moved_message(change=change, pin=pin)
            _close(change, status=ChangeRequest.Status.SUPERSEDED, actor=actor, reason=superseded_message)
        elif stale is not None:
            superseded_message = f"change request #{change.pk} is stale: {stale}"
            _close(change, status=ChangeRequest.Status.SUPERSEDED, actor=actor, reason=superseded_message)
        elif routing:
            applier = change_applier(ChangeRequest.Kind.ROUTE)
            if applier is None:
                raise DomainError("No app carries out route requests here (is the triage app installed?).")
            done = applier.apply(change=change, actor=actor)
            _close(
                change, status=ChangeRequest.Status.APPLIED, actor=actor, reason=f"applied by {actor.username}: {done}"
            )
            change_notify(change=change, event="change.applied", actor=actor)
            duplicates = (
                ChangeRequest.objects.select_for_update(of=("self",))
                .select_related("agent", "target_version", "base_version", "requested_by")
                .filter(agent=agent, kind=ChangeRequest.Kind.ROUTE, status__in=ChangeRequest.OPEN_STATUSES)
                .exclude(pk=change.pk)
                .order_by("pk")
            )
            for other in duplicates:
                _close(
                    other,
                    status=ChangeRequest.Status.SUPERSEDED,
                    actor=actor,
                    reason=f"change request #{change.pk} made {agent.name} the default agent already",
                )
        else:
            promotion_gate().apply_gate(change=change)
            pin = _pin_move(agent=agent, pin=pin, change=change, actor=actor)
            if followed is not None:
                deployments_follow_record(outcome=followed, actor=actor, change=change)
            else:  # nothing was moved first (the caller holds a transaction): they follow after commit
                deployments_follow_later(agent=agent, channel=change.channel, version=pin.version.number, actor=actor)
            _close(
                change,
                status=ChangeRequest.Status.APPLIED,
                actor=actor,
                reason=f"applied by {actor.username}: {change.channel} pin now at v{pin.version.number}",
            )
            change_notify(change=change, event="change.applied", actor=actor)
            others = (
                ChangeRequest.objects.select_for_update(of=("self",))
                .select_related("agent", "target_version", "base_version", "requested_by")
                .filter(agent=agent, channel=change.channel, status__in=ChangeRequest.OPEN_STATUSES)
                .exclude(pk=change.pk)
                .exclude(kind=ChangeRequest.Kind.ROUTE)
                .order_by("pk")
            )
            for other in others:
                _close(
                    other,
                    status=ChangeRequest.Status.SUPERSEDED,
                    actor=actor,
                    reason=_moved_message(change=other, pin=pin),
                )
    if superseded_message is not None:
        if followed is not None and followed.moved:
            deployments_put_back(agent_id=change.agent_id, channel=change.channel, actor=actor)
        raise ChangeConflict(superseded_message)
    assert pin is not None  # moved just now, or (route) the production pin the request was filed on
    if followed is not None and followed.failed:
        raise deployments_behind_refusal(agent=agent, outcome=followed, change=change)
    return pin


@contextmanager
def _deployments_put_back_on_refusal(followed: FollowOutcome | None, actor: Any) -> Iterator[None]:
    """Deployments moved for an apply that then refused go back on the pin as it stands."""
    try:
        yield
    except BaseException:
        if followed is not None and followed.moved:
            deployments_put_back(agent_id=followed.agent_id, channel=followed.channel, actor=actor)
        raise


def _moved_message(*, change: ChangeRequest, pin: Pin | None) -> str:
    then = f"version {change.base_version.number}" if change.base_version else "no pin"
    now = f"version {pin.version.number}" if pin else "no pin"
    canary = (
        f" with a canary of version {pin.canary_version.number} at {pin.canary_percent}%"
        if pin and pin.canary_version
        else ""
    )
    return (
        f"the {change.channel} pin of {change.agent.name} moved since change request #{change.pk} was filed: "
        f"it was at {then} and is now at {now}{canary} (set by change request #{pin.change_id if pin else '-'}). "
        f"This request is superseded; file a new one against {now} if it is still wanted."
    )


def _pin_move(*, agent: Agent, pin: Pin | None, change: ChangeRequest, actor: Any) -> Pin:
    before = _pin_snapshot(pin)
    now = timezone.now()
    target = change.target_version
    if pin is None:
        pin = Pin(agent=agent, channel=change.channel, version=target, revision=1, change=change, updated_at=now)
    else:
        if change.kind == ChangeRequest.Kind.CANARY:
            pin.canary_version = target
            pin.canary_percent = change.canary_percent
        else:
            pin.version = target
            pin.canary_version = None
            pin.canary_percent = 0
        pin.revision += 1
        pin.change = change
        pin.updated_at = now
    saved_by(pin, actor)
    audit_record(actor=actor, verb="pin.move", target=pin, agent_id=agent.pk, before=before, after=_pin_snapshot(pin))
    return pin
