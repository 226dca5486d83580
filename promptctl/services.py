"""Writes of the change-control domain. Every change is audited in its own transaction.

Rules every service keeps, and why:

- Permission and domain checks live here, not in the admin or CLI, so every
  front door refuses the same things with the same message.
- State transitions re-read the row with ``select_for_update()`` inside
  ``transaction.atomic()`` and check the allowed starting state, so two people
  acting at once cannot both win.
- Moving a pin locks the agent row, then the pin, then the request(s), always
  in that order; other transitions lock only their request. One order means no
  deadlock between an apply and an approval.
- Each saved object carries ``_history_user`` so django-simple-history records
  who acted from the CLI as well as from the web.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from promptctl.registry import promotion_gate, registry
from promptctl.audit import audit_record
from promptctl.errors import DomainError
from promptctl.records import saved_by
from promptctl.models import PRODUCTION, Agent, AgentVersion, Approval, ChangeRequest, Pin
from managed_agents import gateway

logger = logging.getLogger(__name__)

REQUESTERS = "requesters"
REVIEWERS = "reviewers"
ROLES = ("requester", "reviewer", "admin")
DEFAULT_ENVIRONMENT = "promptctl"

# Who may do what in change control, as "app_label.codename"; apps above add theirs through the
# registry (frozen copies live in promptctl migration 0003 and evals migration 0002;
# docs/CHANGE_CONTROL.md explains it).
ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    REQUESTERS: (
        "promptctl.view_agent",
        "promptctl.add_agent",
        "promptctl.view_agentversion",
        "promptctl.add_agentversion",
        "promptctl.view_pin",
        "promptctl.view_changerequest",
        "promptctl.add_changerequest",
        "promptctl.apply_changerequest",
        "promptctl.view_approval",
        "promptctl.view_auditevent",
    ),
    REVIEWERS: (
        "promptctl.view_agent",
        "promptctl.view_agentversion",
        "promptctl.view_pin",
        "promptctl.view_changerequest",
        "promptctl.approve_changerequest",
        "promptctl.apply_changerequest",
        "promptctl.view_approval",
        "promptctl.view_auditevent",
    ),
}

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")
_CHANNEL = re.compile(r"^[a-z][a-z0-9-]{0,49}$")


# --- helpers ------------------------------------------------------------------


def _require(user: Any, permission: str, doing: str) -> None:
    if user is None or not user.is_active or not user.has_perm(f"promptctl.{permission}"):
        who = getattr(user, "username", None) or "An anonymous user"
        raise DomainError(
            f"{who} may not {doing}: that needs the promptctl.{permission} permission. "
            "Ask an admin for the right role (`promptctl user add NAME --role ...`)."
        )


def _username(user: Any) -> str | None:
    return getattr(user, "username", None)


def _agent_snapshot(agent: Agent) -> dict[str, Any]:
    return {
        "name": agent.name,
        "remote_id": agent.remote_id,
        "environment_id": agent.environment_id,
        "model": agent.model,
        "latest_version_number": agent.latest_version_number,
        "required_approvals": agent.required_approvals,
        "approver_group": agent.approver_group,
        "regression_tolerance": agent.regression_tolerance,
    }


def _version_snapshot(version: AgentVersion) -> dict[str, Any]:
    return {
        "agent": version.agent.name,
        "number": version.number,
        "origin": version.origin,
        "model": version.model,
        "config_sha256": version.config_sha256,
        "created_by": _username(version.created_by),
        "server_created_at": version.server_created_at,
    }


def _change_snapshot(change: ChangeRequest) -> dict[str, Any]:
    """The request as the audit log records it: what ``change list --json`` shows, plus the pin revision it was filed on."""
    from promptctl.selectors import change_request_as_dict

    snapshot = change_request_as_dict(change)
    snapshot.pop("approvals")  # a list annotation, not part of the row
    snapshot["base_pin_revision"] = change.base_pin_revision
    return snapshot


def _pin_snapshot(pin: Pin | None) -> dict[str, Any] | None:
    if pin is None:
        return None
    return {
        "agent": pin.agent.name,
        "channel": pin.channel,
        "version": pin.version.number,
        "canary_version": pin.canary_version.number if pin.canary_version_id else None,
        "canary_percent": pin.canary_percent,
        "revision": pin.revision,
        "change": pin.change_id,
    }


def _version_record(*, agent: Agent, remote: gateway.RemoteAgentVersion, origin: str, actor: Any) -> AgentVersion:
    version = AgentVersion.objects.create(
        agent=agent,
        number=remote.version,
        system_prompt=remote.system,
        model=remote.model,
        config=remote.config,
        config_sha256=remote.config_sha256,
        origin=origin,
        created_by=actor if origin == AgentVersion.Origin.PROMPTCTL else None,
        server_created_at=remote.created_at,
    )
    verb = "version.create" if origin == AgentVersion.Origin.PROMPTCTL else "version.discover"
    audit_record(actor=actor, verb=verb, target=version, agent_id=agent.pk, after=_version_snapshot(version))
    return version


# --- users and roles ------------------------------------------------------------


def roles_ensure() -> dict[str, Group]:
    """The ``requesters`` and ``reviewers`` groups with at least their permissions (idempotent; extras an admin added stay)."""
    groups: dict[str, Group] = {}
    for group_name, codenames in registry.role_permissions.items():
        group, _created = Group.objects.get_or_create(name=group_name)
        wanted = Q()
        for qualified in codenames:
            app_label, codename = qualified.split(".", 1)
            wanted |= Q(content_type__app_label=app_label, codename=codename)
        permissions = list(Permission.objects.filter(wanted).select_related("content_type"))
        missing = set(codenames) - {f"{p.content_type.app_label}.{p.codename}" for p in permissions}
        if missing:
            raise DomainError(f"Permissions {sorted(missing)} do not exist yet: run `python manage.py migrate`.")
        group.permissions.add(*permissions)
        groups[group_name] = group
    return groups


def user_create(*, username: str, role: str, password: str | None = None, email: str = "") -> Any:
    """A staff user in the role's group; ``admin`` is a superuser in both groups (so they may also review)."""
    if role not in ROLES:
        raise DomainError(f"Unknown role {role!r}: choose one of {', '.join(ROLES)}.")
    user_model = get_user_model()
    if not username or user_model.objects.filter(username=username).exists():
        raise DomainError(f"User {username!r} already exists (or the name is empty): pick another name.")
    groups = roles_ensure()
    with transaction.atomic():
        user = user_model(username=username, email=email, is_staff=True, is_superuser=(role == "admin"))
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save()
        if role == "requester":
            user.groups.add(groups[REQUESTERS])
        elif role == "reviewer":
            user.groups.add(groups[REVIEWERS])
        else:
            user.groups.add(groups[REQUESTERS], groups[REVIEWERS])
        audit_record(
            actor=None, verb="user.create", target=user, after={"username": username, "role": role}
        )
    return user


# --- agents and versions ----------------------------------------------------------


def agent_create(
    *, name: str, model: str, system_prompt: str, actor: Any, environment_name: str = DEFAULT_ENVIRONMENT
) -> Agent:
    """Create the remote environment (reused by name) and agent, and record version 1 as made by ``actor``."""
    _require(actor, "add_agent", "create agents")
    if not _NAME.match(name or ""):
        raise DomainError(
            f"Agent name {name!r} is not allowed: use lowercase letters, digits and dashes (e.g. ticket-triage)."
        )
    if not (system_prompt or "").strip():
        raise DomainError("The system prompt is empty: give the agent's instructions in the system file.")
    if Agent.objects.filter(name=name).exists():
        raise DomainError(f"An agent named {name!r} already exists: see `promptctl agent status --agent {name}`.")
    environment = gateway.environment_ensure(name=environment_name)
    remote = gateway.agent_create(name=name, model=model, system=system_prompt)
    try:
        with transaction.atomic():
            agent = saved_by(
                Agent(
                    name=name,
                    remote_id=remote.agent_id,
                    environment_id=environment.id,
                    model=remote.model,
                    latest_version_number=remote.version,
                    created_by=actor,
                ),
                actor,
            )
            audit_record(actor=actor, verb="agent.create", target=agent, agent_id=agent.pk, after=_agent_snapshot(agent))
            _version_record(agent=agent, remote=remote, origin=AgentVersion.Origin.PROMPTCTL, actor=actor)
    except IntegrityError as error:
        try:
            gateway.agent_archive(agent_id=remote.agent_id)
        except DomainError:
            logger.warning("could not archive orphaned remote agent %s", remote.agent_id)
        raise DomainError(
            f"Agent {name!r} could not be recorded ({error}); another agent with that name was created at the "
            "same moment. The new remote agent was archived; choose another name."
        ) from error
    return agent


def agent_policy_update(
    *,
    agent: Agent,
    actor: Any,
    required_approvals: int | None = None,
    approver_group: str | None = None,
    regression_tolerance: int | None = None,
) -> Agent:
    """Change an agent's approval policy; requests already filed keep the approvals they were filed with."""
    _require(actor, "change_agent", "change an agent's approval policy")
    with transaction.atomic():
        agent = Agent.objects.select_for_update().get(pk=agent.pk)
        before = _agent_snapshot(agent)
        if required_approvals is not None:
            if required_approvals < 1:
                raise DomainError("An agent needs at least 1 approval per change; 0 would let pins move unreviewed.")
            agent.required_approvals = required_approvals
        if approver_group is not None:
            if not Group.objects.filter(name=approver_group).exists():
                raise DomainError(f"There is no group {approver_group!r}: create it first or use 'reviewers'.")
            agent.approver_group = approver_group
        if regression_tolerance is not None:
            if regression_tolerance < 0:
                raise DomainError("The regression tolerance counts tickets and cannot be negative.")
            agent.regression_tolerance = regression_tolerance
        after = _agent_snapshot(agent)
        if after == before:
            return agent
        saved_by(agent, actor)
        audit_record(actor=actor, verb="agent.policy", target=agent, agent_id=agent.pk, before=before, after=after)
    return agent


@dataclass(frozen=True)
class SyncResult:
    """What a sync found: versions made outside promptctl, the newest number, and hash disagreements."""

    new_versions: list[AgentVersion]
    latest_version_number: int
    mismatched_numbers: list[int]


def agent_sync(*, agent: Agent, actor: Any = None) -> SyncResult:
    """Record every server version promptctl does not know as changed outside promptctl.

    The agent row is locked while recording, and ``version_create`` holds the
    same lock across its remote update, so a sync never mistakes a version
    promptctl is making right now for an outside change.
    """
    remote_versions = gateway.agent_versions(agent_id=agent.remote_id)
    with transaction.atomic():
        agent = Agent.objects.select_for_update().get(pk=agent.pk)
        known = dict(agent.versions.values_list("number", "config_sha256"))
        new_versions = [
            _version_record(agent=agent, remote=remote, origin=AgentVersion.Origin.OUTSIDE, actor=actor)
            for remote in remote_versions
            if remote.version not in known
        ]
        mismatched = [r.version for r in remote_versions if r.version in known and known[r.version] != r.config_sha256]
        if mismatched:
            audit_record(
                actor=actor,
                verb="agent.sync_mismatch",
                target=agent,
                agent_id=agent.pk,
                after={"mismatched_numbers": mismatched},
            )
        newest = max([agent.latest_version_number] + [r.version for r in remote_versions])
        if newest != agent.latest_version_number:
            before = _agent_snapshot(agent)
            agent.latest_version_number = newest
            saved_by(agent, actor)
            audit_record(
                actor=actor, verb="agent.sync", target=agent, agent_id=agent.pk, before=before, after=_agent_snapshot(agent)
            )
    return SyncResult(new_versions=new_versions, latest_version_number=newest, mismatched_numbers=mismatched)


def version_create(*, agent: Agent, system_prompt: str, actor: Any, model: str | None = None) -> AgentVersion:
    """Make a new server version on top of the last one promptctl knows, and record it.

    The remote update is conditional on that version; when the server has moved
    on, the agent is synced and the refusal names what the server now has.
    """
    _require(actor, "add_agentversion", "create versions")
    if not (system_prompt or "").strip():
        raise DomainError("The system prompt is empty: a version needs instructions.")
    conflict: gateway.VersionConflict | None = None
    with transaction.atomic():
        agent = Agent.objects.select_for_update().get(pk=agent.pk)
        expected = agent.latest_version_number
        latest = agent.versions.filter(number=expected).first()
        if latest is not None and latest.system_prompt == system_prompt and (model is None or model == latest.model):
            raise DomainError(
                f"Version {expected} of {agent.name} already has exactly this system prompt: nothing to create."
            )
        try:
            remote = gateway.agent_update(
                agent_id=agent.remote_id, expected_version=expected, system=system_prompt, model=model
            )
        except gateway.VersionConflict as error:
            conflict = error
        else:
            before = _agent_snapshot(agent)
            version = _version_record(agent=agent, remote=remote, origin=AgentVersion.Origin.PROMPTCTL, actor=actor)
            agent.latest_version_number = max(agent.latest_version_number, remote.version)
            saved_by(agent, actor)
            audit_record(
                actor=actor, verb="agent.latest_version", target=agent, agent_id=agent.pk, before=before,
                after=_agent_snapshot(agent),
            )
            return version
    result = agent_sync(agent=agent, actor=actor)
    found = ", ".join(f"v{v.number}" for v in result.new_versions) or "none new"
    server_version = conflict.server_version or result.latest_version_number
    raise DomainError(
        f"Agent {agent.name} changed on the server since promptctl last saw it: your edit was made against version "
        f"{expected}, but the server now has version {server_version}. promptctl synced and recorded the versions "
        f"changed outside promptctl ({found}). Nothing was created: review them with "
        f"`promptctl version diff --agent {agent.name} {expected} {server_version}` and create your version again."
    )


# --- change requests ---------------------------------------------------------------


def _previously_pinned_numbers(*, agent: Agent, channel: str) -> set[int]:
    applied = ChangeRequest.objects.filter(
        agent=agent,
        channel=channel,
        status=ChangeRequest.Status.APPLIED,
        kind__in=[ChangeRequest.Kind.PROMOTE, ChangeRequest.Kind.ROLLBACK],
    )
    return set(applied.values_list("target_version__number", flat=True))


def change_request_create(
    *,
    agent: Agent,
    kind: str,
    target_number: int,
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
    """
    _require(actor, "add_changerequest", "file change requests")
    if filed_by_promptctl and kind != ChangeRequest.Kind.ROLLBACK:
        raise DomainError("promptctl files only rollbacks on its own (ending a canary); other kinds need a person.")
    if kind not in ChangeRequest.Kind.values:
        raise DomainError(f"Unknown kind {kind!r}: choose promote, rollback or canary.")
    if not _CHANNEL.match(channel or ""):
        raise DomainError(f"Channel {channel!r} is not allowed: use lowercase letters, digits and dashes.")
    reason = (reason or "").strip()
    if not reason:
        raise DomainError("Give a reason: reviewers and auditors read it to know why the pin should move.")
    accept_regression_reason = (accept_regression_reason or "").strip()
    target = agent.versions.filter(number=target_number).first()
    if target is None:
        raise DomainError(
            f"{agent.name} has no version {target_number} recorded. If it was made on the server, run "
            f"`promptctl agent sync --agent {agent.name}` first; `promptctl version list --agent {agent.name}` lists them."
        )
    if kind == ChangeRequest.Kind.CANARY:
        if canary_percent is None or not 1 <= canary_percent <= 99:
            raise DomainError("A canary needs --percent between 1 and 99 (the share of traffic that gets the target).")
    elif canary_percent:
        raise DomainError("--percent only applies to canary requests.")
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
            raise DomainError(f"Version {target.number} is already the {channel} pin of {agent.name}: nothing would change.")
        if kind == ChangeRequest.Kind.ROLLBACK:
            earlier = _previously_pinned_numbers(agent=agent, channel=channel)
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
        )
        change = saved_by(
            ChangeRequest(
                agent=agent,
                channel=channel,
                kind=kind,
                base_version=pinned,
                base_pin_revision=pin.revision if pin else 0,
                target_version=target,
                target_config_sha256=target.config_sha256,
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
        audit_record(actor=actor, verb="change.request", target=change, agent_id=agent.pk, after=_change_snapshot(change))
    return change


def _change_locked(change: ChangeRequest) -> ChangeRequest:
    return (
        ChangeRequest.objects.select_for_update(of=("self",))
        .select_related("agent", "target_version", "base_version", "requested_by")
        .get(pk=change.pk)
    )


def _state_refusal(change: ChangeRequest, doing: str) -> DomainError:
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
    return DomainError(f"Cannot {doing} change request #{change.pk}: {why}.")


def _close(change: ChangeRequest, *, status: str, actor: Any, reason: str) -> None:
    before = _change_snapshot(change)
    change.status = status
    change.status_reason = reason
    change.closed_at = timezone.now()
    change.closed_by = actor
    saved_by(change, actor)
    audit_record(
        actor=actor, verb=f"change.{status}", target=change, agent_id=change.agent_id, before=before, after=_change_snapshot(change)
    )


def _require_reviewer(reviewer: Any, change: ChangeRequest, doing: str) -> None:
    if reviewer.pk == change.requested_by_id:
        raise DomainError(
            f"{reviewer.username} filed change request #{change.pk} and cannot {doing} it: "
            "a different reviewer must decide (four-eyes rule; this applies to admins too)."
        )
    _require(reviewer, "approve_changerequest", f"{doing} change requests")
    group = change.agent.approver_group
    if not reviewer.groups.filter(name=group).exists():
        raise DomainError(
            f"{reviewer.username} may not {doing} changes to {change.agent.name}: only members of the "
            f"{group!r} group may. Ask an admin to add them, or to pick another reviewer."
        )


def _decisions(change: ChangeRequest) -> dict[str, int]:
    counts = change.approvals.aggregate(
        approvals=Count("pk", filter=Q(decision=Approval.Decision.APPROVE)),
        rejections=Count("pk", filter=Q(decision=Approval.Decision.REJECT)),
    )
    return {"approvals": counts["approvals"], "rejections": counts["rejections"]}


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
        if _decisions(change)["approvals"] >= change.approvals_required:
            before = _change_snapshot(change)
            change.status = ChangeRequest.Status.APPROVED
            change.approved_at = timezone.now()
            saved_by(change, reviewer)
            audit_record(
                actor=reviewer, verb="change.approved", target=change, agent_id=change.agent_id,
                before=before, after=_change_snapshot(change),
            )
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
        approval = _decision_record(change=change, reviewer=reviewer, decision=Approval.Decision.REJECT, comment=comment)
        _close(change, status=ChangeRequest.Status.REJECTED, actor=reviewer, reason=f"rejected by {reviewer.username}: {comment}")
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
    return change


def change_request_apply(*, change: ChangeRequest, actor: Any) -> Pin:
    """Move the pin as an approved request says, or refuse and say why.

    Refused when the request is not approved, when its approvals are short of
    what it was filed with, when the promotion gate refuses, or when the pin
    moved since the request was filed: then the request is superseded (that
    much is committed) and the message names the version pinned now. Applying
    supersedes every other open request for the same pin, since they were
    filed against a state that no longer holds.
    """
    _require(actor, "apply_changerequest", "apply change requests")
    superseded_message: str | None = None
    with transaction.atomic():
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
                decisions = _decisions(change)
                raise DomainError(
                    f"Cannot apply change request #{change.pk}: it is not approved yet "
                    f"({decisions['approvals']} of {change.approvals_required} approvals). Ask a reviewer in "
                    f"{change.agent.approver_group!r} to approve it."
                )
            raise _state_refusal(change, "apply")
        decisions = _decisions(change)
        if decisions["rejections"]:
            raise DomainError(f"Cannot apply change request #{change.pk}: a reviewer rejected it.")
        if decisions["approvals"] < change.approvals_required:
            raise DomainError(
                f"Cannot apply change request #{change.pk}: it has {decisions['approvals']} of the "
                f"{change.approvals_required} approvals it needs."
            )
        if change.target_version.config_sha256 != change.target_config_sha256:
            raise DomainError(
                f"Cannot apply change request #{change.pk}: version {change.target_version.number}'s configuration "
                "no longer matches what was approved. Report this: versions are immutable."
            )
        current_revision = pin.revision if pin else 0
        if current_revision != change.base_pin_revision:
            superseded_message = _moved_message(change=change, pin=pin)
            _close(change, status=ChangeRequest.Status.SUPERSEDED, actor=actor, reason=superseded_message)
        else:
            promotion_gate().apply_gate(change=change)
            pin = _pin_move(agent=agent, pin=pin, change=change, actor=actor)
            _close(
                change,
                status=ChangeRequest.Status.APPLIED,
                actor=actor,
                reason=f"applied by {actor.username}: {change.channel} pin now at v{pin.version.number}",
            )
            others = (
                ChangeRequest.objects.select_for_update(of=("self",))
                .select_related("agent", "target_version", "base_version", "requested_by")
                .filter(agent=agent, channel=change.channel, status__in=ChangeRequest.OPEN_STATUSES)
                .exclude(pk=change.pk)
                .order_by("pk")
            )
            for other in others:
                _close(other, status=ChangeRequest.Status.SUPERSEDED, actor=actor, reason=_moved_message(change=other, pin=pin))
    if superseded_message is not None:
        raise DomainError(superseded_message)
    return pin


def _moved_message(*, change: ChangeRequest, pin: Pin | None) -> str:
    then = f"version {change.base_version.number}" if change.base_version_id else "no pin"
    now = f"version {pin.version.number}" if pin else "no pin"
    canary = f" with a canary of version {pin.canary_version.number} at {pin.canary_percent}%" if pin and pin.canary_version_id else ""
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
