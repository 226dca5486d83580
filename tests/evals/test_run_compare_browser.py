"""Starting an eval run and comparing two runs from the admin, in Debian's headless Chromium, clicking the real buttons.

A requester starts the run from the run list's add button and compares it
from the run page once the real worker has finished it; a reviewer (who may
read runs but not start or compare them) sees neither button.
"""

import pytest
from django.urls import reverse

from evals import services
from evals.models import Comparison, EvalRun
from tests.browser_support import admin_login
from tests.change_control_support import PASSWORD
from tests.evals.support import wait_for_run

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_a_requester_starts_a_run_and_compares_it_a_reviewer_sees_neither_button(
    browser_page, workers, versions, gating_set, requester, reviewer
):
    v1, v2 = versions
    baseline = services.eval_run_start(agent_version=v1, testset_version=gating_set, repeats=1)
    workers.start(concurrency=4)
    wait_for_run(baseline)

    rita = browser_page()
    admin_login(rita, username=requester.username, password=PASSWORD)
    rita.goto(reverse("admin:evals_evalrun_changelist"))
    rita.click(".object-tools a.addlink")
    rita.wait_for_url("**/evals/evalrun/add/")
    rita.select_option("#id_agent_version", value=str(v2.pk))
    rita.select_option("#id_testset", value=str(gating_set.testset_id))
    rita.click("input[type=submit][value='Start run']")
    rita.wait_for_url("**/evals/evalrun/*/change/")
    candidate = EvalRun.objects.exclude(pk=baseline.pk).get()
    assert candidate.agent_version == v2 and candidate.started_by == requester
    assert f"Started run #{candidate.pk}" in rita.text_content(".messagelist")

    rita.wait_for_function(
        "() => document.getElementById('run-status-text').textContent === 'finished'", timeout=60_000
    )
    rita.wait_for_selector("input[type=submit][value='Compare']", timeout=15_000)  # the page reloads when done
    rita.select_option("select[name=role]", value="candidate")
    rita.select_option("select[name=other]", value=str(baseline.pk))
    rita.click("input[type=submit][value='Compare']")
    rita.wait_for_url("**/evals/comparison/*/change/")
    comparison = Comparison.objects.get()
    assert (comparison.baseline_run_id, comparison.candidate_run_id) == (baseline.pk, candidate.pk)
    assert rita.url.endswith(reverse("admin:evals_comparison_change", args=[comparison.pk]))
    assert "billing" in rita.text_content("#content")

    victor = browser_page()
    admin_login(victor, username=reviewer.username, password=PASSWORD)
    victor.goto(reverse("admin:evals_evalrun_changelist"))
    assert victor.locator(".object-tools a.addlink").count() == 0, "a reviewer cannot start runs, so no add button"
    victor.goto(reverse("admin:evals_evalrun_change", args=[candidate.pk]))
    assert "finished" in victor.text_content("#run-status-text")
    assert victor.locator("input[type=submit][value='Compare']").count() == 0
    assert victor.locator("input[type=submit][value='Cancel run']").count() == 0
