"""Every change of who may do what is audited, whichever door it came through (promptctl.services.access).

The sock-puppet reviewer: a superuser adds a user in Django's own user admin
and puts it in ``reviewers``. The trail must say who did it and when, like
``promptctl user add`` does; the same holds for the shell, for group
permission changes and for API keys.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.db import transaction

from promptctl import services
from promptctl.audit import audit_verify
from promptctl.errors import DomainError
from promptctl.models import AuditEvent
from promptctl.services.access import acting_user_bind
from tests.browser_support import admin_login
from tests.change_control_support import PASSWORD
from tests.cli_support import token_env, token_secret_for


def _events(verb: str, **filters) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(verb=verb, **filters).order_by("sequence"))


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_superuser_making_a_reviewer_in_the_user_admin_is_recorded(browser_page):
    root = services.user_create(username="root", role="admin", password=PASSWORD)
    services.roles_ensure()
    page = browser_page()
    admin_login(page, username="root", password=PASSWORD)

    page.goto("/admin/auth/user/add/")
    page.fill("#id_username", "sock")
    # Django 5.1+ asks whether the new user may log in with a password; older forms have no such choice.
    if page.locator("input[name=usable_password][value=true]").count():
        page.check("input[name=usable_password][value=true]")
    page.fill("#id_password1", "sock-puppet-pass-123")
    page.fill("#id_password2", "sock-puppet-pass-123")
    page.click("input[name=_continue]")
    page.wait_for_url(re.compile(r"/admin/auth/user/\d+/change/"))

    page.select_option("#id_groups_from", label="reviewers")
    page.click("#id_groups_add")
    page.check("#id_is_staff")
    page.click("input[name=_save]")
    page.wait_for_url("**/admin/auth/user/")

    sock = get_user_model().objects.get(username="sock")
    assert list(sock.groups.values_list("name", flat=True)) == ["reviewers"]
    created = _events("user.create", object_id=str(sock.pk))
    changed = _events("user.access", object_id=str(sock.pk))
    assert [event.actor_id for event in created] == [root.pk]
    assert changed, "putting the user in reviewers left no audit event"
    assert all(event.actor_id == root.pk for event in changed)
    assert any("reviewers" in event.after.get("groups", []) for event in changed)
    assert any(event.after.get("is_staff") is True for event in changed)
    assert audit_verify().ok


@pytest.mark.django_db
def test_shell_changes_are_recorded_without_an_actor_from_either_side_of_the_relation():
    reviewers = services.roles_ensure()[services.REVIEWERS]
    user = get_user_model().objects.create_user(username="mallory", password="x")
    assert [event.actor_id for event in _events("user.create", object_id=str(user.pk))] == [None]

    reviewers.user_set.add(user)  # from the group's side
    user.is_superuser = True
    user.save()
    user.groups.clear()  # from the user's side, a clear

    changes = _events("user.access", object_id=str(user.pk))
    assert [event.after for event in changes] == [
        {"groups": ["reviewers"]},
        {"is_superuser": True},
        {"groups": []},
    ]
    assert [event.before for event in changes][0] == {"groups": []}
    assert all(event.actor_id is None for event in changes)


@pytest.mark.django_db
def test_group_permission_changes_are_recorded_and_saves_that_change_no_access_are_not():
    reviewers = services.roles_ensure()[services.REVIEWERS]
    before = AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True).first() or 0

    def verbs() -> list[str]:
        return list(AuditEvent.objects.filter(sequence__gt=before).order_by("sequence").values_list("verb", flat=True))

    user = services.user_create(username="victor", role="reviewer", password=PASSWORD)
    # The service's own event (no copy from the edge), and the password it set.
    assert verbs() == ["user.credentials", "user.create"]

    user.set_password("another-one")
    user.first_name = "Victor"
    user.save()  # a new password: recorded; a new first name: not access
    user.last_login = user.date_joined
    user.save(update_fields=["last_login"])  # not recorded
    assert verbs() == ["user.credentials", "user.create", "user.credentials"]

    pin_change = Permission.objects.get(content_type__app_label="promptctl", codename="change_pin")
    last = AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True).first()
    reviewers.permissions.add(pin_change)
    pin_change.group_set.remove(reviewers)  # from the permission's side
    events = _events("group.access", object_id=str(reviewers.pk), sequence__gt=last)
    assert [event.after for event in events] == [
        {"name": "reviewers", "permissions": [*sorted([*_names(reviewers), "promptctl.change_pin"])]},
        {"name": "reviewers", "permissions": _names(reviewers)},
    ]


def _names(group: Group) -> list[str]:
    return sorted(f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type"))


@pytest.mark.django_db
def test_an_actor_without_the_right_is_refused_before_anything_is_written(requester):
    reviewers = services.roles_ensure()[services.REVIEWERS]
    count = AuditEvent.objects.count()
    # Each in a savepoint of its own, as the admin's request transaction would be rolled back.
    with acting_user_bind(requester), pytest.raises(DomainError, match="auth.change_user"), transaction.atomic():
        requester.groups.add(reviewers)
    assert not requester.groups.filter(name="reviewers").exists()
    with acting_user_bind(requester), pytest.raises(DomainError, match="auth.change_group"), transaction.atomic():
        reviewers.permissions.clear()
    assert reviewers.permissions.exists()
    assert AuditEvent.objects.count() == count


@pytest.mark.django_db
def test_api_keys_issued_and_revoked_are_recorded_without_their_secret(emulator, agent):
    from triage.services import api_key_create, api_key_revoke

    admin = services.user_create(username="root", role="admin", password=PASSWORD)
    issued = api_key_create(name="helpdesk", actor=admin, agent_names=[agent.name])
    api_key_revoke(key=issued.key, actor=admin)
    created, revoked = _events("apikey.create") + _events("apikey.revoke")
    assert created.actor_id == revoked.actor_id == admin.pk
    assert created.after == {
        "name": "helpdesk",
        "prefix": issued.key.prefix,
        "all_agents": False,
        "agents": [agent.name],
    }
    assert revoked.after == {"revoked": True}
    stored = str(created.after) + str(revoked.before)
    assert issued.secret not in stored and issued.key.key_hash not in stored


@pytest.mark.django_db
def test_the_cli_records_access_changes_as_its_token_user(capsys):
    admin = services.user_create(username="root", role="admin", password=PASSWORD)
    with token_env(token_secret_for(admin)):
        call_command("promptctl", "user", "add", "carol", "--role", "reviewer")
    carol = get_user_model().objects.get(username="carol")
    [created] = _events("user.create", object_id=str(carol.pk))
    assert created.actor_id == admin.pk and created.token_ref.split(":")[1].startswith("pctlu_")
    with acting_user_bind(admin):
        carol.groups.clear()
    assert _events("user.access", object_id=str(carol.pk))[-1].actor_id == admin.pk
