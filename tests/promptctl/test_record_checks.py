"""``audit verify`` names live state changed without an event (promptctl.record_checks and the apps' checks).

Each test makes the state honestly through the services (verify is clean),
then changes it with raw SQL as the database's owner would, and reads what
verify says.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from promptctl import services
from promptctl.audit import audit_verify
from promptctl.models import Pin
from tests.change_control_support import CHANNEL, V2, promote
from tests.promptctl.audit_support import as_owner_everywhere as as_owner

pytestmark = pytest.mark.django_db


def _drift() -> list[str]:
    result = audit_verify()
    return [finding.detail for finding in result.findings if finding.kind == "state_drift"]


@pytest.fixture
def production(agent, requester, reviewer):
    """v1 promoted to production, v2 made: the honest state every test starts from."""
    promote(agent, agent.latest_version_number, requester, reviewer)
    services.version_create(agent=agent, system_prompt=V2, actor=requester)
    assert audit_verify().ok, audit_verify().message
    return agent


def test_a_pin_moved_in_the_database_is_named(production):
    pin = Pin.objects.get(agent=production, channel=CHANNEL)
    v2 = production.versions.get(number=2)
    as_owner(("UPDATE promptctl_pin SET version_id = %s WHERE id = %s", [v2.pk, pin.pk]))
    (problem,) = _drift()
    assert f"pin {production.name}/{CHANNEL} is at v2" in problem and "left it at v1" in problem
    assert "Audit chain intact" in audit_verify().message


def test_a_policy_lowered_in_the_database_is_named_and_a_policy_changed_through_the_service_is_not(
    production, admin_user
):
    services.agent_policy_update(agent=production, actor=admin_user, required_approvals=2)
    assert _drift() == []
    as_owner(("UPDATE promptctl_agent SET required_approvals = 1 WHERE id = %s", [production.pk]))
    (problem,) = _drift()
    assert "required_approvals 2 → 1" in problem


def test_approvers_made_in_the_database_are_named_and_those_made_through_any_orm_door_are_not(production):
    user_model = get_user_model()
    user_model.objects.create_superuser(username="root", password="x")  # createsuperuser: recorded at the edge
    assert _drift() == []
    services.user_create(username="eve", role="requester", password="x")
    as_owner(("UPDATE auth_user SET is_superuser = %s WHERE username = 'eve'", [True]))
    reviewers = services.roles_ensure()[services.REVIEWERS]
    mallory = services.user_create(username="mallory", role="requester", password="x")
    as_owner(("INSERT INTO auth_user_groups (user_id, group_id) VALUES (%s, %s)", [mallory.pk, reviewers.pk]))
    problems = _drift()
    assert "user eve is a superuser, but no audit event made them one." in problems
    assert "user mallory is in reviewers, but no audit event put them there." in problems
    assert len(problems) == 2


def test_an_approval_forged_in_the_database_is_named_even_once_applied(production, requester, reviewer):
    change = services.change_request_create(
        agent=production, kind="promote", target_number=2, reason="v2", actor=requester, channel=CHANNEL
    )
    as_owner(
        (
            "INSERT INTO promptctl_approval (decision, comment, created_at, requester_id, reviewer_id, change_id) "
            "VALUES ('approve', 'lgtm', %s, %s, %s, %s)",
            ["2026-01-01 00:00:00", requester.pk, reviewer.pk, change.pk],
        ),
        (
            "UPDATE promptctl_changerequest SET status = 'approved', approved_at = %s WHERE id = %s",
            ["2026-01-01", change.pk],
        ),
    )
    change.refresh_from_db()
    services.change_request_apply(change=change, actor=requester)
    problems = _drift()
    assert any(f"approve by victor on change request #{change.pk} has no audit event of its own" in p for p in problems)
    assert f"change request #{change.pk} is applied, but the trail never records it approved" in problems[0]


def test_a_reviewer_for_a_moment_is_named_after_stepping_down(production, requester, admin_user):
    change = services.change_request_create(
        agent=production, kind="promote", target_number=2, reason="v2", actor=admin_user, channel=CHANNEL
    )
    reviewers = services.roles_ensure()[services.REVIEWERS]
    as_owner(("INSERT INTO auth_user_groups (user_id, group_id) VALUES (%s, %s)", [requester.pk, reviewers.pk]))
    rita = get_user_model().objects.get(pk=requester.pk)  # fresh: permissions are cached on the object
    services.change_request_approve(change=change, reviewer=rita)
    as_owner(("DELETE FROM auth_user_groups WHERE user_id = %s AND group_id = %s", [requester.pk, reviewers.pk]))
    (problem,) = _drift()
    assert (
        f"rita decided on change request #{change.pk}" in problem and "neither in reviewers nor a superuser" in problem
    )


def test_a_password_set_in_the_database_is_named_and_one_set_through_django_is_not(production, reviewer):
    from django.contrib.auth.hashers import make_password

    reviewer.set_password("a-new-one")
    reviewer.save()
    assert _drift() == []
    as_owner(("UPDATE auth_user SET password = %s WHERE id = %s", [make_password("i-am-victor-now"), reviewer.pk]))
    assert _drift() == ["user victor's password was set outside promptctl (no audit event records it)."]


def test_junk_in_the_checkpoint_file_or_the_audit_table_is_named_not_a_crash(production, settings):
    from pathlib import Path

    from promptctl.audit.keys import audit_key_ring

    key_id = audit_key_ring().current.key_id
    with Path(settings.PROMPTCTL_AUDIT_CHECKPOINT_FILE).open("a") as handle:
        handle.write(
            '{"format": "promptctl.audit.checkpoint/1", "sequence": 1, "mac": "x", "published_at": "x", '
            f'"key_id": ["{key_id}"], "legacy_until": 0, "reason": "x", "checkpoint_mac": 5}}\n'
        )
    result = audit_verify()
    assert not result.ok and "checkpoint_forged" in {finding.kind for finding in result.findings}
    if connection.vendor == "sqlite":  # PostgreSQL refuses the value itself
        as_owner(("UPDATE promptctl_auditevent SET occurred_at = 'garbage' WHERE sequence = 2", []))
        result = audit_verify()
        assert any("cannot be read as an event" in finding.detail for finding in result.findings)
