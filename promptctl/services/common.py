"""What every change-control service shares: the permission check, audit snapshots, version records.

Snapshots are what the audit log records of a row before and after a change;
they live in one place so every service records the same fields.
"""

from __future__ import annotations

from typing import Any

from managed_agents import gateway
from promptctl.audit import audit_record
from promptctl.errors import DomainError, Fix
from promptctl.models import Agent, AgentVersion, ChangeRequest, Pin
from promptctl.selectors import change_request_as_dict


class PermissionRefused(DomainError):
    """The actor may not do this (missing permission, or the four-eyes rule); the API answers 403."""


class ChangeConflict(DomainError):
    """The request no longer fits the state it was filed or judged against (decided, superseded); the API answers 409."""


ROLE_FIX = Fix(
    cli="Ask an admin for the right role (`promptctl user add NAME --role ...`).",
    web="Ask an admin for the right role (admin: Users, then the user's Groups).",
)


def permission_require(*, user: Any, permission: str, doing: str, next_step: str | Fix) -> None:
    """Refuse unless ``user`` is active and holds ``permission`` ("app_label.codename"); every app's services use it.

    The refusal names who, what was refused, the permission it needs and ``next_step`` (one sentence for every
    door, or a ``Fix`` when the CLI and the web do it differently).
    """
    if user is None or not user.is_active or not user.has_perm(permission):
        who = getattr(user, "username", None) or "An anonymous user"
        what = f"{who} may not {doing}: that needs the {permission} permission."
        if isinstance(next_step, Fix):
            raise PermissionRefused(what, code="permission_refused", fields=(), fix=next_step)
        raise PermissionRefused(f"{what} {next_step}", code="permission_refused")


def _require(user: Any, permission: str, doing: str) -> None:
    permission_require(user=user, permission=f"promptctl.{permission}", doing=doing, next_step=ROLE_FIX)


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
        "canary_evidence_above_percent": agent.canary_evidence_above_percent,
    }


def _version_snapshot(version: AgentVersion) -> dict[str, Any]:
    return {
        "agent": version.agent.name,
        "number": version.number,
        "origin": version.origin,
        "model": version.model,
        "config_sha256": version.config_sha256,
        "config_canonical_sha256": version.config_canonical_sha256,
        "created_by": _username(version.created_by),
        "server_created_at": version.server_created_at,
    }


def _change_snapshot(change: ChangeRequest) -> dict[str, Any]:
    """The request as the audit log records it: what ``change list --json`` shows, plus the pin revision it was filed on."""
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
        "canary_version": pin.canary_version.number if pin.canary_version else None,
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
        config_canonical_sha256=remote.config_canonical_sha256,
        origin=origin,
        created_by=actor if origin == AgentVersion.Origin.PROMPTCTL else None,
        server_created_at=remote.created_at,
    )
    verb = "version.create" if origin == AgentVersion.Origin.PROMPTCTL else "version.discover"
    audit_record(actor=actor, verb=verb, target=version, agent_id=agent.pk, after=_version_snapshot(version))
    return version
