"""Evals' check for ``audit verify``: each agent's gating test set is the set and version the trail last recorded.

See ``promptctl.record_checks`` for why live state is compared with the trail.
"""

from __future__ import annotations

from collections.abc import Iterator

from evals.importing import content_hash
from evals.models import TestSet, TestSetVersion
from promptctl.models import Agent, AuditEvent


def gating_sets_match_record() -> Iterator[str]:
    for agent in Agent.objects.order_by("pk"):
        recorded = (
            AuditEvent.objects.filter(agent_id_ref=agent.pk, verb__in=("testset.gating", "testset.gating_version"))
            .order_by("-sequence")
            .values_list("after", flat=True)
            .first()
        )
        recorded = recorded if isinstance(recorded, dict) else {}
        testset = TestSet.objects.filter(agent=agent, gating=True).first()
        latest = (
            TestSetVersion.objects.filter(testset=testset).order_by("-number").values_list("number", flat=True).first()
            if testset
            else None
        )
        now = (testset.name, latest) if testset else (None, None)
        was = (recorded.get("testset"), recorded.get("version"))
        if now != was:
            yield (
                f"agent {agent.name}'s gating test set is {_words(now)}, but the trail last recorded {_words(was)}: "
                "it was changed outside promptctl."
            )


def _words(pair: tuple) -> str:
    name, number = pair
    return f"{name} v{number}" if name else "none"


def gating_contents_match_hash() -> Iterator[str]:
    """Each version of a gating set still holds the tickets its contents hash was computed over.

    Comparisons and the gate compare stored hashes; a ticket relabelled,
    added or removed in the database would leave the hash as it was.
    """
    versions = TestSetVersion.objects.filter(testset__gating=True).select_related("testset").order_by("pk")
    for version in versions:
        cases = [
            {
                "id": case.external_id,
                "subject": case.subject,
                "body": case.body,
                "team": case.team,
                "priority": case.priority,
                "tags": list(case.tags),
            }
            for case in version.cases.all()
        ]
        if content_hash(cases) != version.content_hash or len(cases) != version.case_count:
            yield (
                f"{version.testset.name} v{version.number} holds {len(cases)} tickets that no longer match its contents "
                f"hash {version.content_hash[:12]} ({version.case_count} tickets): its tickets were changed outside promptctl."
            )
