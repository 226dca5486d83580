"""The audit chain: every change leaves an event; editing or deleting one is caught and named.

Attacks with checkpoints and without the key are in ``test_audit_keyed.py``.
"""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.db import DatabaseError, transaction

from promptctl.audit import audit_verify
from promptctl.models import AuditChainHead, AuditEvent
from tests.change_control_support import promote
from tests.promptctl.audit_support import as_owner


@pytest.fixture
def history(agent, requester, reviewer):
    """A realistic chain: users, agent, version, a request approved and applied."""
    promote(agent, agent.latest_version_number, requester, reviewer)
    events = list(AuditEvent.objects.order_by("sequence"))
    assert len(events) >= 8
    return events


def _without_guard(sql: str, params: list) -> None:
    """Run ``sql`` the way an owner of the database could: with the audit tables' triggers out of the way."""
    as_owner((sql, params))


def verify_cli() -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("promptctl", "audit", "verify", stdout=out, stderr=err)
    except SystemExit as exit_:
        return int(exit_.code), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def test_an_untouched_chain_verifies(history):
    result = audit_verify()
    assert result.ok and result.checked == len(history) and result.head_sequence == history[-1].sequence
    code, out, _err = verify_cli()
    assert code == 0 and f"{len(history)} events" in out


def test_events_carry_actor_before_after_and_request_id(history, reviewer):
    applied = next(e for e in history if e.verb == "pin.move")
    assert applied.actor == reviewer and applied.actor_username == reviewer.username
    assert applied.before is None and applied.after["revision"] == 1
    assert applied.previous_hash == history[history.index(applied) - 1].hash


def test_the_database_refuses_to_change_an_audit_row(history):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=history[2].pk).update(actor_username="someone-else")
    assert audit_verify().ok


def test_an_edited_event_is_named(history):
    target = history[4]
    _without_guard("UPDATE promptctl_auditevent SET object_repr = %s WHERE id = %s", ["nothing to see", target.pk])
    result = audit_verify()
    assert not result.ok and result.first_broken_sequence == target.sequence
    assert "edited row" in result.problem and "do not match its MAC" in result.problem
    code, _out, err = verify_cli()
    assert code == 1 and f"broken at event #{target.sequence}" in err and len(err.strip().splitlines()) == 1


def test_an_edit_with_a_recomputed_plain_hash_fails_its_mac_and_breaks_the_next_link(history):
    from promptctl.audit import legacy_event_hash

    target = history[3]
    target.verb = "agent.rename"
    forged = legacy_event_hash(target)  # the old formula needs no key; the event still names its key id
    _without_guard(
        "UPDATE promptctl_auditevent SET verb = %s, hash = %s WHERE id = %s", ["agent.rename", forged, target.pk]
    )
    result = audit_verify()
    assert not result.ok and result.first_broken_sequence == target.sequence
    assert [(finding.kind, finding.sequence) for finding in result.findings] == [
        ("edited", target.sequence),
        ("link_broken", target.sequence + 1),
    ]


def test_a_deleted_event_is_named(history):
    target = history[5]
    _without_guard("DELETE FROM promptctl_auditevent WHERE id = %s", [target.pk])
    result = audit_verify()
    assert not result.ok and result.first_broken_sequence == target.sequence and "missing" in result.problem


def test_deleting_the_newest_events_is_caught_by_the_head(history):
    _without_guard("DELETE FROM promptctl_auditevent WHERE sequence >= %s", [history[-2].sequence])
    result = audit_verify()
    assert not result.ok and result.first_broken_sequence == history[-2].sequence
    assert AuditChainHead.objects.get().sequence == history[-1].sequence


def test_json_output_of_a_broken_chain(history):
    _without_guard("UPDATE promptctl_auditevent SET request_id = %s WHERE id = %s", ["forged", history[1].pk])
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("promptctl", "--json", "audit", "verify", stdout=out, stderr=io.StringIO())
    assert exit_.value.code == 1
    data = json.loads(out.getvalue())
    assert data["ok"] is False and data["first_broken_sequence"] == history[1].sequence
