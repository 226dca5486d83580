"""Reads of the change-control domain: lookups with messages for people, status, diffs, the timeline.

Selectors never write. Each list is built with a fixed number of queries
however many rows there are (joins and prefetches, no per-row lookups).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.urls import reverse

from promptctl import config_files
from promptctl.audit import AuditKeyError, AuditVerification, audit_verify
from promptctl.diffs import FieldChange, VersionDiff, versions_compare  # noqa: F401 (FieldChange re-exported)
from promptctl.errors import DomainError, Fix
from promptctl.models import Agent, AgentVersion, Approval, AuditEvent, ChangeRequest, Pin
from promptctl.registry import registry

# --- lookups ------------------------------------------------------------------


class NotFound(DomainError):
    """No agent, version, change request (or, in evals, test set, run, comparison) by that name or id; the API answers 404."""


def agent_get(*, name: str) -> Agent:
    agent = Agent.objects.filter(name=name).first()
    if agent is None:
        known = ", ".join(Agent.objects.order_by("name").values_list("name", flat=True)[:20]) or "none yet"
        raise NotFound(
            f"No agent named {name!r} (known: {known}).",
            code="agent_not_found",
            fields=("agent",),
            fix=Fix(cli="Create one with `promptctl agent create`.", web="Agents lists the agents there are."),
        )
    return agent


def agent_list() -> QuerySet[Agent]:
    return (
        Agent.objects.order_by("name")
        .prefetch_related("pins__version", "pins__canary_version")
        .annotate(
            version_count=Count("versions", distinct=True),
            outside_count=Count("versions", filter=Q(versions__origin=AgentVersion.Origin.OUTSIDE), distinct=True),
        )
    )


def version_get(*, agent: Agent, number: int) -> AgentVersion:
    version = agent.versions.select_related("created_by").filter(number=number).first()
    if version is None:
        raise NotFound(
            f"{agent.name} has no version {number} recorded.",
            code="version_not_found",
            fields=("version",),
            fix=Fix(
                cli=f"`promptctl version list --agent {agent.name}` lists them; "
                f"`promptctl agent sync --agent {agent.name}` records versions made on the server.",
                web="Agent versions lists them; Sync from server on the agent's page records versions made on the "
                "server.",
                link=("admin:promptctl_agent_change", (agent.pk,)),
            ),
        )
    return version


def version_list(*, agent: Agent) -> QuerySet[AgentVersion]:
    return agent.versions.select_related("created_by").order_by("number")


def change_request_get(*, change_id: int) -> ChangeRequest:
    change = (
        ChangeRequest.objects.select_related("agent", "target_version", "base_version", "requested_by", "closed_by")
        .filter(pk=change_id)
        .first()
    )
    if change is None:
        raise NotFound(
            f"No change request #{change_id}.",
            code="change_request_not_found",
            fix=Fix(
                cli="`promptctl change list` shows the open ones.",
                web="Change requests lists them.",
                link=("admin:promptctl_changerequest_changelist", ()),
            ),
        )
    return change


def change_request_list(*, agent: Agent | None = None, status: str | None = None) -> QuerySet[ChangeRequest]:
    if status is not None and status not in ChangeRequest.Status.values:
        raise DomainError(f"Unknown status {status!r}: choose one of {', '.join(ChangeRequest.Status.values)}.")
    changes = ChangeRequest.objects.select_related(
        "agent", "target_version", "base_version", "requested_by", "closed_by"
    ).annotate(
        approval_count=Count("approvals", filter=Q(approvals__decision=Approval.Decision.APPROVE)),
    )
    if agent is not None:
        changes = changes.filter(agent=agent)
    if status is not None:
        changes = changes.filter(status=status)
    return changes.order_by("-requested_at", "-id")


def change_request_decisions(*, change: ChangeRequest) -> dict[str, int]:
    """How many approvals and rejections ``change`` has, counted from its approval rows (applying checks both)."""
    counts = change.approvals.aggregate(
        approvals=Count("pk", filter=Q(decision=Approval.Decision.APPROVE)),
        rejections=Count("pk", filter=Q(decision=Approval.Decision.REJECT)),
    )
    return {"approvals": counts["approvals"], "rejections": counts["rejections"]}


def pins_for_agent(*, agent: Agent) -> dict[str, Pin]:
    pins = Pin.objects.filter(agent=agent).select_related("version", "canary_version", "change")
    return {pin.channel: pin for pin in pins}


def previously_pinned_numbers(*, agent: Agent, channel: str) -> set[int]:
    """Versions an applied promotion or rollback put on ``channel``: the only targets a rollback may name."""
    applied = ChangeRequest.objects.filter(
        agent=agent,
        channel=channel,
        status=ChangeRequest.Status.APPLIED,
        kind__in=[ChangeRequest.Kind.PROMOTE, ChangeRequest.Kind.ROLLBACK],
    )
    return set(applied.values_list("target_version__number", flat=True))


def agent_drift(*, agent: Agent, limit: int | None = None) -> list[AgentVersion]:
    """Versions found on the server that promptctl did not make: each one is a warning on the agent.

    ``limit``: only the newest that many (the agent page's bounded warning), still oldest first.
    """
    outside = agent.versions.filter(origin=AgentVersion.Origin.OUTSIDE).defer("system_prompt", "config")
    if limit is None:
        return list(outside.order_by("number"))
    return list(outside.order_by("-number")[:limit])[::-1]


# --- representations for the CLI and API -------------------------------------------


def version_as_dict(version: AgentVersion) -> dict[str, Any]:
    return {
        "version": version.number,
        "origin": version.origin,
        "created_by": version.created_by.username if version.created_by else None,
        "created_at": version.created_at.isoformat(),
        "model": version.model,
        "config_sha256": version.config_hash,  # the canonical hash (managed_agents.confighash)
    }


def pin_as_dict(pin: Pin) -> dict[str, Any]:
    return {
        "version": pin.version.number,
        "canary_version": pin.canary_version.number if pin.canary_version else None,
        "canary_percent": pin.canary_percent,
        "revision": pin.revision,
        "change_request": pin.change_id,
        "updated_at": pin.updated_at.isoformat(),
    }


def change_request_as_dict(change: ChangeRequest) -> dict[str, Any]:
    return {
        "id": change.pk,
        "agent": change.agent.name,
        "channel": change.channel,
        "kind": change.kind,
        "base_version": change.base_version.number if change.base_version else None,
        "target_version": change.target_version.number,
        "target_config_sha256": change.target_config_sha256,
        "canary_percent": change.canary_percent,
        "evidence_type": change.evidence_type,
        "evidence_id": change.evidence_id,
        "evidence": change.evidence,
        "accept_regression_reason": change.accept_regression_reason,
        "approvals_required": change.approvals_required,
        "approvals": getattr(change, "approval_count", None),
        "reason": change.reason,
        "requested_by": change.requested_by.username,
        "requested_at": change.requested_at.isoformat(),
        "status": change.status,
        "status_reason": change.status_reason,
    }


def agent_summary_as_dict(agent: Agent) -> dict[str, Any]:
    """One row of ``agent list`` (an agent from ``agent_list()``, with its counts and prefetched pins)."""
    pins = {pin.channel: pin for pin in agent.pins.all()}
    return {
        "name": agent.name,
        "remote_id": agent.remote_id,
        "pins": {channel: pin_as_dict(pin) for channel, pin in sorted(pins.items())},
        "versions": agent.version_count,  # type: ignore[attr-defined]  # annotated by agent_list()
        "drift": agent.outside_count,  # type: ignore[attr-defined]
    }


def change_request_fresh_as_dict(*, change_id: int, with_decisions: bool = False) -> dict[str, Any]:
    """A change request as stored now, with its approval count (and, for ``change show``, every decision)."""
    change = change_request_list().get(pk=change_id)
    data = change_request_as_dict(change)
    if with_decisions:
        data["decisions"] = [
            {
                "reviewer": a.reviewer.username,
                "decision": a.decision,
                "comment": a.comment,
                "at": a.created_at.isoformat(),
            }
            for a in change.approvals.select_related("reviewer").order_by("created_at", "pk")
        ]
    return data


def change_applied_as_dict(*, change: ChangeRequest, pin: Pin) -> dict[str, Any]:
    """What ``change apply`` answers: the request as stored now and the pin it moved."""
    return {
        "change_request": change_request_fresh_as_dict(change_id=change.pk),
        "pin": {"channel": pin.channel, **pin_as_dict(pin)},
    }


def agent_status(*, agent: Agent) -> dict[str, Any]:
    """Everything ``promptctl agent status`` shows: identity, policy, pins, versions, drift."""
    versions = list(version_list(agent=agent))
    return {
        "agent": {
            "name": agent.name,
            "remote_id": agent.remote_id,
            "environment_id": agent.environment_id,
            "model": agent.model,
            "latest_version": agent.latest_version_number,
            "required_approvals": agent.required_approvals,
            "approver_group": agent.approver_group,
            "regression_tolerance": agent.regression_tolerance,
            "canary_evidence_above_percent": agent.canary_evidence_above_percent,
        },
        "pins": {channel: pin_as_dict(pin) for channel, pin in sorted(pins_for_agent(agent=agent).items())},
        "versions": [version_as_dict(v) for v in versions],
        "drift": [
            {
                "version": v.number,
                "origin": v.origin,
                "recorded_at": v.created_at.isoformat(),
                "warning": f"version {v.number} was changed outside promptctl",
            }
            for v in versions
            if v.origin == AgentVersion.Origin.OUTSIDE
        ],
        "open_change_requests": [
            change_request_as_dict(c)
            for c in change_request_list(agent=agent).filter(status__in=ChangeRequest.OPEN_STATUSES)
        ],
    }


# --- diffs (promptctl.diffs) and configuration files (promptctl.config_files) ------------------------


def version_diff(*, agent: Agent, left_number: int, right_number: int) -> VersionDiff:
    """Two recorded versions compared: the prompt as a text diff, every other field one row per change."""
    left = version_get(agent=agent, number=left_number)
    right = version_get(agent=agent, number=right_number)
    return versions_compare(
        agent=agent, left=left, right=right, summaries=(version_as_dict(left), version_as_dict(right))
    )


def version_config_export(*, agent: Agent, number: int | None = None) -> dict[str, Any]:
    """The configuration file of one recorded version (the latest when ``number`` is None), and what it holds."""
    version = version_get(agent=agent, number=agent.latest_version_number if number is None else number)
    return {
        "agent": agent.name,
        "version": version.number,
        "config_sha256": version.config_hash,
        "config": config_files.config_of_version(version.config),
        "config_file": config_files.config_render(version.config, agent_name=agent.name, version_number=version.number),
    }


def agent_versions_recent(*, agent: Agent, limit: int = 20) -> list[AgentVersion]:
    """The agent's newest ``limit`` versions (without their prompts and configs): the agent page's bounded slice."""
    return list(
        AgentVersion.objects.filter(agent=agent)
        .select_related("created_by")
        .defer("system_prompt", "config")
        .order_by("-number")[:limit]
    )


# --- the timeline ---------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    """One thing that happened to an agent: when, what kind, who, and a sentence for an auditor."""

    at: dt.datetime
    kind: str
    actor: str
    summary: str
    url: str = ""


def _who(user: Any) -> str:
    return user.username if user is not None else "(server)"


def timeline_window(queryset: QuerySet, field: str, *, before: dt.datetime | None, limit: int) -> QuerySet:
    """The newest ``limit`` rows whose ``field`` is at or before ``before``: one bounded query over an index.

    Every timeline source reads through this, so a page of the timeline costs the same at
    ten rows or a million (``agent_timeline_page``).
    """
    rows = queryset.filter(**{f"{field}__isnull": False})
    if before is not None:
        rows = rows.filter(**{f"{field}__lte": before})
    return rows.order_by(f"-{field}", "-pk")[:limit]


def timeline_versions(agent: Agent, *, before: dt.datetime | None = None, limit: int = 50) -> Iterable[TimelineEntry]:
    versions = AgentVersion.objects.filter(agent=agent).select_related("created_by").defer("system_prompt", "config")
    for version in timeline_window(versions, "created_at", before=before, limit=limit):
        if version.origin == AgentVersion.Origin.OUTSIDE:
            yield TimelineEntry(
                version.created_at,
                "version",
                "(outside promptctl)",
                f"version {version.number} found on the server: changed outside promptctl",
            )
        else:
            yield TimelineEntry(
                version.created_at, "version", _who(version.created_by), f"created version {version.number}"
            )


def _change_request_url(change_id: int) -> str:
    """Where a timeline row about a change request links: its review page in the admin."""
    return reverse("admin:promptctl_changerequest_change", args=[change_id])


def timeline_changes(agent: Agent, *, before: dt.datetime | None = None, limit: int = 50) -> Iterable[TimelineEntry]:
    """Requests filed, approved and closed: one bounded query per moment (each over an ``(agent, moment)`` index)."""
    changes = (
        ChangeRequest.objects.filter(agent=agent)
        .select_related("target_version", "base_version", "requested_by", "closed_by")
        .defer(
            "target_version__system_prompt",
            "target_version__config",
            "base_version__system_prompt",
            "base_version__config",
        )
    )
    for change in timeline_window(changes, "requested_at", before=before, limit=limit):
        extra = f" at {change.canary_percent}%" if change.kind == ChangeRequest.Kind.CANARY else ""
        evidence = (
            f"; evidence {change.evidence_type}:{change.evidence_id or change.evidence.get('reference', '')}"
            if change.evidence_type
            else ""
        )
        yield TimelineEntry(
            change.requested_at,
            "change request",
            change.requested_by.username,
            f"requested #{change.pk}: {change.kind} {change.channel} to version {change.target_version.number}{extra}"
            f" — {change.reason}{evidence}",
            _change_request_url(change.pk),
        )
    for change in timeline_window(changes, "approved_at", before=before, limit=limit):
        yield TimelineEntry(
            change.approved_at,
            "change request",
            "",
            f"#{change.pk} reached its {change.approvals_required} approval(s)",
            _change_request_url(change.pk),
        )
    for change in timeline_window(changes, "closed_at", before=before, limit=limit):
        url = _change_request_url(change.pk)
        extra = f" at {change.canary_percent}%" if change.kind == ChangeRequest.Kind.CANARY else ""
        if change.status == ChangeRequest.Status.APPLIED:
            yield TimelineEntry(
                change.closed_at,
                "pin move",
                _who(change.closed_by),
                f"applied #{change.pk}: {change.channel} pin moved "
                f"{'to canary of' if change.kind == ChangeRequest.Kind.CANARY else 'to'} version {change.target_version.number}{extra}",
                url,
            )
        elif change.status != ChangeRequest.Status.REJECTED:
            yield TimelineEntry(
                change.closed_at,
                "change request",
                _who(change.closed_by),
                f"#{change.pk} {change.status}: {change.status_reason}",
                url,
            )


def timeline_approvals(agent: Agent, *, before: dt.datetime | None = None, limit: int = 50) -> Iterable[TimelineEntry]:
    approvals = Approval.objects.filter(change__agent=agent).select_related("reviewer")
    for approval in timeline_window(approvals, "created_at", before=before, limit=limit):
        verb = "approved" if approval.decision == Approval.Decision.APPROVE else "rejected"
        comment = f": {approval.comment}" if approval.comment else ""
        yield TimelineEntry(
            approval.created_at,
            "approval",
            approval.reviewer.username,
            f"{verb} #{approval.change_id}{comment}",
            _change_request_url(approval.change_id),
        )


TIMELINE_PAGE_SIZE = 50
_EPOCH = dt.datetime.min.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class TimelinePage:
    """One page of an agent's timeline, newest first; ``next_before`` is the cursor of the next (older) page."""

    entries: list[TimelineEntry]
    next_before: dt.datetime | None


def _timeline_collect(agent: Agent, *, before: dt.datetime | None, limit: int) -> list[TimelineEntry]:
    entries: list[TimelineEntry] = []
    for provider in list(registry.timeline_providers):
        entries.extend(provider(agent, before=before, limit=limit))
    return entries


def agent_timeline_page(
    *, agent: Agent, before: dt.datetime | None = None, limit: int = TIMELINE_PAGE_SIZE
) -> TimelinePage:
    """The newest ``limit`` entries at or before ``before`` (keyset pagination over every provider's stream).

    Each provider answers with at most ``limit + 1`` entries from bounded queries, so a page
    costs the same however long the agent's history is. A page never splits entries that share
    a moment: the cursor is the moment of the first entry not shown, and every entry at that
    moment moves to the next page (a tie larger than a page widens that page instead).
    """
    if limit < 1:
        raise DomainError(f"A timeline page holds at least one entry, got {limit}.")
    size = limit
    while True:
        entries = sorted(
            _timeline_collect(agent, before=before, limit=size + 1),
            key=lambda entry: entry.at or _EPOCH,
            reverse=True,
        )
        if len(entries) <= size:
            return TimelinePage(entries=entries, next_before=None)
        cut = entries[size].at
        shown = [entry for entry in entries[:size] if entry.at != cut]
        if shown:
            return TimelinePage(entries=shown, next_before=cut)
        size *= 2  # every entry of this page shares one moment with the next: widen until the tie fits


def agent_timeline(*, agent: Agent) -> list[TimelineEntry]:
    """Every entry of ``agent``'s timeline, oldest first: for the CLI and tests; the admin pages it instead."""
    entries: list[TimelineEntry] = []
    before: dt.datetime | None = None
    while True:
        page = agent_timeline_page(agent=agent, before=before, limit=500)
        entries.extend(page.entries)
        if page.next_before is None:
            return entries[::-1]
        before = page.next_before


# --- audit ------------------------------------------------------------------------------


def audit_chain_verify() -> AuditVerification:
    """Every event's MAC and link, checked against the published checkpoints (``promptctl.audit.verify``)."""
    return audit_verify()


def audit_verify_as_dict() -> dict[str, Any]:
    """``audit verify --json``: the verification as data (``ok`` false when broken); a missing key is refused."""
    try:
        return audit_chain_verify().as_dict()
    except AuditKeyError as error:
        raise DomainError(str(error)) from None


AUDIT_EVENTS_LIMIT_MAX = 500


def audit_events(*, agent: Agent | None = None, limit: int = 50) -> list[AuditEvent]:
    """The newest ``limit`` audit events (1..500), of one agent or of all, newest first."""
    if not 1 <= limit <= AUDIT_EVENTS_LIMIT_MAX:
        raise DomainError(f"limit must be between 1 and {AUDIT_EVENTS_LIMIT_MAX}, got {limit}.")
    events = AuditEvent.objects.order_by("-sequence")
    if agent is not None:
        events = events.filter(agent_id_ref=agent.pk)
    return list(events[:limit])


def audit_event_as_dict(event: AuditEvent) -> dict[str, Any]:
    return {
        "sequence": event.sequence,
        "occurred_at": event.occurred_at.isoformat(),
        "actor": event.actor_username or None,
        "verb": event.verb,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "object_repr": event.object_repr,
        "agent_id": event.agent_id_ref,
        "before": event.before,
        "after": event.after,
        "request_id": event.request_id,
        "token": event.token_ref or None,  # "id:prefix" of the personal token it came through
        "hash": event.hash,
    }
