"""Fixtures for the gateway tests: a fresh v1 agent on the emulator to run tickets on."""

from __future__ import annotations

import pytest

from managed_agents import gateway
from managed_agents.verdicts import allowed_labels
from promptctl.tutorial import V1_PROMPT


@pytest.fixture
def ticket_target(emulator):
    """The keyword arguments of a ticket run on a fresh v1 agent (pinned version), minus the text."""
    environment = gateway.environment_ensure(name="promptctl-tests")
    created = gateway.agent_create(name="ticket-triage", model="claude-sonnet-4-6", system=V1_PROMPT)
    return {
        "agent_id": created.agent_id,
        "version": created.version,
        "environment_id": environment.id,
        "allowed": allowed_labels(V1_PROMPT),
    }
