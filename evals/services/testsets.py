"""Test sets: importing a file as a set's newest version, and choosing an agent's gating set.

A test set file is stored whole or not at all (``TestSetFileRefused`` names
every bad line), and contents are identified by their hash, so a run can
always say exactly which tickets it used.

The gating test set decides what every later promotion is measured on, so
changing it is a gate change: choosing an agent's gating set, and importing a
new version of a gating set, need ``evals.change_gating_testset`` (admins) and
are audited in the same transaction with the set, version number, ticket
count and the tickets added, removed and relabelled (``evals.gate_inputs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max

from evals import gate_inputs
from evals.importing import FORMATS, ImportReport, format_from_filename, label_warnings
from evals.models import TestCase, TestSet, TestSetVersion
from evals.services.common import TestSetFileRefused
from evals.testset_input import testset_file_parse
from managed_agents import verdicts
from promptctl.audit import audit_record
from promptctl.errors import DomainError, Fix
from promptctl.models import Agent
from promptctl.records import saved_by
from promptctl.services.common import permission_require

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
        raise DomainError(
            "",
            code="testset_name_missing",
            fields=("name",),
            fix=Fix(
                cli="Give the test set a name (--name), e.g. support-tickets.",
                web="Give the test set a name, e.g. support-tickets.",
            ),
        )
    file_format = file_format or format_from_filename(filename)
    if file_format not in FORMATS:
        raise DomainError(
            f"Cannot tell the format of {filename or 'the file'!r}: name it .jsonl or .csv, or pass the format explicitly."
        )
    report = testset_file_parse(data=data, file_format=file_format)  # the input rules: evals/testset_input.py
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
                f"Test set {name!r} belongs to agent {owner.name if owner else '?'}, not {agent.name}.",
                code="testset_other_agent",
                fields=("name", "agent"),
                fix=Fix(
                    cli="Import under another name, or leave out --agent.",
                    web="Upload under another name, or leave the agent empty.",
                ),
            )
        if agent is not None and testset.agent_id is None:
            testset.agent = agent
            saved_by(testset, actor)
        existing = testset.versions.filter(content_hash=report.content_hash).first()
        previous = testset.versions.order_by("-number").first()
        if gating or (testset.gating and existing is None):
            _gate_permission_require(actor, f"change the gating test set of {testset.agent or 'an agent'}")
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
            if testset.gating:
                _gating_write_record(
                    actor=actor, verb="testset.gating_version", testset=testset, before=previous, after=version
                )
        if gating:
            testset = testset_gating_set(testset=testset, actor=actor)
        version.testset = testset
    return TestSetImport(testset=testset, version=version, created=created, report=report)


def _gate_permission_require(actor: Any, doing: str) -> None:
    permission_require(
        user=actor,
        permission="evals.change_gating_testset",
        doing=doing,
        next_step="It changes how every later promotion is judged: ask an admin to do it with their own token (PROMPTCTL_TOKEN).",
    )


def _version_facts(version: TestSetVersion | None) -> dict[str, Any] | None:
    if version is None:
        return None
    return {"testset": version.testset.name, "version": version.number, "case_count": version.case_count}


def _gating_write_record(
    *, actor: Any, verb: str, testset: TestSet, before: TestSetVersion | None, after: TestSetVersion
) -> None:
    """The audit event of a gating set change: which set and version before and after, and the tickets that moved."""
    diff = gate_inputs.cases_diff(before, after)
    audit_record(
        actor=actor,
        verb=verb,
        target=testset,
        agent_id=testset.agent_id,
        before=_version_facts(before),
        after={**(_version_facts(after) or {}), **diff},
    )


def testset_gating_set(*, testset: TestSet, actor: Any = None) -> TestSet:
    """Make ``testset`` its agent's gating set (the one production promotions are judged on); audited."""
    _gate_permission_require(actor, f"choose the gating test set of {testset.agent or 'an agent'}")
    with transaction.atomic():
        testset = TestSet.objects.select_for_update().get(pk=testset.pk)
        if testset.agent_id is None:
            raise DomainError(
                f"Test set {testset.name!r} belongs to no agent, so it cannot gate promotions.",
                code="testset_without_agent",
                fields=("agent",),
                fix=Fix(
                    cli="Import it with --agent NAME first.",
                    web="Upload it again with an agent picked first (Test sets, Upload).",
                    link=("admin:evals_testset_add", ()),
                ),
            )
        if testset.gating:
            return testset
        before = None
        for other in TestSet.objects.select_for_update().filter(agent_id=testset.agent_id, gating=True):
            before = other.versions.order_by("-number").first()
            other.gating = False
            saved_by(other, actor)
        testset.gating = True
        saved_by(testset, actor)
        latest = testset.versions.order_by("-number").first()
        if latest is None:
            raise DomainError(f"Test set {testset.name!r} has no contents yet: import a file into it first.")
        _gating_write_record(actor=actor, verb="testset.gating", testset=testset, before=before, after=latest)
    return testset
