"""Corrections: a reviewer's verdict for a logged call, and logged calls turned into a test set version."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone

from evals import selectors as eval_selectors
from evals import services as eval_services
from managed_agents.verdicts import allowed_labels
from promptctl.errors import DomainError
from promptctl.records import saved_by
from triage.models import Outcome, TriageCorrection, TriageRequest
from triage.services.common import _require

# --- corrections and test sets ------------------------------------------------------------------


def triage_correct(*, request: TriageRequest, team: str, priority: str, actor: Any, note: str = "") -> TriageCorrection:
    """Record a reviewer's verdict for a logged call (the log row itself stays as served)."""
    _require(actor, "add_triagecorrection", "correct triage verdicts")
    team, priority = (team or "").strip(), (priority or "").strip()
    if not team or not priority:
        raise DomainError("A correction needs both a team and a priority.")
    allowed = allowed_labels(request.version.system_prompt)
    for field, value in (("team", team), ("priority", priority)):
        choices = allowed.get(field)
        if choices and value not in choices:
            raise DomainError(
                f"{field} {value!r} is not one the agent's prompt (v{request.version.number}) can produce: "
                f"choose one of {', '.join(choices)}."
            )
    with transaction.atomic():
        correction = TriageCorrection.objects.select_for_update().filter(request=request).first()
        if correction is None:
            correction = TriageCorrection(request=request, corrected_by=actor)
        correction.team, correction.priority, correction.note = team, priority, (note or "").strip()
        correction.corrected_by = actor
        correction.corrected_at = timezone.now()
        saved_by(correction, actor)
    return correction


def _label_of(request: TriageRequest) -> tuple[str, str] | None:
    correction = getattr(request, "correction", None) if hasattr(request, "correction") else None
    if correction is not None:
        return correction.team, correction.priority
    if request.outcome == Outcome.OK:
        return request.team, request.priority
    return None


def triage_requests_to_testset(*, requests: Iterable[TriageRequest], testset: Any, actor: Any) -> Any:
    """Add logged calls to ``testset`` as a new version: its current cases plus these tickets.

    Each ticket is labelled with its correction, or with the verdict it was
    served when nobody corrected it; a call without a valid verdict must be
    corrected first. Tickets already in the set are not added twice.
    """
    chosen = list(
        TriageRequest.objects.filter(pk__in=[r.pk for r in requests])
        .select_related("correction", "agent")
        .order_by("pk")
    )
    if not chosen:
        raise DomainError("Select at least one logged request to add to the test set.")
    if testset.agent_id is not None:
        foreign = [r.pk for r in chosen if r.agent_id != testset.agent_id]
        if foreign:
            raise DomainError(
                f"Test set {testset.name!r} belongs to agent {testset.agent.name}; requests "
                f"{', '.join(f'#{pk}' for pk in foreign)} were served by another agent. Pick that agent's set."
            )
    unlabelled = [r.pk for r in chosen if _label_of(r) is None]
    if unlabelled:
        raise DomainError(
            f"Requests {', '.join(f'#{pk}' for pk in unlabelled)} have no valid verdict to use as a label: "
            "correct their verdicts first, then add them."
        )
    lines: list[dict[str, Any]] = []
    existing_ids: set[str] = set()
    if testset.versions.exists():
        latest = eval_selectors.testset_version_latest(testset=testset)
        for case in latest.cases.order_by("position"):
            existing_ids.add(case.external_id)
            lines.append(
                {
                    "id": case.external_id,
                    "subject": case.subject,
                    "body": case.body,
                    "team": case.team,
                    "priority": case.priority,
                    "tags": list(case.tags or []),
                }
            )
    added = 0
    for request in chosen:
        case_id = f"triage-{request.pk}"
        if case_id in existing_ids:
            continue
        label = _label_of(request)
        assert label is not None  # every chosen request was checked for a label above
        team, priority = label
        lines.append(
            {
                "id": case_id,
                "subject": request.subject,
                "body": request.body,
                "team": team,
                "priority": priority,
                "tags": ["from-triage-log", "corrected" if hasattr(request, "correction") else "as-served"],
            }
        )
        added += 1
    if not added:
        raise DomainError(f"Every selected request is already in test set {testset.name!r}: nothing new to add.")
    data = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n"
    return eval_services.testset_import(
        name=testset.name,
        data=data,
        filename="triage-log.jsonl",
        file_format="jsonl",
        agent=testset.agent,
        actor=actor,
    )
