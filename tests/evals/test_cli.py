"""The tutorial end to end through the CLI, real Celery workers and the emulator.

v1 and v2 are scored on the shipped tickets; the comparison flags billing (and
no other team) with the flipped billing tickets by id, exits 1 for CI, and a
promotion of v2 cannot be applied without the accept-regression path.
"""

import io
import json

import pytest
from django.core.management import call_command

from evals.models import Comparison, EvalRun
from promptctl.models import Pin
from tests.cli_support import token_env_for_as
from tests.evals.support import TICKETS, execute_all

pytestmark = pytest.mark.slow


def promptctl(*args: str, expect_exit: int = 0) -> tuple[dict | list | None, str]:
    """Run ``manage.py promptctl --json ARGS``; returns (parsed JSON, stderr)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    code = 0
    try:
        with token_env_for_as(args):
            call_command("promptctl", "--json", *args, stdout=stdout, stderr=stderr)
    except SystemExit as exit_:
        code = exit_.code
    assert code == expect_exit, (code, stderr.getvalue(), stdout.getvalue())
    text = stdout.getvalue()
    return (json.loads(text) if text.strip() else None), stderr.getvalue()


def test_tutorial_through_cli_and_workers(workers, agent, versions, requester, reviewer, second_reviewer, gatekeeper):
    v1, v2 = versions
    workers.start()
    imported, _ = promptctl(
        "testset",
        "import",
        str(TICKETS),
        "--name",
        "support-tickets",
        "--agent",
        agent.name,
        "--gating",
        "--as",
        gatekeeper.username,
    )
    assert imported["cases"] == 20 and imported["gating"] is True
    assert {w["label"] for w in imported["label_warnings"]} == {"P0"}

    runs = {}
    for version in (v1, v2):
        data, _ = promptctl(
            "eval", "run", "--agent", agent.name, "--version", str(version.number), "--wait", "--as", "rita"
        )
        assert data["status"] == "finished" and data["progress"]["done"] == 20
        assert data["started_by"] == "rita"
        assert set(data["scores"]["teams"]) == {"billing", "auth", "api-platform", "dashboard"}
        runs[version.number] = data["id"]

    comparison, _ = promptctl(
        "eval",
        "compare",
        "--agent",
        agent.name,
        "--baseline",
        str(v1.number),
        "--candidate",
        str(v2.number),
        expect_exit=1,
    )
    assert comparison["regressed"] is True
    assert [team for team, row in comparison["teams"].items() if row["regressed"]] == ["billing"]
    billing = comparison["teams"]["billing"]
    assert billing["candidate"]["correct"] < billing["baseline"]["correct"]
    assert billing["baseline"]["total"] == billing["candidate"]["total"] == 5
    billing_flips = [f["ticket"] for f in comparison["flips"] if f["team"] == "billing"]
    assert billing_flips and len(billing_flips) == billing["baseline"]["correct"] - billing["candidate"]["correct"]
    assert 0 < comparison["mcnemar_p"] <= 1
    assert (comparison["baseline"]["run"], comparison["candidate"]["run"]) == (runs[v1.number], runs[v2.number])

    shown, _ = promptctl("eval", "show", str(runs[v2.number]))
    assert shown["scores"]["confusion"]["counts"]["billing"]["api-platform"] >= len(billing_flips)

    # Production gets v1 first (a finished run is the evidence for a first promotion).
    first, _ = promptctl(
        "change",
        "request",
        "--agent",
        agent.name,
        "--kind",
        "promote",
        "--to",
        str(v1.number),
        "--reason",
        "initial production version",
        "--evidence",
        f"run:{runs[v1.number]}",
        "--as",
        "rita",
    )
    promptctl("change", "approve", str(first["id"]), "--as", "victor")
    promptctl("change", "apply", str(first["id"]), "--as", "victor")
    assert Pin.objects.get(agent=agent, channel="production").version == v1

    evidence = f"comparison:{comparison['id']}"
    # Filing the regressed comparison without accepting it is refused at once, with the flag to use.
    _, refusal = promptctl(
        "change",
        "request",
        "--agent",
        agent.name,
        "--kind",
        "promote",
        "--to",
        str(v2.number),
        "--reason",
        "api-platform routing",
        "--evidence",
        evidence,
        "--as",
        "rita",
        expect_exit=1,
    )
    assert "flags a regression (billing)" in refusal and billing_flips[0] in refusal
    assert "--accept-regression" in refusal
    assert Pin.objects.get(agent=agent, channel="production").version == v1

    change, _ = promptctl(
        "change",
        "request",
        "--agent",
        agent.name,
        "--kind",
        "promote",
        "--to",
        str(v2.number),
        "--reason",
        "api-platform routing",
        "--evidence",
        evidence,
        "--accept-regression",
        "billing fix follows in v3",
        "--as",
        "rita",
    )
    assert change["approvals_required"] == agent.required_approvals + 1
    promptctl("change", "approve", str(change["id"]), "--as", "victor")
    _, refusal = promptctl("change", "apply", str(change["id"]), "--as", "victor", expect_exit=1)
    assert "not approved yet" in refusal
    assert Pin.objects.get(agent=agent, channel="production").version == v1
    promptctl("change", "approve", str(change["id"]), "--as", "wendy")
    applied, _ = promptctl("change", "apply", str(change["id"]), "--as", "victor")
    assert applied["pin"]["version"] == v2.number


def test_compare_refuses_different_contents_and_malformed_import(
    agent, versions, gating_set, generous_budget, tmp_path
):
    v1, v2 = versions
    baseline = execute_all(
        EvalRun.objects.get(pk=promptctl("eval", "run", "--agent", agent.name, "--version", str(v1.number))[0]["id"])
    )
    changed = tmp_path / "changed.jsonl"
    changed.write_text(TICKETS.read_text().replace('"priority": "P0"', '"priority": "P1"'))
    promptctl("testset", "import", str(changed), "--name", "support-tickets", "--as", "gina")  # the gatekeeper
    candidate = execute_all(
        EvalRun.objects.get(pk=promptctl("eval", "run", "--agent", agent.name, "--version", str(v2.number))[0]["id"])
    )
    assert baseline.testset_version_id != candidate.testset_version_id
    _, refusal = promptctl(
        "eval",
        "compare",
        "--agent",
        agent.name,
        "--baseline",
        str(v1.number),
        "--candidate",
        str(v2.number),
        expect_exit=1,
    )
    assert "different test set contents" in refusal
    _, refusal = promptctl(
        "eval",
        "compare",
        "--agent",
        agent.name,
        "--baseline-run",
        str(baseline.pk),
        "--candidate-run",
        str(candidate.pk),
        expect_exit=1,
    )
    assert "different test set contents" in refusal
    assert Comparison.objects.count() == 0

    bad = tmp_path / "bad.csv"
    bad.write_text("id,subject,body,team,priority\nA,s,b,auth,P1\nB,,b,auth,P1\nA,s,b,auth,P2\nC,s,b,auth\n")
    _, refusal = promptctl("testset", "import", str(bad), "--name", "bad", expect_exit=1)
    assert "3 bad line(s), so nothing was imported" in refusal
    assert "line 3: 'subject' is empty" in refusal
    assert "line 4: duplicate id 'A' (first on line 2)" in refusal
    assert "line 5: has 4 columns, the header has 5" in refusal
    listed, _ = promptctl("testset", "list")
    assert [row["name"] for row in listed] == ["support-tickets"]


def test_resume_and_cancel_from_the_cli(agent, versions, gating_set):
    data, _ = promptctl("eval", "run", "--agent", agent.name, "--version", str(versions[0].number), "--repeats", "2")
    assert data["status"] == "queued" and data["progress"]["total"] == 40
    resumed, _ = promptctl("eval", "resume", str(data["id"]))
    assert resumed["dispatched"] == 40
    cancelled, _ = promptctl("eval", "cancel", str(data["id"]))
    assert cancelled["status"] == "cancelled"
    _, refusal = promptctl("eval", "resume", str(data["id"]), expect_exit=1)
    assert "only queued or running runs can be resumed" in refusal
    _, refusal = promptctl("eval", "show", "999999", expect_exit=1)
    assert "no eval run #999999" in refusal
