"""The one place where apps above ``promptctl`` plug into it: filled in each app's ``AppConfig.ready()``.

Why a registry: the layers import one way only (``managed_agents`` ←
``promptctl`` ← ``evals`` ← ``triage``, checked by ``tests/test_layers.py``),
yet change control must ask the apps above it for things it cannot know:
what evidence a promotion freezes and whether it may be applied (evals), how
a request that moves no pin is carried out (triage: the default agent), what
an agent's timeline shows (evals, triage), which permissions each role holds
(evals), which CLI groups exist (evals, triage). Each of those is a named slot
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


TimelineProvider = Callable[[Any], Iterable[Any]]
# A check of live state against the audit trail: yields one sentence per difference.
RecordCheck = Callable[[], Iterable[str]]
# Adds to a promotion's frozen evidence (e.g. triage's shadow record): (snapshot, target_version) -> snapshot.
EvidenceExtender = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass
class Registry:
    promotion_gate: PromotionGate | None = None
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


registry = Registry()


def _add_once(items: list, item: Any) -> None:
    if item not in items:
        items.append(item)


def promotion_gate_register(gate: PromotionGate) -> None:
    """The gate every change request passes through; exactly one app provides it."""
    if registry.promotion_gate is not None and registry.promotion_gate is not gate:
        raise RuntimeError(f"a promotion gate is registered already ({registry.promotion_gate!r})")
    registry.promotion_gate = gate


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


def promotion_gate() -> PromotionGate:
    if registry.promotion_gate is None:
        raise RuntimeError("no promotion gate is registered: is the evals app in INSTALLED_APPS?")
    return registry.promotion_gate
