"""Versions as code, end to end: export a version's file, edit one field, make exactly one version, see that field.

Real SDK over HTTP against the emulator; the operator CLI through
``call_command``; the API through Django's test client with a person's token.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from promptctl import config_files, selectors, services
from promptctl.errors import DomainError
from promptctl.models import VersionIntent
from tests.cli_support import cli_run
from tests.promptctl.api_support import caller_for

pytestmark = pytest.mark.django_db(transaction=True)

UPDATE_AGENT = "POST /v1/agents/{agent_id}"


def exported_file(agent, tmp_path, name="agent.toml"):
    path = tmp_path / name
    path.write_text(selectors.version_config_export(agent=agent)["config_file"], encoding="utf-8")
    return path


def updates(emulator) -> int:
    return emulator.stats()["requests"].get(UPDATE_AGENT, 0)


def test_a_model_change_from_a_config_file_is_one_version_whose_diff_shows_the_model(
    agent, requester, emulator, tmp_path
):
    path = exported_file(agent, tmp_path)
    text = path.read_text()
    assert 'id = "claude-sonnet-4-6"' in text and "promptctl_write" not in text
    path.write_text(text.replace('id = "claude-sonnet-4-6"', 'id = "claude-opus-4-7"'))

    made = services.version_create(agent=agent, config=config_files.config_file_read(path), actor=requester)

    assert made.model == "claude-opus-4-7" and made.origin == "promptctl" and made.created_by == requester
    assert emulator.stats()["agent_versions"] == 2 and updates(emulator) == 1
    diff = selectors.version_diff(agent=agent, left_number=agent.latest_version_number, right_number=made.number)
    assert diff.system_unified == []
    assert [(c.label, c.change, c.old, c.new) for c in diff.field_changes] == [
        ("model", "changed", "claude-sonnet-4-6", "claude-opus-4-7")
    ]
    assert diff.lines() == ["~ model: claude-sonnet-4-6 -> claude-opus-4-7"]
    assert diff.as_dict()["fields"][0]["field"] == "model"


def test_an_exported_file_sent_back_is_refused_as_no_change_before_any_call(agent, requester, emulator, tmp_path):
    path = exported_file(agent, tmp_path)
    with pytest.raises(DomainError) as refused:
        services.version_create(agent=agent, config=config_files.config_file_read(path), actor=requester)
    assert refused.value.code == "no_change"
    assert f"matches version {agent.latest_version_number} of ticket-triage in every field" in str(refused.value)
    assert updates(emulator) == 0 and not VersionIntent.objects.exists()
    # A bare model id equal to the current one is no change either (the effort is kept, as the API keeps it).
    bare = path.read_text().replace('[model]\nid = "claude-sonnet-4-6"\neffort = "high"\n', "")
    bare = 'model = "claude-sonnet-4-6"\n' + bare
    with pytest.raises(DomainError) as refused_again:
        services.version_create(agent=agent, config=config_files.config_parse(bare), actor=requester)
    assert refused_again.value.code == "no_change" and updates(emulator) == 0


def test_one_edited_label_makes_one_version_and_the_export_of_it_round_trips(agent, requester, emulator, tmp_path):
    first = agent.latest_version_number
    path = exported_file(agent, tmp_path)
    path.write_text('description = "Routes support tickets."\n' + path.read_text() + '\n[metadata]\nteam = "support"\n')
    made = services.version_create(agent=agent, config=config_files.config_file_read(path), actor=requester)
    assert emulator.stats()["agent_versions"] == 2
    diff = selectors.version_diff(agent=agent, left_number=first, right_number=made.number)
    assert [(c.label, c.change, c.new) for c in diff.field_changes] == [
        ("description", "added", "Routes support tickets."),
        ("metadata team", "added", "support"),
    ]
    assert made.config_hash == selectors.version_get(agent=agent, number=first).config_hash  # labels: not behaviour
    agent.refresh_from_db()

    # The new version's own export comes back as no change; dropping the key removes it (metadata is a patch).
    again = exported_file(agent, tmp_path, "v2.toml")
    assert 'team = "support"' in again.read_text() and "promptctl_write" not in again.read_text()
    with pytest.raises(DomainError, match="in every field"):
        services.version_create(agent=agent, config=config_files.config_file_read(again), actor=requester)
    again.write_text(again.read_text().replace('\n[metadata]\nteam = "support"\n', "\n"))
    third = services.version_create(agent=agent, config=config_files.config_file_read(again), actor=requester)
    diff = selectors.version_diff(agent=agent, left_number=made.number, right_number=third.number)
    assert [(c.label, c.change, c.old) for c in diff.field_changes] == [("metadata team", "removed", "support")]
    assert emulator.stats()["agent_versions"] == 3


def test_a_prompt_in_a_system_file_beside_the_config(agent, requester, emulator, tmp_path):
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "triage.md").write_text("Route every ticket to billing.\n")
    config = tmp_path / "agent.toml"
    config.write_text('model = "claude-sonnet-4-6"\nsystem_file = "prompts/triage.md"\n')
    made = services.version_create(agent=agent, config=config_files.config_file_read(config), actor=requester)
    assert made.system_prompt == "Route every ticket to billing.\n" and made.model == "claude-sonnet-4-6"
    diff = selectors.version_diff(agent=agent, left_number=agent.latest_version_number, right_number=made.number)
    assert "+Route every ticket to billing." in diff.system_unified and diff.field_changes == []


run = cli_run


def test_the_operator_cli_exports_creates_and_diffs(agent, requester, emulator, tmp_path):
    path = tmp_path / "triage.toml"
    code, out, err = run("agent", "export", "ticket-triage", "--output", str(path))
    assert code == 0, err
    assert f"Wrote version {agent.latest_version_number} of ticket-triage" in out
    code, out, err = run("version", "create", "--agent", "ticket-triage", "--config", str(path), "--as", "rita")
    assert code == 1 and "nothing to create" in err and "promptctl agent export --agent ticket-triage" in err

    path.write_text(path.read_text().replace('effort = "high"', 'effort = "low"'))
    code, out, err = run(
        "--json", "version", "create", "--agent", "ticket-triage", "--config", str(path), "--as", "rita"
    )
    assert code == 0, err
    made = json.loads(out)["version"]
    code, out, err = run("version", "diff", "--agent", "ticket-triage", str(agent.latest_version_number), str(made))
    assert code == 0 and out.splitlines() == ["~ model.effort: high -> low"], out

    bad = tmp_path / "bad.toml"
    bad.write_text(path.read_text() + '\n[[tools]]\ntype = "custom"\nname = "lookup"\ndescrption = "typo"\n')
    code, out, err = run("version", "create", "--agent", "ticket-triage", "--config", str(bad), "--as", "rita")
    assert code == 1 and "unknown key `descrption` in tools[0] (did you mean `description`" in err, err
    assert emulator.stats()["agent_versions"] == 2


def test_the_api_takes_a_parsed_config_and_exports_the_file(agent, requester, emulator):
    caller = caller_for(requester)
    exported = caller.get("/agents/ticket-triage/export")
    assert exported.status_code == 200, exported.content
    body = exported.json()
    assert body["version"] == agent.latest_version_number and "promptctl_write" not in body["config_file"]

    config = config_files.config_parse(body["config_file"]).as_dict()
    same = caller.post("/agents/ticket-triage/versions", {"config": config})
    assert same.status_code == 400 and same.json()["code"] == "no_change"

    unknown = caller.post("/agents/ticket-triage/versions", {"config": {**config, "modle": "x"}})
    assert unknown.status_code == 400 and unknown.json()["fields"] == ["modle"]
    assert updates(emulator) == 0

    made = caller.post("/agents/ticket-triage/versions", {"config": {**config, "description": "Triage."}})
    assert made.status_code == 201, made.content
    diff = caller.get(
        "/agents/ticket-triage/diff", **{"from": agent.latest_version_number, "to": made.json()["version"]}
    )
    assert [(row["field"], row["change"], row["new"]) for row in diff.json()["fields"]] == [
        ("description", "added", "Triage.")
    ]
    both = caller.post("/agents/ticket-triage/versions", {"config": config, "system_prompt": "x"})
    assert both.status_code == 400 and both.json()["code"] == "bad_input"


def test_the_admin_diff_page_shows_each_changed_field_with_old_and_new(
    agent, requester, admin_user, emulator, tmp_path, django_assert_max_num_queries
):
    first = agent.latest_version_number
    path = exported_file(agent, tmp_path)
    path.write_text(
        path.read_text().replace('id = "claude-sonnet-4-6"', 'id = "claude-opus-4-7"')
        + '\n[metadata]\nteam = "support"\n'
    )
    made = services.version_create(agent=agent, config=config_files.config_file_read(path), actor=requester)
    client = Client()
    client.force_login(admin_user)
    with django_assert_max_num_queries(20):
        page = client.get(
            reverse("admin:promptctl_agentversion_diff", args=[made.pk]) + f"?against={first}"
        ).content.decode()
    table = page[page.index('id="field-diff"') : page.index("</table>", page.index('id="field-diff"'))]
    assert '<tr class="replace" data-field="model">' in table
    assert '<th scope="row">model</th><td>changed</td><td class="left">claude-sonnet-4-6</td>' in table
    assert '<td class="right">claude-opus-4-7</td>' in table
    assert '<tr class="insert" data-field="metadata">' in table and "metadata team" in table
    assert "promptctl_write" not in page


TOOLS = """
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
"""


def test_tools_servers_and_skills_round_trip_and_diff_by_name(agent, requester, emulator, tmp_path):
    first = agent.latest_version_number
    path = exported_file(agent, tmp_path)
    path.write_text(path.read_text() + TOOLS)
    made = services.version_create(agent=agent, config=config_files.config_file_read(path), actor=requester)
    diff = selectors.version_diff(agent=agent, left_number=first, right_number=made.number)
    assert [(c.label, c.change) for c in diff.field_changes] == [
        ("tool lookup_order", "added"),
        ("tool crm", "added"),
        ("MCP server crm", "added"),
        ("skill xlsx", "added"),
    ]
    assert made.config_hash != selectors.version_get(agent=agent, number=first).config_hash

    agent.refresh_from_db()
    again = exported_file(agent, tmp_path, "v2.toml")
    with pytest.raises(DomainError, match="in every field"):
        services.version_create(agent=agent, config=config_files.config_file_read(again), actor=requester)
    edited = again.read_text().replace("Look an order up by id.", "Find an order by its id.")
    again.write_text(edited)
    third = services.version_create(agent=agent, config=config_files.config_file_read(again), actor=requester)
    diff = selectors.version_diff(agent=agent, left_number=made.number, right_number=third.number)
    assert [(c.label, c.change) for c in diff.field_changes] == [("tool lookup_order", "changed")]
    assert diff.field_changes[0].new["description"] == "Find an order by its id."
    assert emulator.stats()["agent_versions"] == 3
