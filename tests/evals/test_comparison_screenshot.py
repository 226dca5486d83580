"""The comparison page as a reviewer sees it, in Debian's headless Chromium.

The README's screenshot comes from this test:
``PROMPTCTL_SCREENSHOT_DIR=docs/images make test PYTEST_ARGS="-k comparison_page"``.
"""

import os
from pathlib import Path

import pytest
from django.urls import reverse

from evals import services
from promptctl import services as promptctl_services
from tests.browser_support import admin_login
from tests.change_control_support import PASSWORD
from tests.evals.support import execute_all

pytestmark = [pytest.mark.browser]


def test_comparison_page_shows_both_versions_per_team_flips_and_the_verdict(
    request, live_server, versions, gating_set, generous_budget, emulator, tmp_path
):
    # The runs execute in this thread before Chromium starts: Playwright's sync API runs an event
    # loop here, and the session calls refuse to block a thread whose loop is running.
    v1, v2 = versions
    baseline = execute_all(services.eval_run_start(agent_version=v1, testset_version=gating_set))
    candidate = execute_all(services.eval_run_start(agent_version=v2, testset_version=gating_set))
    comparison = services.comparison_create(baseline_run=baseline, candidate_run=candidate)
    flipped = sorted(f["ticket"] for f in comparison.result["flips"] if f["direction"] == "right_to_wrong")
    assert comparison.regressed and flipped

    promptctl_services.user_create(username="rhea", role="admin", password=PASSWORD)
    page = request.getfixturevalue("browser_page")()
    admin_login(page, username="rhea", password=PASSWORD)
    page.goto(reverse("admin:evals_comparison_change", args=[comparison.pk]))
    text = page.text_content("body")
    assert "billing" in text and "REGRESS" in text.upper()
    assert all(ticket in text for ticket in flipped)
    assert page.locator("svg").count() >= 1, "the per-team chart is drawn"

    target = Path(os.environ.get("PROMPTCTL_SCREENSHOT_DIR") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    screenshot = target / "comparison.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
