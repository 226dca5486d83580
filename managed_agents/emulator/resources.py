"""Environments and agents: create, read, list, archive; agent updates make immutable versions."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from typing import Any

from . import agentconfig, errors
from .pagination import page_limit, paginate
from .state import Agent, AgentVersion, EmulatorState, Environment, new_id
from .timefilters import created_at_filter, include_archived

DEFAULT_CLOUD_CONFIG: dict[str, Any] = {
    "type": "cloud",
    "networking": {"type": "unrestricted"},
    "packages": {"type": "packages", "apt": [], "cargo": [], "gem": [], "go": [], "npm": [], "pip": []},
}


def _required_text(body: Mapping[str, Any], field: str, what: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value.strip():
        raise errors.invalid_request(f"{what}: `{field}` is required and must be a non-empty string.")
    return value


def _metadata(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise errors.invalid_request(f"{what}: `metadata` must be an object of string keys to string values.")
    if len(value) > 16:
        raise errors.invalid_request(f"{what}: `metadata` holds {len(value)} pairs; the limit is 16.")
    return dict(value)


# --- environments -------------------------------------------------------------------------


def environment_create(state: EmulatorState, body: Mapping[str, Any]) -> dict[str, Any]:
    name = _required_text(body, "name", "Creating an environment")
    config = body.get("config") or DEFAULT_CLOUD_CONFIG
    if config.get("type") == "cloud":
        config = {
            "type": "cloud",
            "networking": config.get("networking") or DEFAULT_CLOUD_CONFIG["networking"],
            "packages": {**DEFAULT_CLOUD_CONFIG["packages"], **(config.get("packages") or {})},
        }
    now = time.time()
    with state.lock:
        environment = Environment(
            id=new_id("env"),
            sequence=state.next_sequence(),
            name=name,
            description=body.get("description"),
            metadata=_metadata(body.get("metadata"), "Creating an environment"),
            config=config,
            scope=body.get("scope") or "organization",
            created_at=now,
            updated_at=now,
        )
        state.environments[environment.id] = environment
        return environment.to_json()


def environment_get(state: EmulatorState, environment_id: str) -> Environment:
    """Caller holds the lock."""
    environment = state.environments.get(environment_id)
    if environment is None:
        raise errors.not_found("environment", environment_id)
    return environment


def environment_retrieve(state: EmulatorState, environment_id: str) -> dict[str, Any]:
    with state.lock:
        return environment_get(state, environment_id).to_json()


def environment_list(state: EmulatorState, query: Mapping[str, str]) -> dict[str, Any]:
    limit = page_limit(query.get("limit"))
    with state.lock:
        items = [e for e in state.environments.values() if include_archived(query) or e.archived_at is None]
        return paginate(
            items,
            sort_key=lambda e: e.sequence,
            render=Environment.to_json,
            limit=limit,
            cursor=query.get("page"),
            descending=True,
        )


def environment_archive(state: EmulatorState, environment_id: str) -> dict[str, Any]:
    with state.lock:
        environment = environment_get(state, environment_id)
        if environment.archived_at is None:
            environment.archived_at = environment.updated_at = time.time()
        return environment.to_json()


def environment_delete(state: EmulatorState, environment_id: str) -> dict[str, Any]:
    with state.lock:
        environment_get(state, environment_id)
        del state.environments[environment_id]
        return {"id": environment_id, "type": "environment_deleted"}


# --- agents ---------------------------------------------------------------------------------


def _model_config(value: Any, what: str) -> dict[str, Any]:
    """A model string or object becomes the response's model object, effort resolved as the API does."""
    return agentconfig.model_resolved(value, what)


def _description(value: Any, what: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise errors.invalid_request(f"{what}: `description` must be a string or null.")
    return value or None


def _next_version_number(state: EmulatorState, previous: int | None) -> int:
    """Sequential numbers count 1, 2, 3; timestamp numbers are large, increasing and never contiguous.

    The timestamp style imitates a live API that hands out time-derived 64-bit numbers, so
    callers that assume small or contiguous versions break here first, not in production.
    """
    if state.knobs.versions == "timestamp":
        now_microseconds = time.time_ns() // 1000
        floor = (previous or 0) + 2 + random.randrange(1000)
        return max(now_microseconds, floor)
    return (previous or 0) + 1


def agent_create(state: EmulatorState, body: Mapping[str, Any]) -> dict[str, Any]:
    what = "Creating an agent"
    tools = agentconfig.tools_resolved(body.get("tools"), what)
    mcp_servers = agentconfig.mcp_servers_checked(body.get("mcp_servers"), what)
    agentconfig.mcp_references_checked(tools, mcp_servers, what)
    config: dict[str, Any] = {
        "name": _required_text(body, "name", what),
        "description": _description(body.get("description"), what),
        "model": _model_config(body.get("model"), what),
        "system": body.get("system"),
        "tools": tools,
        "mcp_servers": mcp_servers,
        "skills": agentconfig.skills_resolved(body.get("skills"), what),
        "metadata": _metadata(body.get("metadata"), what),
        "execution_identity": body.get("execution_identity") or {"type": "service_account"},
        "multiagent": body.get("multiagent"),
    }
    now = time.time()
    with state.lock:
        version = AgentVersion(number=_next_version_number(state, None), config=config, created_at=now)
        agent = Agent(id=new_id("agent"), sequence=state.next_sequence(), created_at=now, versions=[version])
        state.agents[agent.id] = agent
        return agent.to_json()


def agent_get(state: EmulatorState, agent_id: str) -> Agent:
    """Caller holds the lock."""
    agent = state.agents.get(agent_id)
    if agent is None:
        raise errors.not_found("agent", agent_id)
    return agent


def agent_version_get(agent: Agent, raw_version: Any) -> AgentVersion:
    """Caller holds the lock; refuses versions that are not numbers or do not exist."""
    try:
        number = int(raw_version)
    except (TypeError, ValueError):
        raise errors.invalid_request(f"Agent version {raw_version!r} is not a whole number (versions start at 1).")
    version = agent.version(number)
    if version is None:
        raise errors.ApiError(
            404,
            "not_found_error",
            f"Agent {agent.id} has no version {number}; its current version is {agent.latest.number}. "
            "List its versions at /v1/agents/{id}/versions.",
        )
    return version


def agent_retrieve(state: EmulatorState, agent_id: str, query: Mapping[str, str]) -> dict[str, Any]:
    with state.lock:
        agent = agent_get(state, agent_id)
        version = agent_version_get(agent, query["version"]) if query.get("version") else None
        return agent.to_json(version)


def agent_update(state: EmulatorState, agent_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """Every accepted update makes a new immutable version; a stale ``version`` is a 409.

    ``version`` in the body is optimistic concurrency: it must equal the current version,
    so two editors starting from the same version cannot silently overwrite each other.
    """
    what = f"Updating agent {agent_id}"
    with state.lock:
        agent = agent_get(state, agent_id)
        current = agent.latest
        if "version" in body and body["version"] is not None and body["version"] != current.number:
            raise errors.conflict(
                f"Agent {agent_id} is at version {current.number}, but the update was based on version "
                f"{body['version']}. Retrieve the agent, re-apply your change to version {current.number}, "
                "and send that version."
            )
        if agent.archived_at is not None:
            raise errors.invalid_request(f"{what}: the agent is archived; archived agents cannot be changed.")
        config = dict(current.config)
        if "name" in body:
            config["name"] = _required_text(body, "name", what)
        if "model" in body:
            config["model"] = _model_config(body["model"], what)
        if "description" in body:
            config["description"] = _description(body["description"], what)
        for field in ("system", "multiagent"):
            if field in body:
                config[field] = body[field] if body[field] != "" else None
        if "tools" in body:
            config["tools"] = agentconfig.tools_resolved(body["tools"], what)
        if "mcp_servers" in body:
            config["mcp_servers"] = agentconfig.mcp_servers_checked(body["mcp_servers"], what)
        if "skills" in body:
            config["skills"] = agentconfig.skills_resolved(body["skills"], what)
        agentconfig.mcp_references_checked(config["tools"], config["mcp_servers"], what)
        if "execution_identity" in body:
            config["execution_identity"] = body["execution_identity"] or {"type": "service_account"}
        if "metadata" in body and body["metadata"] is not None:
            metadata = dict(config["metadata"])
            for key, value in body["metadata"].items():
                if value is None:
                    metadata.pop(key, None)
                else:
                    metadata[key] = value
            config["metadata"] = _metadata(metadata, what)
        version = AgentVersion(
            number=_next_version_number(state, current.number), config=config, created_at=time.time()
        )
        agent.versions.append(version)
        return agent.to_json()


def agent_list(state: EmulatorState, query: Mapping[str, str]) -> dict[str, Any]:
    limit = page_limit(query.get("limit"))
    keep_created = created_at_filter(query)
    with state.lock:
        items = [
            agent
            for agent in state.agents.values()
            if (include_archived(query) or agent.archived_at is None) and keep_created(agent.created_at)
        ]
        return paginate(
            items,
            sort_key=lambda agent: agent.sequence,
            render=Agent.to_json,
            limit=limit,
            cursor=query.get("page"),
            descending=True,
        )


def agent_versions_list(state: EmulatorState, agent_id: str, query: Mapping[str, str]) -> dict[str, Any]:
    """Newest version first, like the other lists."""
    limit = page_limit(query.get("limit"))
    with state.lock:
        agent = agent_get(state, agent_id)
        return paginate(
            list(agent.versions),
            sort_key=lambda version: version.number,
            render=agent.to_json,
            limit=limit,
            cursor=query.get("page"),
            descending=True,
        )


def agent_archive(state: EmulatorState, agent_id: str) -> dict[str, Any]:
    with state.lock:
        agent = agent_get(state, agent_id)
        if agent.archived_at is None:
            agent.archived_at = time.time()
        return agent.to_json()
