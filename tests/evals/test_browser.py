"""The run page's live progress bar, in Debian's headless Chromium, while a real worker runs the units."""

import pytest
from django.urls import reverse

from evals import services
from evals.models import EvalRun
from promptctl import services as promptctl_services
from tests.browser_support import admin_login
from tests.change_control_support import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_progress_bar_moves_while_the_run_runs_and_the_page_shows_scores_at_the_end(
    browser_page, workers, versions, gating_set, emulator
):
    promptctl_services.user_create(username="ada", role="admin", password=PASSWORD)
    emulator.configure(latency=0.4)
    run = services.eval_run_start(agent_version=versions[0], testset_version=gating_set, repeats=2)
    page = browser_page()
    admin_login(page, username="ada", password=PASSWORD)
    page.goto(reverse("admin:evals_evalrun_change", args=[run.pk]))
    assert page.text_content("#run-status-text") == "queued"
    workers.start(concurrency=4)
    # Partway: the bar has moved but the run is not done (polled from the JSON endpoint, no reload).
    page.wait_for_function(
        "() => { const w = parseFloat(document.getElementById('run-progress-fill').style.width);"
        " return w > 0 && w < 100; }",
        timeout=30_000,
    )
    assert page.text_content("#run-status-text") == "running"
    # At the end the page reloads itself and shows the finished run's tables.
    page.wait_for_function(
        "() => document.getElementById('run-status-text').textContent === 'finished'", timeout=60_000
    )
    page.wait_for_selector("#run-status[data-active='0']", timeout=10_000)
    assert "40/40 results" in page.text_content("#run-progress-text")
    assert "/5" in page.text_content("#per-team tr[data-team='billing']")
    run.refresh_from_db()
    assert run.status == EvalRun.Status.FINISHED
