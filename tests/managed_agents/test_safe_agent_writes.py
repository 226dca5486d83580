"""Agent and environment writes that are safe to retry: a lost response never makes a second one.

The emulator's lost-response fault carries the request out and then loses the
answer (a 500, or a connection closed with no response). Creates and updates
carry a client-generated marker in their metadata, and a retry first looks for
it on the server. Everything runs through the real SDK against the emulator
over HTTP.
"""

from __future__ import annotations

import pytest

from managed_agents import gateway
from promptctl.tutorial import V1_PROMPT, V2_PROMPT

CREATE_AGENT = "POST /v1/agents"
UPDATE_AGENT = "POST /v1/agents/{agent_id}"
LIST_VERSIONS = "GET /v1/agents/{agent_id}/versions"
CREATE_ENVIRONMENT = "POST /v1/environments"
MODEL = "claude-sonnet-4-6"


@pytest.mark.parametrize("mode", ["500", "close"])
def test_a_lost_agent_create_response_adopts_the_agent_that_landed(emulator, quick_retries, mode):
    emulator.configure(fault_lost=1.0, lost_routes=CREATE_AGENT, lost_mode=mode)
    created = gateway.agent_create(name="ticket-triage", model=MODEL, system=V1_PROMPT)
    stats = emulator.stats()
    assert stats["faults"]["fault_lost"] == 1 and stats["requests"][CREATE_AGENT] == 1  # never sent again
    assert stats["agents"] == 1  # one remote agent: agents cannot be deleted, so a second would stay forever
    emulator.configure(fault_lost=0.0)
    assert [agent.id for agent in gateway.client().beta.agents.list()] == [created.agent_id]
    assert created.marker and created.version >= 1 and created.system == V1_PROMPT


@pytest.mark.parametrize("mode", ["500", "close"])
def test_a_lost_environment_create_response_adopts_the_environment_that_landed(emulator, quick_retries, mode):
    emulator.configure(fault_lost=1.0, lost_routes=CREATE_ENVIRONMENT, lost_mode=mode)
    environment = gateway.environment_ensure(name="faulty")
    stats = emulator.stats()
    assert stats["environments"] == 1 and stats["requests"][CREATE_ENVIRONMENT] == 1
    assert gateway.environment_ensure(name="faulty").id == environment.id  # reused by name afterwards


@pytest.mark.parametrize("mode", ["500", "close"])
def test_a_lost_update_response_returns_the_version_it_made(emulator, quick_retries, mode):
    created = gateway.agent_create(name="ticket-triage", model=MODEL, system=V1_PROMPT)
    emulator.configure(fault_lost=1.0, lost_routes=UPDATE_AGENT, lost_mode=mode)
    updated = gateway.agent_update(
        agent_id=created.agent_id, expected_version=created.version, system=V2_PROMPT, marker="m-1"
    )
    stats = emulator.stats()
    assert stats["requests"][UPDATE_AGENT] == 1 and stats["faults"]["fault_lost"] == 1
    assert stats["agent_versions"] == 2  # one new version, reported as this update's
    assert updated.version > created.version and updated.system == V2_PROMPT and updated.marker == "m-1"


def test_an_update_whose_outcome_cannot_be_checked_never_says_nothing_changed(emulator, quick_retries, settings):
    """The update lands and every answer is lost, the version list included: the refusal says it may have landed."""
    settings.PROMPTCTL_MAX_ATTEMPTS = 3
    created = gateway.agent_create(name="ticket-triage", model=MODEL, system=V1_PROMPT)
    emulator.configure(fault_lost=1.0, lost_routes=f"{UPDATE_AGENT},{LIST_VERSIONS}")
    with pytest.raises(gateway.OutcomeUnknown) as failed:
        gateway.agent_update(agent_id=created.agent_id, expected_version=created.version, system=V2_PROMPT)
    message = str(failed.value)
    assert "Nothing was changed" not in message and "nothing was changed" not in message
    assert "may have made a version" in message and "sync the agent" in message
    assert emulator.stats()["agent_versions"] == 2  # it had landed: the message was right not to deny it


def test_an_update_that_was_refused_before_the_work_says_nothing_changed(emulator, quick_retries, settings):
    """429s are never carried out: once the attempts are spent, the refusal may say nothing was changed."""
    settings.PROMPTCTL_MAX_ATTEMPTS = 2
    created = gateway.agent_create(name="ticket-triage", model=MODEL, system=V1_PROMPT)
    emulator.configure(fault_429=1.0, retry_after=0.01)
    with pytest.raises(gateway.UpstreamUnavailable) as failed:
        gateway.agent_update(agent_id=created.agent_id, expected_version=created.version, system=V2_PROMPT)
    assert not isinstance(failed.value, gateway.OutcomeUnknown)
    assert "Nothing was changed" in str(failed.value)
    assert emulator.stats()["agent_versions"] == 1


def test_a_quarter_of_every_answer_lost_makes_each_agent_and_version_once(emulator, quick_retries):
    emulator.configure(fault_lost=0.25, seed=13)
    made = []
    for index in range(12):
        created = gateway.agent_create(name=f"agent-{index}", model=MODEL, system=V1_PROMPT)
        made.append(gateway.agent_update(agent_id=created.agent_id, expected_version=created.version, system=V2_PROMPT))
    stats = emulator.stats()
    assert stats["faults"]["fault_lost"] >= 6  # the faults did fire on creates, updates and lookups
    assert stats["agents"] == 12 and stats["agent_versions"] == 24
    assert len({version.agent_id for version in made}) == 12
