"""The canary policy's add and change forms, clicked in Debian's headless Chromium.

An admin adds a policy with automatic ending on (the form saves through
``canary_policy_save``, which records the admin as the one who granted it,
audits the save and puts promptctl's auto-end account in the reviewers
group), then turns automatic ending off on the change form, which withdraws
the grant and the account's membership. This was a test-client post in
tests/triage/test_canary_watch.py; the buttons are clicked now and the page
each click lands on is checked.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model

from promptctl.models import AuditEvent
from tests.browser_support import admin_login
from tests.triage.support import PASSWORD
from triage import services
from triage.models import CanaryPolicy

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def ada(production, browser_page):
    """ada, logged in; the agent in production is made first (Playwright's loop would refuse its calls)."""
    page = browser_page()
    admin_login(page, username="ada", password=PASSWORD)
    return page


def test_the_admin_adds_and_changes_a_canary_policy_through_the_service(ada, production):
    ada.goto("/admin/triage/canarypolicy/")
    ada.click(".object-tools a.addlink")
    ada.wait_for_url("**/admin/triage/canarypolicy/add/")
    ada.select_option("#id_agent", str(production.agent.pk))
    ada.fill("#id_compare_percent", "50")
    ada.fill("#id_disagreement_limit", "0.25")
    ada.fill("#id_min_compared", "12")
    ada.check("#id_auto_end")
    ada.click("input[name=_save]")
    ada.wait_for_url("**/admin/triage/canarypolicy/")
    assert "was added successfully" in ada.inner_text(".messagelist")

    policy = CanaryPolicy.objects.get()
    assert policy.agent == production.agent
    assert (policy.compare_percent, policy.disagreement_limit, policy.min_compared) == (50, 0.25, 12)
    assert policy.auto_end and policy.auto_end_granted_by.username == "ada"
    assert AuditEvent.objects.filter(verb="canary_policy.update", actor_username="ada").count() == 1
    account = get_user_model().objects.get(username=services.AUTO_END_USERNAME)
    assert set(account.groups.values_list("name", flat=True)) == {"reviewers"}
    # The list the save lands on says who granted automatic ending, and when.
    assert "ada at" in ada.inner_text("#result_list")

    # Turning it off on the change form withdraws the standing approval and the account's group membership.
    ada.click(f"#result_list a[href$='/admin/triage/canarypolicy/{policy.pk}/change/']")
    ada.wait_for_url(re.compile(rf"/admin/triage/canarypolicy/{policy.pk}/change/"))
    assert ada.locator("#id_agent").count() == 0  # the agent is fixed once the policy exists
    ada.uncheck("#id_auto_end")
    ada.click("input[name=_save]")
    ada.wait_for_url("**/admin/triage/canarypolicy/")
    assert "was changed successfully" in ada.inner_text(".messagelist")
    policy.refresh_from_db()
    assert not policy.auto_end and policy.auto_end_granted_by is None
    assert (policy.compare_percent, policy.min_compared) == (50, 12)  # the rest kept
    assert not account.groups.exists()
    assert AuditEvent.objects.filter(verb="canary_policy.update", actor_username="ada").count() == 2
    assert "ada at" not in ada.inner_text("#result_list")
