"""The client's own behaviour, against a canned-JSON stand-in: argv, --json, config file, wording, exit statuses.

Run as a real process (``python -m promptctl_client``), as people run it.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys

from tests.promptctl_client.support import BASE_DIR, client_env, run_client

CHANGE = {
    "id": 7,
    "agent": "ticket-triage",
    "channel": "production",
    "kind": "promote",
    "base_version": 1,
    "target_version": 2,
    "approvals": 0,
    "approvals_required": 1,
    "status": "pending",
    "requested_by": "rita",
    "requested_at": "2026-11-30T19:10:26.123456+00:00",
    "reason": "better billing",
}
ME = {
    "username": "rita",
    "roles": ["requester"],
    "token": {"name": "laptop", "prefix": "pctlu_abcd", "read_only": False, "expires_at": None},
}
SERVER_MODULES = ("django", "anthropic", "promptctl.", "evals", "triage", "managed_agents", "config.")


def test_help_imports_nothing_of_the_server():
    process = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "promptctl_client", "--help"],
        capture_output=True,
        text=True,
        cwd=BASE_DIR,
        timeout=30,
    )
    assert process.returncode == 0 and "change" in process.stdout and "login" in process.stdout
    imported = [line.split("|")[-1].strip() for line in process.stderr.splitlines() if line.startswith("import time:")]
    assert "promptctl_client.commands.changes" in imported
    offending = [name for name in imported if name.startswith(SERVER_MODULES) or name in ("promptctl", "config")]
    assert offending == []
    # --help needs no HTTP: urllib.request is imported only for a call.
    assert "urllib.request" not in imported and "http.client" not in imported


def test_json_anywhere_on_the_line_prints_the_servers_json(canned_api, canned_env):
    canned_api.routes[("GET", "/api/v1/changes")] = (200, [CHANGE])
    outputs = [
        run_client(*argv, env=canned_env)
        for argv in (
            ["--json", "change", "list", "--agent", "ticket-triage"],
            ["change", "--json", "list", "--agent", "ticket-triage"],
            ["change", "list", "--agent", "ticket-triage", "--json"],
        )
    ]
    assert [r.code for r in outputs] == [0, 0, 0]
    assert all(r.json() == [CHANGE] for r in outputs)
    assert canned_api.requests[0]["path"] == "/api/v1/changes?agent=ticket-triage"
    assert canned_api.requests[0]["authorization"] == "Bearer pctlu_test-token"
    human = run_client("change", "list", env=canned_env)
    lines = human.out.splitlines()
    assert human.code == 0 and lines[0].split() == [
        "id", "agent", "channel", "kind", "from", "to", "approvals", "status", "requested", "by", "requested", "at",
    ]  # fmt: skip
    assert lines[2].split()[:8] == ["7", "ticket-triage", "production", "promote", "1", "2", "0/1", "pending"]
    assert "2026-11-30T19:10:26" in lines[2] and ".123456" not in lines[2]


def test_refusals_are_one_line_on_stderr_with_exit_1(canned_api, canned_env):
    canned_api.routes[("POST", "/api/v1/changes/7/approve")] = (
        403,
        {"detail": "rita filed change request #7 and may not approve it: a second person must.", "errors": []},
    )
    refused = run_client("change", "approve", "7", "--comment", "lgtm", env=canned_env)
    assert refused.code == 1 and refused.out == ""
    assert refused.err == "error: rita filed change request #7 and may not approve it: a second person must.\n"
    assert canned_api.requests[-1]["body"] == {"comment": "lgtm"}
    # A 422 with a list of field errors is still one line.
    canned_api.routes[("POST", "/api/v1/changes")] = (
        422,
        {"detail": "Invalid input", "errors": [{"field": "reason", "message": "too long"}]},
    )
    invalid = run_client("change", "request", "--agent", "a", "--kind", "promote", "--reason", "x", env=canned_env)
    assert invalid.code == 1 and invalid.err == "error: Invalid input\n"


def test_bad_token_says_where_it_came_from(canned_api, canned_env):
    canned_api.routes[("GET", "/api/v1/me")] = (401, {"detail": "That token was revoked on 2026-11-30.", "errors": []})
    result = run_client("whoami", env=canned_env)
    assert result.code == 1 and len(result.err.splitlines()) == 1
    assert result.err.startswith("error: That token was revoked on 2026-11-30. (token from PROMPTCTL_TOKEN;")
    assert "promptctl login" in result.err


def test_unreachable_or_foreign_server_names_promptctl_url(canned_api, config_home):
    env = client_env(config_home, PROMPTCTL_URL="http://127.0.0.1:9", PROMPTCTL_TOKEN="t")
    down = run_client("agent", "list", env=env)
    assert down.code == 1 and len(down.err.splitlines()) == 1
    assert "Cannot reach the promptctl API at http://127.0.0.1:9 (PROMPTCTL_URL)" in down.err
    assert "Is the server running" in down.err
    canned_api.routes[("GET", "/api/v1/agents")] = (502, "<html>Bad Gateway</html>")
    env["PROMPTCTL_URL"] = canned_api.url + "/api/v1/"  # the prefix is accepted and not doubled
    proxy = run_client("agent", "list", env=env)
    assert proxy.code == 1 and canned_api.requests[-1]["path"] == "/api/v1/agents"
    assert "HTTP 502 and no promptctl JSON: is PROMPTCTL_URL the promptctl server's address" in proxy.err
    unset = run_client("agent", "list", env=client_env(config_home))
    assert unset.code == 1 and "export PROMPTCTL_URL and PROMPTCTL_TOKEN, or run `promptctl login" in unset.err


def test_usage_errors_exit_2(canned_env):
    assert run_client("change", "approve", env=canned_env).code == 2  # no id
    assert run_client("change", "approve", "seven", env=canned_env).code == 2
    assert run_client("eval", "launch", env=canned_env).code == 2
    assert run_client(env=canned_env).code == 2
    assert run_client("change", "reject", "7", env=canned_env).code == 2  # --comment is required


def test_login_stores_a_private_config_and_logout_removes_it(canned_api, config_home):
    canned_api.routes[("GET", "/api/v1/me")] = (200, ME)
    env = client_env(config_home)
    result = run_client("login", "--url", canned_api.url + "/", env=env, stdin="pctlu_secret-one\n")
    assert result.code == 0, result.err
    assert "Logged in to" in result.out and "rita (requester)" in result.out and "0600" in result.out
    assert canned_api.requests[-1]["authorization"] == "Bearer pctlu_secret-one"
    path = config_home / "promptctl" / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text()) == {"url": canned_api.url, "token": "pctlu_secret-one"}
    # The stored settings are used; a variable wins over the file, one at a time.
    assert run_client("whoami", env=env).code == 0
    assert canned_api.requests[-1]["authorization"] == "Bearer pctlu_secret-one"
    run_client("whoami", env={**env, "PROMPTCTL_TOKEN": "pctlu_from-env"})
    assert canned_api.requests[-1]["authorization"] == "Bearer pctlu_from-env"
    elsewhere = run_client("whoami", env={**env, "PROMPTCTL_URL": "http://127.0.0.1:9"})
    assert elsewhere.code == 1 and "http://127.0.0.1:9 (PROMPTCTL_URL)" in elsewhere.err
    out = run_client("logout", env=env)
    assert out.code == 0 and not path.exists()
    assert run_client("whoami", env=env).code == 1


def test_login_with_a_refused_token_stores_nothing(canned_api, config_home):
    canned_api.routes[("GET", "/api/v1/me")] = (401, {"detail": "Unknown token.", "errors": []})
    result = run_client("login", "--url", canned_api.url, env=client_env(config_home), stdin="pctlu_wrong\n")
    assert result.code == 1 and result.err.startswith("error: Unknown token.")
    assert not (config_home / "promptctl" / "config.json").exists()
    empty = run_client("login", "--url", canned_api.url, env=client_env(config_home), stdin="\n")
    assert empty.code == 1 and "No token given" in empty.err


def test_system_file_is_checked_before_anything_is_sent(canned_api, canned_env, tmp_path):
    canned_api.routes[("POST", "/api/v1/agents/ticket-triage/versions")] = (
        201,
        {"version": 3, "config_sha256": "ab" * 32, "origin": "promptctl"},
    )
    cases = {
        "nul.txt": (b"route\x00me", "holds a NUL character (\\u0000) at character 5"),
        "latin1.txt": (b"caf\xe9\n", "is not UTF-8 text: byte 3 (line 1) is 0xe9"),
        "big.txt": (b"x" * 100_001, "is larger than the 100 KB cap"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        result = run_client(
            "version", "create", "--agent", "ticket-triage", "--system-file", str(tmp_path / name), env=canned_env
        )
        assert result.code == 1 and message in result.err, result.err
    assert canned_api.requests == []
    (tmp_path / "ok.txt").write_bytes("\ufeffYou triage tickets. ✓".encode())
    result = run_client(
        "version", "create", "--agent", "ticket-triage", "--system-file", str(tmp_path / "ok.txt"), env=canned_env
    )
    assert result.code == 0 and result.out == f"Created version 3 of ticket-triage (config sha256 {'ab' * 6}).\n"
    assert canned_api.requests[-1]["body"] == {"system_prompt": "You triage tickets. ✓"}


def _run(status: str, done: int) -> dict:
    return {
        "id": 5,
        "agent": "ticket-triage",
        "version": 2,
        "testset": "gate",
        "testset_version": 1,
        "repeats": 1,
        "status": status,
        "status_reason": "the workers stopped" if status == "failed" else "",
        "wall_seconds": None,
        "progress": {"run": 5, "status": status, "done": done, "total": 4, "invalid": 0, "errors": 0},
        "label_warnings": [],
    }


def test_eval_run_wait_follows_the_run_and_exits_1_when_it_fails(canned_api, canned_env):
    canned_api.routes[("POST", "/api/v1/runs")] = (201, _run("queued", 0))
    canned_api.routes[("GET", "/api/v1/runs/5")] = (200, _run("failed", 2))
    result = run_client("eval", "run", "--agent", "ticket-triage", "--version", "2", "--wait", env=canned_env)
    assert result.code == 1
    assert canned_api.requests[0]["body"] == {"agent": "ticket-triage", "version": 2, "repeats": 1}
    # Not a terminal: plain lines, no carriage returns.
    assert result.err.splitlines() == ["run #5: 0/4 queued", "run #5: 2/4 failed"] and "\r" not in result.err
    assert "run #5: ticket-triage v2 on gate v1 ×1 — failed (2/4)" in result.out
    canned_api.routes[("GET", "/api/v1/runs/5")] = (200, _run("running", 3))
    slow = run_client("eval", "run", "--agent", "t", "--version", "2", "--wait", "--timeout", "0.6", env=canned_env)
    assert slow.code == 1 and "error: Run #5 is still running after 0.6s" in slow.err


def test_audit_verify_exits_1_when_the_chain_is_broken(canned_api, canned_env):
    broken = {
        "ok": False,
        "message": "Audit chain broken at #12: MAC mismatch",
        "findings": [{"sequence": 12, "name": "MAC mismatch", "detail": "the event was edited"}],
        "coverage": "checked 40 events",
        "notes": [],
    }
    canned_api.routes[("GET", "/api/v1/audit/verify")] = (200, broken)
    human = run_client("audit", "verify", env=canned_env)
    assert human.code == 1 and "#12: MAC mismatch: the event was edited" in human.out
    assert human.err == "error: Audit chain broken at #12: MAC mismatch\n"
    machine = run_client("audit", "verify", "--json", env=canned_env)
    assert machine.code == 1 and machine.json() == broken


def test_eval_run_wait_draws_a_bar_on_a_terminal(canned_api, canned_env):
    import os
    import pty

    canned_api.routes[("POST", "/api/v1/runs")] = (201, _run("queued", 0))
    canned_api.routes[("GET", "/api/v1/runs/5")] = (200, {**_run("finished", 4), "wall_seconds": 1.25})
    leader, follower = pty.openpty()
    try:
        process = subprocess.run(
            [sys.executable, "-m", "promptctl_client", "eval", "run", "--agent", "t", "--version", "2", "--wait"],
            env={**canned_env, "COLUMNS": "100"},
            cwd=BASE_DIR,
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
            timeout=30,
        )
        os.close(follower)
        drawn = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(leader)
    assert process.returncode == 0
    # A terminal turns "\n" into "\r\n": the frames are what lies between carriage returns.
    frames = [frame.strip() for frame in drawn.decode().split("\r") if frame.strip()]
    assert frames[0] == "run #5 [------------------------------] 0/4 queued"
    assert frames[-1] == "run #5 [##############################] 4/4 finished"
    assert "— finished (4/4, 1.2s)" in process.stdout


def test_an_answer_of_an_unknown_shape_is_one_line_not_a_traceback(canned_api, canned_env):
    canned_api.routes[("GET", "/api/v1/changes/7")] = (200, {"id": 7})
    result = run_client("change", "show", "7", env=canned_env)
    assert result.code == 1 and len(result.err.splitlines()) == 1 and "Traceback" not in result.err
    assert result.err.startswith("error: the server's answer lacks what this client expects (KeyError: 'base_version')")
