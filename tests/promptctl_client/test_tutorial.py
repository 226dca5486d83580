"""The whole tutorial through the ``promptctl`` client alone, two people's tokens, against a running server.

Only what the tutorial assumes before its first command is set up through
services: the people (alice files, bob and carol review, a CI bot), the agent
with v1 promoted to production, and its gating test set. Every step after that
is a ``python -m promptctl_client`` process carrying one person's token: create
v2 from a file, score v1 and v2 on a real Celery worker, compare, file the
promotion accepting the billing regression, approve, apply, roll back. The
four-eyes rule is asked to break from the keyboard: alice approving her own
request and the bot approving are refused with one line, and a revoked token
is refused on its next call.
"""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.db import connection

from evals import services as eval_services
from promptctl import services
from promptctl.models import ChangeRequest
from promptctl.tutorial import TICKETS_FILE, V1_PROMPT, V2_PROMPT
from tests.evals.support import Workers
from tests.promptctl_client.support import Result, client_env, run_client
from tests.triage.support import PASSWORD, eval_run_now

pytestmark = pytest.mark.slow

AGENT = "ticket-triage"


def tutorial_before_its_first_command() -> dict:
    """The people with their tokens, the agent with v1 in production, the gating set: through services only."""
    people = {
        name: services.user_create(username=name, role=role, password=PASSWORD)
        for name, role in (
            ("alice", "requester"),
            ("bob", "reviewer"),
            ("carol", "reviewer"),
            ("admin", "admin"),
            ("ci-bot", "bot"),
        )
    }
    alice, bob, admin = people["alice"], people["bob"], people["admin"]
    agent = services.agent_create(name=AGENT, model="claude-sonnet-4-6", system_prompt=V1_PROMPT, actor=alice)
    imported = eval_services.testset_import(
        name="support-tickets",
        data=TICKETS_FILE.read_bytes(),
        filename=TICKETS_FILE.name,
        agent=agent,
        gating=True,
        actor=admin,
    )
    v1 = agent.versions.get(number=1)
    run = eval_run_now(version=v1, testset_version=imported.version, actor=alice)
    first = services.change_request_create(
        agent=agent, kind="promote", target_number=1, reason="tutorial v1", actor=alice, evidence_ref=f"run:{run.pk}"
    )
    services.change_request_approve(change=first, reviewer=bob)
    services.change_request_apply(change=first, actor=alice)
    tokens = {
        name: services.token_create(user=people[name], actor=people[name], name="laptop").secret
        for name in ("alice", "bob", "carol")
    }
    # A bot cannot log in to make its own token: an admin makes it (the CI recipe's way).
    tokens["ci-bot"] = services.token_create(user=people["ci-bot"], actor=admin, name="ci").secret
    return {"people": people, "agent": agent, "tokens": tokens}


def refused_in_one_line(result: Result, *words: str) -> None:
    assert result.code == 1, (result.code, result.out, result.err)
    assert result.out == "" and len(result.err.splitlines()) == 1 and result.err.startswith("error: "), result.err
    for word in words:
        assert word in result.err, result.err


def test_the_tutorial_runs_through_the_client_alone(transactional_db, emulator, settings, config_home, tmp_path):
    from config.children import api_server

    settings.PROMPTCTL_RATE_LIMITER = "off"
    world = tutorial_before_its_first_command()
    tokens, agent = world["tokens"], world["agent"]
    workers = Workers(emulator_url=django_settings.ANTHROPIC_BASE_URL)
    with api_server(
        settings_dict=connection.settings_dict,
        emulator_url=django_settings.ANTHROPIC_BASE_URL,
        extra_env={"PROMPTCTL_RATE_LIMITER": "off"},
    ) as server:
        workers.start(concurrency=4, PROMPTCTL_RATE_LIMITER="off")
        try:
            workers.wait_ready()

            def promptctl(person: str, *argv: str) -> Result:
                env = client_env(config_home, PROMPTCTL_URL=server.base_url, PROMPTCTL_TOKEN=tokens[person])
                return run_client(*argv, env=env, timeout=180)

            def ok(person: str, *argv: str, code: int = 0) -> Result:
                result = promptctl(person, *argv)
                assert result.code == code, (argv, result.code, result.out, result.err)
                return result

            def production() -> int:
                shown = ok("alice", "agent", "show", "--agent", AGENT, "--json").json()
                return shown["pins"]["production"]["version"]

            assert ok("alice", "whoami").out.startswith("alice (requester)")
            assert production() == 1

            # alice writes v2 (the routing rule) to a file and creates it.
            prompt_file = tmp_path / "v2.txt"
            prompt_file.write_text(V2_PROMPT, encoding="utf-8")
            created = ok("alice", "version", "create", "--agent", AGENT, "--system-file", str(prompt_file), "--json")
            assert created.json()["version"] == 2
            assert agent.versions.get(number=2).created_by == world["people"]["alice"]

            # Score v1 and v2 on the worker, following each run to its end; then compare them.
            runs = {}
            for number in (1, 2):
                scored = ok("alice", "--json", "eval", "run", "--agent", AGENT, "--version", str(number), "--wait", "--timeout", "150").json()  # fmt: skip
                assert scored["version"] == number and scored["status"] == "finished", scored
                assert scored["progress"]["done"] == scored["progress"]["total"] == 20
                runs[number] = scored["id"]
            compared = ok("alice", "eval", "compare", "--agent", AGENT, "--baseline", "1", "--candidate", "2", "--json", code=1)  # fmt: skip
            comparison = compared.json()
            assert (comparison["baseline"]["run"], comparison["candidate"]["run"]) == (runs[1], runs[2])
            assert comparison["regressed"] and "billing" in comparison["regressed_teams"], comparison

            # alice files the promotion, accepting the billing regression (so it needs one more approval).
            filed = ok(
                "alice", "change", "request", "--agent", AGENT, "--kind", "promote", "--to", "2",
                "--evidence", f"comparison:{comparison['id']}", "--json",
                "--accept-regression", "Billing re-routes misrouted tickets by hand this week.",
                "--reason", "Route usage questions to api-platform.",
            ).json()  # fmt: skip
            change_id = str(filed["id"])
            assert filed["approvals_required"] == 2 and filed["requested_by"] == "alice"

            # The four-eyes rule from the keyboard: alice cannot approve her own request, nor can the bot.
            refused_in_one_line(promptctl("alice", "change", "approve", change_id), "alice")
            refused_in_one_line(promptctl("ci-bot", "change", "approve", change_id), "bot")
            assert not ChangeRequest.objects.get(pk=change_id).approvals.exists()
            assert ok(
                "bob", "change", "approve", change_id, "--comment", "Accepting, with the manual re-route."
            ).out == (f"Approved change request #{change_id} (1/2); status pending.\n")
            # An approved-but-short request does not move the pin.
            refused_in_one_line(promptctl("alice", "change", "apply", change_id), "approv")
            assert production() == 1
            assert "(2/2); status approved." in ok("carol", "change", "approve", change_id, "--comment", "Agreed.").out
            applied = ok("alice", "change", "apply", change_id, "--json").json()
            assert applied["pin"]["version"] == 2
            assert production() == 2

            # Billing complains: roll back to v1, bob approves, alice applies.
            rollback = ok(
                "alice", "change", "request", "--agent", AGENT, "--kind", "rollback", "--to", "1",
                "--reason", "Billing tickets misrouted under v2.", "--json",
            ).json()  # fmt: skip
            rollback_id = str(rollback["id"])
            ok("bob", "change", "approve", rollback_id, "--comment", "Roll back.")
            ok("alice", "change", "apply", rollback_id)
            assert production() == 1

            shown = ok("alice", "change", "show", change_id).out
            assert "approve by bob" in shown and "approve by carol" in shown
            decided = [
                event
                for event in ok("alice", "audit", "events", "--agent", AGENT, "--limit", "100", "--json").json()
                if (event["after"] or {}).get("change") in (int(change_id), int(rollback_id))
                and "approv" in event["verb"]
            ]
            assert sorted(event["actor"] for event in decided) == ["bob", "bob", "carol"]
            assert ok("bob", "audit", "verify", "--json").json()["ok"] is True

            # alice's laptop is lost: her token is revoked (the client has no token commands; the service does
            # what the admin page's action does), and her next call is refused while bob's still works.
            alice = world["people"]["alice"]
            services.token_revoke(token=alice.personal_tokens.get(), actor=alice)
            refused_in_one_line(promptctl("alice", "change", "list"), "PROMPTCTL_TOKEN")
            assert ok("bob", "change", "list", "--json").json()[0]["id"] == int(rollback_id)
        finally:
            workers.stop_all()
