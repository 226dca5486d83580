"""The emulator's environments, agents and agent versions, through the real SDK over loopback HTTP."""

from __future__ import annotations

import anthropic
import pytest

from promptctl.tutorial import V1_PROMPT, V2_PROMPT
from tests.managed_agents.emulator.support import make_client

# --- environments ---------------------------------------------------------------------------------


def test_environment_create_retrieve_list_archive_delete(client):
    created = client.beta.environments.create(name="env-a", metadata={"owner": "tests"})
    other = client.beta.environments.create(name="env-b")
    assert created.config.type == "cloud"
    assert client.beta.environments.retrieve(created.id).metadata == {"owner": "tests"}

    archived = client.beta.environments.archive(other.id)
    assert archived.archived_at is not None
    assert [environment.id for environment in client.beta.environments.list()] == [created.id]
    assert {environment.id for environment in client.beta.environments.list(include_archived=True)} == {
        created.id,
        other.id,
    }

    deleted = client.beta.environments.delete(created.id)
    assert (deleted.id, deleted.type) == (created.id, "environment_deleted")
    with pytest.raises(anthropic.NotFoundError):
        client.beta.environments.retrieve(created.id)


# --- agents and versions --------------------------------------------------------------------------


def test_agent_versions_are_immutable_and_retrievable(client, agent):
    assert agent.version == 1
    updated = client.beta.agents.update(agent.id, version=1, system=V2_PROMPT)
    assert updated.version == 2
    assert updated.system == V2_PROMPT

    assert client.beta.agents.retrieve(agent.id).system == V2_PROMPT
    first = client.beta.agents.retrieve(agent.id, version=1)
    assert (first.version, first.system) == (1, V1_PROMPT)
    assert [version.version for version in client.beta.agents.versions.list(agent.id)] == [2, 1]
    with pytest.raises(anthropic.NotFoundError, match="current version is 2"):
        client.beta.agents.retrieve(agent.id, version=7)


def test_update_preserves_omitted_fields_and_patches_metadata(client):
    created = client.beta.agents.create(
        name="keeper", model="claude-sonnet-4-5", system="one", description="d", metadata={"a": "1", "b": "2"}
    )
    updated = client.beta.agents.update(created.id, metadata={"a": None, "c": "3"})
    assert (updated.system, updated.description, updated.name) == ("one", "d", "keeper")
    assert updated.metadata == {"b": "2", "c": "3"}
    assert updated.model.id == "claude-sonnet-4-5"


def test_stale_update_is_one_409_naming_the_current_version(server, client, agent):
    client.beta.agents.update(agent.id, system="edited elsewhere")
    route = "POST /v1/agents/{agent_id}"
    before = server.stats()["requests"][route]

    with pytest.raises(anthropic.ConflictError) as refusal:
        client.beta.agents.update(agent.id, version=1, system="my stale edit")

    assert refusal.value.status_code == 409
    assert refusal.value.type == "invalid_request_error"  # the API documents no conflict_error type
    assert refusal.value.request_id and refusal.value.request_id.startswith("req_")
    assert refusal.value.body["request_id"] == refusal.value.request_id
    assert "version 2" in refusal.value.api_message
    assert server.stats()["requests"][route] == before + 1
    assert client.beta.agents.retrieve(agent.id).system == "edited elsewhere"


def test_the_sdk_retries_409_unless_told_not_to(server, agent):
    with make_client(server, max_retries=2) as retrying_client:
        retrying_client.beta.agents.update(agent.id, system="moved on")
        before = server.stats()["requests"]["POST /v1/agents/{agent_id}"]
        with pytest.raises(anthropic.ConflictError):
            retrying_client.beta.agents.update(agent.id, version=1, system="stale", timeout=5)
    assert server.stats()["requests"]["POST /v1/agents/{agent_id}"] == before + 3


def test_agent_list_and_archive(client, agent):
    other = client.beta.agents.create(name="other", model="claude-haiku-4-5")
    assert {listed.id for listed in client.beta.agents.list()} == {agent.id, other.id}
    archived = client.beta.agents.archive(other.id)
    assert archived.archived_at is not None
    assert [listed.id for listed in client.beta.agents.list()] == [agent.id]
    assert len(list(client.beta.agents.list(include_archived=True))) == 2
    with pytest.raises(anthropic.BadRequestError, match="archived"):
        client.beta.agents.update(other.id, system="no")


def test_timestamp_versions_are_large_increasing_and_not_contiguous(server, client, environment):
    server.configure(versions="timestamp")
    created = client.beta.agents.create(name="big-versions", model="claude-sonnet-4-5", system=V1_PROMPT)
    second = client.beta.agents.update(created.id, version=created.version, system=V2_PROMPT)
    third = client.beta.agents.update(created.id, version=second.version, system=V1_PROMPT)

    assert isinstance(created.version, int) and created.version > 2**40 > 2**31
    assert created.version < second.version < third.version < 2**63
    assert second.version - created.version >= 2 and third.version - second.version >= 2
    pinned = client.beta.sessions.create(
        agent={"type": "agent", "id": created.id, "version": second.version}, environment_id=environment.id
    )
    assert pinned.agent.version == second.version
    assert client.beta.agents.retrieve(created.id, version=created.version).system == V1_PROMPT
