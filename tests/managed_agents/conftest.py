"""Fixtures for the gateway tests: a fresh v1 agent on the emulator to run tickets on."""

from __future__ import annotations

import pytest

from promptctl.tutorial import tutorial_ticket_target


@pytest.fixture
def ticket_target(emulator):
    """The keyword arguments of a ticket run on a fresh v1 agent (pinned version), minus the text."""
    return tutorial_ticket_target(environment="promptctl-tests")
