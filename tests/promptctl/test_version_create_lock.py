"""``version_create`` calls Managed Agents with no database lock held, and the server's 409 decides a race."""

from __future__ import annotations

import re
import threading

import pytest
from django.db import connection

from promptctl import services
from promptctl.errors import DomainError
from promptctl.models import Agent, AgentVersion, AuditEvent, VersionIntent
from tests.change_control_support import V2

pytestmark = pytest.mark.django_db(transaction=True)

UPDATE_AGENT = r"POST /v1/agents/[^/]+"


def _in_thread(work, outcomes: dict, key: str) -> threading.Thread:
    def run() -> None:
        try:
            outcomes[key] = work()
        except DomainError as refusal:
            outcomes[key] = refusal
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_two_creates_at_once_one_wins_and_the_database_stays_writable(agent, requester, admin_user, emulator_proxy):
    first = agent.latest_version_number
    emulator_proxy.hold_pattern = re.compile(UPDATE_AGENT)
    outcomes: dict[str, object] = {}
    creators = [
        _in_thread(lambda p=prompt: services.version_create(agent=agent, system_prompt=p, actor=requester), outcomes, k)
        for k, prompt in (("a", V2), ("b", V2 + "\nBe brief."))
    ]
    try:
        # Both remote updates are in flight (held at the proxy): a third writer must not wait on either.
        assert emulator_proxy.wait_held(2)
        writer = _in_thread(
            lambda: services.agent_policy_update(agent=agent, actor=admin_user, regression_tolerance=3), outcomes, "w"
        )
        writer.join(timeout=10)
        assert not writer.is_alive(), "a database write waited on a version_create's network call"
        assert isinstance(outcomes["w"], Agent) and outcomes["w"].regression_tolerance == 3
    finally:
        emulator_proxy.release()
        for thread in creators:
            thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in creators)

    won = [o for o in (outcomes["a"], outcomes["b"]) if isinstance(o, AgentVersion)]
    lost = [o for o in (outcomes["a"], outcomes["b"]) if isinstance(o, DomainError)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    message = str(lost[0])
    assert "\n" not in message and f"against version {first}" in message and "Nothing was created" in message
    assert f"server now has version {won[0].number}" in message
    agent.refresh_from_db()
    assert agent.latest_version_number == won[0].number
    assert list(agent.versions.values_list("number", flat=True)) == [first, won[0].number]


def test_a_sync_that_records_the_version_first_is_reconciled(agent, requester, emulator_proxy):
    emulator_proxy.hold_pattern = re.compile(UPDATE_AGENT)
    emulator_proxy.hold_after_upstream = True  # the server has made the version; its reply is late
    outcomes: dict[str, object] = {}
    creator = _in_thread(lambda: services.version_create(agent=agent, system_prompt=V2, actor=requester), outcomes, "c")
    try:
        assert emulator_proxy.wait_held(1)
        synced = services.agent_sync(agent=agent)  # would wait on the agent row if the create held it
        # The update's marker names the create's intent: promptctl's own version, not a change made outside.
        assert synced.new_versions == []
        assert [(v.origin, v.created_by) for v in synced.reconciled] == [(AgentVersion.Origin.PROMPTCTL, requester)]
    finally:
        emulator_proxy.release()
        creator.join(timeout=30)
    made = outcomes["c"]
    assert isinstance(made, AgentVersion) and made.number == synced.reconciled[0].number
    assert agent.versions.filter(number=made.number).count() == 1  # recorded once, by the sync
    event = AuditEvent.objects.get(verb="version.reconciled")
    assert event.actor_id == requester.pk and event.after["recorded_by"] == "sync"
    intent = VersionIntent.objects.get(agent=agent)
    assert intent.outcome == VersionIntent.Outcome.MADE and intent.version_number == made.number
