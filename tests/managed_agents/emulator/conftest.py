"""Fixtures for the emulator tests: the session's emulator emptied for each test, a strict SDK client, an environment, an agent.

No Django database is used.
"""

from __future__ import annotations

import pytest

from promptctl.tutorial import V1_PROMPT
from tests.managed_agents.emulator.support import make_client


@pytest.fixture
def server(emulator_server):
    """The shared emulator with empty state and default knobs for each test."""
    emulator_server.reset()
    yield emulator_server
    emulator_server.reset()


@pytest.fixture
def client(server):
    with make_client(server, max_retries=0) as sdk_client:
        yield sdk_client


@pytest.fixture
def environment(client):
    return client.beta.environments.create(name="triage-tests")


@pytest.fixture
def agent(client):
    return client.beta.agents.create(name="ticket-triage", model="claude-sonnet-4-5", system=V1_PROMPT)
