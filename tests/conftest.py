"""Shared fixtures: the emulator over loopback HTTP, and server requirements.

Tests that need PostgreSQL or Redis are marked ``postgres`` / ``redis``. Locally
they skip with the reason printed when the server is not configured; in CI
(``PROMPTCTL_REQUIRE_SERVERS=1``) a missing server is a failure, never a skip.
"""

from __future__ import annotations

import os

import pytest
from django.conf import settings as django_settings

REQUIRE_SERVERS = os.environ.get("PROMPTCTL_REQUIRE_SERVERS") == "1"


def _missing_server(marker_name: str) -> str | None:
    if marker_name == "postgres":
        engine = django_settings.DATABASES["default"]["ENGINE"]
        if "postgresql" not in engine:
            return "needs PostgreSQL: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/promptctl"
    if marker_name == "redis":
        if not django_settings.CELERY_BROKER_URL.startswith("redis://"):
            return "needs Redis: set CELERY_BROKER_URL=redis://127.0.0.1:6379/15"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker_name in ("postgres", "redis"):
        if item.get_closest_marker(marker_name) is None:
            continue
        reason = _missing_server(marker_name)
        if reason is None:
            continue
        if REQUIRE_SERVERS:
            pytest.fail(f"CI requires this server but it is not configured: {reason}")
        pytest.skip(reason)


@pytest.fixture(autouse=True)
def _database_threads_stopped():
    """No test leaves the API's database threads (promptctl.dbsteps) running with open connections.

    They start when the application is driven from an event loop with no
    synchronous caller waiting (schemathesis, for one); left open, their
    connections would keep PostgreSQL from dropping the test database.
    """
    yield
    from promptctl import dbsteps

    dbsteps.threads_stop()


@pytest.fixture(scope="session")
def emulator_server():
    """One emulator per test session, on a free loopback port."""
    from managed_agents.emulator.server import EmulatorServer

    server = EmulatorServer(host="127.0.0.1", port=0)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def emulator(emulator_server, settings):
    """The emulator with fresh state and default knobs; promptctl's gateway points at it."""
    from managed_agents import gateway

    emulator_server.reset()
    settings.ANTHROPIC_BASE_URL = emulator_server.base_url
    settings.ANTHROPIC_API_KEY = "emulator-accepts-any-key"
    gateway.client_reset()
    yield emulator_server
    gateway.client_reset()
