"""Test sets, eval runs and comparisons over the change-control API, with personal tokens.

Runs started over HTTP are executed by real Celery worker processes in one
test; the others execute a run's units in this process through the service a
worker task calls (``execute_all``).
"""

from __future__ import annotations

import time

import pytest

from evals import services
from evals.models import Comparison, EvalRun, TestSet
from tests.evals.support import TICKETS, execute_all
from tests.promptctl.api_support import caller_for


def import_body(owner, **extra):
    return {
        "name": "support-tickets",
        "agent": owner.name,
        "gating": False,
        "format": "jsonl",
        "content": TICKETS.read_text(),
        **extra,
    }


def test_testset_import_and_list(agent, requester):
    rita = caller_for(requester)
    created = rita.post("/testsets/import", import_body(agent))
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["testset"] == "support-tickets" and body["version"] == 1 and body["created"] is True
    assert body["cases"] == TestSet.objects.get(name="support-tickets").versions.get().case_count
    again = rita.post("/testsets/import", import_body(agent))
    assert again.status_code == 200 and again.json()["created"] is False
    listed = rita.get("/testsets").json()
    assert [(row["name"], row["version"], row["agent"]) for row in listed] == [("support-tickets", 1, agent.name)]
    assert TestSet.objects.get(name="support-tickets").versions.get().created_by == requester


def test_testset_import_refusals(agent, requester):
    rita = caller_for(requester)
    bad_line = rita.post("/testsets/import", import_body(agent, content="{not json}\n"))
    assert bad_line.status_code == 400
    assert bad_line.json()["detail"]
    unknown_agent = rita.post("/testsets/import", import_body(agent, agent="nope"))
    assert unknown_agent.status_code == 404
    bad_format = rita.post("/testsets/import", import_body(agent, format="xml"))
    assert bad_format.status_code == 422
    gating = rita.post("/testsets/import", import_body(agent, gating=True))
    assert gating.status_code == 403  # choosing an agent's gating set needs evals.change_gating_testset
    assert not TestSet.objects.exists()


def test_run_start_answers_at_once_and_shows_progress(agent, requester, gating_set):
    rita = caller_for(requester)
    started = rita.post("/runs", {"agent": agent.name, "version": 1, "repeats": 1})
    assert started.status_code == 201, started.content
    run = started.json()
    assert run["status"] == "queued" and run["testset"] == "support-tickets" and run["started_by"] == "rita"
    assert run["progress"]["done"] == 0 and run["progress"]["total"] == gating_set.case_count
    execute_all(EvalRun.objects.get(pk=run["id"]))
    shown = rita.get(f"/runs/{run['id']}").json()
    assert shown["status"] == "finished"
    assert shown["progress"]["done"] == shown["progress"]["total"] == gating_set.case_count
    assert "scores" in shown


def test_run_refusals(agent, requester, gating_set):
    rita = caller_for(requester)
    too_many = rita.post("/runs", {"agent": agent.name, "version": 1, "repeats": 0})
    assert too_many.status_code == 400
    assert "repeats must be between 1" in too_many.json()["detail"]
    assert rita.post("/runs", {"agent": agent.name, "version": 9, "repeats": 1}).status_code == 404
    assert rita.post("/runs", {"agent": agent.name, "version": 1, "testset": "nope"}).status_code == 404
    assert rita.get("/runs/999999").status_code == 404
    read_only = caller_for(requester, read_only=True, name="ro")
    assert read_only.post("/runs", {"agent": agent.name, "version": 1}).status_code == 403
    assert not EvalRun.objects.exists()


def test_comparison_create_and_show(agent, requester, versions, gating_set):
    v1, v2 = versions
    for version in (v1, v2):
        execute_all(services.eval_run_start(agent_version=version, testset_version=gating_set, actor=requester))
    rita = caller_for(requester)
    compared = rita.post("/comparisons", {"agent": agent.name, "baseline": 1, "candidate": 2})
    assert compared.status_code == 201, compared.content
    summary = compared.json()
    assert summary["evidence"] == f"comparison:{summary['id']}"
    assert (summary["baseline"]["version"], summary["candidate"]["version"]) == (1, 2)
    assert Comparison.objects.filter(pk=summary["id"]).exists()
    assert rita.get(f"/comparisons/{summary['id']}").json() == summary
    assert rita.get("/comparisons/999999").status_code == 404
    half = rita.post("/comparisons", {"agent": agent.name, "baseline_run": summary["baseline"]["run"]})
    assert half.status_code == 422
    assert half.json()["errors"][0]["field"] == "candidate_run"
    same = rita.post(
        "/comparisons",
        {"agent": agent.name, "baseline_run": summary["baseline"]["run"], "candidate_run": summary["baseline"]["run"]},
    )
    assert same.status_code == 400
    assert "same run" in same.json()["detail"]


@pytest.mark.slow
def test_a_run_started_over_http_is_done_by_real_workers(workers, agent, requester, gating_set):
    workers.start(concurrency=4)
    workers.wait_ready()
    rita = caller_for(requester)
    started = rita.post("/runs", {"agent": agent.name, "version": 1})
    assert started.status_code == 201, started.content
    run_id = started.json()["id"]
    seen = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        progress = rita.get(f"/runs/{run_id}").json()["progress"]
        seen.append(progress["done"])
        if progress["status"] == "finished":
            break
        time.sleep(0.2)
    assert progress["status"] == "finished", progress
    assert progress["done"] == progress["total"] == gating_set.case_count
    assert seen == sorted(seen)
