"""Environments and agents on Managed Agents: create, read, the conditional update, archive.

Versions are 64-bit integers handed out by the server, never assumed small or
contiguous. ``agent_update`` is optimistic concurrency: a stale
``expected_version`` fails after exactly one HTTP request with
``VersionConflict`` naming the server's version, and is never retried.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from managed_agents import confighash
from managed_agents.client import (
    GatewayError,
    UpstreamUnavailable,
    VersionConflict,
    client,
    describe,
    is_transient,
    refusal,
    with_retries,
)
from managed_agents.validation import agent_config_check

if TYPE_CHECKING:
    import anthropic
else:
    from managed_agents.sdk import anthropic  # the SDK is imported on first use (managed_agents.sdk)

_IDENTITY_FIELDS = {"id", "version", "created_at", "updated_at", "archived_at", "type"}
# "... is at version 7", "current version: 7", "server version 7": the number the server holds now.
_CONFLICT_VERSION = re.compile(r"(?:current|server|is at|now at)[^0-9]{0,40}?version[^0-9]{0,20}?(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class RemoteEnvironment:
    id: str
    name: str


@dataclass(frozen=True)
class RemoteAgentVersion:
    agent_id: str
    version: int
    name: str
    model: str
    system: str
    config: dict
    config_sha256: str  # over the whole dump: moves with SDK upgrades; kept for the record only
    config_canonical_sha256: str  # over the behaviour-defining fields (managed_agents.confighash): compare this
    created_at: datetime | None


# --- Environments -------------------------------------------------------------


def environment_ensure(*, name: str) -> RemoteEnvironment:
    """The environment called ``name``, created on first use (names are reused, not duplicated)."""
    api = client().beta.environments
    for environment in with_retries(lambda: list(api.list()), what="list environments"):
        if environment.name == name and not environment.archived_at:
            return RemoteEnvironment(id=environment.id, name=environment.name)
    created = with_retries(
        lambda: api.create(name=name, config={"type": "cloud", "networking": {"type": "unrestricted"}}),
        what=f"create environment {name!r}",
    )
    return RemoteEnvironment(id=created.id, name=created.name)


def environment_archive(*, environment_id: str) -> None:
    with_retries(
        lambda: client().beta.environments.archive(environment_id), what=f"archive environment {environment_id}"
    )


# --- Agents -----------------------------------------------------------------


def _model_id(model: Any) -> str:
    if isinstance(model, str):
        return model
    return getattr(model, "id", None) or str(model)


def _agent_version(agent: Any) -> RemoteAgentVersion:
    config = {key: value for key, value in agent.model_dump(mode="json").items() if key not in _IDENTITY_FIELDS}
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return RemoteAgentVersion(
        agent_id=agent.id,
        version=int(agent.version),
        name=agent.name,
        model=_model_id(agent.model),
        system=agent.system or "",
        config=config,
        config_sha256=hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
        config_canonical_sha256=confighash.config_sha256(config),
        created_at=agent.updated_at or agent.created_at,
    )


def agent_create(*, name: str, model: str, system: str) -> RemoteAgentVersion:
    """Create the remote agent; its first version is whatever number the server hands out.

    The configuration is checked locally first (``managed_agents.validation``):
    input the API or promptctl's database would refuse never makes a remote agent.
    """
    agent_config_check(name=name, model=model, system=system)
    try:
        agent = with_retries(
            lambda: client().beta.agents.create(name=name, model=model, system=system),
            what=f"create agent {name!r}",
        )
    except anthropic.APIStatusError as error:
        raise refusal(error, what=f"create agent {name!r}") from error
    return _agent_version(agent)


def agent_retrieve(*, agent_id: str, version: int | None = None) -> RemoteAgentVersion:
    try:
        agent = with_retries(
            lambda: client().beta.agents.retrieve(agent_id, version=anthropic.omit if version is None else version),
            what=f"retrieve agent {agent_id}",
        )
    except anthropic.NotFoundError as error:
        suffix = f" version {version}" if version is not None else ""
        raise GatewayError(f"Agent {agent_id}{suffix} does not exist on the server.") from error
    except anthropic.APIStatusError as error:
        raise refusal(error, what=f"retrieve agent {agent_id}") from error
    return _agent_version(agent)


def agent_versions(*, agent_id: str) -> list[RemoteAgentVersion]:
    """Every version the server holds for the agent, oldest first."""
    try:
        versions = with_retries(
            lambda: list(client().beta.agents.versions.list(agent_id)), what=f"list versions of agent {agent_id}"
        )
    except anthropic.APIStatusError as error:
        raise refusal(error, what=f"list versions of agent {agent_id}") from error
    return sorted((_agent_version(v) for v in versions), key=lambda v: v.version)


def _conflict_server_version(error: anthropic.APIStatusError) -> int | None:
    body = error.body if isinstance(error.body, dict) else {}
    details = body.get("error", body) if isinstance(body, dict) else {}
    for key in ("current_version", "server_version"):
        value = details.get(key) if isinstance(details, dict) else None
        if isinstance(value, int):
            return value
    match = _CONFLICT_VERSION.search(getattr(error, "message", "") or str(error))
    return int(match.group(1)) if match else None


def agent_update(
    *, agent_id: str, expected_version: int, system: str | None = None, model: str | None = None
) -> RemoteAgentVersion:
    """Make a new version only if ``expected_version`` is still the latest (optimistic concurrency).

    A 409 is never retried: it means another change landed first, and the
    caller must look at what the server now has before deciding again.
    """
    changes: dict[str, Any] = {}
    if system is not None:
        changes["system"] = system
    if model is not None:
        changes["model"] = model
    if not changes:
        raise GatewayError("Nothing to change: give a new system prompt or model.")
    agent_config_check(model=model, system=system)  # before the request: refused input makes no version
    try:
        agent = client().beta.agents.update(agent_id, version=expected_version, **changes)
    except anthropic.ConflictError as error:
        server_version = _conflict_server_version(error)
        now = (
            f"the server now has version {server_version}"
            if server_version is not None
            else "the server has a newer version"
        )
        raise VersionConflict(
            f"Another change landed first: agent {agent_id} is no longer at version {expected_version}; {now}. "
            "Sync the agent, review what changed, and make your edit on top of the latest version.",
            server_version=server_version,
        ) from error
    except anthropic.APIStatusError as error:
        if is_transient(error):
            raise UpstreamUnavailable(
                f"Managed Agents could not update agent {agent_id} ({describe(error)}); nothing was changed "
                "by promptctl. Sync the agent and try again."
            ) from error
        raise refusal(error, what=f"update agent {agent_id}") from error
    except (anthropic.APIConnectionError, anthropic.APITimeoutError) as error:
        raise UpstreamUnavailable(
            f"Could not reach Managed Agents to update agent {agent_id} ({describe(error)}). The update may or "
            "may not have landed: sync the agent before trying again."
        ) from error
    return _agent_version(agent)


def agent_archive(*, agent_id: str) -> None:
    try:
        with_retries(lambda: client().beta.agents.archive(agent_id), what=f"archive agent {agent_id}")
    except anthropic.APIStatusError as error:
        raise refusal(error, what=f"archive agent {agent_id}") from error
