"""Versions: making a new server version of an agent and recording it (versions are never updated).

Input is checked before the remote update (``managed_agents.validation``), so a
refused prompt makes no server version. Should the record still fail after the
server made the version, the agent moves on to that number (so the next
``version create`` is not refused as stale), the version stays unrecorded and
unpinnable, an audit event names it, and ``agent sync`` names it again: the
agent is never stuck on it.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from managed_agents import gateway, validation
from promptctl.audit import audit_record
from promptctl.errors import DomainError
from promptctl.models import Agent, AgentVersion
from promptctl.records import saved_by
from promptctl.services.agents import agent_sync, version_record_if_storable
from promptctl.services.common import _agent_snapshot, _require


def version_create(*, agent: Agent, system_prompt: str, actor: Any, model: str | None = None) -> AgentVersion:
    """Make a new server version on top of the last one promptctl knows, and record it.

    The remote update is conditional on that version; when the server has moved
    on, the agent is synced and the refusal names what the server now has.
    """
    _require(actor, "add_agentversion", "create versions")
    if not (system_prompt or "").strip():
        raise DomainError("The system prompt is empty: a version needs instructions.")
    validation.agent_config_check(model=model, system=system_prompt)
    conflict: gateway.VersionConflict | None = None
    unrecorded = ""
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
            version, unrecorded = version_record_if_storable(
                agent=agent, remote=remote, origin=AgentVersion.Origin.PROMPTCTL, actor=actor
            )
            agent.latest_version_number = max(agent.latest_version_number, remote.version)
            saved_by(agent, actor)
            after = _agent_snapshot(agent)
            if unrecorded:
                after["unrecorded"] = {str(remote.version): unrecorded}
            audit_record(
                actor=actor,
                verb="agent.latest_version",
                target=agent,
                agent_id=agent.pk,
                before=before,
                after=after,
            )
            if version is not None:
                return version
    if unrecorded:
        raise DomainError(
            f"Managed Agents made version {remote.version} of {agent.name}, but promptctl could not record it "
            f"({unrecorded}). It stays unrecorded and cannot be pinned; `promptctl agent sync --agent {agent.name}` "
            "names it. The agent is not stuck: create your version again with a prompt promptctl can store."
        )
    assert conflict is not None  # the remote update either made a version (returned above) or conflicted
    result = agent_sync(agent=agent, actor=actor)
    found = ", ".join(f"v{v.number}" for v in result.new_versions) or "none new"
    server_version = conflict.server_version or result.latest_version_number
    raise DomainError(
        f"Agent {agent.name} changed on the server since promptctl last saw it: your edit was made against version "
        f"{expected}, but the server now has version {server_version}. promptctl synced and recorded the versions "
        f"changed outside promptctl ({found}). Nothing was created: review them with "
        f"`promptctl version diff --agent {agent.name} {expected} {server_version}` and create your version again."
    )
