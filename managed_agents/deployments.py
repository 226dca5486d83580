"""Deployments on Managed Agents: read them, and move one's agent version with read-check-write-verify.

A deployment runs an agent on the server (on a cron schedule or on demand),
pinned to ``agent={"type": "agent", "id", "version"}``; given only the agent id
it follows the latest version. That pin is a second place a production version
lives, so promptctl moves it with its own pin and watches it for changes made
elsewhere.

``deployments.update`` has no concurrency guard (no expected version or ETag in
its parameters), so ``deployment_pin`` does what it can instead: it reads the
deployment first (refusing an archived one, or one that runs another agent),
writes only when the version differs, and reads it back to verify the server
holds the version it was asked for. Setting a version is idempotent, so the
write is retried like a read; a lost answer is settled by the read-back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from managed_agents.agents import WRITE_MARKER, write_marker
from managed_agents.client import GatewayError, client, refusal, with_retries

if TYPE_CHECKING:
    import anthropic
else:
    from managed_agents.sdk import anthropic  # the SDK is imported on first use (managed_agents.sdk)


class DeploymentMissing(GatewayError):
    """The server has no such deployment (deleted, or a mistyped id)."""


class DeploymentArchived(GatewayError):
    """The deployment is archived: it can no longer be updated, only replaced."""


class DeploymentNotVerified(GatewayError):
    """The update was answered, but reading the deployment back shows another version."""


@dataclass(frozen=True)
class RemoteDeployment:
    """One deployment as the server reports it; ``version`` is None when it follows the agent's latest version."""

    id: str
    name: str
    agent_id: str
    version: int | None
    status: str  # "active" or "paused" (archived deployments report "active": see ``archived``)
    paused_reason: str  # "" unless paused: "manual" (someone paused it) or "error"
    archived: bool
    updated_at: datetime | None

    @property
    def state(self) -> str:
        """One word for people: archived, paused or active."""
        if self.archived:
            return "archived"
        return "paused" if self.status == "paused" else "active"


def _remote_deployment(deployment: Any) -> RemoteDeployment:
    reference = deployment.agent
    if isinstance(reference, str):  # a bare id: the deployment follows the latest version
        agent_id, version = reference, None
    else:
        agent_id = getattr(reference, "id", "") or ""
        raw = getattr(reference, "version", None)
        version = int(raw) if raw is not None else None
    reason = getattr(deployment, "paused_reason", None)
    return RemoteDeployment(
        id=deployment.id,
        name=getattr(deployment, "name", "") or "",
        agent_id=agent_id,
        version=version,
        status=str(getattr(deployment, "status", "active") or "active"),
        paused_reason=str(getattr(reason, "type", "") or "") if reason is not None else "",
        archived=getattr(deployment, "archived_at", None) is not None,
        updated_at=getattr(deployment, "updated_at", None),
    )


def deployment_retrieve(*, deployment_id: str) -> RemoteDeployment:
    """The deployment as the server holds it now; ``DeploymentMissing`` when there is none."""
    try:
        deployment = with_retries(
            lambda: client_deployments().retrieve(deployment_id), what=f"retrieve deployment {deployment_id}"
        )
    except anthropic.NotFoundError as error:
        raise DeploymentMissing(
            f"Deployment {deployment_id} does not exist on the server (deleted, or a mistyped id)."
        ) from error
    except anthropic.APIStatusError as error:
        raise refusal(error, what=f"retrieve deployment {deployment_id}") from error
    return _remote_deployment(deployment)


def deployment_list(*, agent_id: str | None = None, include_archived: bool = False) -> list[RemoteDeployment]:
    """Every deployment (of ``agent_id`` when given), archived ones only when asked for."""
    params: dict[str, Any] = {"limit": 100}
    if agent_id:
        params["agent_id"] = agent_id
    if include_archived:
        params["include_archived"] = True
    try:
        listed = with_retries(lambda: list(client_deployments().list(**params)), what="list deployments")
    except anthropic.APIStatusError as error:
        raise refusal(error, what="list deployments") from error
    return [_remote_deployment(deployment) for deployment in listed]


def deployment_pin(
    *, deployment_id: str, agent_id: str, version: int, write_if_equal: bool = False
) -> tuple[RemoteDeployment, RemoteDeployment]:
    """Pin the deployment to ``agent_id`` at ``version``; returns (as read before, as read back after).

    Read-check-write-verify, since the API offers no conditional update: an
    archived deployment, or one that runs another agent, is refused before any
    write; a deployment already at ``version`` is left alone (no write) unless
    ``write_if_equal`` (a deployment that may follow latest reads as the latest
    number: only an explicit write pins it);
    otherwise the update sends the explicit version (never the bare id, which
    would float to latest) and the deployment is read back, and a read-back
    that shows another version raises ``DeploymentNotVerified``.
    """
    before = deployment_retrieve(deployment_id=deployment_id)
    if before.archived:
        raise DeploymentArchived(
            f"Deployment {deployment_id} ({before.name}) is archived, so it can no longer run or be moved; "
            "unbind it, or bind the deployment that replaced it."
        )
    if before.agent_id != agent_id:
        raise GatewayError(
            f"Deployment {deployment_id} ({before.name}) runs agent {before.agent_id}, not {agent_id}: "
            "promptctl will not point it at another agent; unbind it, or bind the right deployment."
        )
    if before.version == version and not write_if_equal:
        return before, before
    what = f"pin deployment {deployment_id} to version {version}"
    try:
        with_retries(
            lambda: client_deployments().update(
                deployment_id, agent={"type": "agent", "id": agent_id, "version": version}
            ),
            what=what,
        )
    except anthropic.NotFoundError as error:
        raise DeploymentMissing(f"Deployment {deployment_id} disappeared while promptctl was moving it.") from error
    except anthropic.APIStatusError as error:
        raise refusal(error, what=what) from error
    after = deployment_retrieve(deployment_id=deployment_id)
    if after.version != version or after.agent_id != agent_id:
        found = f"v{after.version}" if after.version is not None else "latest (unpinned)"
        raise DeploymentNotVerified(
            f"Deployment {deployment_id} ({after.name}) was asked to run version {version} but reads back as {found}: "
            "someone else may have changed it at the same moment. Check it and restore it."
        )
    return before, after


def deployment_create(
    *, name: str, agent_id: str, version: int, environment_id: str, message: str, marker: str | None = None
) -> RemoteDeployment:
    """Create a manual-only deployment of ``agent_id`` pinned to ``version`` that sends ``message`` to each session.

    promptctl does not manage deployments' lives (people make them where they
    run); this is for the demo and for operators setting one up. Safe to retry:
    the create carries a marker in its metadata, and a retry after a lost
    answer adopts the deployment that carries it instead of making a second.
    """
    marker = marker or write_marker()
    api = client_deployments()

    def landed() -> Any | None:
        for deployment in api.list(agent_id=agent_id, limit=100):
            if (getattr(deployment, "metadata", None) or {}).get(WRITE_MARKER) == marker:
                return deployment
        return None

    what = f"create deployment {name!r}"
    try:
        created = with_retries(
            lambda: api.create(
                name=name,
                agent={"type": "agent", "id": agent_id, "version": version},
                environment_id=environment_id,
                initial_events=[{"type": "user.message", "content": [{"type": "text", "text": message}]}],
                metadata={WRITE_MARKER: marker},
            ),
            what=what,
            landed=landed,
        )
    except anthropic.APIStatusError as error:
        raise refusal(error, what=what) from error
    return _remote_deployment(created)


def deployment_unpause(*, deployment_id: str) -> RemoteDeployment:
    """Let the deployment's schedule fire again (promptctl unpauses only on a person's restore)."""
    try:
        deployment = with_retries(
            lambda: client_deployments().unpause(deployment_id), what=f"unpause deployment {deployment_id}"
        )
    except anthropic.NotFoundError as error:
        raise DeploymentMissing(f"Deployment {deployment_id} does not exist on the server.") from error
    except anthropic.APIStatusError as error:
        raise refusal(error, what=f"unpause deployment {deployment_id}") from error
    return _remote_deployment(deployment)


def client_deployments() -> Any:
    """The SDK's deployments resource on the process's client."""
    return client().beta.deployments
