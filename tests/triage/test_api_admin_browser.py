"""API keys and routing policies in the admin, clicked in Debian's headless Chromium.

An admin creates a key for one agent (its secret shown once, never again on
the list or the key's page), is refused a second key of the same name, revokes
the key (recorded as theirs), and saves a routing policy through its form.
These were test-client posts; the buttons are clicked now and the page each
click lands on is checked. tests/triage/test_triage_browser.py covers the rest
of the Triage pages, role by role.
"""

from __future__ import annotations

import re

import pytest

from tests.browser_support import admin_login
from tests.triage.support import PASSWORD
from triage.models import ApiKey, RoutingPolicy

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def ada(production, browser_page):
    """ada, logged in; the agent in production is made first (Playwright's loop would refuse its calls)."""
    page = browser_page()
    admin_login(page, username="ada", password=PASSWORD)
    return page


def test_an_admin_creates_a_key_for_one_agent_sees_it_once_and_revokes_it(ada, production):
    ada.goto("/admin/triage/apikey/")
    ada.click(".object-tools a.addlink")
    ada.wait_for_url("**/admin/triage/apikey/add/")
    ada.fill("#id_name", "crm")
    ada.select_option("#id_agents", [str(production.agent.pk)])
    ada.click("input[type=submit][value='Create key']")
    secret = ada.inner_text("#api-key-secret").strip()
    key = ApiKey.objects.get(name="crm")
    assert secret.startswith(key.prefix) and list(key.agents.all()) == [production.agent]

    # Shown once: neither the list nor the key's own page shows the secret again (the prefix, yes).
    ada.click("text=Back to the API keys")
    ada.wait_for_url("**/admin/triage/apikey/")
    assert secret not in ada.content() and key.prefix in ada.inner_text("#result_list")
    ada.click("#result_list a:has-text('crm')")
    ada.wait_for_url(re.compile(rf"/admin/triage/apikey/{key.pk}/change/"))
    assert secret not in ada.content()

    # A second key of the same name is refused on the form, in words; nothing is made.
    ada.goto("/admin/triage/apikey/add/")
    ada.fill("#id_name", "crm")
    ada.check("#id_all_agents")
    ada.click("input[type=submit][value='Create key']")
    assert "already exists" in ada.inner_text("#content")
    assert ada.locator("#api-key-secret").count() == 0
    assert ApiKey.objects.filter(name="crm").count() == 1

    # Revoked from the list, and recorded as the admin's doing.
    ada.goto("/admin/triage/apikey/")
    ada.check(f"input[name=_selected_action][value='{key.pk}']")
    ada.select_option("select[name=action]", "revoke_selected")
    ada.click("button[name=index]")
    assert "Revoked crm" in ada.inner_text(".messagelist")
    key.refresh_from_db()
    assert key.revoked_at is not None and key.revoked_by.username == "ada"


def test_an_admin_saves_a_routing_policy_through_its_form(ada, production):
    policy = production.policy
    history_before = policy.history.count()
    url = f"/admin/triage/routingpolicy/{policy.pk}/change/"
    ada.goto(url)
    ada.fill("#id_canary_max_invalid_rate", "0.3")
    ada.click("input[name=_save]")
    ada.wait_for_url("**/admin/triage/routingpolicy/")
    assert "was changed successfully" in ada.inner_text(".messagelist")
    saved = RoutingPolicy.objects.get(pk=policy.pk)
    assert saved.canary_max_invalid_rate == 0.3
    assert saved.history.count() == history_before + 1
