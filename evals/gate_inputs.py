"""The gate's own input, the gating test set, as evidence records it and as reviewers see it change.

What the promotion gate measures is decided by the agent's gating test set:
swap it, or import a version without the tickets the candidate gets wrong,
and the next comparison passes. So:

- evidence names the gating set version it was scored on (``gating_set_record``,
  frozen on the request), and a gated request whose agent's gating set choice
  or latest version changed after filing is stale (``stale_reason``): it is
  superseded on apply and must be filed again on a fresh comparison;
- when the gating set changed since the production version was promoted,
  the request shows who changed it, when, and which tickets were added,
  removed or relabelled (``gating_set_change``, frozen with the evidence);
- ``cases_diff`` is the same diff the test set services record in their audit
  events when a gating set gets new contents or another set becomes gating.
"""

from __future__ import annotations

from typing import Any

from evals.models import TestCase, TestSet, TestSetVersion
from promptctl.models import PRODUCTION, AuditEvent, ChangeRequest, Pin

# Audit verbs of the writes that change what the gate measures (evals.services.testsets).
GATING_VERBS = ("testset.gating", "testset.gating_version")
SHOWN_TICKETS = 20


def gating_set_record(version: TestSetVersion) -> dict[str, Any]:
    """Which gating set version a request was judged on: the set and version ids, number, contents, size."""
    return {
        "testset_id": version.testset_id,
        "testset": version.testset.name,
        "version_id": version.pk,
        "version": version.number,
        "content_hash": version.content_hash,
        "case_count": version.case_count,
    }


def _labels(version: TestSetVersion) -> dict[str, str]:
    rows = TestCase.objects.filter(version=version).values_list("external_id", "team", "priority")
    return {external_id: f"{team}/{priority}" for external_id, team, priority in rows}


def cases_diff(before: TestSetVersion | None, after: TestSetVersion) -> dict[str, Any]:
    """Tickets added, removed and relabelled (by external id) from ``before`` to ``after``."""
    old = _labels(before) if before is not None else {}
    new = _labels(after)
    relabelled = [
        {"ticket": ticket, "from": old[ticket], "to": new[ticket]}
        for ticket in sorted(old.keys() & new.keys())
        if old[ticket] != new[ticket]
    ]
    return {
        "added": sorted(new.keys() - old.keys()),
        "removed": sorted(old.keys() - new.keys()),
        "relabelled": relabelled,
    }


def _listed(tickets: list[str]) -> str:
    shown = ", ".join(tickets[:SHOWN_TICKETS])
    more = len(tickets) - SHOWN_TICKETS
    return (shown + (f" and {more} more" if more > 0 else "")) or "none"


def diff_sentence(diff: dict[str, Any]) -> str:
    relabelled = [f"{row['ticket']} {row['from']} → {row['to']}" for row in diff["relabelled"]]
    return f"added {_listed(diff['added'])}; removed {_listed(diff['removed'])}; relabelled {_listed(relabelled)}"


def _production_judged_on(agent) -> tuple[Any, TestSetVersion | None]:
    """The production version and the gating set version its promotion was judged on (when recorded)."""
    pin = Pin.objects.select_related("version").filter(agent=agent, channel=PRODUCTION).first()
    if pin is None:
        return None, None
    promotion = (
        ChangeRequest.objects.filter(
            agent=agent,
            channel=PRODUCTION,
            kind=ChangeRequest.Kind.PROMOTE,
            status=ChangeRequest.Status.APPLIED,
            target_version=pin.version,
        )
        .order_by("-closed_at", "-pk")
        .first()
    )
    evidence = promotion.evidence if promotion is not None else {}
    recorded = evidence.get("gating_set") or {}
    if recorded.get("version_id"):
        return pin.version, TestSetVersion.objects.select_related("testset").filter(pk=recorded["version_id"]).first()
    if evidence.get("testset") and evidence.get("testset_version"):  # filed before the record existed
        return pin.version, (
            TestSetVersion.objects.select_related("testset")
            .filter(testset__name=evidence["testset"], number=evidence["testset_version"])
            .first()
        )
    return pin.version, None


def _last_gating_write(agent) -> AuditEvent | None:
    return AuditEvent.objects.filter(agent_id_ref=agent.pk, verb__in=GATING_VERBS).order_by("-sequence").first()


def gating_set_change(*, agent, current: TestSetVersion) -> dict[str, Any] | None:
    """How the gating set differs from the one production's version was promoted on, or ``None``."""
    production_version, judged_on = _production_judged_on(agent)
    if judged_on is None or judged_on.pk == current.pk:
        return None
    diff = cases_diff(judged_on, current)
    write = _last_gating_write(agent)
    if write is not None:
        who, when = write.actor_username or "someone", write.occurred_at
    else:
        who = current.created_by.username if current.created_by is not None else "someone"
        when = current.created_at
    return {
        "summary": (
            f"The gating test set changed since production v{production_version.number} was promoted: "
            f"{judged_on.testset.name} v{judged_on.number} ({judged_on.case_count} tickets) → "
            f"{current.testset.name} v{current.number} ({current.case_count} tickets), last changed by {who} "
            f"at {when:%Y-%m-%d %H:%M} UTC; {diff_sentence(diff)}."
        ),
        "changed_by": who,
        "changed_at": when.isoformat(),
        "from": gating_set_record(judged_on),
        "to": gating_set_record(current),
        **diff,
    }


def stale_reason(*, change, agent, gated: bool) -> str | None:
    """Why a gated request's evidence was judged on another gating set than the agent's current one."""
    recorded = (change.evidence or {}).get("gating_set") if gated else None
    if not recorded:
        return None
    testset = TestSet.objects.filter(agent=agent, gating=True).first()
    latest = testset.versions.order_by("-number").first() if testset else None
    if testset is not None and latest is not None:
        if latest.pk == recorded.get("version_id") and testset.pk == recorded.get("testset_id"):
            return None
    was = f"{recorded['testset']} v{recorded['version']} ({recorded['case_count']} tickets)"
    if testset is None or latest is None:
        now = "no gating set"
    elif testset.pk != recorded.get("testset_id"):
        now = f"another set, {testset.name} v{latest.number} ({latest.case_count} tickets)"
    else:
        now = f"{testset.name} v{latest.number} ({latest.case_count} tickets)"
    write = _last_gating_write(agent)
    by = f", changed by {write.actor_username or 'someone'} at {write.occurred_at:%Y-%m-%d %H:%M} UTC" if write else ""
    return (
        f"{agent.name}'s gating test set changed after it was filed: its evidence was scored on {was}, and the "
        f"gating set is now {now}{by}. Approvals covered evidence on the old set, so the request is superseded: "
        "re-run both versions on the current gating set, compare them and file again with the new comparison."
    )
