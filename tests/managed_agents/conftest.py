"""Fixtures for the gateway tests: a fresh v1 agent on the emulator to run tickets on."""

from __future__ import annotations

import pytest

from promptctl.tutorial import tutorial_ticket_target


@pytest.fixture
def quick_retries(settings):
    """Backoff in hundredths of a second: the retry paths are under test, not their waiting."""
    settings.PROMPTCTL_BACKOFF_BASE = 0.01
    settings.PROMPTCTL_BACKOFF_CAP = 0.05


@pytest.fixture
def ticket_target(emulator):
    """The keyword arguments of a ticket run on a fresh v1 agent (pinned version), minus the text."""
    return tutorial_ticket_target(environment="promptctl-tests")
