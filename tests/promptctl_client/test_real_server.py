"""The client against the real API: a uvicorn process on the test database, the emulator, personal tokens.

What counts here is what the person at the keyboard can and cannot do: the
token says who acts (there is no ``--as``), the four-eyes rule holds, a
read-only or revoked token is refused with one line, and the JSON is the
same as ``python manage.py promptctl --json`` prints for the same command.
"""

from __future__ import annotations

import io
import json

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import connection

from promptctl import services as change_services
from promptctl.models import ChangeRequest
from tests.promptctl_client.support import client_env, run_client
from tests.triage.support import V1, People, ProductionAgent

pytestmark = pytest.mark.slow


def manage_json(*args: str):
    out = io.StringIO()
    try:
        call_command("promptctl", "--json", *args, stdout=out, stderr=io.StringIO())
    except SystemExit:
        pass
    return json.loads(out.getvalue())


@pytest.fixture
def world(transactional_db, emulator, settings):
    settings.PROMPTCTL_RATE_LIMITER = "off"
    people = People()
    production = ProductionAgent(people, default=False)
    production.promote_with_comparison(production.new_version(V1 + "\nAnswer with the JSON line only."))
    tokens = {
        user.username: change_services.token_create(user=user, actor=user, name="laptop").secret
        for user in (people.requester, people.reviewer)
    }
    return production, tokens


@pytest.fixture
def server(world):
    from config.children import api_server

    env = {"PROMPTCTL_RATE_LIMITER": "off"}
    with api_server(
        settings_dict=connection.settings_dict, emulator_url=django_settings.ANTHROPIC_BASE_URL, extra_env=env
    ) as running:
        yield running


def test_the_token_is_the_actor_and_four_eyes_hold(world, server, config_home, tmp_path):
    production, tokens = world
    agent = production.agent
    rita = client_env(config_home)
    victor = client_env(config_home, PROMPTCTL_URL=server.base_url, PROMPTCTL_TOKEN=tokens["victor"])

    login = run_client("login", "--url", server.base_url, env=rita, stdin=tokens["rita"] + "\n")
    assert login.code == 0, login.err
    assert "as rita (requester); token 'laptop'" in login.out
    assert run_client("whoami", env=rita).out.startswith("rita (requester)")

    (tmp_path / "v3.txt").write_text("You triage tickets.\nRoute by the customer's actual problem.\n")
    created = run_client("--json", "version", "create", "--agent", agent.name, "--system-file", str(tmp_path / "v3.txt"), env=rita)  # fmt: skip
    assert created.code == 0, created.err
    v3 = created.json()["version"]
    assert agent.versions.get(number=v3).created_by == production.people.requester

    # v2 is pinned; a rollback to v1 needs no eval evidence: file it as rita, refuse her own approval.
    filed = run_client("change", "request", "--agent", agent.name, "--kind", "rollback", "--to", str(production.v1), "--reason", "try the client", env=rita)  # fmt: skip
    assert filed.code == 0, filed.err
    change = ChangeRequest.objects.latest("pk")
    assert filed.out.startswith(f"Filed change request #{change.pk}: rollback {agent.name}/production")
    assert change.requested_by == production.people.requester
    own = run_client("change", "approve", str(change.pk), env=rita)
    assert own.code == 1 and own.out == "" and len(own.err.splitlines()) == 1 and own.err.startswith("error: ")
    change.refresh_from_db()
    assert change.status == ChangeRequest.Status.PENDING and not change.approvals.exists()
    # ... and a dishonest --as is not even an option.
    assert run_client("change", "approve", str(change.pk), "--as", "victor", env=rita).code == 2

    approved = run_client("change", "approve", str(change.pk), "--comment", "fine", env=victor)
    assert approved.code == 0, approved.err
    assert approved.out == f"Approved change request #{change.pk} (1/1); status approved.\n"
    assert change.approvals.get().reviewer == production.people.reviewer
    applied = run_client("--json", "change", "apply", str(change.pk), env=victor)
    assert applied.code == 0, applied.err
    assert applied.json()["pin"]["version"] == production.v1
    assert agent.pins.get(channel="production").change_id == change.pk

    # The same JSON as the operator's CLI prints, for the same reads.
    for argv in (
        ["change", "list"],
        ["agent", "list"],
        ["version", "list", "--agent", agent.name],
        ["testset", "list"],
    ):
        assert run_client("--json", *argv, env=rita).json() == manage_json(*argv), argv
    shown = run_client("change", "show", str(change.pk), env=rita)
    assert "approve by victor at" in shown.out and ": fine" in shown.out
    pins = run_client("pin", "list", "--agent", agent.name, "--json", env=rita).json()
    assert pins["production"]["version"] == production.v1 and pins["production"]["change_request"] == change.pk
    diff = run_client("version", "diff", "--agent", agent.name, str(production.v1), str(v3), env=rita)
    assert diff.code == 0 and "+Route by the customer's actual problem." in diff.out

    # The trail names the token's user for what came through the API.
    events = run_client("audit", "events", "--agent", agent.name, "--limit", "20", "--json", env=rita).json()
    decided = [e for e in events if (e["after"] or {}).get("change") == change.pk and "approv" in e["verb"]]
    assert [e["actor"] for e in decided] == ["victor"]
    human = run_client("audit", "events", "--agent", agent.name, "--limit", "3", env=rita).out.splitlines()
    assert human[0].split() == ["sequence", "at", "actor", "verb", "object", "token"] and len(human) == 5
    verify = run_client("audit", "verify", "--json", env=rita)
    assert verify.code == (0 if verify.json()["ok"] else 1)

    # Unknown names come back as the server's one line; a revoked token is refused at once.
    missing = run_client("agent", "show", "--agent", "nobody", env=rita)
    assert missing.code == 1 and "nobody" in missing.err and len(missing.err.splitlines()) == 1
    token = production.people.reviewer.personal_tokens.get()
    change_services.token_revoke(token=token, actor=production.people.reviewer)
    revoked = run_client("whoami", env=victor)
    assert revoked.code == 1 and "(token from PROMPTCTL_TOKEN;" in revoked.err


def test_a_read_only_token_reads_but_cannot_write(world, server, config_home):
    production, _ = world
    people = production.people
    read_only = change_services.token_create(user=people.requester, actor=people.requester, name="ro", read_only=True)
    env = client_env(config_home, PROMPTCTL_URL=server.base_url, PROMPTCTL_TOKEN=read_only.secret)
    assert run_client("change", "list", env=env).code == 0
    refused = run_client("change", "request", "--agent", production.agent.name, "--kind", "rollback", "--to", str(production.v1), "--reason", "x", env=env)  # fmt: skip
    assert refused.code == 1 and refused.err.startswith("error: ") and len(refused.err.splitlines()) == 1
    assert "read-only" in refused.err.lower() or "read only" in refused.err.lower()
    assert not ChangeRequest.objects.filter(reason="x").exists()


def test_eval_run_wait_follows_a_real_worker(world, server, config_home):
    from config.children import WorkerProcess, child_env

    production, tokens = world
    env = client_env(config_home, PROMPTCTL_URL=server.base_url, PROMPTCTL_TOKEN=tokens["rita"])
    worker_env = child_env(settings_dict=connection.settings_dict, emulator_url=django_settings.ANTHROPIC_BASE_URL)
    worker_env["PROMPTCTL_RATE_LIMITER"] = "off"
    with WorkerProcess(env=worker_env, concurrency=2) as worker:
        result = run_client("eval", "run", "--agent", production.agent.name, "--version", str(production.v1), "--wait", "--timeout", "90", env=env, timeout=120)  # fmt: skip
        assert result.code == 0, result.err + worker.log()[-2000:]
    lines = result.err.splitlines()
    assert lines[-1].endswith("finished") and "\r" not in result.err
    assert "— finished (4/4" in result.out and "confusion (rows: label, columns: answer)" in result.out
    run_id = int(result.out.split("#", 1)[1].split(":", 1)[0])
    assert run_client("--json", "eval", "show", str(run_id), env=env).json() == manage_json("eval", "show", str(run_id))
    compared = run_client("eval", "compare", "--agent", production.agent.name, "--baseline-run", str(production.runs[production.v1].pk), "--candidate-run", str(run_id), env=env)  # fmt: skip
    assert compared.code in (0, 1) and "exact McNemar p" in compared.out
    assert compared.code == (1 if "REGRESSED:" in compared.out else 0)
