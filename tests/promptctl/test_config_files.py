"""The configuration file: parsed, checked against the SDK's parameter types, rendered, and read back unchanged."""

from __future__ import annotations

import pytest

from promptctl import config_files
from promptctl.diffs import config_field_changes
from promptctl.errors import DomainError

FULL = '''
description = "Routes support tickets."
system = """
You are a support-ticket triage agent.
Answer with "JSON" only:\\t{"team": "..."}
"""

[model]
id = "claude-sonnet-4-6"
effort = "medium"

[metadata]
team = "support"

[[tools]]
type = "custom"
name = "lookup_order"
description = "Look an order up by id."
input_schema = { type = "object", properties = { id = { type = "string" } }, required = ["id"] }

[[tools]]
type = "mcp_toolset"
mcp_server_name = "crm"

[[mcp_servers]]
type = "url"
name = "crm"
url = "https://crm.example.test/mcp"

[[skills]]
type = "anthropic"
skill_id = "xlsx"
'''

# A stored version as the server returns it: defaults filled in, nulls, and promptctl's write marker.
STORED = {
    "name": "ticket-triage",
    "description": "Routes support tickets.",
    "system": 'You are a support-ticket triage agent.\nAnswer with "JSON" only:\t{"team": "..."}\n',
    "model": {"id": "claude-sonnet-4-6", "effort": {"type": "medium"}, "speed": "standard", "inference_geo": None},
    "metadata": {"team": "support", "promptctl_write": "0123abcd"},
    "tools": [
        {
            "type": "custom",
            "name": "lookup_order",
            "description": "Look an order up by id.",
            "input_schema": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
        },
        {"type": "mcp_toolset", "mcp_server_name": "crm"},
    ],
    "mcp_servers": [{"type": "url", "name": "crm", "url": "https://crm.example.test/mcp"}],
    "skills": [{"type": "anthropic", "skill_id": "xlsx", "version": None}],
    "multiagent": None,
    "execution_identity": {"type": "service_account"},
}


def refusal(text: str) -> DomainError:
    with pytest.raises(DomainError) as refused:
        config_files.config_parse(text, source="agent.toml")
    assert refused.value.code == "bad_config"
    return refused.value


def test_a_full_file_parses_and_matches_the_stored_version_field_for_field():
    config = config_files.config_parse(FULL)
    assert config.model == {"id": "claude-sonnet-4-6", "effort": "medium"}
    assert [tool["type"] for tool in config.tools] == ["custom", "mcp_toolset"]
    assert config_files.config_changes(current=STORED, proposed=config) == {}


def test_render_leaves_out_the_marker_defaults_and_nulls_and_reads_back_unchanged():
    text = config_files.config_render(STORED, agent_name="ticket-triage", version_number=7)
    assert text.startswith("# Agent ticket-triage, version 7")
    for absent in ("promptctl_write", "0123abcd", "speed", "inference_geo", "service_account", "multiagent"):
        assert absent not in text
    again = config_files.config_parse(text)
    assert config_files.config_changes(current=STORED, proposed=again) == {}
    assert again.system == STORED["system"]


def test_changes_name_only_what_differs_and_metadata_is_a_patch():
    edited = FULL.replace('effort = "medium"', 'effort = "high"').replace('team = "support"', 'owner = "ops"')
    changes = config_files.config_changes(current=STORED, proposed=config_files.config_parse(edited))
    assert changes == {
        "model": {"id": "claude-sonnet-4-6", "effort": "high"},
        "metadata": {"owner": "ops", "team": None},  # the marker is never sent as removed
    }
    no_tools = FULL[: FULL.index("[[tools]]")] + FULL[FULL.index("[[skills]]") :]
    changes = config_files.config_changes(current=STORED, proposed=config_files.config_parse(no_tools))
    assert changes == {"tools": [], "mcp_servers": []}  # the file is the whole configuration: left out is none


def test_a_model_without_effort_keeps_the_current_effort_as_the_api_does():
    bare = FULL.replace('[model]\nid = "claude-sonnet-4-6"\neffort = "medium"\n', "")
    bare = 'model = "claude-sonnet-4-6"\n' + bare
    assert config_files.config_changes(current=STORED, proposed=config_files.config_parse(bare)) == {}
    other = bare.replace('model = "claude-sonnet-4-6"', 'model = "claude-opus-4-7"')
    assert config_files.config_changes(current=STORED, proposed=config_files.config_parse(other)) == {
        "model": "claude-opus-4-7"
    }


def test_a_system_file_is_read_relative_to_the_configuration(tmp_path):
    (tmp_path / "prompt.md").write_text("Route tickets.\n")
    path = tmp_path / "agent.toml"
    path.write_text('model = "claude-sonnet-4-6"\nsystem_file = "prompt.md"\n')
    assert config_files.config_file_read(path).system == "Route tickets.\n"
    path.write_text('model = "claude-sonnet-4-6"\nsystem_file = "prompt.md"\nsystem = "x"\n')
    with pytest.raises(DomainError, match="both `system` and `system_file`"):
        config_files.config_file_read(path)
    path.write_text('model = "claude-sonnet-4-6"\nsystem_file = "missing.md"\n')
    with pytest.raises(DomainError, match="missing.md"):
        config_files.config_file_read(path)


@pytest.mark.parametrize(
    ("edit", "field", "words"),
    [
        (lambda t: "modle = 1\n" + t, "modle", "unknown key `modle`"),
        (
            lambda t: t.replace('url = "https://crm', 'port = 443\nurl = "https://crm'),
            "mcp_servers[0]",
            "unknown key `port`",
        ),
        (
            lambda t: t.replace('skill_id = "xlsx"', 'skil_id = "xlsx"'),
            "skills[0]",
            "unknown key `skil_id` in skills[0] (did you mean `skill_id`, which is missing?)",
        ),
        (lambda t: t.replace('type = "mcp_toolset"', 'type = "mcp"'), "tools[1].type", "'mcp_toolset'"),
        (lambda t: t.replace('effort = "medium"', 'effort = "huge"'), "model", "model.effort is 'huge'"),
        (lambda t: t.replace('effort = "medium"', "effort = 3"), "model", "model.effort"),
        (lambda t: t.replace('[metadata]\nteam = "support"', "[metadata]\nteam = 5"), "metadata", "metadata.team"),
        (lambda t: t.replace('team = "support"', 'promptctl_write = "x"'), "metadata", "promptctl's own bookkeeping"),
        (lambda t: t.replace("[model]", "[modelx]"), "modelx", "unknown key `modelx`"),
        (lambda t: t.replace('system = """', 'system = """\\u0000'), "system", "NUL"),
        (
            lambda t: (
                t + '\n[[tools]]\ntype = "agent_toolset_20260401"\nconfigs = [{ name = "bash", enabld = true }]\n'
            ),
            "tools[2]",
            "unknown key `enabld` in tools[2].configs[0]",
        ),
        (
            lambda t: t.replace('url = "https://crm.example.test/mcp"', ""),
            "mcp_servers[0]",
            "mcp_servers[0].url is missing",
        ),
        (
            lambda t: t + '\n[[mcp_servers]]\ntype = "url"\nname = "crm"\nurl = "https://b.test"\n',
            "mcp_servers",
            "unique",
        ),
        (lambda t: t.replace('id = "claude-sonnet-4-6"', 'id = "claude sonnet"'), "model.id", "not a model id"),
        (lambda t: t + "\nnot toml at all", "file", "not valid TOML"),
    ],
)
def test_bad_input_is_refused_naming_the_key(edit, field, words):
    error = refusal(edit(FULL))
    assert error.fields == (field,) and words in error.message, error.message
    assert "agent export" in str(error)  # the CLI wording says what to do next


def test_a_file_needs_a_prompt_and_a_model():
    assert refusal('system = "x"\n').fields == ("model",)
    assert refusal('model = "claude-sonnet-4-6"\n').fields == ("system",)
    assert "empty" in refusal('model = "claude-sonnet-4-6"\nsystem = "  "\n').message


def test_field_rows_name_each_tool_server_skill_and_key():
    right = {
        **STORED,
        "model": {"id": "claude-opus-4-7", "effort": {"type": "medium"}},
        "tools": [STORED["tools"][0] | {"description": "Find an order."}],
        "mcp_servers": [],
        "skills": [{"type": "anthropic", "skill_id": "xlsx"}, {"type": "anthropic", "skill_id": "pdf"}],
        "metadata": {"promptctl_write": "ffff", "team": "billing"},
        "description": None,
    }
    rows = [(row.label, row.change) for row in config_field_changes(STORED, right)]
    assert rows == [
        ("model", "changed"),
        ("tool lookup_order", "changed"),
        ("tool crm", "removed"),
        ("MCP server crm", "removed"),
        ("skill pdf", "added"),
        ("description", "removed"),
        ("metadata team", "changed"),
    ]
    assert config_field_changes(STORED, {**STORED, "metadata": {"team": "support", "promptctl_write": "new"}}) == []
