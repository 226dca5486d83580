"""Bad input never half-writes: refused before any remote call, and an agent is never stuck on what the server holds.

Run on SQLite and on PostgreSQL (``DATABASE_URL``): a NUL byte used to fail
only on PostgreSQL, after the server had made the version.
"""

from __future__ import annotations

import pytest
from django.db import connection

from managed_agents import validation
from promptctl import services
from promptctl.errors import DomainError
from promptctl.models import Agent, AgentVersion, AuditEvent
from tests.change_control_support import V1, V2
from tests.cli_support import cli_run

run = cli_run


def remote_version_numbers(remote_client, agent) -> list[int]:
    return sorted(int(v.version) for v in remote_client.beta.agents.versions.list(agent.remote_id))


def assert_one_line(error: DomainError, *words: str) -> None:
    message = str(error)
    assert "\n" not in message, message
    for word in words:
        assert word in message, message


# --- refused before the remote call -----------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "says"),
    [
        (V1 + "\x00", "NUL character"),
        (V1 + "\ud800", "lone surrogate"),
        ("x" * 100_001, "100,000-byte cap"),
    ],
)
def test_version_create_refuses_unstorable_prompts_before_any_remote_version(
    agent, requester, remote_client, prompt, says
):
    before = remote_version_numbers(remote_client, agent)

    with pytest.raises(DomainError) as refused:
        services.version_create(agent=agent, system_prompt=prompt, actor=requester)

    assert_one_line(refused.value, says)
    assert remote_version_numbers(remote_client, agent) == before
    assert AgentVersion.objects.filter(agent=agent).count() == 1


def test_after_a_refused_nul_prompt_the_agent_is_not_stuck(agent, requester, remote_client):
    first = agent.latest_version_number
    with pytest.raises(DomainError):
        services.version_create(agent=agent, system_prompt=V2 + "\x00", actor=requester)

    version = services.version_create(agent=agent, system_prompt=V2, actor=requester)
    result = services.agent_sync(agent=agent, actor=requester)

    assert version.system_prompt == V2
    assert result.new_versions == [] and result.unstorable == {}
    assert remote_version_numbers(remote_client, agent) == [first, version.number]


@pytest.mark.parametrize(
    ("model", "prompt", "says"),
    [
        ("claude-sonnet-4-6", V1 + "\x00", "NUL character"),
        ("m" * 201, V1, "at most 200"),
        ("claude sonnet", V1, "is not a model id"),
    ],
)
def test_agent_create_refuses_bad_input_without_making_a_remote_agent(emulator, requester, model, prompt, says):
    with pytest.raises(DomainError) as refused:
        services.agent_create(name="ticket-triage", model=model, system_prompt=prompt, actor=requester)

    assert_one_line(refused.value, says)
    stats = emulator.stats()
    assert stats["agents"] == 0 and stats["environments"] == 0
    assert not Agent.objects.exists()


def test_the_model_width_checked_is_the_width_stored():
    assert Agent._meta.get_field("model").max_length == validation.MODEL_MAX_LENGTH
    assert AgentVersion._meta.get_field("model").max_length == validation.MODEL_MAX_LENGTH


# --- the server holds what promptctl cannot store ----------------------------------------------


def test_sync_names_an_outside_version_it_cannot_store_and_the_agent_carries_on(agent, requester, remote_client):
    outside = remote_client.beta.agents.update(agent.remote_id, version=agent.latest_version_number, system=V2 + "\x00")

    result = services.agent_sync(agent=agent, actor=requester)

    assert list(result.unstorable) == [int(outside.version)]
    assert "NUL character" in result.unstorable[int(outside.version)]
    assert not AgentVersion.objects.filter(agent=agent, number=outside.version).exists()
    event = AuditEvent.objects.get(verb="agent.sync_unstorable")
    assert str(outside.version) in event.after["unstorable"]

    version = services.version_create(agent=agent, system_prompt=V2, actor=requester)
    again = services.agent_sync(agent=agent, actor=requester)

    assert version.number > int(outside.version)
    assert list(again.unstorable) == [int(outside.version)]  # still named, never recorded
    assert again.new_versions == []


def test_version_create_on_top_of_unstorable_metadata_records_nothing_and_says_so(agent, requester, remote_client):
    # Metadata set outside promptctl is carried into every later version the server makes.
    outside = remote_client.beta.agents.update(
        agent.remote_id, version=agent.latest_version_number, metadata={"team": "ops\x00"}
    )
    services.agent_sync(agent=agent, actor=requester)

    with pytest.raises(DomainError) as refused:
        services.version_create(agent=agent, system_prompt=V2, actor=requester)

    made = max(remote_version_numbers(remote_client, agent))
    assert made > int(outside.version)
    assert_one_line(refused.value, f"made version {made}", "could not record it", "config field metadata.team")
    agent.refresh_from_db()
    assert agent.latest_version_number == made  # moved on: the next edit is not refused as stale
    assert not AgentVersion.objects.filter(agent=agent, number=made).exists()
    latest = AuditEvent.objects.filter(verb="agent.latest_version").latest("sequence")
    assert str(made) in latest.after["unrecorded"]

    remote_client.beta.agents.update(agent.remote_id, version=made, metadata={"team": "ops"})
    services.agent_sync(agent=agent, actor=requester)
    version = services.version_create(agent=agent, system_prompt=V2 + "\nBe brief.", actor=requester)
    assert version.number == max(remote_version_numbers(remote_client, agent))


# --- the local record fails after the remote agent was made ------------------------------------


def _refuse_inserts(table: str) -> None:
    """A database trigger (not a mock) that refuses every insert into ``table``, on either database."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION h4_refuse() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'refused by test trigger'; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                f"CREATE TRIGGER h4_refuse BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION h4_refuse()"
            )
        else:
            cursor.execute(
                f"CREATE TRIGGER h4_refuse BEFORE INSERT ON {table} BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END"
            )


def test_agent_create_archives_the_remote_agent_when_the_record_fails(emulator, requester, remote_client):
    _refuse_inserts("promptctl_agent")

    with pytest.raises(DomainError) as refused:
        services.agent_create(name="ticket-triage", model="claude-sonnet-4-6", system_prompt=V1, actor=requester)

    assert_one_line(refused.value, "could not be recorded", "refused by test trigger", "was archived")
    agents = list(remote_client.beta.agents.list(include_archived=True))
    assert len(agents) == 1 and agents[0].archived_at is not None
    assert agents[0].id in str(refused.value)


def test_sync_survives_a_database_refusal_beyond_the_storable_rules(agent, requester, remote_client):
    outside = remote_client.beta.agents.update(agent.remote_id, version=agent.latest_version_number, system=V2)
    _refuse_inserts("promptctl_agentversion")

    result = services.agent_sync(agent=agent, actor=requester)

    assert result.unstorable == {int(outside.version): "the database refused it (refused by test trigger)"}
    agent.refresh_from_db()
    assert agent.latest_version_number == int(outside.version)


# --- the CLI reads files under the input rules ---------------------------------------------------


@pytest.fixture
def cli_people(db):
    services.user_create(username="rita", role="requester")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (V1.encode() + b"\xff\xfe tail", f"byte {len(V1.encode())}"),
        (V1.encode() + b"\x00", "NUL character"),
        (b"x" * 100_001, "larger than the 100 KB cap"),
    ],
)
def test_cli_refuses_bad_prompt_files_in_one_line_without_a_remote_agent(emulator, cli_people, tmp_path, content, says):
    prompt = tmp_path / "prompt.txt"
    prompt.write_bytes(content)

    code, out, err = run(
        "agent", "create", "--name", "ticket-triage", "--model", "claude-sonnet-4-6",
        "--system-file", str(prompt), "--as", "rita",
    )  # fmt: skip

    assert code == 1 and out == ""
    assert says in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert emulator.stats()["agents"] == 0


def test_cli_version_create_refuses_a_nul_prompt_and_a_later_one_works(agent, tmp_path, remote_client):
    bad, good = tmp_path / "bad.txt", tmp_path / "good.txt"
    bad.write_bytes(V2.encode() + b"\x00")
    good.write_text(V2)

    code, _, err = run("version", "create", "--agent", agent.name, "--system-file", str(bad), "--as", "rita")
    assert code == 1 and "NUL character" in err and len(err.strip().splitlines()) == 1, err
    assert remote_version_numbers(remote_client, agent) == [agent.latest_version_number]

    code, out, err = run("version", "create", "--agent", agent.name, "--system-file", str(good), "--as", "rita")
    assert code == 0, err
    code, out, err = run("agent", "sync", "--agent", agent.name)
    assert code == 0 and "is in sync" in out, err
