"""The configuration hash covers behaviour only: an SDK upgrade or a new server field moves no version's hash."""

from __future__ import annotations

import copy
import importlib

import pytest
from anthropic.types.beta import BetaManagedAgentsAgent, BetaManagedAgentsModelConfig
from django.apps import apps as django_apps
from django.db import DatabaseError, connection

from managed_agents import gateway
from managed_agents.agents import _agent_version
from managed_agents.confighash import config_canonical, config_sha256
from promptctl import services
from promptctl.models import AgentVersion
from tests.change_control_support import V2, promote

TOOL = {
    "type": "custom",
    "name": "lookup_account",
    "description": "Find an account",
    "input_schema": {"type": "object"},
}


def _upgraded(agent_json: dict) -> dict:
    """What a newer server sends: fields this SDK never saw, a default it now leaves out, a null it now sends."""
    upgraded = copy.deepcopy(agent_json)
    upgraded["routing_hints"] = {"mode": "auto"}  # unknown top-level field
    upgraded["model"].pop("speed", None)  # the default ("standard"), no longer sent
    upgraded["model"]["fallback_model"] = None  # unknown optional field, unset
    upgraded["multiagent"] = None
    return upgraded


@pytest.fixture
def sdk_defaults_bumped(monkeypatch):
    """A newer SDK: optional fields the agent never set now default to values instead of null."""
    monkeypatch.setattr(BetaManagedAgentsModelConfig.model_fields["speed"], "default", "standard")
    monkeypatch.setattr(BetaManagedAgentsAgent.model_fields["description"], "default", "")


def test_unknown_fields_and_bumped_defaults_hash_the_same(agent, sdk_defaults_bumped):
    stored = agent.versions.get()
    remote_json = gateway.client().beta.agents.retrieve(agent.remote_id).model_dump(mode="json")
    newer = _upgraded(remote_json)
    newer.pop("description")  # the server leaves it out; the bumped SDK default fills ""
    upgraded = _agent_version(BetaManagedAgentsAgent.construct(**newer))
    # The SDK really filled the bumped default and kept the unknown field: the whole dump moved...
    assert upgraded.config["routing_hints"] == {"mode": "auto"} and upgraded.config["description"] == ""
    assert upgraded.config_sha256 != stored.config_sha256
    # ...and the behaviour hash did not.
    assert upgraded.config_canonical_sha256 == stored.config_canonical_sha256 == config_sha256(stored.config)


def test_absent_null_and_default_are_one_value():
    base = {"system": "Triage.", "model": {"id": "claude-sonnet-4-6", "effort": {"type": "high"}}}
    spelled_out = {
        **base,
        "model": {"id": "claude-sonnet-4-6", "effort": {"type": "high"}, "speed": "standard", "inference_geo": None},
        "tools": None,
        "mcp_servers": [],
        "multiagent": None,
        "execution_identity": {"type": "service_account"},
        "name": "renamed",
        "description": "for people",
        "metadata": {"team": "support"},
    }
    assert config_sha256(base) == config_sha256(spelled_out)
    assert config_sha256({"system": None, "model": "m"}) == config_sha256({"model": {"id": "m"}})
    assert config_canonical(base)["tools"] == []


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"system": "Triage. Be brief."}, "prompt"),
        ({"model": {"id": "claude-opus-4-6", "effort": {"type": "high"}}}, "model"),
        ({"model": {"id": "claude-sonnet-4-6", "effort": {"type": "low"}}}, "effort"),
        ({"model": {"id": "claude-sonnet-4-6", "effort": {"type": "high"}, "speed": "fast"}}, "speed"),
        ({"tools": [TOOL]}, "a tool"),
        ({"mcp_servers": [{"type": "url", "name": "crm", "url": "https://crm.example/mcp"}]}, "an MCP server"),
        ({"skills": [{"type": "anthropic", "skill_id": "xlsx", "version": "1"}]}, "a skill"),
        ({"execution_identity": {"type": "aws_role", "role_arn": "arn:aws:iam::1:role/x"}}, "the principal"),
    ],
)
def test_a_behaviour_change_changes_the_hash(change, why):
    base = {"system": "Triage.", "model": {"id": "claude-sonnet-4-6", "effort": {"type": "high"}}, "tools": []}
    assert config_sha256({**base, **change}) != config_sha256(base), why


@pytest.mark.django_db(transaction=True)
def test_agent_sync_after_an_upgrade_flags_nothing(agent, requester, emulator_proxy, sdk_defaults_bumped):
    services.version_create(agent=agent, system_prompt=V2, actor=requester)
    before = dict(agent.versions.values_list("number", "config_canonical_sha256"))
    assert len(before) == 2 and all(before.values())
    emulator_proxy.rewrite_agent = _upgraded

    remote = gateway.agent_versions(agent_id=agent.remote_id)
    assert all(r.config["routing_hints"] == {"mode": "auto"} for r in remote)  # the upgrade reached the gateway
    assert {r.version: r.config_canonical_sha256 for r in remote} == before
    result = services.agent_sync(agent=agent)
    assert result.mismatched_numbers == [] and result.new_versions == []
    assert dict(agent.versions.values_list("number", "config_canonical_sha256")) == before

    # A real change made outside promptctl after the upgrade is still seen, as a new version.
    made = gateway.client().beta.agents.update(agent.remote_id, version=max(before), system=V2 + "\nBe brief.")
    result = services.agent_sync(agent=agent)
    assert [v.number for v in result.new_versions] == [made.version]
    assert result.new_versions[0].config_canonical_sha256 not in before.values()


@pytest.mark.django_db(transaction=True)
def test_migration_fills_the_canonical_hash_and_keeps_versions_immutable(agent):
    migration = importlib.import_module("promptctl.migrations.0010_config_canonical")
    stored = agent.versions.get()
    with connection.cursor() as cursor:  # a version as stored before 0010: no canonical hash (INSERT is allowed)
        cursor.execute(
            "INSERT INTO promptctl_agentversion (agent_id, number, system_prompt, model, config, config_sha256, "
            "origin, created_at) SELECT agent_id, number + 1, system_prompt, model, config, config_sha256, "
            "'outside', created_at FROM promptctl_agentversion WHERE id = %s",
            [stored.pk],
        )
    old = AgentVersion.objects.get(number=stored.number + 1)
    assert old.config_canonical_sha256 is None

    with connection.schema_editor() as schema_editor:
        migration._fill(django_apps, schema_editor)

    old.refresh_from_db()
    assert old.config_canonical_sha256 == config_sha256(old.config) == stored.config_canonical_sha256
    with pytest.raises(DatabaseError, match="immutable"), connection.cursor() as cursor:
        cursor.execute("UPDATE promptctl_agentversion SET config_canonical_sha256 = 'x' WHERE id = %s", [old.pk])


def test_change_requests_quote_the_canonical_hash_and_apply_accepts_older_ones(agent, requester, reviewer):
    change = promote(agent, agent.latest_version_number, requester, reviewer)
    version = agent.versions.get()
    assert change.target_config_sha256 == version.config_canonical_sha256 != version.config_sha256
    assert change.status == "applied"
    # A request filed before migration 0010 quotes the whole-dump hash; it still names this version.
    assert version.config_hash_matches(version.config_sha256) and not version.config_hash_matches("0" * 64)
