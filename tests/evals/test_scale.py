"""The evals pages that must stay small at any size: a 2,000-ticket test-set version, the runs list's progress."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from evals import services
from evals.admin.testsets import CASES_SHOWN
from evals.models import EvalRun
from tests.evals.support import TICKETS, execute_all

pytestmark = pytest.mark.usefixtures("generous_budget")

BIG = 2000


def _big_set() -> bytes:
    tickets = [json.loads(line) for line in TICKETS.read_text().splitlines() if line.strip()]
    rows = [{**tickets[index % len(tickets)], "id": f"BIG-{index:05d}"} for index in range(BIG)]
    return "\n".join(json.dumps(row) for row in rows).encode() + b"\n"


def test_a_2000_ticket_version_page_shows_a_bounded_slice_and_links_to_all(admin_client, agent):
    version = services.testset_import(name="big", data=_big_set(), filename="big.jsonl", agent=agent).version
    assert version.case_count == BIG
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(reverse("admin:evals_testsetversion_change", args=[version.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert len(queries.captured_queries) <= 15, len(queries.captured_queries)
    assert len(response.content) < 120_000, len(response.content)  # it was 3 MB with every case inline
    assert page.count("<td>BIG-") == CASES_SHOWN and f"Showing the first {CASES_SHOWN} of {BIG} tickets" in page

    every = reverse("admin:evals_testcase_changelist") + f"?version__id__exact={version.pk}"
    assert every in page.replace("&amp;", "&")
    with CaptureQueriesContext(connection) as queries:
        listing = admin_client.get(every, {"p": 3})
    assert listing.status_code == 200 and len(queries.captured_queries) <= 12
    rows = list(listing.context["cl"].result_list)
    assert len(rows) == 100
    assert [row.external_id for row in rows] == [f"BIG-{index:05d}" for index in range(200, 300)]
    assert listing.context["cl"].result_count == BIG


def test_the_runs_list_counts_results_for_its_page_only(admin_client, versions, gating_set):
    runs = [services.eval_run_start(agent_version=versions[0], testset_version=gating_set) for _ in range(3)]
    execute_all(runs[0])
    execute_all(runs[1])
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(reverse("admin:evals_evalrun_changelist"))
    page = response.content.decode()
    assert response.status_code == 200 and "20/20" in page
    done = {run.pk: run.done for run in response.context["cl"].result_list}
    assert done == {runs[0].pk: 20, runs[1].pk: 20, runs[2].pk: 0}
    counting = [q["sql"] for q in queries.captured_queries if "evals_evalresult" in q["sql"]]
    assert len(counting) == 1, counting
    assert " IN (" in counting[0] and "GROUP BY" in counting[0].upper(), counting[0]
    assert EvalRun.objects.count() == 3
    # The accuracy column reads the two figures the run copied out of its scores when it finished.
    finished = EvalRun.objects.get(pk=runs[0].pk)
    overall = finished.scores["overall"]
    assert (finished.overall_correct, finished.overall_total) == (overall["correct"], overall["total"]) != (None, None)
    assert f"{overall['correct']}/{overall['total']} (" in page
    listing = [q["sql"] for q in queries.captured_queries if 'FROM "evals_evalrun"' in q["sql"]]
    assert listing and not any('"scores"' in sql or "system_prompt" in sql for sql in listing), listing
