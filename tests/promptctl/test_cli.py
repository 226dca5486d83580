"""``manage.py promptctl`` end to end: human output, --json, and one-line refusals with exit 1."""

from __future__ import annotations

import json

import pytest

from tests.change_control_support import CHANNEL, V1, V2
from tests.cli_support import cli_run

run = cli_run


def run_json(*args: str):
    code, out, err = run("--json", *args)
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
def prompt_files(tmp_path):
    first, second = tmp_path / "v1.txt", tmp_path / "v2.txt"
    first.write_text(V1)
    second.write_text(V2)
    return first, second


@pytest.fixture
def people(db):
    admin = run_json("user", "add", "ada", "--role", "admin")  # the bootstrap: no superuser yet, no token
    assert admin["is_superuser"] is True
    assert run_json("user", "add", "rita", "--role", "requester", "--as", "ada")["groups"] == ["requesters"]
    assert run_json("user", "add", "victor", "--role", "reviewer", "--password", "pw-for-victor", "--as", "ada")[
        "groups"
    ] == ["reviewers"]


def test_the_whole_flow_from_the_command_line(emulator, people, prompt_files):
    first_file, second_file = prompt_files
    code, out, err = run(
        "agent",
        "create",
        "--name",
        "ticket-triage",
        "--model",
        "claude-sonnet-4-6",
        "--system-file",
        str(first_file),
        "--as",
        "rita",
    )
    assert code == 0, err
    assert "Created agent ticket-triage" in out

    created = run_json(
        "version", "create", "--agent", "ticket-triage", "--system-file", str(second_file), "--as", "rita"
    )
    versions = run_json("version", "list", "--agent", "ticket-triage")
    assert [v["version"] for v in versions][-1] == created["version"]
    assert {v["origin"] for v in versions} == {"promptctl"} and all(v["created_by"] == "rita" for v in versions)
    assert all(len(v["config_sha256"]) == 64 for v in versions)
    first, second = versions[0]["version"], versions[-1]["version"]

    diff = run_json("version", "diff", "--agent", "ticket-triage", str(first), str(second))
    assert any(line.startswith("+ROUTING RULE") for line in diff["system_prompt_diff"])

    request = run_json(
        "change",
        "request",
        "--agent",
        "ticket-triage",
        "--kind",
        "promote",
        "--to",
        str(first),
        "--channel",
        CHANNEL,
        "--reason",
        "baseline",
        "--as",
        "rita",
    )
    change_id = request["id"]
    assert request["status"] == "pending" and request["target_version"] == first

    code, _out, err = run("change", "approve", str(change_id), "--as", "rita")
    assert code == 1 and "four-eyes" in err and len(err.strip().splitlines()) == 1

    code, _out, err = run("change", "apply", str(change_id), "--as", "victor")
    assert code == 1 and "not approved yet (0 of 1 approvals)" in err

    assert run_json("change", "approve", str(change_id), "--as", "victor", "--comment", "ok")["status"] == "approved"
    applied = run_json("change", "apply", str(change_id), "--as", "victor")
    assert applied["pin"]["version"] == first and applied["change_request"]["status"] == "applied"

    status = run_json("agent", "status", "--agent", "ticket-triage")
    assert status["agent"]["name"] == "ticket-triage" and status["agent"]["remote_id"]
    assert status["pins"][CHANNEL] == {
        **status["pins"][CHANNEL],
        "version": first,
        "canary_version": None,
        "canary_percent": 0,
    }
    assert status["drift"] == []

    listed = run_json("change", "list", "--agent", "ticket-triage", "--status", "applied")
    assert [c["id"] for c in listed] == [change_id]

    code, out, _err = run("agent", "status", "--agent", "ticket-triage")
    assert code == 0 and f"Pin {CHANNEL}: v{first}" in out

    code, out, _err = run("audit", "verify")
    assert code == 0 and "verified" in out


def test_outside_changes_show_up_after_sync(emulator, people, prompt_files, remote_client):
    first_file, _second = prompt_files
    agent = run_json(
        "agent",
        "create",
        "--name",
        "ticket-triage",
        "--model",
        "claude-sonnet-4-6",
        "--system-file",
        str(first_file),
        "--as",
        "rita",
    )
    latest = agent["agent"]["latest_version"]
    outside = remote_client.beta.agents.update(
        agent["agent"]["remote_id"], system="Everything is billing.", version=latest
    )
    synced = run_json("agent", "sync", "--agent", "ticket-triage")
    assert [v["version"] for v in synced["new_versions"]] == [outside.version]
    assert synced["new_versions"][0]["origin"] == "outside" and synced["new_versions"][0]["created_by"] is None
    status = run_json("agent", "status", "--agent", "ticket-triage")
    assert [d["version"] for d in status["drift"]] == [outside.version]
    code, out, _err = run("agent", "status", "--agent", "ticket-triage")
    assert f"WARNING: version {outside.version} was changed outside promptctl" in out
    listed = run_json("version", "list", "--agent", "ticket-triage")
    assert [v["origin"] for v in listed] == ["promptctl", "outside"]


def test_refusals_are_one_line_with_exit_one(db, people, prompt_files):
    cases = [
        (("agent", "status", "--agent", "nope"), "No agent named 'nope'"),
        (("change", "approve", "999", "--as", "victor"), "No change request #999"),
        (("change", "approve", "1", "--as", "ghost"), "--as ghost needs ghost's own token"),
        (("user", "add", "rita", "--role", "reviewer", "--as", "ada"), "already exists"),
        (
            (
                "agent",
                "create",
                "--name",
                "x",
                "--model",
                "m",
                "--system-file",
                "/nonexistent/prompt.txt",
                "--as",
                "rita",
            ),
            "Cannot read the system prompt",
        ),
    ]
    for args, expected in cases:
        code, out, err = run(*args)
        assert code == 1, args
        assert expected in err and len(err.strip().splitlines()) == 1, err
        assert out == ""


def test_each_command_has_its_own_request_id_in_the_audit(db, people):
    from promptctl.models import AuditEvent

    ids = list(AuditEvent.objects.filter(verb="user.create").order_by("sequence").values_list("request_id", flat=True))
    assert len(ids) == 3 and all(len(i) == 32 for i in ids) and len(set(ids)) == 3
