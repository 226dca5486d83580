"""Versions: making a new server version of an agent and recording it (versions are never updated).

Input is checked before the remote update (``managed_agents.validation``), so a
refused prompt makes no server version.

No network call runs under a database write lock (on SQLite a write lock is
the whole database, and an update may take up to a minute with retries): the
agent row is read without a lock, the remote update is made conditional on the
latest version promptctl knows (the server's 409 is the concurrency guard, so
of two edits on one version exactly one lands), and only then is the new
version recorded, in its own short transaction that locks the agent row.

A failure between the two never leaves anything half-written. Before the
remote call a version intent is saved in its own short transaction
(``promptctl.models.intents``), and the update carries the intent's marker. So
whoever records the new version first (this call, a sync running meanwhile, or
the next sync or ``version create`` after a failure between the remote call
and the record) records it as promptctl's, made by the actor, never as a change
made outside promptctl. If a sync recorded it meanwhile, that row is the
version: it is returned, and an audit event names the actor who made it. If
the record fails (the database refuses it, or is unreachable), or the update's
outcome stayed unknown, the intent stays open: the next ``version create``
syncs first to settle it, as ``agent sync`` does. Should the record refuse
only this version (say a prompt the database cannot store), the agent still
moves on to that number so it is never stuck on it.
"""

from __future__ import annotations

from typing import Any

from django.db import DatabaseError, transaction

from managed_agents import gateway, validation
from promptctl.audit import audit_record
from promptctl.config_files import AgentConfig, config_changes
from promptctl.errors import DomainError, Fix
from promptctl.models import Agent, AgentVersion, VersionIntent
from promptctl.records import saved_by
from promptctl.services.agents import (
    agent_sync,
    database_error_text,
    version_intent_open,
    version_intent_resolve,
    version_record_if_storable,
)
from promptctl.services.common import _agent_snapshot, _require


def version_create(
    *,
    agent: Agent,
    actor: Any,
    system_prompt: str | None = None,
    model: str | None = None,
    config: AgentConfig | None = None,
) -> AgentVersion:
    """Make a new server version on top of the last one promptctl knows, and record it.

    Either ``system_prompt`` (and optionally ``model``): only those change; or
    ``config``, a whole configuration (``promptctl.config_files``): every field
    that differs from the latest version is sent in the one conditional update,
    and a configuration that differs in nothing (prompt, model, tools, MCP
    servers, skills, description, metadata; the write marker never counts) is
    refused as ``no_change``, since a version identical to its parent is noise
    in every diff and review.

    The remote update is conditional on that version and runs outside any
    transaction; when the server has moved on, the agent is synced and the
    refusal names what the server now has.
    """
    _require(actor, "add_agentversion", "create versions")
    if config is not None and (system_prompt is not None or model is not None):
        raise DomainError(
            "Give either a whole configuration or a system prompt (and model), not both.",
            code="bad_input",
            fields=("config",),
            fix=Fix(cli="Use --config FILE alone, or --system-file (and --model).", web="Send one of the two."),
        )
    if config is None:
        if not (system_prompt or "").strip():
            raise DomainError("The system prompt is empty: a version needs instructions.")
        validation.agent_config_check(model=model, system=system_prompt)
    agent = Agent.objects.get(pk=agent.pk)
    if VersionIntent.objects.filter(agent=agent, outcome=VersionIntent.Outcome.OPEN).exists():
        # An earlier create may have made a version promptctl has not recorded: settle it before building on it.
        agent_sync(agent=agent, actor=actor)
        agent = Agent.objects.get(pk=agent.pk)
    expected = agent.latest_version_number
    latest = agent.versions.filter(number=expected).first()
    fields: dict[str, Any] = {}
    if config is not None:
        current = (
            latest.config
            if latest is not None
            else gateway.agent_retrieve(agent_id=agent.remote_id, version=expected).config
        )
        fields = config_changes(current=current, proposed=config)
        if not fields:
            raise DomainError(
                f"The configuration matches version {expected} of {agent.name} in every field (prompt, model, tools, "
                "MCP servers, skills, description, metadata): nothing to create.",
                code="no_change",
                fields=("config",),
                fix=Fix(
                    cli=f"Edit the field you mean to change, then run the command again "
                    f"(`promptctl agent export --agent {agent.name}` writes the current file).",
                    web="Change the field you mean to change and send the configuration again.",
                ),
            )
        system_prompt = fields.pop("system", None)
    elif latest is not None and latest.system_prompt == system_prompt and (model is None or model == latest.model):
        raise DomainError(
            f"Version {expected} of {agent.name} already has exactly this system prompt: nothing to create.",
            code="no_change",
        )
    intent = version_intent_open(agent=agent, base_version=expected, actor=actor)
    try:
        remote = gateway.agent_update(
            agent_id=agent.remote_id,
            expected_version=expected,
            system=system_prompt,
            model=model,
            marker=intent.marker,
            fields=fields,
        )
    except gateway.VersionConflict as conflict:
        # The sync in the refusal settles the intent: it finds its version, or resolves it as not made.
        raise _conflict_refusal(agent=agent, expected=expected, conflict=conflict, actor=actor) from conflict
    except gateway.OutcomeUnknown:
        raise  # the intent stays open: the next sync or version create finds the version by its marker
    except DomainError:
        with transaction.atomic():
            version_intent_resolve(intent=intent, version_number=None, actor=actor)
        raise
    try:
        version, unrecorded = _remote_version_record(agent=agent, remote=remote, actor=actor, intent=intent)
    except DatabaseError as error:
        raise DomainError(
            f"Managed Agents made version {remote.version} of {agent.name}, but promptctl could not record it "
            f"({database_error_text(error)}).",
            code="version_unrecorded",
            fix=Fix(
                cli=f"`promptctl agent sync --agent {agent.name}` records it once the database is back; "
                "do not create it again.",
                web="Sync from server on the agent's page records it once the database is back; do not create it again.",
                link=("admin:promptctl_agent_change", (agent.pk,)),
            ),
        ) from error
    if version is not None:
        return version
    raise DomainError(
        f"Managed Agents made version {remote.version} of {agent.name}, but promptctl could not record it "
        f"({unrecorded}). It stays unrecorded and cannot be pinned.",
        code="version_unrecordable",
        fix=Fix(
            cli=f"`promptctl agent sync --agent {agent.name}` names it. The agent is not stuck: create your version "
            "again with a prompt promptctl can store.",
            web="Sync from server on the agent's page names it. The agent is not stuck: create your version again "
            "with a prompt promptctl can store.",
            link=("admin:promptctl_agent_change", (agent.pk,)),
        ),
    )


def _remote_version_record(
    *, agent: Agent, remote: gateway.RemoteAgentVersion, actor: Any, intent: VersionIntent
) -> tuple[AgentVersion | None, str]:
    """Record the version the server just made, in one short transaction; reconcile with a sync that got there first."""
    with transaction.atomic():
        agent = Agent.objects.select_for_update().get(pk=agent.pk)
        version_intent_resolve(intent=intent, version_number=remote.version, actor=actor)
        existing = agent.versions.filter(number=remote.version).first()
        if existing is not None:
            # A sync ran during the remote call and recorded this version first (as promptctl's: its intent's marker).
            audit_record(
                actor=actor,
                verb="version.reconciled",
                target=existing,
                agent_id=agent.pk,
                after={"number": existing.number, "made_by": getattr(actor, "username", None), "recorded_by": "sync"},
            )
            return existing, ""
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
            actor=actor, verb="agent.latest_version", target=agent, agent_id=agent.pk, before=before, after=after
        )
    return version, unrecorded


def _conflict_refusal(*, agent: Agent, expected: int, conflict: gateway.VersionConflict, actor: Any) -> DomainError:
    """Sync the agent that moved on, and say in one line what the server now has and what to do."""
    result = agent_sync(agent=agent, actor=actor)
    found = ", ".join(f"v{v.number}" for v in result.new_versions) or "none new"
    if result.reconciled:  # promptctl's own, e.g. a concurrent edit that won: not "outside", but still new to you
        found += "; and made through promptctl: " + ", ".join(
            f"v{v.number} by {getattr(v.created_by, 'username', '?')}" for v in result.reconciled
        )
    server_version = conflict.server_version or result.latest_version_number
    return DomainError(
        f"Agent {agent.name} changed on the server since promptctl last saw it: your edit was made against version "
        f"{expected}, but the server now has version {server_version}. promptctl synced and recorded the versions "
        f"changed outside promptctl ({found}).",
        code="version_conflict",
        fix=Fix(
            cli=f"Nothing was created: review them with "
            f"`promptctl version diff --agent {agent.name} {expected} {server_version}` and create your version again.",
            web=f"Nothing was created: review them (Agent versions, v{server_version}, Show diff against v{expected}) "
            "and create your version again.",
            link=("admin:promptctl_agentversion_changelist", ()),
        ),
    )
