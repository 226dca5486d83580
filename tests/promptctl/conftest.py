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


# --- the tutorial's review (alice files, bob and carol review, ada administers) ---------------


@pytest.fixture
def people(db):
    """The tutorial's roles: alice files, bob and carol review, ada is the admin."""
    return {
        "alice": services.user_create(username="alice", role="requester", password=PASSWORD),
        "bob": services.user_create(username="bob", role="reviewer", password=PASSWORD),
        "carol": services.user_create(username="carol", role="reviewer", password=PASSWORD),
        "ada": services.user_create(username="ada", role="admin", password=PASSWORD),
    }


@pytest.fixture
def tutorial_agent(emulator, people):
    """The tutorial agent with v1 and v2 (v2 adds the ROUTING RULE)."""
    from tests.change_control_support import V1, V2

    agent = services.agent_create(
        name="ticket-triage", model="claude-sonnet-4-6", system_prompt=V1, actor=people["alice"]
    )
    v1 = agent.versions.get()
    v2 = services.version_create(agent=agent, system_prompt=V2, actor=people["alice"])
    return agent, v1, v2


@pytest.fixture
def tutorial_comparison(tutorial_agent, people, settings):
    """Production at v1 (first promotion on its run), and the comparison of v1 with v2 on the gating set.

    The runs execute in this thread before Chromium starts: Playwright's sync API
    runs an event loop here, and the session calls refuse to block such a thread.
    """
    from evals import services as evals_services
    from managed_agents import ratelimit
    from tests.evals.support import TICKETS, execute_all

    settings.PROMPTCTL_SESSION_CREATE_BUDGET = 100_000
    ratelimit.limiter_reset()
    agent, v1, v2 = tutorial_agent
    gating = evals_services.testset_import(
        name="support-tickets",
        data=TICKETS.read_bytes(),
        filename=TICKETS.name,
        agent=agent,
        gating=True,
        actor=people["ada"],
    ).version
    baseline = execute_all(evals_services.eval_run_start(agent_version=v1, testset_version=gating))
    first = services.change_request_create(
        agent=agent,
        kind="promote",
        target_number=v1.number,
        reason="first production version",
        evidence_ref=f"run:{baseline.pk}",
        actor=people["alice"],
    )
    services.change_request_approve(change=first, reviewer=people["bob"])
    services.change_request_apply(change=first, actor=people["bob"])
    candidate = execute_all(evals_services.eval_run_start(agent_version=v2, testset_version=gating))
    comparison = evals_services.comparison_create(baseline_run=baseline, candidate_run=candidate)
    assert comparison.regressed and comparison.result["regressed_teams"] == ["billing"]
    return comparison
