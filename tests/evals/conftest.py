"""Fixtures for evals tests: the tutorial agent's versions, the gating test set, the session budget, real Celery workers.

The tutorial's people and agent (v1 prompt) come from ``tests/conftest.py``;
helpers (``execute_all``, ``wait_for_run``, ``Workers``) from ``tests.evals.support``.
"""

from __future__ import annotations

import pytest

from managed_agents import ratelimit
from promptctl import services as promptctl_services
from tests.change_control_support import PASSWORD, V2
from tests.evals.support import TICKETS


@pytest.fixture
def versions(agent, requester):
    """(v1, v2) of the tutorial agent."""
    v1 = agent.versions.get()
    v2 = promptctl_services.version_create(agent=agent, system_prompt=V2, actor=requester)
    return v1, v2


@pytest.fixture
def gatekeeper(db):
    """An admin: choosing an agent's gating test set, or changing its contents, needs evals.change_gating_testset."""
    return promptctl_services.user_create(username="gina", role="admin", password=PASSWORD)


@pytest.fixture
def gating_set(agent, gatekeeper):
    from evals import services

    imported = services.testset_import(
        name="support-tickets",
        data=TICKETS.read_bytes(),
        filename=TICKETS.name,
        agent=agent,
        gating=True,
        actor=gatekeeper,
    )
    return imported.version


@pytest.fixture(autouse=True)
def _full_session_budget(settings):
    """Each test starts with the whole burst available (the budget is shared across runs by design)."""
    ratelimit.limiter_reset()
    yield


@pytest.fixture
def generous_budget(settings):
    """For tests that run units one after another; the spacing of the shared budget is tested elsewhere."""
    settings.PROMPTCTL_SESSION_CREATE_BUDGET = 100_000
