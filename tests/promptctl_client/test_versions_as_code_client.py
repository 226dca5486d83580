"""The client's side of versions as code: it parses the TOML file locally and sends it; export writes the server's file.

The first tests use the canned stand-in (what is the client's own: the file
read, ``system_file`` resolved, the body sent); the last runs the client as a
process against the real API (uvicorn on the test database, the emulator).
"""

from __future__ import annotations

import json

import pytest
from django.db import connection

from promptctl import services
from tests.promptctl_client.support import client_env, run_client

VERSION = {
    "version": 2,
    "origin": "promptctl",
    "created_by": "rita",
    "created_at": "",
    "model": "m",
    "config_sha256": "a" * 64,
}


def test_version_create_config_reads_the_file_and_its_system_file_and_sends_the_parsed_configuration(
    canned_api, canned_env, tmp_path
):
    canned_api.routes[("POST", "/api/v1/agents/ticket-triage/versions")] = (201, VERSION)
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "triage.md").write_text("Route tickets.\n", encoding="utf-8")
    (tmp_path / "agent.toml").write_text(
        'system_file = "prompts/triage.md"\nmodel = "claude-opus-4-7"\n[metadata]\nteam = "support"\n'
    )
    result = run_client(
        "version", "create", "--agent", "ticket-triage", "--config", str(tmp_path / "agent.toml"), env=canned_env
    )
    assert result.code == 0, result.err
    assert "Created version 2 of ticket-triage" in result.out
    assert canned_api.requests[-1]["body"] == {
        "config": {"system": "Route tickets.\n", "model": "claude-opus-4-7", "metadata": {"team": "support"}}
    }


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("model = \n", "is not valid TOML"),
        ('system = "x"\nsystem_file = "p.md"\nmodel = "m"\n', "both `system` and `system_file`"),
        ('system_file = "missing.md"\nmodel = "m"\n', "missing.md"),
    ],
)
def test_a_bad_file_is_refused_before_anything_is_sent(canned_api, canned_env, tmp_path, text, words):
    (tmp_path / "agent.toml").write_text(text)
    result = run_client("version", "create", "--agent", "a", "--config", str(tmp_path / "agent.toml"), env=canned_env)
    assert result.code == 1 and words in result.err, result.err
    assert canned_api.requests == []


def test_config_and_system_file_exclude_each_other(canned_env):
    result = run_client(
        "version", "create", "--agent", "a", "--config", "x.toml", "--system-file", "p.md", env=canned_env
    )
    assert result.code == 2 and "not allowed with argument" in result.err


def test_agent_export_writes_the_servers_file(canned_api, canned_env, tmp_path):
    exported = {"agent": "ticket-triage", "version": 3, "config": {}, "config_file": 'model = "m"\nsystem = "x"\n'}
    canned_api.routes[("GET", "/api/v1/agents/ticket-triage/export")] = (200, exported)
    result = run_client(
        "agent", "export", "ticket-triage", "--version", "3", "--output", str(tmp_path / "a.toml"), env=canned_env
    )
    assert result.code == 0, result.err
    assert (tmp_path / "a.toml").read_text() == exported["config_file"]
    assert canned_api.requests[-1]["path"] == "/api/v1/agents/ticket-triage/export?version=3"
    printed = run_client("agent", "export", "--agent", "ticket-triage", env=canned_env)
    assert printed.out == exported["config_file"]


@pytest.mark.slow
def test_export_edit_create_and_diff_against_the_real_server(
    transactional_db, emulator, settings, tmp_path, config_home
):
    from config.children import api_server

    settings.PROMPTCTL_RATE_LIMITER = "off"
    rita = services.user_create(username="rita", role="requester", password="pw-rita-12345")
    agent = services.agent_create(
        name="ticket-triage", model="claude-sonnet-4-6", system_prompt="Route tickets.", actor=rita
    )
    token = services.token_create(user=rita, actor=rita, name="laptop").secret
    with api_server(
        settings_dict=connection.settings_dict,
        emulator_url=settings.ANTHROPIC_BASE_URL,
        extra_env={"PROMPTCTL_RATE_LIMITER": "off"},
    ) as server:
        env = client_env(config_home, PROMPTCTL_URL=server.base_url, PROMPTCTL_TOKEN=token)
        path = tmp_path / "triage.toml"
        assert run_client("agent", "export", "ticket-triage", "--output", str(path), env=env).code == 0
        same = run_client("version", "create", "--agent", "ticket-triage", "--config", str(path), env=env)
        assert same.code == 1 and "nothing to create" in same.err, same.err

        path.write_text(path.read_text().replace('id = "claude-sonnet-4-6"', 'id = "claude-opus-4-7"'))
        made = run_client("--json", "version", "create", "--agent", "ticket-triage", "--config", str(path), env=env)
        assert made.code == 0, made.err
        number = made.json()["version"]
        diff = run_client(
            "version", "diff", "--agent", "ticket-triage", str(agent.latest_version_number), str(number), env=env
        )
        assert diff.code == 0 and diff.out.splitlines() == ["~ model: claude-sonnet-4-6 -> claude-opus-4-7"], diff.out
        assert json.loads(run_client("--json", "version", "list", "--agent", "ticket-triage", env=env).out)[-1][
            "model"
        ] == ("claude-opus-4-7")
