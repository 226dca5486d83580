"""``audit verify`` names a default agent or a gating set changed in the database without an event.

The state is made through the services (the triage ``production`` fixture:
v1 in production through the evals gate, the default agent by a route
request); then the database's owner changes it with raw SQL.
"""

from __future__ import annotations

from promptctl.audit import audit_verify
from tests.promptctl.audit_support import as_owner_everywhere as as_owner


def _drift() -> list[str]:
    return [finding.detail for finding in audit_verify().findings if finding.kind == "state_drift"]


def test_the_default_agent_switched_in_the_database_is_named(production):
    assert _drift() == []
    as_owner(("UPDATE triage_routingpolicy SET is_default = %s", [False]))
    (problem,) = _drift()
    assert "the default agent of POST /api/v1/triage is no agent" in problem
    assert "the last audited route change made it ticket-triage" in problem


def test_the_gating_set_dropped_in_the_database_is_named(production):
    as_owner(("UPDATE evals_testset SET gating = %s", [False]))
    (problem,) = _drift()
    assert "agent ticket-triage's gating test set is none, but the trail last recorded ticket-triage-gate v1" in problem


def test_gating_tickets_relabelled_in_the_database_are_named(production):
    as_owner(("UPDATE evals_testcase SET team = %s WHERE team = %s", ["api-platform", "billing"]))
    (problem,) = _drift()
    assert "ticket-triage-gate v1 holds" in problem and "no longer match its contents hash" in problem
