"""Deletes written around the services hit the database's delete guards, on SQLite as on PostgreSQL (migration 0006)."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from promptctl import services
from promptctl.models import AgentVersion, Approval, AuditChainHead, AuditEvent, ChangeRequest, Pin
from tests.change_control_support import CHANNEL, V2, promote


def _delete(table: str, row_id: int) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE id = %s", [row_id])


@pytest.fixture
def approved_for_v2(agent, requester, reviewer):
    """A request to move the pin to v2, approved by the reviewer and not yet applied; v3 exists too."""
    v2 = services.version_create(agent=agent, system_prompt=V2, actor=requester)
    services.version_create(agent=agent, system_prompt=V2 + "\n\nAnd one more rule.", actor=requester)
    change = services.change_request_create(
        agent=agent, kind="promote", target_number=v2.number, reason="v2", actor=requester, channel=CHANNEL
    )
    services.change_request_approve(change=change, reviewer=reviewer)
    change.refresh_from_db()
    assert change.status == "approved" and change.target_version_id == v2.pk
    return change


def test_an_approved_request_cannot_be_deleted_and_filed_again_for_another_version(approved_for_v2, agent):
    # The attack: delete the approved request, insert it again (same id, pending, now for v3), set it
    # approved (the old approval still counts) and apply. The first step is refused.
    change = approved_for_v2
    v3 = AgentVersion.objects.get(agent=agent, number=agent.latest_version_number)
    with pytest.raises(DatabaseError, match="part of the record"):
        _delete("promptctl_changerequest", change.pk)
    with pytest.raises(DatabaseError), transaction.atomic():  # nor can it be overwritten in place
        ChangeRequest.objects.filter(pk=change.pk).update(target_version=v3)
    change.refresh_from_db()
    assert change.status == "approved" and change.target_version_id != v3.pk


def test_an_approval_cannot_be_deleted(approved_for_v2):
    approval = Approval.objects.get(change=approved_for_v2)
    with pytest.raises(DatabaseError, match="final"):
        _delete("promptctl_approval", approval.pk)
    with pytest.raises(DatabaseError, match="final"), transaction.atomic():
        Approval.objects.filter(pk=approval.pk).delete()  # the ORM's bulk delete skips the model's refusal
    assert Approval.objects.filter(change=approved_for_v2, decision="approve").count() == 1


def test_versions_audit_events_pins_and_the_chain_head_cannot_be_deleted(agent, requester, reviewer):
    applied = promote(agent, agent.latest_version_number, requester, reviewer)
    pin = Pin.objects.get(agent=agent, channel=CHANNEL)
    event = AuditEvent.objects.order_by("sequence").first()
    head = AuditChainHead.objects.get()
    with pytest.raises(DatabaseError, match="immutable"):
        _delete("promptctl_agentversion", applied.target_version_id)
    with pytest.raises(DatabaseError, match="append-only"):
        _delete("promptctl_auditevent", event.pk)
    with pytest.raises(DatabaseError, match="[Pp]in"):
        _delete("promptctl_pin", pin.pk)
    with pytest.raises(DatabaseError, match="chain head is kept"):
        _delete("promptctl_auditchainhead", head.pk)
    with pytest.raises(DatabaseError, match="part of the record"):
        _delete("promptctl_changerequest", applied.pk)
    assert AuditChainHead.objects.get().sequence == AuditEvent.objects.order_by("-sequence").first().sequence


@pytest.mark.django_db(transaction=True)
def test_committed_rows_of_the_record_stay_after_a_refused_delete(agent, requester, reviewer):
    # Committed rows, and a test database Django resets after the test: on SQLite that reset is a
    # restore from a copy (tests/database_support.py), since its flush's DELETE would be refused too.
    applied = promote(agent, agent.latest_version_number, requester, reviewer)
    with pytest.raises(DatabaseError, match="final"):
        _delete("promptctl_approval", Approval.objects.get(change=applied).pk)
    assert Approval.objects.filter(change=applied).exists()
    assert ChangeRequest.objects.get(pk=applied.pk).status == "applied"
