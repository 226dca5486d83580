"""Corrections: a reviewer's verdict for a logged call, and logged calls turned into a test set version."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone

from evals import selectors as eval_selectors
from evals import services as eval_services
from evals.models import TestSet
from managed_agents.verdicts import allowed_labels
from promptctl.errors import DomainError
from promptctl.records import saved_by
from triage.models import Outcome, TriageCorrection, TriageRequest
from triage.services.common import _require

# --- corrections and test sets ------------------------------------------------------------------


def testset_allowed_labels(*, testset: Any) -> dict[str, tuple[str, ...]]:
    """The labels a test set's tickets may carry: those its newest version was imported under.

    A set with no contents yet takes its agent's newest prompt, as an import
    would. Labels are judged by the set they go into, not by the version that
    happened to serve a call (that version's prompt may not constrain a field
    at all, or may be a canary's).
    """
    latest = testset.versions.order_by("-number").first()
    if latest is not None and latest.allowed_labels:
        return {key: tuple(value) for key, value in latest.allowed_labels.items()}
    if testset.agent_id is None:
        return {}
    newest = testset.agent.versions.order_by("-number").first()
    return allowed_labels(newest.system_prompt) if newest else {}


def correction_allowed_labels(*, request: TriageRequest) -> tuple[dict[str, tuple[str, ...]], str]:
    """The labels a correction of ``request`` may use, and where they come from (for the refusal).

    A correction exists to become a test set label, so it is checked against
    the agent's gating test set (the set its tickets usually go to), else the
    agent's newest prompt; never against the serving version's prompt.
    """
    gating = TestSet.objects.filter(agent_id=request.agent_id, gating=True).first()
    if gating is not None:
        allowed = testset_allowed_labels(testset=gating)
        if allowed:
            return allowed, f"test set {gating.name}"
    newest = request.agent.versions.order_by("-number").first()
    if newest is not None:
        return allowed_labels(newest.system_prompt), f"{request.agent.name} v{newest.number}'s prompt"
    return {}, ""


def label_problems(*, labels: dict[str, str], allowed: dict[str, tuple[str, ...]], source: str) -> dict[str, str]:
    """Per field, why a label is not one ``allowed`` has (fields ``allowed`` does not constrain pass)."""
    problems: dict[str, str] = {}
    for field, value in labels.items():
        choices = allowed.get(field)
        if choices and value not in choices:
            problems[field] = f"{source} allows only {', '.join(choices)} as {field}, not {value!r}."
    return problems


def triage_correct(*, request: TriageRequest, team: str, priority: str, actor: Any, note: str = "") -> TriageCorrection:
    """Record a reviewer's verdict for a logged call (the log row itself stays as served).

    The labels are checked against the agent's test set labels
    (``correction_allowed_labels``), so a correction can always be added to it.
    """
    _require(actor, "add_triagecorrection", "correct triage verdicts")
    team, priority = (team or "").strip(), (priority or "").strip()
    if not team or not priority:
        raise DomainError("A correction needs both a team and a priority: fill in both.")
    allowed, source = correction_allowed_labels(request=request)
    problems = label_problems(labels={"team": team, "priority": priority}, allowed=allowed, source=source)
    if problems:
        raise DomainError(" ".join(problems.values()) + " Choose one of those.")
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
    corrected first, and every label must be one the set allows
    (``testset_allowed_labels``). Tickets already in the set are not added twice.
    Needs ``triage.add_triagecorrection`` (reviewers curate labels) or
    ``evals.add_testset`` (requesters import sets).
    """
    if actor is None or not (actor.has_perm("triage.add_triagecorrection") or actor.has_perm("evals.add_testset")):
        raise DomainError(
            "You may not add logged requests to a test set: it takes a reviewer's or requester's role. "
            "Ask an admin to give you one."
        )
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
    allowed = testset_allowed_labels(testset=testset)
    mislabelled = []
    for row in chosen:
        label = _label_of(row)
        assert label is not None
        if label_problems(labels={"team": label[0], "priority": label[1]}, allowed=allowed, source=""):
            mislabelled.append(f"#{row.pk} ({label[0]} / {label[1]})")
    if mislabelled:
        choices = "; ".join(f"{field}: {', '.join(values)}" for field, values in allowed.items())
        raise DomainError(
            f"Test set {testset.name!r} allows only these labels ({choices}); requests {', '.join(mislabelled)} "
            "carry others. Correct their verdicts first, or pick another set."
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
