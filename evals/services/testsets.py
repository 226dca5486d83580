"""Test sets: importing a file as a set's newest version, and choosing an agent's gating set.

A test set file is stored whole or not at all (``TestSetFileRefused`` names
every bad line), and contents are identified by their hash, so a run can
always say exactly which tickets it used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max

from evals.importing import FORMATS, ImportReport, format_from_filename, label_warnings, ticket_file_parse
from evals.models import TestCase, TestSet, TestSetVersion
from evals.services.common import TestSetFileRefused
from managed_agents import verdicts
from promptctl.errors import DomainError
from promptctl.models import Agent
from promptctl.records import saved_by

MAX_ERRORS_IN_MESSAGE = 50


# --- test sets ------------------------------------------------------------------


@dataclass(frozen=True)
class TestSetImport:
    """What an import did: the set, its (new or existing) version, and the parse report."""

    __test__ = False

    testset: TestSet
    version: TestSetVersion
    created: bool
    report: ImportReport


def _allowed_for_agent(agent: Agent | None) -> dict[str, tuple[str, ...]]:
    if agent is None:
        return {}
    latest = agent.versions.order_by("-number").first()
    return verdicts.allowed_labels(latest.system_prompt) if latest else {}


def testset_import(
    *,
    name: str,
    data: bytes | str,
    filename: str = "",
    file_format: str | None = None,
    agent: Agent | None = None,
    gating: bool = False,
    actor: Any = None,
) -> TestSetImport:
    """Store a file as the newest version of test set ``name`` (created on first import).

    Refused whole when any line is bad. The same contents imported again are the
    same version (nothing new is stored). Labels the agent's latest prompt cannot
    produce are kept, and recorded on the version as warnings.
    """
    name = (name or "").strip()
    if not name:
        raise DomainError("Give the test set a name (--name), e.g. support-tickets.")
    file_format = file_format or format_from_filename(filename)
    if file_format not in FORMATS:
        raise DomainError(
            f"Cannot tell the format of {filename or 'the file'!r}: name it .jsonl or .csv, or pass the format explicitly."
        )
    report = ticket_file_parse(data=data, file_format=file_format)
    if not report.ok:
        shown = report.error_lines()[:MAX_ERRORS_IN_MESSAGE]
        more = len(report.errors) - len(shown)
        raise TestSetFileRefused(
            f"Refused {filename or 'the file'}: {len(report.errors)} bad line(s), so nothing was imported. "
            "Fix these lines and import again:\n  "
            + "\n  ".join(shown)
            + (f"\n  ... and {more} more" if more > 0 else ""),
            report=report,
        )
    with transaction.atomic():
        testset = TestSet.objects.select_for_update().filter(name=name).first()
        if testset is None:
            try:
                with transaction.atomic():
                    testset = saved_by(TestSet(name=name, agent=agent, created_by=actor), actor)
            except IntegrityError:
                pass
            testset = TestSet.objects.select_for_update().get(name=name)
        if agent is not None and testset.agent_id not in (None, agent.pk):
            owner = testset.agent
            raise DomainError(
                f"Test set {name!r} belongs to agent {owner.name if owner else '?'}, not {agent.name}: "
                "import under another name, or leave out --agent."
            )
        if agent is not None and testset.agent_id is None:
            testset.agent = agent
            saved_by(testset, actor)
        existing = testset.versions.filter(content_hash=report.content_hash).first()
        if existing is not None:
            version, created = existing, False
        else:
            allowed = _allowed_for_agent(testset.agent)
            cases = [case.canonical() for case in report.cases]
            number = (testset.versions.aggregate(top=Max("number"))["top"] or 0) + 1
            version = TestSetVersion.objects.create(
                testset=testset,
                number=number,
                content_hash=report.content_hash,
                case_count=len(report.cases),
                source_name=(filename or "")[:300],
                source_format=file_format,
                allowed_labels={key: list(value) for key, value in allowed.items()},
                label_warnings=label_warnings(cases=cases, allowed=allowed),
                created_by=actor if getattr(actor, "pk", None) else None,
            )
            TestCase.objects.bulk_create(
                TestCase(
                    version=version,
                    position=position,
                    external_id=case.id,
                    subject=case.subject,
                    body=case.body,
                    team=case.team,
                    priority=case.priority,
                    tags=list(case.tags),
                )
                for position, case in enumerate(report.cases, start=1)
            )
            created = True
        if gating:
            testset = testset_gating_set(testset=testset, actor=actor)
        version.testset = testset
    return TestSetImport(testset=testset, version=version, created=created, report=report)


def testset_gating_set(*, testset: TestSet, actor: Any = None) -> TestSet:
    """Make ``testset`` its agent's gating set (the one production promotions are judged on)."""
    with transaction.atomic():
        testset = TestSet.objects.select_for_update().get(pk=testset.pk)
        if testset.agent_id is None:
            raise DomainError(
                f"Test set {testset.name!r} belongs to no agent, so it cannot gate promotions: "
                "import it with --agent NAME first."
            )
        if testset.gating:
            return testset
        for other in TestSet.objects.select_for_update().filter(agent_id=testset.agent_id, gating=True):
            other.gating = False
            saved_by(other, actor)
        testset.gating = True
        saved_by(testset, actor)
    return testset
