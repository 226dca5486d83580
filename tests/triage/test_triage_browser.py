"""The Triage pages in a real browser, as each role: what they may read, correct, add to a test set, and key.

Chromium clicks the admin's own buttons (docs/API.md says who may do what):
everyone with a role reads the request log, jobs, shadow candidates, routing
policies and canary checks; reviewers record corrected verdicts; requesters and
reviewers add logged requests to a test set; only admins create and revoke API keys.
"""

from __future__ import annotations

import re

import pytest

from evals.models import TestSetVersion
from tests.browser_support import admin_login
from tests.triage.support import PASSWORD, ticket
from triage import services
from triage.models import ApiKey, TriageCorrection, TriageRequest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TRIAGE_LIST_PAGES = (
    "triagerequest",
    "triagejob",
    "shadowcandidate",
    "shadowresult",
    "routingpolicy",
    "canarycheck",
    "canarycomparison",
    "canarypolicy",
)


@pytest.fixture
def logged(api, production) -> list[int]:
    """Seven logged calls, made before the browser starts (Playwright's loop would refuse the API's own)."""
    return [api.post("/triage", ticket(index)).json()["request_id"] for index in range(7)]


@pytest.fixture
def shadowed(logged, api, production, people, django_capture_on_commit_callbacks):
    """v2 shadowing production, with a shadow result per call (its tasks run inline)."""
    from config.celery import app
    from tests.triage.support import V2

    v2 = production.new_version(V2)
    production.policy.shadow_version = production.agent.versions.get(number=v2)
    production.policy.shadow_percent = 100
    services.routing_policy_save(policy=production.policy, actor=people.admin)
    previous, app.conf.task_always_eager = app.conf.task_always_eager, True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            api.post("/triage", ticket(0))
            api.post("/triage/jobs", ticket(1))
    finally:
        app.conf.task_always_eager = previous
    return logged


def test_each_role_opens_every_triage_page(shadowed, production, browser_page):
    first = shadowed[0]
    for username in ("rita", "victor"):
        page = browser_page()
        admin_login(page, username=username, password=PASSWORD)
        index = page.inner_text("#content-main")
        assert "Triage requests" in index and "Routing policies" in index, f"{username} sees the Triage section"
        for model in TRIAGE_LIST_PAGES:
            response = page.goto(f"/admin/triage/{model}/")
            assert response.status == 200, f"{username} on {model}: {response.status}"
            assert "403" not in page.title()
            first_row = page.locator("#result_list tbody tr a").first
            if first_row.count():  # and the row's own page, read-only for them
                with page.expect_navigation() as opened:
                    first_row.click()
                assert opened.value.status == 200, f"{username} on {page.url}: {opened.value.status}"
        response = page.goto(f"/admin/triage/triagerequest/{first}/change/")
        assert response.status == 200
        assert TriageRequest.objects.get(pk=first).subject in page.inner_text("#content")
        page.goto("/admin/")
        assert "API keys" not in page.inner_text("#content-main"), "API keys are the admin's"


def test_a_reviewer_records_a_correction_and_a_requester_is_told_who_may(logged, browser_page):
    row = TriageRequest.objects.get(pk=logged[0])
    other_team = "auth" if row.team != "auth" else "billing"

    rita = browser_page()
    admin_login(rita, username="rita", password=PASSWORD)
    rita.goto(f"/admin/triage/triagerequest/{row.pk}/change/")
    assert rita.locator("#id_correction-0-team").count() == 0
    assert "Only reviewers record a corrected verdict" in rita.inner_text("#correction-who")

    victor = browser_page()
    admin_login(victor, username="victor", password=PASSWORD)
    victor.goto(f"/admin/triage/triagerequest/{row.pk}/change/")
    # A label the agent's test set does not allow is refused on the form, in words, and nothing is saved.
    victor.fill("#id_correction-0-team", "security")
    victor.fill("#id_correction-0-priority", "P1")
    victor.click("input[name=_save]")
    errors = victor.inner_text(".errorlist")
    assert "allows only" in errors and "security" in errors
    assert not TriageCorrection.objects.exists()
    victor.fill("#id_correction-0-team", other_team)
    victor.fill("#id_correction-0-priority", "P1")
    victor.click("input[name=_save]")
    victor.wait_for_url(re.compile(r"/admin/triage/triagerequest/(\?.*)?$"))
    assert f"Recorded the corrected verdict {other_team} / P1" in victor.inner_text(".messagelist")
    correction = TriageCorrection.objects.get(request=row)
    assert (correction.team, correction.priority, correction.corrected_by.username) == (other_team, "P1", "victor")


@pytest.fixture
def collected_set(production, people):
    """A non-gating set of the agent (a gating set's new versions are the admin's)."""
    from evals import services as eval_services
    from tests.triage.support import gate_tickets_jsonl

    return eval_services.testset_import(
        name="seen-in-production",
        data=gate_tickets_jsonl(),
        filename="seen.jsonl",
        agent=production.agent,
        actor=people.requester,
    ).testset


def test_requests_matching_a_filter_go_to_a_test_set_with_all_n_matching(
    logged, production, collected_set, monkeypatch, browser_page
):
    from triage.admin.request_log import TriageRequestAdmin

    monkeypatch.setattr(TriageRequestAdmin, "list_per_page", 4)  # a second page without logging 100 calls
    ids = logged
    before = collected_set.versions.count()

    victor = browser_page()
    admin_login(victor, username="victor", password=PASSWORD)
    victor.goto(f"/admin/triage/triagerequest/?agent__id__exact={production.agent.pk}&corrected=no")
    assert victor.locator("#result_list tbody tr").count() == 4
    victor.click("#action-toggle")
    victor.click("text=Select all 7 triage requests")
    victor.select_option("select[name=action]", "add_to_testset")
    victor.click("button[name=index]")
    assert "All 7 requests matching the filters" in victor.inner_text("#add-count")
    victor.select_option("#id_testset", label=collected_set.name)
    victor.click("#add-to-testset")
    message = victor.inner_text(".messagelist")
    newest = TestSetVersion.objects.filter(testset=collected_set).order_by("-number").first()
    assert newest.number == before + 1, message
    assert f"is now at version {newest.number}" in message
    assert {f"triage-{pk}" for pk in ids} <= set(newest.cases.values_list("external_id", flat=True))


def test_an_admin_creates_and_revokes_a_key_and_a_requester_cannot(production, browser_page):
    ada = browser_page()
    admin_login(ada, username="ada", password=PASSWORD)
    ada.goto("/admin/triage/apikey/")
    ada.click(".object-tools a.addlink")
    ada.fill("#id_name", "helpdesk-browser")
    ada.check("#id_all_agents")
    ada.click("input[type=submit][value='Create key']")
    assert "pctl_" in ada.inner_text("#content")
    key = ApiKey.objects.get(name="helpdesk-browser")
    assert key.revoked_at is None

    ada.goto("/admin/triage/apikey/")
    ada.check(f"input[name=_selected_action][value='{key.pk}']")
    ada.select_option("select[name=action]", "revoke_selected")
    ada.click("button[name=index]")
    assert "Revoked helpdesk-browser" in ada.inner_text(".messagelist")
    key.refresh_from_db()
    assert key.revoked_at is not None

    rita = browser_page()
    admin_login(rita, username="rita", password=PASSWORD)
    assert "API keys" not in rita.inner_text("#content-main")
    response = rita.goto("/admin/triage/apikey/add/")
    assert response.status == 403
    assert ApiKey.objects.count() == 1
