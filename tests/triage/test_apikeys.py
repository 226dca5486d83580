"""API keys: created once, stored only hashed, scoped to agents, revocable with immediate effect."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.db import connection

from promptctl.errors import DomainError
from tests.cli_support import token_env_for_as
from tests.triage.support import Api, ticket
from triage import services
from triage.models import ApiKey, ApiKeyUsage


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        with token_env_for_as(args):
            call_command("promptctl", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exit_:
        code = exit_.code or 0
    return code, out.getvalue(), err.getvalue()


def every_stored_text() -> str:
    """Every text value in the key tables and their history, as the database holds them."""
    chunks = []
    with connection.cursor() as cursor:
        for table in (ApiKey._meta.db_table, ApiKey.history.model._meta.db_table, ApiKeyUsage._meta.db_table):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                chunks.extend(str(value) for value in row)
    return "\n".join(chunks)


def test_cli_creates_a_key_printed_once_and_stored_only_as_a_hash(production, people):
    code, out, err = run_cli(
        "--json", "apikey", "create", "--name", "helpdesk", "--agent", "ticket-triage", "--as", "ada"
    )
    assert code == 0, err
    created = json.loads(out)
    secret = created["secret"]
    assert secret.startswith("pctl_") and len(secret) >= 40 and created["prefix"] == secret[:12]
    key = ApiKey.objects.get(name="helpdesk")
    assert list(key.agents.values_list("name", flat=True)) == ["ticket-triage"] and not key.all_agents
    stored = every_stored_text()
    assert secret not in stored and secret[12:] not in stored and secret[12:24] not in stored
    assert key.key_hash in stored and len(key.key_hash) == 64
    # The key works, and its use is recorded.
    response = Api(secret).post("/triage", ticket(0))
    assert response.status_code == 200
    assert ApiKeyUsage.objects.get(key=key).last_used_at is not None
    # Listing never shows the secret.
    code, out, _ = run_cli("--json", "apikey", "list")
    assert code == 0 and secret not in out and json.loads(out)[0]["prefix"] == secret[:12]


def test_revoked_key_is_refused_on_its_next_request(production, people):
    secret = services.api_key_create(name="short-lived", actor=people.admin, all_agents=True).secret
    client = Api(secret)
    assert client.post("/triage", ticket(1)).status_code == 200
    code, out, err = run_cli("apikey", "revoke", "short-lived", "--as", "ada")
    assert code == 0 and "next request will be refused" in out, err
    refused = client.post("/triage", ticket(1))
    assert refused.status_code == 401
    assert "was revoked on" in refused.json()["detail"]
    assert client.get("/triage/jobs/00000000-0000-0000-0000-000000000000").status_code == 401
    code, _, err = run_cli("apikey", "revoke", "short-lived", "--as", "ada")
    assert code == 1 and "already revoked" in err


@pytest.mark.slow
def test_revocation_reaches_a_running_server_process_at_once(transactional_db, emulator, settings):
    """No process caches keys: a uvicorn worker refuses a key revoked a moment ago by another process."""
    import requests
    from django.conf import settings as live_settings

    from config.children import api_server
    from tests.triage.support import People, ProductionAgent

    settings.PROMPTCTL_RATE_LIMITER = "off"
    people = People()
    ProductionAgent(people)
    issued = services.api_key_create(name="live", actor=people.admin, all_agents=True)
    with api_server(settings_dict=connection.settings_dict, emulator_url=live_settings.ANTHROPIC_BASE_URL) as server:
        headers = {"Authorization": f"Bearer {issued.secret}"}
        assert (
            requests.post(server.base_url + "/api/v1/triage", json=ticket(0), headers=headers, timeout=30).status_code
            == 200
        )
        services.api_key_revoke(key=issued.key, actor=people.admin)
        response = requests.post(server.base_url + "/api/v1/triage", json=ticket(0), headers=headers, timeout=30)
        assert response.status_code == 401 and "revoked" in response.json()["detail"]


def test_key_creation_rules(production, people):
    with pytest.raises(DomainError, match="may not create API keys"):
        services.api_key_create(name="x", actor=people.requester, all_agents=True)
    with pytest.raises(DomainError, match="No agent named 'nope'"):
        services.api_key_create(name="x", actor=people.admin, agent_names=["nope"])
    with pytest.raises(DomainError, match="Say which agents"):
        services.api_key_create(name="x", actor=people.admin)
    services.api_key_create(name="twice", actor=people.admin, all_agents=True)
    with pytest.raises(DomainError, match="already exists"):
        services.api_key_create(name="twice", actor=people.admin, all_agents=True)
    code, _, err = run_cli("apikey", "create", "--name", "bad name!", "--as", "ada")
    assert code == 1 and "not allowed" in err
    code, _, err = run_cli("apikey", "revoke", "twice", "--as", "rita")
    assert code == 1 and "may not revoke API keys" in err
    assert ApiKey.objects.get(name="twice").revoked_at is None


def test_key_history_records_who_revoked(production, people):
    issued = services.api_key_create(name="audited", actor=people.admin, all_agents=True)
    services.api_key_revoke(key=issued.key, actor=people.admin)
    history = list(ApiKey.history.filter(id=issued.key.pk).order_by("history_date"))
    assert [h.history_type for h in history] == ["+", "~"]
    assert history[-1].history_user == people.admin and history[-1].revoked_at is not None
