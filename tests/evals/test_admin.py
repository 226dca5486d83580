"""The evals admin: upload with a validation report, runs with progress and tables, the comparison page.

Query budgets are checked on list and detail pages so they do not grow with rows.
"""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from evals import services
from evals.models import Comparison, EvalRun, TestCase, TestSet
from tests.evals.support import TICKETS, execute_all

pytestmark = pytest.mark.usefixtures("generous_budget")


def test_upload_refuses_a_malformed_file_with_every_bad_line(admin_client):
    bad = b'{"id": "A", "subject": "s", "body": "b", "team": "auth", "priority": "P1"}\n{oops\n{"id": "A", "subject": "s", "body": "b", "team": "auth", "priority": "P1"}\n'
    response = admin_client.post(
        reverse("admin:evals_testset_add"),
        {"name": "broken", "file": SimpleUploadedFile("broken.jsonl", bad)},
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "Validation report: 2 bad line(s), nothing was imported." in page
    assert "not valid JSON" in page and "duplicate id &#x27;A&#x27; (first on line 1)" in page
    assert not TestSet.objects.filter(name="broken").exists() and TestCase.objects.count() == 0


def test_upload_imports_and_shows_label_warnings(admin_client, agent):
    response = admin_client.post(
        reverse("admin:evals_testset_add"),
        {
            "name": "support-tickets",
            "file": SimpleUploadedFile("t.jsonl", TICKETS.read_bytes()),
            "agent": agent.pk,
            "gating": "on",
        },
        follow=True,
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "Imported support-tickets v1 (20 tickets)." in page
    assert "which the prompt cannot produce" in page  # the P0 labels
    testset = TestSet.objects.get(name="support-tickets")
    assert testset.gating and testset.agent == agent


def test_testset_list_query_budget(admin_client, agent, django_assert_max_num_queries):
    for index in range(6):
        services.testset_import(name=f"set-{index}", data=TICKETS.read_bytes(), filename="t.jsonl", agent=agent)
    with django_assert_max_num_queries(12):
        response = admin_client.get(reverse("admin:evals_testset_changelist"))
    assert response.status_code == 200 and response.content.decode().count("set-") >= 6


def test_start_a_run_then_follow_it(admin_client, admin_user, versions, gating_set, django_assert_max_num_queries):
    response = admin_client.post(
        reverse("admin:evals_evalrun_add"),
        {"agent_version": versions[0].pk, "testset": gating_set.testset_id, "repeats": 2},
    )
    run = EvalRun.objects.get()
    assert response.status_code == 302 and response.url == reverse("admin:evals_evalrun_change", args=[run.pk])
    assert run.started_by == admin_user and run.unit_total == 40
    progress = admin_client.get(reverse("admin:evals_evalrun_progress", args=[run.pk])).json()
    assert (progress["status"], progress["done"], progress["total"]) == ("queued", 0, 40)
    page = admin_client.get(response.url).content.decode()
    assert 'data-active="1"' in page and "Cancel run" in page

    execute_all(run)
    with django_assert_max_num_queries(20):
        page = admin_client.get(response.url).content.decode()
    assert 'data-active="0"' in page and "Cancel run" not in page
    assert 'id="per-team"' in page and 'data-team="billing"' in page
    assert 'id="confusion"' in page and "diagonal" in page
    assert "which the prompt cannot produce" in page


def test_run_list_query_budget(admin_client, versions, gating_set, django_assert_max_num_queries):
    for _ in range(5):
        services.eval_run_start(agent_version=versions[0], testset_version=gating_set)
    execute_all(EvalRun.objects.first())
    with django_assert_max_num_queries(10):
        response = admin_client.get(reverse("admin:evals_evalrun_changelist"))
    page = response.content.decode()
    assert response.status_code == 200 and page.count('class="evals-progress"') == 5
    assert "20/20" in page


def test_compare_from_the_run_page_and_the_comparison_page(
    admin_client, versions, gating_set, django_assert_max_num_queries
):
    v1, v2 = versions
    baseline = execute_all(services.eval_run_start(agent_version=v1, testset_version=gating_set))
    candidate = execute_all(services.eval_run_start(agent_version=v2, testset_version=gating_set))
    page = admin_client.get(reverse("admin:evals_evalrun_change", args=[candidate.pk])).content.decode()
    assert f'<option value="{baseline.pk}">run #{baseline.pk} (v{v1.number})</option>' in page
    response = admin_client.post(
        reverse("admin:evals_evalrun_compare", args=[candidate.pk]), {"role": "candidate", "other": baseline.pk}
    )
    comparison = Comparison.objects.get()
    assert (comparison.baseline_run, comparison.candidate_run) == (baseline, candidate)
    assert response.url == reverse("admin:evals_comparison_change", args=[comparison.pk])
    with django_assert_max_num_queries(10):
        page = admin_client.get(response.url).content.decode()
    assert "Regressed: billing" in page
    assert '<svg class="evals-chart"' in page and 'data-team="billing"' in page
    assert page.count('class="interval"') == 2 * len(comparison.result["teams"])
    for flip in comparison.result["flips"]:
        assert f"<td>{flip['ticket']}</td>" in page
    # The verdict says what to do in the web's words: file the request (a link), no CLI flags.
    assert "Accept a flagged regression because" in page and "--evidence" not in page
    assert f'<a href="{reverse("admin:promptctl_changerequest_add")}">file the change request</a>' in page
    listing = admin_client.get(reverse("admin:evals_comparison_changelist")).content.decode()
    assert "regressed: billing" in listing


def test_cancel_button_and_permissions(admin_client, client, django_user_model, versions, gating_set):
    run = services.eval_run_start(agent_version=versions[0], testset_version=gating_set)
    assert admin_client.get(reverse("admin:evals_evalrun_cancel", args=[run.pk])).status_code == 405
    admin_client.post(reverse("admin:evals_evalrun_cancel", args=[run.pk]))
    run.refresh_from_db()
    assert run.status == EvalRun.Status.CANCELLED
    response = admin_client.post(reverse("admin:evals_evalrun_cancel", args=[run.pk]), follow=True)
    assert "already cancelled" in response.content.decode()
    staff = django_user_model.objects.create_user("nobody", password="x", is_staff=True)
    client.force_login(staff)
    assert client.get(reverse("admin:evals_evalrun_progress", args=[run.pk])).status_code == 403
    assert client.get(reverse("admin:evals_comparison_changelist")).status_code == 403


def test_results_and_comparisons_are_read_only_in_the_admin(admin_client, versions, gating_set):
    run = execute_all(services.eval_run_start(agent_version=versions[0], testset_version=gating_set))
    result = run.results.first()
    assert admin_client.get(reverse("admin:evals_evalresult_delete", args=[result.pk])).status_code == 403
    page = admin_client.get(reverse("admin:evals_evalresult_change", args=[result.pk])).content.decode()
    assert 'type="submit"' not in page or "Save" not in page
    assert admin_client.get(reverse("admin:evals_comparison_add")).status_code == 403
