"""The evals admin's pages: runs with progress and tables, the comparison page, read-only records.

Query budgets are checked on list and detail pages so they do not grow with rows.
The buttons (upload, start, cancel, resume, compare) are clicked in Chromium:
tests/evals/test_run_actions_browser.py and tests/evals/test_run_compare_browser.py.
"""

import pytest
from django.urls import reverse

from evals import services
from evals.models import Comparison, EvalRun
from promptctl.errors import DomainError
from tests.evals.support import TICKETS, execute_all

pytestmark = pytest.mark.usefixtures("generous_budget")


def test_testset_list_query_budget(admin_client, agent, django_assert_max_num_queries):
    for index in range(6):
        services.testset_import(name=f"set-{index}", data=TICKETS.read_bytes(), filename="t.jsonl", agent=agent)
    with django_assert_max_num_queries(12):
        response = admin_client.get(reverse("admin:evals_testset_changelist"))
    assert response.status_code == 200 and response.content.decode().count("set-") >= 6


def test_a_started_run_is_followed_on_its_page(
    admin_client, admin_user, versions, gating_set, django_assert_max_num_queries
):
    # The Start run button is clicked in a real browser (tests/evals/test_run_actions_browser.py).
    run = services.eval_run_start(agent_version=versions[0], testset_version=gating_set, repeats=2, actor=admin_user)
    url = reverse("admin:evals_evalrun_change", args=[run.pk])
    assert run.started_by == admin_user and run.unit_total == 40
    progress = admin_client.get(reverse("admin:evals_evalrun_progress", args=[run.pk])).json()
    assert (progress["status"], progress["done"], progress["total"]) == ("queued", 0, 40)
    page = admin_client.get(url).content.decode()
    assert 'data-active="1"' in page and "Cancel run" in page

    execute_all(run)
    with django_assert_max_num_queries(20):
        page = admin_client.get(url).content.decode()
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


def test_the_run_page_offers_compare_and_the_comparison_page_shows_it(
    admin_client, versions, gating_set, django_assert_max_num_queries
):
    v1, v2 = versions
    baseline = execute_all(services.eval_run_start(agent_version=v1, testset_version=gating_set))
    candidate = execute_all(services.eval_run_start(agent_version=v2, testset_version=gating_set))
    page = admin_client.get(reverse("admin:evals_evalrun_change", args=[candidate.pk])).content.decode()
    assert f'<option value="{baseline.pk}">run #{baseline.pk} (v{v1.number})</option>' in page
    # The Compare button is clicked in a real browser (tests/evals/test_run_compare_browser.py).
    comparison = services.comparison_create(baseline_run=baseline, candidate_run=candidate)
    assert Comparison.objects.get() == comparison
    with django_assert_max_num_queries(10):
        page = admin_client.get(reverse("admin:evals_comparison_change", args=[comparison.pk])).content.decode()
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


def test_cancel_is_post_only_once_only_and_runs_need_the_role(client, django_user_model, versions, gating_set):
    # The Cancel run button is clicked in a real browser (tests/evals/test_run_actions_browser.py).
    run = services.eval_run_start(agent_version=versions[0], testset_version=gating_set)
    staff = django_user_model.objects.create_user("nobody", password="x", is_staff=True)
    client.force_login(staff)
    assert client.get(reverse("admin:evals_evalrun_cancel", args=[run.pk])).status_code == 405
    services.eval_run_cancel(run=run)
    run.refresh_from_db()
    assert run.status == EvalRun.Status.CANCELLED
    with pytest.raises(DomainError, match="already cancelled"):
        services.eval_run_cancel(run=run)
    assert client.get(reverse("admin:evals_evalrun_progress", args=[run.pk])).status_code == 403
    assert client.get(reverse("admin:evals_comparison_changelist")).status_code == 403


def test_results_and_comparisons_are_read_only_in_the_admin(admin_client, versions, gating_set):
    run = execute_all(services.eval_run_start(agent_version=versions[0], testset_version=gating_set))
    result = run.results.first()
    assert admin_client.get(reverse("admin:evals_evalresult_delete", args=[result.pk])).status_code == 403
    page = admin_client.get(reverse("admin:evals_evalresult_change", args=[result.pk])).content.decode()
    assert 'type="submit"' not in page or "Save" not in page
    assert admin_client.get(reverse("admin:evals_comparison_add")).status_code == 403
