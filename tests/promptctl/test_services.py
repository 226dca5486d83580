"""Change-control services against the emulator over real HTTP, on the real database."""

from __future__ import annotations

import pytest

from promptctl import selectors, services
from promptctl.errors import DomainError
from promptctl.models import AgentVersion, Approval, AuditEvent, ChangeRequest, Pin
from tests.change_control_support import CHANNEL, V1, V2, promote


def test_agent_create_records_version_one_and_audits(agent, requester):
    versions = list(agent.versions.all())
    assert len(versions) == 1
    first = versions[0]
    assert first.origin == AgentVersion.Origin.PROMPTCTL and first.created_by == requester
    assert first.system_prompt == V1 and len(first.config_sha256) == 64
    assert agent.latest_version_number == first.number
    assert agent.remote_id and agent.environment_id
    verbs = list(AuditEvent.objects.values_list("verb", flat=True))
    assert verbs[-2:] == ["agent.create", "version.create"]
    assert agent.history.first().history_user == requester


def test_version_create_is_conditional_on_the_last_known_version(agent, requester):
    second = services.version_create(agent=agent, system_prompt=V2, actor=requester)
    agent.refresh_from_db()
    assert second.number > agent.versions.order_by("number").first().number
    assert agent.latest_version_number == second.number
    assert (
        second.config_sha256
        != agent.versions.get(number=agent.versions.order_by("number").first().number).config_sha256
    )
    with pytest.raises(DomainError, match="already has exactly this system prompt"):
        services.version_create(agent=agent, system_prompt=V2, actor=requester)


def test_version_create_after_an_outside_change_syncs_and_names_the_server_version(agent, requester, remote_client):
    first = agent.latest_version_number
    outside = remote_client.beta.agents.update(agent.remote_id, system=V1 + "\nBe terse.", version=first)
    with pytest.raises(DomainError) as refusal:
        services.version_create(agent=agent, system_prompt=V2, actor=requester)
    message = str(refusal.value)
    assert f"server now has version {outside.version}" in message and f"against version {first}" in message
    recorded = agent.versions.get(number=outside.version)
    assert recorded.origin == AgentVersion.Origin.OUTSIDE and recorded.created_by is None
    agent.refresh_from_db()
    assert agent.latest_version_number == outside.version
    # Retrying now builds on the server's latest.
    made = services.version_create(agent=agent, system_prompt=V2, actor=requester)
    assert made.number > outside.version and made.origin == AgentVersion.Origin.PROMPTCTL


def test_sync_records_outside_versions_as_drift(agent, remote_client):
    outside = remote_client.beta.agents.update(
        agent.remote_id, system="Route everything to billing.", version=agent.latest_version_number
    )
    result = services.agent_sync(agent=agent)
    assert [v.number for v in result.new_versions] == [outside.version]
    assert [v.number for v in selectors.agent_drift(agent=agent)] == [outside.version]
    status = selectors.agent_status(agent=agent)
    assert status["drift"][0]["version"] == outside.version
    assert services.agent_sync(agent=agent).new_versions == []  # idempotent


def test_requester_cannot_approve_own_request_even_as_superuser(agent, admin_user, reviewer):
    change = services.change_request_create(
        agent=agent,
        kind="promote",
        target_number=agent.latest_version_number,
        reason="first pin",
        actor=admin_user,
        channel=CHANNEL,
    )
    with pytest.raises(DomainError, match="four-eyes"):
        services.change_request_approve(change=change, reviewer=admin_user)
    assert not Approval.objects.filter(change=change).exists()
    change.refresh_from_db()
    assert change.status == ChangeRequest.Status.PENDING
    services.change_request_approve(change=change, reviewer=reviewer)
    change.refresh_from_db()
    assert change.status == ChangeRequest.Status.APPROVED


def test_first_promotion_creates_the_pin_and_records_everything(agent, requester, reviewer):
    number = agent.latest_version_number
    change = promote(agent, number, requester, reviewer)
    assert change.status == ChangeRequest.Status.APPLIED and change.closed_by == reviewer
    pin = Pin.objects.get(agent=agent, channel=CHANNEL)
    assert pin.version.number == number and pin.revision == 1 and pin.change == change
    assert pin.history.first().history_user == reviewer
    verbs = list(AuditEvent.objects.filter(agent_id_ref=agent.pk).values_list("verb", flat=True))
    assert verbs[-5:] == ["change.request", "approval.approve", "change.approved", "pin.move", "change.applied"]


def test_apply_refuses_until_the_policy_is_met(agent, requester, reviewer, second_reviewer, admin_user):
    services.agent_policy_update(agent=agent, actor=admin_user, required_approvals=2)
    change = services.change_request_create(
        agent=agent,
        kind="promote",
        target_number=agent.latest_version_number,
        reason="needs two",
        actor=requester,
        channel=CHANNEL,
    )
    with pytest.raises(DomainError, match="not approved yet \\(0 of 2 approvals\\)"):
        services.change_request_apply(change=change, actor=reviewer)
    services.change_request_approve(change=change, reviewer=reviewer)
    with pytest.raises(DomainError, match="1 of 2 approvals"):
        services.change_request_apply(change=change, actor=reviewer)
    with pytest.raises(DomainError, match="already decided"):
        services.change_request_approve(change=change, reviewer=reviewer)
    services.change_request_approve(change=change, reviewer=second_reviewer)
    services.change_request_apply(change=change, actor=requester)
    assert Pin.objects.get(agent=agent).version.number == agent.latest_version_number


def test_accepting_a_regression_needs_one_more_approval(agent, requester):
    change = services.change_request_create(
        agent=agent,
        kind="promote",
        target_number=agent.latest_version_number,
        reason="ship it",
        actor=requester,
        channel=CHANNEL,
        evidence_ref="ticket:4711",
        accept_regression_reason="billing loses one ticket; fix follows",
    )
    assert change.approvals_required == 2
    assert (change.evidence_type, change.evidence_id, change.evidence) == ("ticket", 4711, {"reference": "ticket:4711"})


def test_a_rejection_blocks_the_request(agent, requester, reviewer, second_reviewer):
    change = services.change_request_create(
        agent=agent,
        kind="promote",
        target_number=agent.latest_version_number,
        reason="try",
        actor=requester,
        channel=CHANNEL,
    )
    with pytest.raises(DomainError, match="needs a comment"):
        services.change_request_reject(change=change, reviewer=reviewer, comment=" ")
    services.change_request_reject(change=change, reviewer=reviewer, comment="no eval evidence")
    change.refresh_from_db()
    assert change.status == ChangeRequest.Status.REJECTED and "no eval evidence" in change.status_reason
    with pytest.raises(DomainError, match="rejected"):
        services.change_request_approve(change=change, reviewer=second_reviewer)
    with pytest.raises(DomainError, match="rejected"):
        services.change_request_apply(change=change, actor=second_reviewer)
    assert not Pin.objects.filter(agent=agent).exists()


def test_reviewers_need_the_permission_and_the_agents_group(agent, requester, reviewer, second_reviewer, admin_user):
    other = services.user_create(username="otto", role="requester")
    change = services.change_request_create(
        agent=agent,
        kind="promote",
        target_number=agent.latest_version_number,
        reason="r",
        actor=requester,
        channel=CHANNEL,
    )
    with pytest.raises(DomainError, match="approve_changerequest"):
        services.change_request_approve(change=change, reviewer=other)
    from django.contrib.auth.models import Group

    Group.objects.create(name="triage-leads").user_set.add(second_reviewer)
    services.agent_policy_update(agent=agent, actor=admin_user, approver_group="triage-leads")
    with pytest.raises(DomainError, match="'triage-leads' group"):
        services.change_request_approve(change=change, reviewer=reviewer)
    services.change_request_approve(change=change, reviewer=second_reviewer)
    with pytest.raises(DomainError, match="change_agent"):
        services.agent_policy_update(agent=agent, actor=requester, required_approvals=1)


def test_withdraw_only_by_the_requester(agent, requester, reviewer):
    change = services.change_request_create(
        agent=agent,
        kind="promote",
        target_number=agent.latest_version_number,
        reason="r",
        actor=requester,
        channel=CHANNEL,
    )
    with pytest.raises(DomainError, match="Only rita"):
        services.change_request_withdraw(change=change, actor=reviewer)
    services.change_request_withdraw(change=change, actor=requester)
    change.refresh_from_db()
    assert change.status == ChangeRequest.Status.WITHDRAWN
    with pytest.raises(DomainError, match="withdrew"):
        services.change_request_approve(change=change, reviewer=reviewer)


def test_applying_supersedes_requests_filed_against_the_old_pin(agent, requester, reviewer, second_reviewer):
    first = agent.latest_version_number
    second = services.version_create(agent=agent, system_prompt=V2, actor=requester).number
    promote(agent, first, requester, reviewer)
    a = services.change_request_create(
        agent=agent, kind="promote", target_number=second, reason="a", actor=requester, channel=CHANNEL
    )
    b = services.change_request_create(
        agent=agent,
        kind="canary",
        target_number=second,
        reason="b",
        actor=requester,
        canary_percent=10,
        channel=CHANNEL,
    )
    services.change_request_approve(change=a, reviewer=reviewer)
    services.change_request_approve(change=b, reviewer=second_reviewer)
    services.change_request_apply(change=b, actor=reviewer)
    pin = Pin.objects.get(agent=agent)
    assert (pin.version.number, pin.canary_version.number, pin.canary_percent) == (first, second, 10)
    with pytest.raises(DomainError) as refusal:
        services.change_request_apply(change=a, actor=reviewer)
    assert f"now at version {first} with a canary of version {second} at 10%" in str(refusal.value)
    a.refresh_from_db()
    assert a.status == ChangeRequest.Status.SUPERSEDED


def test_apply_refuses_a_pin_that_moved_and_marks_the_request_superseded(agent, requester, reviewer):
    """The apply-time check itself (not the sweep): a request whose base revision is stale is superseded."""
    first = agent.latest_version_number
    second = services.version_create(agent=agent, system_prompt=V2, actor=requester).number
    promote(agent, first, requester, reviewer)
    stale = services.change_request_create(
        agent=agent, kind="promote", target_number=second, reason="s", actor=requester, channel=CHANNEL
    )
    services.change_request_approve(change=stale, reviewer=reviewer)
    promote_back = services.change_request_create(
        agent=agent, kind="canary", target_number=second, reason="c", actor=requester, canary_percent=5, channel=CHANNEL
    )
    # Withdraw the sweep's victim first so the stale one is still 'approved' when we apply it.
    services.change_request_approve(change=promote_back, reviewer=reviewer)
    pin = Pin.objects.get(agent=agent)
    services.change_request_apply(change=promote_back, actor=reviewer)
    stale.refresh_from_db()
    assert stale.status == ChangeRequest.Status.SUPERSEDED
    assert f"now at version {first}" in stale.status_reason and pin.revision == 1


def test_rollback_targets_only_a_version_that_was_production_before(agent, requester, reviewer):
    first = agent.latest_version_number
    second = services.version_create(agent=agent, system_prompt=V2, actor=requester).number
    third = services.version_create(agent=agent, system_prompt=V2 + "\nThird.", actor=requester).number
    with pytest.raises(DomainError, match="no staging pin yet"):
        services.change_request_create(
            agent=agent, kind="rollback", target_number=first, reason="r", actor=requester, channel=CHANNEL
        )
    promote(agent, first, requester, reviewer)
    promote(agent, second, requester, reviewer)
    with pytest.raises(DomainError, match=f"v{third} never was"):
        services.change_request_create(
            agent=agent, kind="rollback", target_number=third, reason="r", actor=requester, channel=CHANNEL
        )
    rollback = promote(agent, first, requester, reviewer, kind="rollback")
    assert rollback.status == ChangeRequest.Status.APPLIED and rollback.evidence == {}
    assert Pin.objects.get(agent=agent).version.number == first


def test_canary_then_promote_clears_the_canary(agent, requester, reviewer):
    first = agent.latest_version_number
    second = services.version_create(agent=agent, system_prompt=V2, actor=requester).number
    with pytest.raises(DomainError, match="nothing to canary"):
        services.change_request_create(
            agent=agent,
            kind="canary",
            target_number=second,
            reason="r",
            actor=requester,
            canary_percent=5,
            channel=CHANNEL,
        )
    promote(agent, first, requester, reviewer)
    with pytest.raises(DomainError, match="between 1 and 99"):
        services.change_request_create(
            agent=agent,
            kind="canary",
            target_number=second,
            reason="r",
            actor=requester,
            canary_percent=100,
            channel=CHANNEL,
        )
    promote(agent, second, requester, reviewer, kind="canary", percent=25)
    pin = Pin.objects.get(agent=agent)
    assert (pin.version.number, pin.canary_version.number, pin.canary_percent, pin.revision) == (first, second, 25, 2)
    promote(agent, second, requester, reviewer)
    pin.refresh_from_db()
    assert (pin.version.number, pin.canary_version_id, pin.canary_percent, pin.revision) == (second, None, 0, 3)
    with pytest.raises(DomainError, match="already the staging pin"):
        services.change_request_create(
            agent=agent, kind="promote", target_number=second, reason="r", actor=requester, channel=CHANNEL
        )


def test_an_outside_version_reaches_a_pin_only_through_the_same_gate(agent, requester, reviewer, remote_client):
    outside = remote_client.beta.agents.update(agent.remote_id, system=V2, version=agent.latest_version_number)
    with pytest.raises(DomainError, match="agent sync"):
        services.change_request_create(
            agent=agent, kind="promote", target_number=outside.version, reason="r", actor=requester, channel=CHANNEL
        )
    services.agent_sync(agent=agent)
    change = services.change_request_create(
        agent=agent,
        kind="promote",
        target_number=outside.version,
        reason="adopt the hotfix",
        actor=requester,
        channel=CHANNEL,
    )
    assert change.target_version.origin == AgentVersion.Origin.OUTSIDE
    with pytest.raises(DomainError, match="not approved yet"):
        services.change_request_apply(change=change, actor=reviewer)
    services.change_request_approve(change=change, reviewer=reviewer)
    services.change_request_apply(change=change, actor=reviewer)
    assert Pin.objects.get(agent=agent).version.number == outside.version


def test_permissions_are_checked_for_every_write(agent, reviewer, requester):
    with pytest.raises(DomainError, match="add_changerequest"):
        services.change_request_create(
            agent=agent, kind="promote", target_number=agent.latest_version_number, reason="r", actor=reviewer
        )
    with pytest.raises(DomainError, match="add_agentversion"):
        services.version_create(agent=agent, system_prompt=V2, actor=reviewer)
    with pytest.raises(DomainError, match="add_agent"):
        services.agent_create(name="other", model="claude-sonnet-4-6", system_prompt=V1, actor=reviewer)
    with pytest.raises(DomainError, match="already exists"):
        services.user_create(username="rita", role="reviewer")


def test_versions_are_immutable(agent):
    version = agent.versions.first()
    version.system_prompt = "tampered"
    with pytest.raises(DomainError, match="immutable"):
        version.save()
