"""The triage admin pages: keys shown once, the request log, corrections, test sets, shadow candidates."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from evals.models import TestSetVersion
from tests.triage.support import V2, ticket
from triage import services
from triage.models import ApiKey, ShadowResult, TriageCorrection, TriageRequest


@pytest.fixture
def admin_client_for(people):
    client = Client()
    client.force_login(people.admin)
    return client


def test_key_created_in_the_admin_shows_its_secret_once(admin_client_for, production):
    page = admin_client_for.post(reverse("admin:triage_apikey_add"), {"name": "crm", "agents": [production.agent.pk]})
    assert page.status_code == 200
    key = ApiKey.objects.get(name="crm")
    secret = page.context["secret"]
    assert secret.encode() in page.content and secret.startswith(key.prefix)
    assert list(key.agents.all()) == [production.agent]
    listing = admin_client_for.get(reverse("admin:triage_apikey_changelist"))
    assert (
        listing.status_code == 200 and secret.encode() not in listing.content and key.prefix.encode() in listing.content
    )
    detail = admin_client_for.get(reverse("admin:triage_apikey_change", args=[key.pk]))
    assert secret.encode() not in detail.content
    refused = admin_client_for.post(reverse("admin:triage_apikey_add"), {"name": "crm", "all_agents": "on"})
    assert b"already exists" in refused.content


def test_revoke_action(admin_client_for, production, people):
    key = services.api_key_create(name="leaked", actor=people.admin, all_agents=True).key
    response = admin_client_for.post(
        reverse("admin:triage_apikey_changelist"),
        {"action": "revoke_selected", "_selected_action": [key.pk]},
        follow=True,
    )
    assert response.status_code == 200 and b"Revoked leaked" in response.content
    key.refresh_from_db()
    assert key.revoked_at is not None and key.revoked_by == people.admin


def test_request_log_list_has_a_fixed_query_count(admin_client_for, api, django_assert_max_num_queries):
    for index in range(3):
        api.post("/triage", ticket(index))
    with CaptureQueriesContext(connection) as few:
        admin_client_for.get(reverse("admin:triage_triagerequest_changelist"))
    budget = len(few.captured_queries)  # read now: each request resets the connection's query log
    assert 0 < budget <= 12
    for index in range(3, 15):
        api.post("/triage", ticket(index))
    with django_assert_max_num_queries(budget):
        page = admin_client_for.get(reverse("admin:triage_triagerequest_changelist"))
    assert page.status_code == 200 and page.context["cl"].result_count == 15


def _correction_post(row: TriageRequest, team: str, priority: str) -> dict:
    return {
        "correction-TOTAL_FORMS": "1",
        "correction-INITIAL_FORMS": "0",
        "correction-MIN_NUM_FORMS": "0",
        "correction-MAX_NUM_FORMS": "1",
        "correction-0-team": team,
        "correction-0-priority": priority,
        "correction-0-note": "customer is asking about an invoice",
        "correction-0-request": str(row.pk),
    }


def test_reviewer_corrects_a_verdict_and_the_log_row_stays_as_served(admin_client_for, api, people):
    answer = api.post("/triage", ticket(0)).json()
    row = TriageRequest.objects.get(pk=answer["request_id"])
    url = reverse("admin:triage_triagerequest_change", args=[row.pk])
    assert admin_client_for.get(url).status_code == 200
    bad = admin_client_for.post(url, _correction_post(row, "sales", "P2"))
    assert bad.status_code == 200 and b"allows only" in bad.content and not TriageCorrection.objects.exists()
    team = "auth" if row.team != "auth" else "billing"
    admin_client_for.post(url, _correction_post(row, team, "P1"), follow=True)
    correction = TriageCorrection.objects.get(request=row)
    assert (correction.team, correction.priority, correction.corrected_by) == (team, "P1", people.admin)
    row.refresh_from_db()
    assert (row.team, row.priority) == (answer["team"], answer["priority"]), "the served verdict is kept"
    assert correction.history.count() == 1


def test_selected_requests_become_a_new_test_set_version(admin_client_for, api, production, people):
    ids = [api.post("/triage", ticket(index)).json()["request_id"] for index in (7, 8, 9)]
    services.triage_correct(
        request=TriageRequest.objects.get(pk=ids[0]), team="auth", priority="P1", actor=people.admin
    )
    before = production.testset.versions.count()
    url = reverse("admin:triage_triagerequest_changelist")
    confirm = admin_client_for.post(url, {"action": "add_to_testset", "_selected_action": ids})
    assert confirm.status_code == 200 and b"Add 3 request(s) to a test set" in confirm.content
    done = admin_client_for.post(
        url,
        {"action": "add_to_testset", "_selected_action": ids, "testset": production.testset.pk, "apply": "1"},
        follow=True,
    )
    assert done.status_code == 200 and f"is now at version {before + 1}".encode() in done.content
    newest = TestSetVersion.objects.filter(testset=production.testset).order_by("-number").first()
    cases = {case.external_id: case for case in newest.cases.all()}
    assert newest.case_count == production.testset_version.case_count + 3
    assert (cases[f"triage-{ids[0]}"].team, cases[f"triage-{ids[0]}"].priority) == ("auth", "P1")
    served = TriageRequest.objects.get(pk=ids[1])
    assert (cases[f"triage-{ids[1]}"].team, cases[f"triage-{ids[1]}"].subject) == (served.team, served.subject)
    # Adding the same requests again changes nothing and says so.
    again = admin_client_for.post(
        url,
        {"action": "add_to_testset", "_selected_action": ids, "testset": production.testset.pk, "apply": "1"},
        follow=True,
    )
    assert b"already in test set" in again.content
    assert production.testset.versions.count() == before + 1


def test_shadow_candidate_page_shows_its_record(
    admin_client_for, api, production, people, django_capture_on_commit_callbacks
):
    from config.celery import app

    v2 = production.new_version(V2)
    production.policy.shadow_version = production.agent.versions.get(number=v2)
    production.policy.shadow_percent = 100
    services.routing_policy_save(policy=production.policy, actor=people.admin)
    app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            for index in range(6):
                api.post("/triage", ticket(index))
    finally:
        app.conf.task_always_eager = False
    version = production.agent.versions.get(number=v2)
    disagreements = ShadowResult.objects.filter(version=version, agrees=False).count()
    listing = admin_client_for.get(reverse("admin:triage_shadowcandidate_changelist"))
    assert listing.status_code == 200 and f"{disagreements} of 6".encode() in listing.content
    page = admin_client_for.get(reverse("admin:triage_shadowcandidate_change", args=[version.pk]))
    assert page.status_code == 200 and b"6 shadow runs on live tickets" in page.content
    policy_page = admin_client_for.get(reverse("admin:triage_routingpolicy_changelist"))
    assert b"6 shadow runs" in policy_page.content


def test_routing_policy_is_saved_through_the_service(admin_client_for, production):
    url = reverse("admin:triage_routingpolicy_change", args=[production.policy.pk])
    response = admin_client_for.post(
        url,
        {
            "is_default": "on",
            "canary_max_invalid_rate": "0.3",
            "canary_max_error_rate": "0.1",
            "canary_min_requests": "50",
            "shadow_version": "",
            "shadow_percent": "0",
        },
        follow=True,
    )
    assert response.status_code == 200
    production.policy.refresh_from_db()
    assert production.policy.canary_max_invalid_rate == 0.3 and production.policy.history.count() == 2
