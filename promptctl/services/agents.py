"""Agents: creating them (remote first, then the record), their approval policy, and syncing server versions.

Nothing refused is left half-made. Input is checked locally before any remote
call (``managed_agents.validation``); when the record still cannot be saved
after the server made the agent, the new remote agent is archived (agents
cannot be deleted) and the refusal says so. A sync records what the server
holds, and names, without recording, a version promptctl's database cannot
store (a NUL byte in an outside prompt, say), so one bad version never stops
an agent's syncs.

A sync tells promptctl's own versions from changes made outside by the version
intents (``promptctl.models.intents``): a server version that carries the
marker of one of the agent's intents is promptctl's, recorded as made by the
intent's actor, even when the sync records it before ``version_create`` does
(it may be in flight, or have failed between its remote call and its record).
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import Group
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from managed_agents import gateway, validation
from promptctl.audit import audit_record
from promptctl.errors import DomainError, Fix
from promptctl.models import Agent, AgentVersion, VersionIntent
from promptctl.records import saved_by
from promptctl.services.common import _agent_snapshot, _require, _version_record

logger = logging.getLogger(__name__)

DEFAULT_ENVIRONMENT = "promptctl"

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")


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
        raise DomainError(
            f"An agent named {name!r} already exists.",
            code="agent_exists",
            fields=("name",),
            fix=Fix(cli=f"See `promptctl agent status --agent {name}`.", web="Agents lists it; pick another name."),
        )
    validation.agent_config_check(name=name, model=model, system=system_prompt)
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
            audit_record(
                actor=actor, verb="agent.create", target=agent, agent_id=agent.pk, after=_agent_snapshot(agent)
            )
            _version_record(agent=agent, remote=remote, origin=AgentVersion.Origin.PROMPTCTL, actor=actor)
    except DatabaseError as error:
        archived = _orphan_archive(remote_id=remote.agent_id)
        if isinstance(error, IntegrityError) and Agent.objects.filter(name=name).exists():
            why = "another agent with that name was created at the same moment"
            retry = "choose another name"
        else:
            why = f"the database refused it: {database_error_text(error)}"
            retry = "fix the input and create it again"
        raise DomainError(f"Agent {name!r} could not be recorded ({why}). {archived}; {retry}.") from error
    return agent


def _orphan_archive(*, remote_id: str) -> str:
    """Archive a remote agent promptctl failed to record, and say what became of it."""
    try:
        gateway.agent_archive(agent_id=remote_id)
    except DomainError as error:
        logger.warning("could not archive orphaned remote agent %s: %s", remote_id, error)
        return f"The new remote agent {remote_id} could NOT be archived ({error}): archive it by hand"
    return f"The new remote agent {remote_id} was archived, so nothing is left behind"


def agent_policy_update(
    *,
    agent: Agent,
    actor: Any,
    required_approvals: int | None = None,
    approver_group: str | None = None,
    regression_tolerance: int | None = None,
    canary_evidence_above_percent: int | None = None,
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
        if canary_evidence_above_percent is not None:
            if not 0 <= canary_evidence_above_percent <= 99:
                raise DomainError(
                    "The canary evidence threshold is a share of traffic from 0 to 99 percent: canaries above it "
                    "need the same eval evidence as a promotion."
                )
            agent.canary_evidence_above_percent = canary_evidence_above_percent
        after = _agent_snapshot(agent)
        if after == before:
            return agent
        saved_by(agent, actor)
        audit_record(actor=actor, verb="agent.policy", target=agent, agent_id=agent.pk, before=before, after=after)
    return agent


@dataclass(frozen=True)
class SyncResult:
    """What a sync found: versions made outside promptctl, the newest number, hash disagreements,
    and server versions promptctl cannot store (number: why), which stay unrecorded and cannot be pinned."""

    new_versions: list[AgentVersion]
    latest_version_number: int
    mismatched_numbers: list[int]
    unstorable: dict[int, str] = field(default_factory=dict)
    # promptctl's own versions this sync recorded first (a version_create in flight, or one that failed to record)
    reconciled: list[AgentVersion] = field(default_factory=list)


# An open intent older than this made no version if the server holds none carrying its marker:
# no update's retries last so long (attempts x the SDK's 60 s timeout plus backoff).
INTENT_EXPIRY = datetime.timedelta(minutes=15)


def agent_sync(*, agent: Agent, actor: Any = None) -> SyncResult:
    """Record every server version promptctl does not know as changed outside promptctl.

    The agent row is locked while recording, never across a network call. A
    version promptctl is making right now (``version_create``: the remote
    update first, then its record) may be recorded here first: its marker
    names its intent, so it is recorded as promptctl's, made by the intent's
    actor, and ``version_create`` then returns that row and audits
    ``version.reconciled``. Open intents that can no longer make a version
    (the server moved past their base without them, or they expired) are
    resolved as not made.
    """
    remote_versions = gateway.agent_versions(agent_id=agent.remote_id)
    with transaction.atomic():
        agent = Agent.objects.select_for_update().get(pk=agent.pk)
        known = {
            version.number: version.config_hash
            for version in agent.versions.only("number", "config_sha256", "config_canonical_sha256")
        }
        new_versions: list[AgentVersion] = []
        reconciled: list[AgentVersion] = []
        unstorable: dict[int, str] = {}
        claims = _intent_claims(agent=agent, remote_versions=remote_versions)
        for remote in remote_versions:
            intent = claims.get(remote.version)
            if intent is not None:
                version_intent_resolve(intent=intent, version_number=remote.version, actor=actor)
            if remote.version in known:
                continue
            if intent is not None:
                origin, maker = AgentVersion.Origin.PROMPTCTL, intent.created_by
            else:
                origin, maker = AgentVersion.Origin.OUTSIDE, actor
            recorded, problem = version_record_if_storable(agent=agent, remote=remote, origin=origin, actor=maker)
            if recorded is None:
                unstorable[remote.version] = problem
            elif intent is not None:
                reconciled.append(recorded)
            else:
                new_versions.append(recorded)
        _intents_unmade_resolve(agent=agent, remote_versions=remote_versions, claimed=claims.values(), actor=actor)
        if unstorable:
            audit_record(
                actor=actor,
                verb="agent.sync_unstorable",
                target=agent,
                agent_id=agent.pk,
                after={"unstorable": {str(number): why for number, why in unstorable.items()}},
            )
        # The canonical hash (managed_agents.confighash): an SDK upgrade or a new server field flags nothing.
        mismatched = [
            r.version for r in remote_versions if r.version in known and known[r.version] != r.config_canonical_sha256
        ]
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
                actor=actor,
                verb="agent.sync",
                target=agent,
                agent_id=agent.pk,
                before=before,
                after=_agent_snapshot(agent),
            )
    return SyncResult(
        new_versions=new_versions,
        latest_version_number=newest,
        mismatched_numbers=mismatched,
        unstorable=unstorable,
        reconciled=reconciled,
    )


def _intent_snapshot(intent: VersionIntent) -> dict[str, Any]:
    return {
        "marker": intent.marker,
        "base_version": intent.base_version,
        "created_by": getattr(intent.created_by, "username", None),
        "outcome": intent.outcome,
        "version_number": intent.version_number,
    }


def version_intent_open(*, agent: Agent, base_version: int, actor: Any) -> VersionIntent:
    """Note, in its own short transaction, that ``actor`` is about to make a version on ``base_version``.

    Written before the remote call so that whoever finds the version first (this
    ``version_create``, or a sync) knows it is promptctl's.
    """
    with transaction.atomic():
        intent = saved_by(
            VersionIntent(agent=agent, marker=gateway.write_marker(), base_version=base_version, created_by=actor),
            actor,
        )
        audit_record(
            actor=actor, verb="version.intent", target=intent, agent_id=agent.pk, after=_intent_snapshot(intent)
        )
    return intent


def version_intent_resolve(*, intent: VersionIntent, version_number: int | None, actor: Any) -> None:
    """Mark an intent made (the server holds ``version_number``) or not made; in the caller's transaction.

    A made intent is final. A not-made one becomes made if its marked version
    turns up after all (the marker is proof the version is promptctl's).
    """
    intent = VersionIntent.objects.select_for_update().get(pk=intent.pk)
    if intent.outcome == VersionIntent.Outcome.MADE or (
        version_number is None and intent.outcome == VersionIntent.Outcome.NOT_MADE
    ):
        return
    before = _intent_snapshot(intent)
    intent.outcome = VersionIntent.Outcome.MADE if version_number is not None else VersionIntent.Outcome.NOT_MADE
    intent.version_number = version_number
    intent.finished_at = timezone.now()
    saved_by(intent, actor)
    audit_record(
        actor=actor,
        verb="version.intent_resolved",
        target=intent,
        agent_id=intent.agent_id,
        before=before,
        after=_intent_snapshot(intent),
    )


def _intent_claims(*, agent: Agent, remote_versions: Sequence[gateway.RemoteAgentVersion]) -> dict[int, VersionIntent]:
    """Server version number -> the intent whose update made it.

    Later versions inherit a marker (metadata carries over to versions that do
    not set their own), so an intent made the lowest version above its base
    that carries its marker, and no other.
    """
    markers = {remote.marker for remote in remote_versions if remote.marker}
    if not markers:
        return {}
    intents = {
        intent.marker: intent
        for intent in VersionIntent.objects.select_related("created_by").filter(
            agent=agent, marker__in=markers, version_number__isnull=True
        )
    }
    claims: dict[int, VersionIntent] = {}
    claimed: set[str] = set()
    for remote in sorted(remote_versions, key=lambda r: r.version):
        intent = intents.get(remote.marker or "")
        if intent is None or intent.marker in claimed or remote.version <= intent.base_version:
            continue
        claims[remote.version] = intent
        claimed.add(intent.marker)
    return claims


def _intents_unmade_resolve(
    *,
    agent: Agent,
    remote_versions: Sequence[gateway.RemoteAgentVersion],
    claimed: Any,
    actor: Any,
) -> None:
    """Resolve open intents that can no longer make a version as not made.

    Once the server holds a version above an intent's base that is not the
    intent's, its conditional update can never land (it would get a 409).
    An intent whose base is still the latest may be in flight: it is left
    open until ``INTENT_EXPIRY``.
    """
    newest = max((remote.version for remote in remote_versions), default=None)
    expired_before = timezone.now() - INTENT_EXPIRY
    claimed_ids = {intent.pk for intent in claimed}
    for intent in VersionIntent.objects.filter(agent=agent, outcome=VersionIntent.Outcome.OPEN):
        if intent.pk in claimed_ids:
            continue
        if (newest is not None and newest > intent.base_version) or intent.started_at < expired_before:
            version_intent_resolve(intent=intent, version_number=None, actor=actor)


def version_record_if_storable(
    *, agent: Agent, remote: gateway.RemoteAgentVersion, origin: str, actor: Any
) -> tuple[AgentVersion | None, str]:
    """Record one server version, or say why it cannot be stored (and record nothing of it).

    The storable rules are checked first, the same on SQLite and PostgreSQL; a
    database refusal beyond them is rolled back to a savepoint, so the rest of
    the sync still lands.
    """
    problem = validation.storable_problem(model=remote.model, system=remote.system, config=remote.config)
    if problem:
        return None, problem
    try:
        with transaction.atomic():
            return _version_record(agent=agent, remote=remote, origin=origin, actor=actor), ""
    except DatabaseError as error:
        return None, f"the database refused it ({database_error_text(error)})"


def database_error_text(error: DatabaseError) -> str:
    """The first line of a database error, for a one-line message."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
