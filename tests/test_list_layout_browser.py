"""Every list page of the admin fits a 1366 × 768 screen, with data in every registered model.

Seeded the way people make the record (services, the API, an eval run through
the evals service), then Chromium opens each registered model's list page as an
admin and checks that the page does not scroll sideways and that the result
table is not cut off inside its box (docs/OPERATIONS.md, "Admin pages").
"""

from __future__ import annotations

import json
import os
import re

import pytest
from django.contrib import admin

from promptctl import services as change_services
from tests.browser_support import admin_login
from tests.triage.support import PASSWORD, TICKETS, V2, People, ProductionAgent, ticket
from triage import services as triage_services

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREEN = {"width": 1366, "height": 768}
SCREENSHOTS = os.environ.get("PROMPTCTL_SCREENSHOTS")  # a folder: keep each list page's screenshot to look at
LONG_SUBJECT = (
    "Invoices for the enterprise workspace double-count usage on the metered-billing dashboard "
    "since the quota migration of last Tuesday (ref INV-2026-11-000123456789)"
)


@pytest.fixture
def seeded(emulator, settings, django_capture_on_commit_callbacks):
    """A record in every model the admin lists: people, an agent in production, runs, requests, keys, hooks."""
    from config.celery import app
    from tests.triage.support import Api

    settings.PROMPTCTL_RATE_LIMITER = "off"
    previous, app.conf.task_always_eager = app.conf.task_always_eager, True  # shadow and canary tasks run inline
    try:
        return _seed(Api, django_capture_on_commit_callbacks)
    finally:
        app.conf.task_always_eager = previous


def _seed(Api, django_capture_on_commit_callbacks):

    people = People()
    change_services.webhook_create(
        actor=people.admin, url="https://hooks.example.com/promptctl/change-control/notifications/ticket-triage"
    )
    production = ProductionAgent(people)
    change_services.token_create(user=people.requester, actor=people.requester, name="laptop-of-rita-for-the-ci")
    secret = triage_services.api_key_create(name="helpdesk-production-eu-west", actor=people.admin, all_agents=True)
    api = Api(secret.secret)
    v2 = production.new_version(V2)
    production.policy.shadow_version = production.agent.versions.get(number=v2)
    production.policy.shadow_percent = 100
    triage_services.routing_policy_save(policy=production.policy, actor=people.admin)
    with django_capture_on_commit_callbacks(execute=True):
        for index in range(6):
            api.post("/triage", ticket(index))
        api.post("/triage", {"subject": LONG_SUBJECT, "body": LONG_SUBJECT * 3})
        api.post("/triage/jobs", ticket(7))
    from evals import services as eval_services
    from tests.triage.support import eval_run_now

    eval_run_now(
        version=production.agent.versions.get(number=v2),
        testset_version=production.testset_version,
        actor=people.requester,
    )
    eval_services.comparison_for_versions(agent=production.agent, baseline_number=production.v1, candidate_number=v2)
    # A set with a label the prompt cannot produce (the tutorial's P0s), scored once: its run page warns.
    p0_lines = [json.dumps(t) for t in TICKETS if t["priority"] == "P0"][:2]
    p0_set = eval_services.testset_import(
        name="urgent-tickets",
        data="\n".join(p0_lines) + "\n",
        filename="urgent.jsonl",
        agent=production.agent,
        actor=people.requester,
    )
    eval_run_now(
        version=production.agent.versions.get(number=production.v1),
        testset_version=p0_set.version,
        actor=people.requester,
    )
    production.canary(v2, 10)
    with django_capture_on_commit_callbacks(execute=True):
        for index in range(8):
            api.post("/triage", ticket(index))
    return people


def list_urls() -> list[str]:
    urls = []
    for model in admin.site._registry:
        opts = model._meta
        urls.append(f"/admin/{opts.app_label}/{opts.model_name}/")
    return sorted(urls)


def test_every_list_page_fits_a_1366_screen(seeded, chromium, live_server):
    context = chromium.new_context(base_url=live_server.url, viewport=SCREEN)
    page = context.new_page()
    admin_login(page, username="ada", password=PASSWORD)
    too_wide = {}
    for url in list_urls():
        response = page.goto(url)
        assert response.status == 200, f"{url}: {response.status}"
        measured = page.evaluate(
            """() => {
                const table = document.querySelector('#result_list');
                const box = table ? table.closest('.results') : null;
                return {
                    document: document.documentElement.scrollWidth,
                    viewport: window.innerWidth,
                    rows: table ? table.querySelectorAll('tbody tr').length : 0,
                    table: table ? Math.ceil(table.getBoundingClientRect().right) : 0,
                    box: box ? Math.ceil(box.getBoundingClientRect().right) : 0,
                    hidden: box ? box.scrollWidth - box.clientWidth : 0,
                };
            }"""
        )
        if SCREENSHOTS:
            page.screenshot(path=os.path.join(SCREENSHOTS, url.strip("/").replace("/", "-") + ".png"))
        if (
            measured["document"] > measured["viewport"]
            or measured["hidden"] > 0
            or measured["table"] > measured["viewport"]
        ):
            too_wide[url] = measured
    assert not too_wide, f"list pages wider than {SCREEN['width']} px: {too_wide}"

    # Times to the second with the time zone; long text cut with the full value on hover.
    page.goto("/admin/promptctl/auditevent/")
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", page.inner_text("#result_list"))
    page.goto("/admin/triage/triagerequest/")
    cut = page.locator('#result_list .promptctl-truncated[title^="Invoices for"]').first
    assert cut.get_attribute("title") == LONG_SUBJECT and len(cut.inner_text()) < len(LONG_SUBJECT)
    # Eval results' numbers are formatted, never raw floats.
    page.goto("/admin/evals/evalresult/")
    assert not re.search(r"\d\.\d{4,}", page.inner_text("#result_list"))
    page.goto("/admin/evals/evalrun/")
    assert re.search(r"\d+/\d+ \(\d+\.\d %\)", page.inner_text("#result_list"))
    # The index's "Recent actions" lists what the services did for this person (the gating set, keys, hooks).
    page.goto("/admin/")
    recent = page.inner_text("#recent-actions-module")
    assert "None available" not in recent and "helpdesk-production-eu-west" in recent
    # "View site" leads somewhere useful, and the icon is served.
    page.click("#user-tools a:has-text('View site')")
    assert page.url.endswith("/admin/")
    assert page.request.get("/favicon.ico").status == 200
    context.close()


def test_user_links_timeline_links_and_warnings(seeded, browser_page):
    from evals.models import EvalRun
    from promptctl.models import Agent

    agent = Agent.objects.get(name="ticket-triage")
    rita = browser_page()
    admin_login(rita, username="rita", password=PASSWORD)
    # History lists who changed what; the name links to a user page only for those who may open it.
    rita.goto(f"/admin/promptctl/agent/{agent.pk}/history/")
    assert rita.locator("a[href*='/admin/auth/user/']").count() == 0
    # Timeline rows about change requests link to the request's page.
    rita.goto(f"/admin/promptctl/agent/{agent.pk}/timeline/")
    link = rita.locator("#timeline tr.timeline-change-request a").first
    link.click()
    rita.wait_for_url(re.compile(r"/admin/promptctl/changerequest/\d+/change/$"))
    # The P0 labels the prompt cannot produce are warnings on the run page, not red error boxes.
    run = EvalRun.objects.filter(testset_version__testset__name="urgent-tickets").get()
    rita.goto(f"/admin/evals/evalrun/{run.pk}/change/")
    warnings = rita.locator(".label-warning")
    assert warnings.count() >= 1 and "P0" in warnings.first.inner_text()
    assert rita.locator(".evals-box.bad:has-text('P0')").count() == 0
