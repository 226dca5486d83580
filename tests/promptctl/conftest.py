"""Fixtures for change-control tests (the people and the agent are in ``tests/conftest.py``)."""

from __future__ import annotations

import anthropic
import pytest

from promptctl import services
from tests.change_control_support import PASSWORD


@pytest.fixture
def admin_user(db):
    """promptctl's admin, a superuser in both groups (here in place of pytest-django's ``admin_user``)."""
    return services.user_create(username="ada", role="admin", password=PASSWORD)


@pytest.fixture
def remote_client(emulator):
    """The SDK pointed at the emulator, for changes made 'outside promptctl'."""
    return anthropic.Anthropic(base_url=emulator.base_url, api_key="x", max_retries=0)


@pytest.fixture
def checkpointed_history(agent, requester, reviewer, django_capture_on_commit_callbacks):
    """A realistic chain (users, agent, version, a promotion applied) whose pin move published a checkpoint."""
    from promptctl.models import AuditEvent
    from tests.change_control_support import promote

    with django_capture_on_commit_callbacks(execute=True):
        promote(agent, agent.latest_version_number, requester, reviewer)
    events = list(AuditEvent.objects.order_by("sequence"))
    assert len(events) >= 8
    return events


@pytest.fixture
def webhook_receiver():
    """A real HTTP receiver on loopback that records and verifies signed deliveries (``tests.promptctl.webhook_support``)."""
    from tests.promptctl.webhook_support import Receiver

    receiver = Receiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def eager_tasks():
    """Celery tasks run in the calling thread (for tests of what a task does, not of workers)."""
    from config.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


@pytest.fixture
def webhook_workers(transactional_db, emulator):
    """Real Celery worker processes for delivery tests (``tests.evals.support.Workers``)."""
    from tests.evals.support import Workers

    pool = Workers(emulator_url=emulator.base_url)
    pool.purge()
    yield pool
    pool.stop_all()
    pool.purge()
