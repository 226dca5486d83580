"""Requesters and reviewers reach the evals admin through their groups, not as superusers."""

from django.urls import reverse

from promptctl import services
from tests.change_control_support import PASSWORD


def test_groups_carry_evals_permissions_from_the_migration(db):
    requester = services.user_create(username="rita2", role="requester", password=PASSWORD)
    reviewer = services.user_create(username="victor2", role="reviewer", password=PASSWORD)
    assert requester.has_perm("evals.add_evalrun") and requester.has_perm("evals.view_comparison")
    assert reviewer.has_perm("evals.view_comparison") and not reviewer.has_perm("evals.add_testset")
    assert not requester.is_superuser and not reviewer.is_superuser


def test_requester_and_reviewer_see_the_evals_admin_pages_their_role_allows(client, db):
    services.user_create(username="rita3", role="requester", password=PASSWORD)
    services.user_create(username="victor3", role="reviewer", password=PASSWORD)
    client.login(username="rita3", password=PASSWORD)
    assert client.get(reverse("admin:evals_testset_changelist")).status_code == 200
    assert client.get(reverse("admin:evals_comparison_changelist")).status_code == 200
    client.logout()
    client.login(username="victor3", password=PASSWORD)
    assert client.get(reverse("admin:evals_comparison_changelist")).status_code == 200
    assert client.get(reverse("admin:evals_testset_add")).status_code == 403
