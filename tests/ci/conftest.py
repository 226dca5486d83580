"""Fixtures for the CI recipe's tests: the tutorial agent with v1 in production, a CI bot, a real API server and worker."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from evals import services as eval_services
from promptctl import services as change_services
from tests.triage.support import V1, People, eval_run_now, move_pin

TICKETS = Path(__file__).resolve().parents[2] / "evals" / "data" / "support_tickets.jsonl"


@pytest.fixture
def tutorial(transactional_db, emulator, settings):
    """ticket-triage at v1 in production, gated on the tutorial's twenty tickets; ci-bot with its token."""
    settings.PROMPTCTL_RATE_LIMITER = "off"
    people = People()
    agent = change_services.agent_create(name="ticket-triage", model="claude-sonnet-4-6", system_prompt=V1, actor=people.requester)  # fmt: skip
    imported = eval_services.testset_import(
        name="support-tickets", data=TICKETS.read_text(), filename="support_tickets.jsonl",
        agent=agent, gating=True, actor=people.admin,
    )  # fmt: skip
    v1 = agent.versions.get(number=agent.latest_version_number)
    run = eval_run_now(version=v1, testset_version=imported.version, actor=people.requester)
    move_pin(agent, v1.number, people, evidence_ref=f"run:{run.pk}")
    bot = change_services.user_create(username="ci-bot", role="bot", actor=people.admin)
    secret = change_services.token_create(user=bot, actor=people.admin, name="ci", expires_in_days=None).secret
    return {"people": people, "agent": agent, "v1": v1.number, "bot": bot, "secret": secret}


@pytest.fixture
def server(tutorial):
    """The API (uvicorn, the deployment's command) and a Celery worker, on the test database and emulator."""
    from config.children import WorkerProcess, api_server, child_env

    env = {"PROMPTCTL_RATE_LIMITER": "off"}
    worker_env = child_env(settings_dict=connection.settings_dict, emulator_url=django_settings.ANTHROPIC_BASE_URL)
    with (
        api_server(
            settings_dict=connection.settings_dict, emulator_url=django_settings.ANTHROPIC_BASE_URL, extra_env=env
        ) as running,
        WorkerProcess(env={**worker_env, **env}, concurrency=4) as worker,
    ):
        running.worker = worker
        yield running
