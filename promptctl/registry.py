"""The one place where apps above ``promptctl`` plug into it: filled in each app's ``AppConfig.ready()``.

Why a registry: the layers import one way only (``managed_agents`` ←
``promptctl`` ← ``evals`` ← ``triage``, checked by ``tests/test_layers.py``),
yet change control must ask the apps above it for things it cannot know:
what evidence a promotion freezes and whether it may be applied (evals), how
a request that moves no pin is carried out (triage: the default agent), what
an agent's timeline shows (evals, triage), which permissions each role holds
(evals), which CLI groups exist (evals, triage), what a worker's sweep timer
(run by evals) must also find again after a worker dies (triage's jobs and
shadow runs). Each of those is a named slot
here; an app fills its slots in ``ready()`` and ``promptctl`` reads them at
call time. Nothing registers as a side effect of importing a module.

Modelled on NetBox's ``netbox/registry.py``: one module-level store with
named, typed slots, no magic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class PromotionGate(Protocol):
    """What a change request freezes as evidence, and what applying it requires (owned by evals)."""

    def evidence_resolve(
        self,
        *,
        agent: Any,
        channel: str,
        kind: str,
        target_version: Any,
        evidence_ref: str | None,
        accept_regression_reason: str,
        canary_percent: int = 0,
    ) -> dict[str, Any]: ...

    def stale_reason(self, *, change: Any) -> str | None:
        """Why the request's evidence was judged on inputs that changed since it was filed, or ``None``.

        A stale request is superseded like one whose pin moved: approvals covered
        evidence measured on what no longer holds.
        """
        ...

    def apply_gate(self, *, change: Any) -> None: ...


class ChangeApplier(Protocol):
    """Carries out a change request kind that moves something other than a pin (e.g. ``route``, owned by triage)."""

    def filing_check(self, *, agent: Any, channel: str) -> None:
        """Raise ``DomainError`` when filing would change nothing or cannot be carried out."""
        ...

    def apply(self, *, change: Any, actor: Any) -> str:
        """Make the change in the caller's transaction (audited); return one line saying what changed."""
        ...


class ReviewEvidence(Protocol):
    """What the admin offers and shows as evidence (owned by evals): the filing form's list, the review page's panel."""

    def choices(self, *, agent: Any) -> list[tuple[str, str]]:
        """The agent's comparisons and eval runs, newest first, as (evidence reference, label with its verdict)."""
        ...

    def panel(self, *, change: Any) -> str:
        """The request's frozen evidence as safe HTML: verdict, chart, flipped tickets ("" when it carries none)."""
        ...


# (agent, *, before: datetime | None, limit: int) -> at most `limit` entries at or before `before`, from bounded queries.
TimelineProvider = Callable[..., Iterable[Any]]
# A check of live state against the audit trail: yields one sentence per difference.
RecordCheck = Callable[[], Iterable[str]]
# Adds to a promotion's frozen evidence (e.g. triage's shadow record): (snapshot, target_version) -> snapshot.
EvidenceExtender = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass(frozen=True)
class Redaction:
    """Columns of one table that retention empties once, stamping the row (owned by the app keeping customer text).

    ``promptctl db roles`` grants the runtime role UPDATE on these columns only, and on PostgreSQL
    installs a guard refusing any UPDATE that is not exactly this redaction of a row older than the
    ticket-text floor (``RetentionFloor``).
    """

    model: Any  # a model class, or a django-simple-history model
    text_fields: tuple[str, ...]
    stamp_field: str  # set when the text is emptied; a stamped row is never redacted again
    age_field: str  # the row's time, compared with the floor


@dataclass(frozen=True)
class RetentionPolicy:
    """How many days ticket text and history rows are kept (0: only what is newer than now).

    The settings' policy is what the purge applies (``triage.services.retention``) and, when the owner
    grants, the floor the database guards enforce (``promptctl db roles``, ``RetentionFloor``).
    """

    ticket_text_days: int
    history_days: int

    @classmethod
    def from_settings(cls) -> RetentionPolicy:
        from django.conf import settings

        return cls(
            ticket_text_days=settings.PROMPTCTL_RETENTION_TICKET_TEXT_DAYS,
            history_days=settings.PROMPTCTL_RETENTION_HISTORY_DAYS,
        )


# Work a dead worker may have lost, found again from the database: run by every worker's sweep timer
# (evals.tasks) after the eval runs' own sweep. Returns what it sent again, for the log (empty: nothing).
WorkerSweep = Callable[[], Any]


@dataclass
class Registry:
    promotion_gate: PromotionGate | None = None
    # the admin's evidence list and panel (evals); without it the admin takes a typed reference and shows a summary
    review_evidence: ReviewEvidence | None = None
    # change request kind -> the app that carries it out (kinds that do not move a pin)
    change_appliers: dict[str, ChangeApplier] = field(default_factory=dict)
    evidence_extenders: list[EvidenceExtender] = field(default_factory=list)
    timeline_providers: list[TimelineProvider] = field(default_factory=list)
    # group name -> "app_label.codename" permissions that role holds
    role_permissions: dict[str, list[str]] = field(default_factory=dict)
    # modules with ``register(subparsers)`` (see ``promptctl.cli``), in the order their groups appear
    cli_groups: list[str] = field(default_factory=list)
    # live state compared with the audit trail by ``audit verify`` (see ``promptctl.record_checks``)
    record_checks: list[RecordCheck] = field(default_factory=list)
    # sweeps of lost work run on each worker's timer (triage: async jobs, shadow runs)
    worker_sweeps: list[WorkerSweep] = field(default_factory=list)
    # customer text retention may empty (triage: the request log, job history); see ``promptctl db roles``
    redactions: list[Redaction] = field(default_factory=list)


registry = Registry()


def _add_once(items: list, item: Any) -> None:
    if item not in items:
        items.append(item)


def promotion_gate_register(gate: PromotionGate) -> None:
    """The gate every change request passes through; exactly one app provides it."""
    if registry.promotion_gate is not None and registry.promotion_gate is not gate:
        raise RuntimeError(f"a promotion gate is registered already ({registry.promotion_gate!r})")
    registry.promotion_gate = gate


def review_evidence_register(provider: ReviewEvidence) -> None:
    """The app that lists and draws evidence in the admin; exactly one app provides it."""
    if registry.review_evidence is not None and registry.review_evidence is not provider:
        raise RuntimeError(f"review evidence is registered already ({registry.review_evidence!r})")
    registry.review_evidence = provider


def review_evidence() -> ReviewEvidence | None:
    return registry.review_evidence


def change_applier_register(kind: str, applier: ChangeApplier) -> None:
    """The one app that carries out change requests of ``kind`` once they are approved."""
    present = registry.change_appliers.get(kind)
    if present is not None and present is not applier:
        raise RuntimeError(f"an applier for {kind!r} change requests is registered already ({present!r})")
    registry.change_appliers[kind] = applier


def change_applier(kind: str) -> ChangeApplier | None:
    return registry.change_appliers.get(kind)


def evidence_extender_register(extender: EvidenceExtender) -> None:
    _add_once(registry.evidence_extenders, extender)


def timeline_provider_register(provider: TimelineProvider) -> None:
    _add_once(registry.timeline_providers, provider)


def role_permissions_register(group_name: str, permissions: Sequence[str]) -> None:
    """Grant ``permissions`` ("app_label.codename") to the role group ``group_name`` (see ``roles_ensure``)."""
    held = registry.role_permissions.setdefault(group_name, [])
    for permission in permissions:
        _add_once(held, permission)


def cli_group_register(module_name: str) -> None:
    _add_once(registry.cli_groups, module_name)


def record_check_register(check: RecordCheck) -> None:
    _add_once(registry.record_checks, check)


def worker_sweep_register(sweep: WorkerSweep) -> None:
    """A sweep every worker runs on its timer, beside the eval runs' (see ``evals.tasks``)."""
    _add_once(registry.worker_sweeps, sweep)


def worker_sweeps() -> list[WorkerSweep]:
    return list(registry.worker_sweeps)


def redaction_register(redaction: Redaction) -> None:
    _add_once(registry.redactions, redaction)


def redactions() -> list[Redaction]:
    return list(registry.redactions)


def promotion_gate() -> PromotionGate:
    if registry.promotion_gate is None:
        raise RuntimeError("no promotion gate is registered: is the evals app in INSTALLED_APPS?")
    return registry.promotion_gate
