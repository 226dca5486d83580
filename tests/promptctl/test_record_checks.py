"""``audit verify`` names live state changed without an event (promptctl.record_checks and the apps' checks).

Each test makes the state honestly through the services (verify is clean),
then changes it with raw SQL as the database's owner would, and reads what
verify says.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

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
