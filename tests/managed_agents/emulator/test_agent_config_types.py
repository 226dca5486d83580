"""Agent configurations with tools, MCP servers, skills and a model object, typed as the SDK types them."""

from __future__ import annotations

import anthropic
import pytest

from promptctl.tutorial import V1_PROMPT

MCP_SERVER = {"type": "url", "name": "tickets", "url": "https://mcp.example.com/tickets"}
LOOKUP_TOOL = {
    "type": "custom",
    "name": "lookup_customer",
    "description": "Find a customer's plan by email.",
    "input_schema": {"type": "object", "properties": {"email": {"type": "string"}}, "required": ["email"]},
}
FULL_CONFIG = {
    "name": "ticket-triage",
    "description": "Routes support tickets",
    "model": {"id": "claude-sonnet-4-5", "effort": "medium", "speed": "standard"},
    "system": V1_PROMPT,
    "tools": [
        {
            "type": "agent_toolset_20260401",
            "default_config": {"permission_policy": {"type": "always_ask"}},
            "configs": [{"name": "bash", "enabled": False}, {"name": "web_search", "allowed_domains": ["example.com"]}],
        },
        {"type": "mcp_toolset", "mcp_server_name": "tickets", "configs": [{"name": "close_ticket", "enabled": False}]},
        LOOKUP_TOOL,
    ],
    "mcp_servers": [MCP_SERVER],
    "skills": [
        {"type": "anthropic", "skill_id": "xlsx"},
        {"type": "custom", "skill_id": "skill_01abc", "version": "3"},
    ],
    "metadata": {"owner": "support"},
}


def test_a_full_configuration_is_stored_and_returned_resolved(client, environment):
    agent = client.beta.agents.create(**FULL_CONFIG)
    assert agent.version == 1
    assert agent.description == "Routes support tickets" and agent.metadata == {"owner": "support"}
    assert (agent.model.id, agent.model.speed) == ("claude-sonnet-4-5", "standard")

    toolset, mcp_toolset, custom = agent.tools
    assert toolset.type == "agent_toolset_20260401"
    assert toolset.default_config.enabled is True, "enabled defaults to true, as the params document"
    assert toolset.default_config.permission_policy.type == "always_ask"
    bash, search = toolset.configs
    assert (bash.name, bash.type, bash.enabled, bash.permission_policy.type) == ("bash", "bash", False, "always_ask")
    assert search.enabled is True and search.allowed_domains == ["example.com"]
    assert mcp_toolset.mcp_server_name == "tickets"
    assert mcp_toolset.default_config.permission_policy.type == "always_ask"
    assert [(c.name, c.enabled) for c in mcp_toolset.configs] == [("close_ticket", False)]
    assert custom.name == "lookup_customer" and custom.input_schema.required == ["email"]
    assert [server.model_dump() for server in agent.mcp_servers] == [MCP_SERVER]
    assert [(s.type, s.skill_id, s.version) for s in agent.skills] == [
        ("anthropic", "xlsx", "latest"),
        ("custom", "skill_01abc", "3"),
    ]

    assert client.beta.agents.retrieve(agent.id).model_dump() == agent.model_dump()
    (listed,) = client.beta.agents.versions.list(agent.id).data
    assert listed.model_dump() == agent.model_dump()

    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    assert [tool.type for tool in session.agent.tools] == ["agent_toolset_20260401", "mcp_toolset", "custom"]


@pytest.mark.parametrize(
    ("change", "check"),
    [
        ({"model": "claude-sonnet-4-6"}, lambda a: a.model.id == "claude-sonnet-4-6"),
        ({"model": {"id": "claude-sonnet-4-5", "effort": "max"}}, lambda a: a.model.id == "claude-sonnet-4-5"),
        ({"description": "Routes billing tickets too"}, lambda a: a.description == "Routes billing tickets too"),
        ({"metadata": {"owner": None, "team": "billing"}}, lambda a: a.metadata == {"team": "billing"}),
        ({"skills": []}, lambda a: a.skills == []),
        ({"tools": [FULL_CONFIG["tools"][1]]}, lambda a: [t.type for t in a.tools] == ["mcp_toolset"]),
        ({"tools": [], "mcp_servers": []}, lambda a: a.tools == [] and a.mcp_servers == []),
    ],
)
def test_each_field_change_makes_exactly_one_new_version(client, change, check):
    agent = client.beta.agents.create(**FULL_CONFIG)
    updated = client.beta.agents.update(agent.id, version=agent.version, **change)
    assert updated.version == agent.version + 1
    assert check(updated)
    assert [v.version for v in client.beta.agents.versions.list(agent.id)] == [2, 1]
    assert client.beta.agents.retrieve(agent.id, version=1).model_dump() == agent.model_dump()


def test_an_update_that_changes_nothing_still_makes_a_new_version(client):
    """The SDK documents no no-op rule; the emulator, like every accepted update, makes a new version."""
    agent = client.beta.agents.create(**FULL_CONFIG)
    again = client.beta.agents.update(agent.id, version=1, tools=FULL_CONFIG["tools"], skills=FULL_CONFIG["skills"])
    assert again.version == 2
    same = {key: value for key, value in again.model_dump().items() if key not in ("version", "updated_at")}
    assert same == {key: value for key, value in agent.model_dump().items() if key not in ("version", "updated_at")}


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"tools": [{"type": "web_browser"}]}, "tools[0].type"),
        ({"tools": [{**LOOKUP_TOOL, "name": "has spaces"}]}, "tools[0].name"),
        ({"tools": [{**LOOKUP_TOOL, "input_schema": {"type": "array"}}]}, "tools[0].input_schema.type"),
        ({"tools": [{k: v for k, v in LOOKUP_TOOL.items() if k != "description"}]}, "tools[0].description"),
        ({"tools": [LOOKUP_TOOL, LOOKUP_TOOL]}, "more than one custom tool"),
        (
            {"tools": [{"type": "agent_toolset_20260401", "configs": [{"name": "teleport"}]}]},
            "tools[0].configs[0].name",
        ),
        (
            {"tools": [{"type": "agent_toolset_20260401", "default_config": {"permission_policy": {"type": "yolo"}}}]},
            "tools[0].default_config.permission_policy",
        ),
        ({"tools": [{"type": "mcp_toolset", "mcp_server_name": "nowhere"}]}, "not in `mcp_servers`"),
        ({"mcp_servers": [MCP_SERVER]}, "not referenced by any mcp_toolset"),
        ({"mcp_servers": [{**MCP_SERVER, "url": "ftp://x"}]}, "mcp_servers[0].url"),
        ({"skills": [{"type": "builtin", "skill_id": "pdf"}]}, "skills[0].type"),
        ({"skills": [{"type": "anthropic"}]}, "skills[0].skill_id"),
        ({"model": {"id": "claude-sonnet-4-5", "effort": "extreme"}}, "model.effort"),
        ({"model": {"id": "claude-sonnet-4-5", "speed": "ludicrous"}}, "model.speed"),
        ({"tools": {"type": "custom"}}, "`tools` must be an array"),
    ],
)
def test_malformed_configurations_are_refused_naming_the_field(server, client, fields, named):
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.beta.agents.create(**{"name": "bad", "model": "claude-sonnet-4-5", **fields})
    body = refused.value.body
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert named in body["error"]["message"], body["error"]["message"]
    assert body["request_id"].startswith("req_")
    assert server.stats()["agents"] == 0


def test_a_refused_update_makes_no_version(client):
    agent = client.beta.agents.create(**FULL_CONFIG)
    with pytest.raises(anthropic.BadRequestError, match="not in `mcp_servers`"):
        client.beta.agents.update(agent.id, version=1, mcp_servers=[])  # the mcp_toolset still names it
    with pytest.raises(anthropic.BadRequestError, match=r"skills\[0\]\.version"):
        client.beta.agents.update(
            agent.id, version=1, skills=[{"type": "anthropic", "skill_id": "xlsx", "version": ""}]
        )
    assert client.beta.agents.retrieve(agent.id).version == 1
