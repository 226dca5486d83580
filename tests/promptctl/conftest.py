"""Fixtures for change-control tests: people in their roles, and an agent on the emulator."""

from __future__ import annotations

import anthropic
import pytest

from promptctl import services
from promptctl.tutorial import V1_PROMPT, V2_PROMPT

V1 = V1_PROMPT
V2 = V2_PROMPT
PASSWORD = "correct-horse-battery"
# Change-control mechanics are the same on every channel. Production promotions
# also pass the evals app's evidence gate (tested with the evals app), so these
# tests move the staging pin unless a test is about production itself.
CHANNEL = "staging"


@pytest.fixture
def requester(db):
    return services.user_create(username="rita", role="requester", password=PASSWORD)


@pytest.fixture
def reviewer(db):
    return services.user_create(username="victor", role="reviewer", password=PASSWORD)


@pytest.fixture
def second_reviewer(db):
    return services.user_create(username="wendy", role="reviewer", password=PASSWORD)


@pytest.fixture
def admin_user(db):
    return services.user_create(username="ada", role="admin", password=PASSWORD)


@pytest.fixture
def agent(emulator, requester):
    return services.agent_create(name="ticket-triage", model="claude-sonnet-4-6", system_prompt=V1, actor=requester)


@pytest.fixture
def remote_client(emulator):
    """The SDK pointed at the emulator, for changes made 'outside promptctl'."""
    return anthropic.Anthropic(base_url=emulator.base_url, api_key="x", max_retries=0)


def promote(agent, number, requester, reviewer, *, kind="promote", channel=CHANNEL, percent=None):
    """File, approve and apply one change through the services; returns the applied request."""
    change = services.change_request_create(
        agent=agent, kind=kind, target_number=number, reason=f"move to v{number}", actor=requester,
        channel=channel, canary_percent=percent,
    )
    services.change_request_approve(change=change, reviewer=reviewer)
    services.change_request_apply(change=change, actor=reviewer)
    change.refresh_from_db()
    return change


from tests.browser_support import browser_page, chromium  # noqa: E402,F401  (fixtures for test_browser.py)
