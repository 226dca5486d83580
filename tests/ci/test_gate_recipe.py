"""The CI recipe (docs/CI.md): ci/promptctl_gate.py as the workflow runs it, against a real API server and worker.

The script is a real process calling the real ``promptctl`` client with a
bot's token; the server is uvicorn on the test database with a Celery worker,
both on the emulator. The tutorial's v2 must fail the check (exit 1) with the
billing regression named, and still be filed for reviewers, whom the bot
cannot replace; a harmless edit passes (exit 0).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from evals.models import Comparison
from promptctl import services as change_services
from promptctl.models import ChangeRequest
from tests.promptctl_client.support import Result, client_env, run_client
from tests.triage.support import V1, V2

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "ci" / "promptctl_gate.py"
WORKFLOW = ROOT / ".github" / "workflows" / "promptctl-gate.yml"
PR_REF = "acme/support#42"


def gate_run(env: dict[str, str], *, timeout: float = 180) -> Result:
    process = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout
    )
    return Result(process.returncode, process.stdout, process.stderr)


def gate_env(tmp_path: Path, *, url: str, token: str, prompt: str) -> dict[str, str]:
    prompt_file = tmp_path / "ticket-triage.txt"
    prompt_file.write_text(prompt)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return client_env(
        home,
        PROMPTCTL_URL=url,
        PROMPTCTL_TOKEN=token,
        AGENT="ticket-triage",
        PROMPT_FILE=str(prompt_file),
        PR_REF=PR_REF,
        GITHUB_STEP_SUMMARY=str(tmp_path / "step-summary.md"),
        GATE_TIMEOUT="120",
    )


@pytest.mark.slow
def test_the_tutorials_v2_fails_the_check_and_is_not_filed(tutorial, server, tmp_path):
    env = gate_env(tmp_path, url=server.base_url, token=tutorial["secret"], prompt=V2)
    result = gate_run(env)
    assert result.code == 1, result.out + result.err + server.worker.log()[-2000:]
    agent = tutorial["agent"]
    agent.refresh_from_db()
    v2 = agent.latest_version_number
    assert agent.versions.get(number=v2).created_by == tutorial["bot"]

    summary = (tmp_path / "step-summary.md").read_text()
    assert summary in result.out
    assert f"→ ticket-triage v{v2}" in summary and f"Compared with production v{tutorial['v1']}" in summary
    assert "**REGRESSED: billing**" in summary
    billing = next(line for line in summary.splitlines() if line.startswith("| billing |"))
    assert billing.endswith("| **REGRESSED** |") and "| 5/5 |" in billing

    # promptctl refuses to file a promotion whose regression it does not accept (it could never be
    # applied), and accepting one is a person's call: the bot files nothing, the summary says what to do.
    assert not ChangeRequest.objects.filter(requested_by=tutorial["bot"]).exists()
    comparison = Comparison.objects.latest("pk")
    assert comparison.regressed and comparison.baseline_run.agent_version.number == tutorial["v1"]
    assert "No change request was filed" in summary and "--accept-regression REASON" in summary
    assert f"--evidence comparison:{comparison.pk}" in summary
    assert agent.pins.get(channel="production").version.number == tutorial["v1"]


@pytest.mark.slow
def test_a_harmless_edit_passes_and_a_rerun_replaces_its_request(tutorial, server, tmp_path):
    # Production's own prompt: nothing is created, scored or filed.
    same = gate_run(gate_env(tmp_path, url=server.base_url, token=tutorial["secret"], prompt=V1))
    assert same.code == 0, same.out + same.err
    assert f"is production's ticket-triage v{tutorial['v1']}: nothing to promote." in same.out
    assert not ChangeRequest.objects.filter(requested_by=tutorial["bot"]).exists()

    env = gate_env(tmp_path, url=server.base_url, token=tutorial["secret"], prompt=V1 + "\nAnswer with the JSON line only.")  # fmt: skip
    first = gate_run(env)
    assert first.code == 0, first.out + first.err + server.worker.log()[-2000:]
    assert "**No team regressed.**" in first.out and "REGRESSED" not in first.out
    filed = ChangeRequest.objects.get(requested_by=tutorial["bot"])
    assert filed.requested_by == tutorial["bot"] and filed.status == ChangeRequest.Status.PENDING
    assert not Comparison.objects.get(pk=filed.evidence_id).regressed

    # The job re-run on the same commit: the version is reused, the earlier request withdrawn, a new one filed.
    again = gate_run(env)
    assert again.code == 0, again.out + again.err
    assert "already there" in again.out and f"withdrew earlier request(s) #{filed.pk} of {PR_REF}" in again.out
    filed.refresh_from_db()
    assert filed.status == ChangeRequest.Status.WITHDRAWN
    latest = ChangeRequest.objects.latest("pk")
    assert latest.pk != filed.pk and latest.status == ChangeRequest.Status.PENDING
    assert latest.target_version_id == filed.target_version_id

    # The bot's token cannot approve what it filed (nor anything else) ...
    refused = run_client("change", "approve", str(latest.pk), env=env)
    assert refused.code == 1 and refused.err.startswith("error: ") and "bot" in refused.err
    assert not latest.approvals.exists()
    # ... a reviewer approves it, and anyone with apply rights (here the bot) moves the pin.
    change_services.change_request_approve(change=latest, reviewer=tutorial["people"].reviewer)
    applied = run_client("change", "apply", str(latest.pk), env=env)
    assert applied.code == 0, applied.err
    assert tutorial["agent"].pins.get(channel="production").version_id == latest.target_version_id


def test_missing_settings_are_named_in_one_line(tmp_path):
    env = client_env(tmp_path, PROMPTCTL_URL="http://127.0.0.1:9", AGENT="ticket-triage")
    result = gate_run(env, timeout=30)
    assert result.code == 2 and result.out == ""
    assert result.err == "promptctl-gate: set PROMPTCTL_TOKEN, PROMPT_FILE (docs/CI.md lists the settings)\n"


def test_an_unreachable_server_fails_the_gate_with_the_clients_line(tmp_path):
    env = gate_env(tmp_path, url="http://127.0.0.1:9", token="pctlu_x", prompt=V1)
    result = gate_run(env, timeout=60)
    assert result.code == 2 and len(result.err.splitlines()) == 1
    assert result.err.startswith("promptctl-gate: whoami: ") and "PROMPTCTL_URL" in result.err


def test_the_example_workflow_runs_the_gate_on_the_prompt_file():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    trigger = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    paths = trigger["pull_request"]["paths"]
    (job,) = workflow["jobs"].values()
    gate = next(step for step in job["steps"] if "ci/promptctl_gate.py" in step.get("run", ""))
    assert gate["run"] == "python ci/promptctl_gate.py"
    assert gate["env"]["PROMPT_FILE"] in paths
    assert gate["env"]["PROMPTCTL_URL"] == "${{ secrets.PROMPTCTL_URL }}"
    assert gate["env"]["PROMPTCTL_TOKEN"] == "${{ secrets.PROMPTCTL_TOKEN }}"
    assert {"AGENT", "PR_REF", "GATE_SUMMARY_FILE"} <= set(gate["env"])
    steps = job["steps"]
    install = next(step for step in steps if "pip install" in step.get("run", ""))
    assert steps.index(install) < steps.index(gate)
    comment = steps[steps.index(gate) + 1]
    assert comment["if"] == "always()" and "gh pr comment" in comment["run"]
    assert workflow["permissions"]["pull-requests"] == "write"
