"""The roles' triage permissions: granted by migration 0008, kept in step by ``roles_ensure``, as docs/API.md says."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from promptctl import services as change_services
from triage.apps import ROLE_PERMISSIONS
from triage.models import TriageRequest
from triage.services.corrections import correction_allowed_labels, label_problems

migration = importlib.import_module("triage.migrations.0008_triage_role_permissions")


def test_the_migrations_frozen_copy_matches_the_apps_permissions():
    for group_name, permissions in ROLE_PERMISSIONS.items():
        assert {f"triage.{codename}" for codename in migration.ROLE_PERMISSIONS[group_name]} == set(permissions)


@pytest.mark.django_db
def test_after_migrating_each_group_holds_its_triage_permissions():
    # Run the migration's own step on a database without the groups (a transactional test elsewhere
    # may have flushed what the test database's migrations made), in the migration's historical state.
    Group.objects.filter(name__in=list(ROLE_PERMISSIONS)).delete()
    state = MigrationExecutor(connection).loader.project_state(("triage", "0008_triage_role_permissions"))
    migration.permissions_grant(state.apps, SimpleNamespace(connection=connection))
    for group_name, permissions in ROLE_PERMISSIONS.items():
        held = {
            f"{p.content_type.app_label}.{p.codename}"
            for p in Group.objects.get(name=group_name).permissions.select_related("content_type")
        }
        assert set(permissions) <= held, group_name
    reviewers = {p.codename for p in Group.objects.get(name="reviewers").permissions.all()}
    requesters = {p.codename for p in Group.objects.get(name="requesters").permissions.all()}
    assert "add_triagecorrection" in reviewers and "add_triagecorrection" not in requesters
    assert not {"view_apikey", "add_apikey"} & (reviewers | requesters), "API keys are the admin's"


@pytest.mark.django_db
def test_roles_read_the_triage_record_and_only_reviewers_correct():
    requester = change_services.user_create(username="rita", role="requester", password="x" * 12)
    reviewer = change_services.user_create(username="victor", role="reviewer", password="x" * 12)
    for user in (requester, reviewer):
        for model in ("triagerequest", "shadowcandidate", "routingpolicy", "canarycheck", "canarypolicy"):
            assert user.has_perm(f"triage.view_{model}"), (user.username, model)
    assert reviewer.has_perm("triage.add_triagecorrection") and not requester.has_perm("triage.add_triagecorrection")


def test_labels_are_judged_by_the_set_they_go_to():
    allowed = {"team": ("billing", "auth"), "priority": ("P1", "P2")}
    problems = label_problems(labels={"team": "security", "priority": "P1"}, allowed=allowed, source="test set gate")
    assert problems == {"team": "test set gate allows only billing, auth as team, not 'security'."}
    assert label_problems(labels={"team": "anything"}, allowed={}, source="x") == {}


@pytest.mark.django_db
def test_a_correction_is_checked_against_the_gating_set_not_the_serving_prompt(api, production, people):
    from promptctl.errors import DomainError
    from tests.triage.support import ticket
    from triage import services

    # A version whose prompt does not constrain the team field serves the call.
    free = production.new_version("Answer with one line of JSON naming a team and a priority.")
    production.canary(free, 99)
    served = [TriageRequest.objects.get(pk=api.post("/triage", ticket(i)).json()["request_id"]) for i in range(6)]
    row = next(r for r in served if r.version.number == free)
    assert row.version.system_prompt.count("<") == 0, "the serving prompt constrains no field"
    allowed, source = correction_allowed_labels(request=row)
    assert source == f"test set {production.testset.name}" and "billing" in allowed["team"]
    with pytest.raises(DomainError, match="allows only"):
        services.triage_correct(request=row, team="security", priority="P1", actor=people.reviewer)
    services.triage_correct(request=row, team="billing", priority="P1", actor=people.reviewer)
