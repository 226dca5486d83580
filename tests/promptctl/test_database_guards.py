"""Writes around the services hit the database's own guards (constraints and triggers)."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, IntegrityError, transaction

from promptctl import services
from promptctl.models import AgentVersion, Approval, ChangeRequest, Pin
from tests.change_control_support import CHANNEL, promote


@pytest.fixture
def pending(agent, requester):
    return services.change_request_create(
        agent=agent,
        kind="promote",
        target_number=agent.latest_version_number,
        reason="r",
        actor=requester,
        channel=CHANNEL,
    )


def test_self_approval_written_around_the_service_hits_the_check_constraint(pending, requester):
    with pytest.raises(IntegrityError, match="approval_reviewer_is_not_requester"), transaction.atomic():
        Approval.objects.create(change=pending, reviewer=requester, requester=requester, decision="approve")
    assert not Approval.objects.filter(change=pending).exists()


def test_a_forged_requester_copy_is_refused(pending, requester, reviewer, second_reviewer):
    # The self-approval dodge: the requester approves, with someone else written as the "requester".
    with pytest.raises(DatabaseError), transaction.atomic():
        Approval.objects.create(change=pending, reviewer=requester, requester=reviewer, decision="approve")
    assert not Approval.objects.filter(change=pending).exists()


def test_versions_and_decisions_cannot_be_updated(pending, reviewer):
    services.change_request_approve(change=pending, reviewer=reviewer)
    with pytest.raises(DatabaseError, match="immutable"), transaction.atomic():
        AgentVersion.objects.filter(pk=pending.target_version_id).update(system_prompt="quietly changed")
    with pytest.raises(DatabaseError, match="final"), transaction.atomic():
        Approval.objects.filter(change=pending).update(decision="reject", comment="changed my mind")
    assert AgentVersion.objects.get(pk=pending.target_version_id).system_prompt != "quietly changed"


def test_a_requests_target_and_evidence_are_fixed(pending, agent, requester):
    other = services.version_create(agent=agent, system_prompt="Another prompt.", actor=requester)
    with pytest.raises(DatabaseError, match="fixed once requested"), transaction.atomic():
        ChangeRequest.objects.filter(pk=pending.pk).update(target_version=other)
    with pytest.raises(DatabaseError, match="fixed once requested"), transaction.atomic():
        ChangeRequest.objects.filter(pk=pending.pk).update(evidence={"summary": "looks great"})
    pending.refresh_from_db()
    assert pending.target_version_id != other.pk and pending.evidence == {}


def test_approval_and_apply_cannot_be_written_directly(pending):
    with pytest.raises(DatabaseError, match="approv"), transaction.atomic():
        ChangeRequest.objects.filter(pk=pending.pk).update(status="approved", approved_at=pending.requested_at)
    with pytest.raises(DatabaseError), transaction.atomic():
        ChangeRequest.objects.create(
            agent=pending.agent,
            kind="promote",
            target_version=pending.target_version,
            target_config_sha256=pending.target_config_sha256,
            approvals_required=1,
            reason="sneaky",
            requested_by=pending.requested_by,
            status="approved",
            approved_at=pending.requested_at,
        )
    pending.refresh_from_db()
    assert pending.status == ChangeRequest.Status.PENDING


def test_a_pin_cannot_be_written_without_an_approved_change(pending):
    with pytest.raises(DatabaseError, match="pin"), transaction.atomic():
        Pin.objects.create(agent=pending.agent, channel=CHANNEL, version=pending.target_version, change=pending)
    assert not Pin.objects.exists()


def test_a_pin_cannot_be_moved_directly(agent, requester, reviewer):
    first = agent.latest_version_number
    second = services.version_create(agent=agent, system_prompt="Second prompt.", actor=requester)
    promote(agent, first, requester, reviewer)
    with pytest.raises(DatabaseError, match="pin moves only"), transaction.atomic():
        Pin.objects.filter(agent=agent).update(version=second, revision=2)
    assert Pin.objects.get(agent=agent).version.number == first


def test_a_closed_request_never_changes(agent, requester, reviewer):
    applied = promote(agent, agent.latest_version_number, requester, reviewer)
    with pytest.raises(DatabaseError, match="closed"), transaction.atomic():
        ChangeRequest.objects.filter(pk=applied.pk).update(status_reason="rewritten")
