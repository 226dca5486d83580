"""Uploading a test set and starting, cancelling and resuming a run, clicked in Debian's headless Chromium.

No worker runs here: the run stays queued, which is the moment its Cancel and
Resume buttons matter. Each click is checked for the page it lands on and what
it changed; a reviewer (who reads runs but does not act on them) sees no button.
"""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from evals import services
from evals.models import EvalRun, TestCase, TestSet
from promptctl import services as promptctl_services
from tests.browser_support import admin_login
from tests.change_control_support import PASSWORD
from tests.evals.support import TICKETS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

BAD_FILE = (
    b'{"id": "A", "subject": "s", "body": "b", "team": "auth", "priority": "P1"}\n'
    b"{oops\n"
    b'{"id": "A", "subject": "s", "body": "b", "team": "auth", "priority": "P1"}\n'
)


@pytest.fixture
def ada(browser_page, db):
    promptctl_services.user_create(username="ada", role="admin", password=PASSWORD)
    page = browser_page()
    admin_login(page, username="ada", password=PASSWORD)
    return page


def test_an_admin_uploads_a_test_set_a_bad_file_is_refused_with_every_bad_line(ada, agent, tmp_path):
    bad = tmp_path / "broken.jsonl"
    bad.write_bytes(BAD_FILE)
    ada.goto(reverse("admin:evals_testset_changelist"))
    ada.click(".object-tools a.addlink")
    ada.wait_for_url("**/evals/testset/add/")
    ada.fill("#id_name", "broken")
    ada.set_input_files("#id_file", str(bad))
    ada.click("input[type=submit][value='Upload']")
    # The refusal keeps the form and lists every bad line; nothing is imported.
    report = ada.inner_text("#validation-report")
    assert "Validation report: 2 bad line(s), nothing was imported." in report
    assert "not valid JSON" in report and "duplicate id 'A' (first on line 1)" in report
    assert ada.input_value("#id_name") == "broken"
    assert not TestSet.objects.filter(name="broken").exists() and TestCase.objects.count() == 0

    ada.fill("#id_name", "support-tickets")
    ada.set_input_files("#id_file", str(TICKETS))
    ada.select_option("#id_agent", str(agent.pk))
    ada.check("#id_gating")
    ada.click("input[type=submit][value='Upload']")
    ada.wait_for_url(re.compile(r"/admin/evals/testsetversion/\d+/change/$"))
    messages = ada.inner_text(".messagelist")
    assert "Imported support-tickets v1 (20 tickets)." in messages
    assert "which the prompt cannot produce" in messages  # the P0 labels, as a warning
    assert ada.locator(".messagelist .warning").count() >= 1
    testset = TestSet.objects.get(name="support-tickets")
    assert testset.gating and testset.agent == agent


def test_an_admin_starts_a_run_cancels_it_and_a_second_tab_is_told_it_already_is(
    ada, browser_page, versions, gating_set, reviewer
):
    ada.goto(reverse("admin:evals_evalrun_changelist"))
    ada.click(".object-tools a.addlink")
    ada.wait_for_url("**/evals/evalrun/add/")
    ada.select_option("#id_agent_version", value=str(versions[0].pk))
    ada.select_option("#id_testset", value=str(gating_set.testset_id))
    ada.fill("#id_repeats", "2")
    ada.click("input[type=submit][value='Start run']")
    ada.wait_for_url(re.compile(r"/admin/evals/evalrun/\d+/change/$"))
    run = EvalRun.objects.get()
    assert run.started_by.username == "ada" and run.unit_total == 40 and run.repeats == 2
    assert f"Started run #{run.pk}: 40 unit(s) queued" in ada.inner_text(".messagelist")
    assert ada.get_attribute("#run-status", "data-active") == "1"
    assert ada.text_content("#run-status-text") == "queued"
    assert "0/40 results" in ada.text_content("#run-progress-text")

    # A reviewer reads the run but has no button to act on it.
    victor = browser_page()
    admin_login(victor, username=reviewer.username, password=PASSWORD)
    victor.goto(reverse("admin:evals_evalrun_change", args=[run.pk]))
    assert victor.text_content("#run-status-text") == "queued"
    assert victor.locator("input[type=submit][value='Cancel run']").count() == 0
    assert victor.locator("input[type=submit][value^='Resume']").count() == 0

    # The same run open in a second tab whose live polling is stalled (a laptop lid closed, a lost network):
    # cancelled in the first tab, the stale tab's click is told why not, in words.
    second_tab = ada.context.new_page()
    second_tab.route(re.compile(r"/progress/"), lambda route: route.abort())
    second_tab.goto(reverse("admin:evals_evalrun_change", args=[run.pk]))
    ada.click("input[type=submit][value='Cancel run']")
    ada.wait_for_url(f"**{reverse('admin:evals_evalrun_change', args=[run.pk])}")
    assert f"Cancelled run #{run.pk}." in ada.inner_text(".messagelist")
    run.refresh_from_db()
    assert run.status == EvalRun.Status.CANCELLED
    assert ada.text_content("#run-status-text") == "cancelled"
    assert ada.locator("input[type=submit][value='Cancel run']").count() == 0
    with second_tab.expect_navigation():
        second_tab.click("input[type=submit][value='Cancel run']")
    assert second_tab.url.endswith(reverse("admin:evals_evalrun_change", args=[run.pk]))
    assert "already cancelled" in second_tab.inner_text(".messagelist")
    run.refresh_from_db()
    assert run.status == EvalRun.Status.CANCELLED


def test_an_admin_resumes_a_queued_run(ada, versions, gating_set):
    run = services.eval_run_start(agent_version=versions[0], testset_version=gating_set)
    ada.goto(reverse("admin:evals_evalrun_change", args=[run.pk]))
    ada.click("input[type=submit][value^='Resume']")
    ada.wait_for_url(f"**{reverse('admin:evals_evalrun_change', args=[run.pk])}")
    assert f"Run #{run.pk}: dispatched 20 unit(s) that had no result yet." in ada.inner_text(".messagelist")
    run.refresh_from_db()
    assert run.resume_count == 1 and run.resumed_at is not None and run.is_active
