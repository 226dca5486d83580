"""The triage admin pages (the request log's query budget, shadow candidates) and the rules behind their buttons.

The buttons (create and revoke a key, save a routing policy, record a correction, add requests to a
test set) are clicked in Chromium: tests/triage/test_api_admin_browser.py and test_triage_browser.py.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from evals.models import TestSetVersion
from promptctl.errors import DomainError
from tests.triage.support import V2, ticket
from triage import services
from triage.models import ShadowResult, TriageCorrection, TriageRequest


@pytest.fixture
def admin_client_for(people):
    client = Client()
    client.force_login(people.admin)
    return client


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


def test_a_correction_is_checked_and_the_log_row_stays_as_served(admin_client_for, api, people):
    # The correction form is filled and saved in a real browser (tests/triage/test_triage_browser.py).
    answer = api.post("/triage", ticket(0)).json()
    row = TriageRequest.objects.get(pk=answer["request_id"])
    assert admin_client_for.get(reverse("admin:triage_triagerequest_change", args=[row.pk])).status_code == 200
    with pytest.raises(DomainError, match="allows only"):
        services.triage_correct(request=row, team="sales", priority="P2", actor=people.admin)
    assert not TriageCorrection.objects.exists()
    team = "auth" if row.team != "auth" else "billing"
    services.triage_correct(request=row, team=team, priority="P1", actor=people.admin, note="about an invoice")
    correction = TriageCorrection.objects.get(request=row)
    assert (correction.team, correction.priority, correction.corrected_by) == (team, "P1", people.admin)
    row.refresh_from_db()
    assert (row.team, row.priority) == (answer["team"], answer["priority"]), "the served verdict is kept"
    assert correction.history.count() == 1


def test_logged_requests_become_a_new_test_set_version_once(admin_client_for, api, production, people):
    # "Add to a test set" is clicked in a real browser (tests/triage/test_triage_browser.py).
    ids = [api.post("/triage", ticket(index)).json()["request_id"] for index in (7, 8, 9)]
    services.triage_correct(
        request=TriageRequest.objects.get(pk=ids[0]), team="auth", priority="P1", actor=people.admin
    )
    before = production.testset.versions.count()
    rows = list(TriageRequest.objects.filter(pk__in=ids))
    imported = services.triage_requests_to_testset(requests=rows, testset=production.testset, actor=people.admin)
    assert imported.version.number == before + 1
    newest = TestSetVersion.objects.filter(testset=production.testset).order_by("-number").first()
    assert newest == imported.version
    cases = {case.external_id: case for case in newest.cases.all()}
    assert newest.case_count == production.testset_version.case_count + 3
    assert (cases[f"triage-{ids[0]}"].team, cases[f"triage-{ids[0]}"].priority) == ("auth", "P1")
    served = TriageRequest.objects.get(pk=ids[1])
    assert (cases[f"triage-{ids[1]}"].team, cases[f"triage-{ids[1]}"].subject) == (served.team, served.subject)
    # Adding the same requests again changes nothing and says so.
    with pytest.raises(DomainError, match="already in test set"):
        services.triage_requests_to_testset(requests=rows, testset=production.testset, actor=people.admin)
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
