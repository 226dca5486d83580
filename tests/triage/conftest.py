"""Fixtures for the triage tests: people, an agent in production through the evals gate, an API key and client.

Plain helpers (``People``, ``ProductionAgent``, ``Api``, ``ticket`` ...) are in ``tests.triage.support``.
"""

from __future__ import annotations

import pytest

from tests.triage.support import Api, People, ProductionAgent
from triage import services


@pytest.fixture
def quiet_limits(settings):
    """Tests of the API are not tests of the shared session budget."""
    settings.PROMPTCTL_RATE_LIMITER = "off"
    settings.PROMPTCTL_BACKOFF_BASE = 0.01


@pytest.fixture
def people(db):
    return People()


@pytest.fixture
def production(emulator, people, quiet_limits):
    return ProductionAgent(people)


@pytest.fixture
def api_key(production):
    """A key for every agent; returns the secret."""
    return services.api_key_create(name="helpdesk", actor=production.people.admin, all_agents=True).secret


@pytest.fixture
def api(api_key):
    return Api(api_key)


@pytest.fixture
def eager_tasks():
    """Celery tasks run in the calling thread (for tests of what a task does, not of workers)."""
    from config.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous
