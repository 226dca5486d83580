"""Version intents: promptctl's own versions are never recorded as "changed outside promptctl".

``version_create`` saves an intent before its remote update, and the update
carries the intent's marker. Whoever records the version first (the create, a
sync during it, or the next sync or create after a failure in between)
records it as promptctl's. Real SDK over HTTP to the emulator, with its
lost-response faults; a loopback proxy holds requests where a test needs a
call in flight.
"""

from __future__ import annotations

import re
import threading

import pytest
from django.db import connection

from managed_agents import gateway
from promptctl import selectors, services
from promptctl.errors import DomainError
from promptctl.models import AgentVersion, AuditEvent, VersionIntent
from tests.change_control_support import V2

pytestmark = pytest.mark.django_db(transaction=True)

UPDATE_AGENT = "POST /v1/agents/{agent_id}"
LIST_VERSIONS = "GET /v1/agents/{agent_id}/versions"


@pytest.fixture
def quick_retries(settings):
    settings.PROMPTCTL_BACKOFF_BASE = 0.01
    settings.PROMPTCTL_BACKOFF_CAP = 0.05


@pytest.mark.parametrize("mode", ["500", "close"])
def test_an_update_whose_answer_is_lost_is_recorded_once_as_promptctls(agent, requester, emulator, quick_retries, mode):
    emulator.configure(fault_lost=1.0, lost_routes=UPDATE_AGENT, lost_mode=mode)
    made = services.version_create(agent=agent, system_prompt=V2, actor=requester)
    stats = emulator.stats()
    assert stats["faults"]["fault_lost"] == 1 and stats["requests"][UPDATE_AGENT] == 1
    assert stats["agent_versions"] == 2
    assert made.origin == AgentVersion.Origin.PROMPTCTL and made.created_by == requester
    assert list(agent.versions.values_list("number", "origin")) == [
        (agent.latest_version_number, "promptctl"),
        (made.number, "promptctl"),
    ]
    intent = VersionIntent.objects.get(agent=agent)
    assert (intent.outcome, intent.version_number, intent.created_by) == ("made", made.number, requester)
    emulator.configure(fault_lost=0.0)
    assert services.agent_sync(agent=agent).new_versions == []  # nothing left for a sync to call "outside"


def test_an_unknown_outcome_is_settled_by_the_next_sync_as_promptctls(
    agent, requester, emulator, quick_retries, settings
):
    """The update lands, its answer and every lookup are lost: the refusal says so, and the sync records it."""
    settings.PROMPTCTL_MAX_ATTEMPTS = 3
    emulator.configure(fault_lost=1.0, lost_routes=f"{UPDATE_AGENT},{LIST_VERSIONS}")
    with pytest.raises(DomainError) as failed:
        services.version_create(agent=agent, system_prompt=V2, actor=requester)
    assert "nothing was changed" not in str(failed.value).lower() and "sync" in str(failed.value)
    assert agent.versions.count() == 1  # not recorded yet ...
    assert VersionIntent.objects.get(agent=agent).outcome == VersionIntent.Outcome.OPEN  # ... but not forgotten

    emulator.configure(fault_lost=0.0)
    result = services.agent_sync(agent=agent)  # a sync by nobody in particular (a cron job, say)
    assert result.new_versions == []
    assert [(v.origin, v.created_by, v.system_prompt) for v in result.reconciled] == [("promptctl", requester, V2)]
    intent = VersionIntent.objects.get(agent=agent)
    assert intent.outcome == "made" and intent.version_number == result.reconciled[0].number
    assert AuditEvent.objects.filter(verb="version.create", actor=requester).count() == 2  # v1 and this one


def test_the_next_version_create_settles_an_open_intent_first(agent, requester, emulator, quick_retries, settings):
    settings.PROMPTCTL_MAX_ATTEMPTS = 2
    emulator.configure(fault_lost=1.0, lost_routes=f"{UPDATE_AGENT},{LIST_VERSIONS}")
    with pytest.raises(gateway.OutcomeUnknown):
        services.version_create(agent=agent, system_prompt=V2, actor=requester)
    emulator.configure(fault_lost=0.0)
    # The person tries again: the earlier update had landed, so there is nothing to create, and it is theirs.
    with pytest.raises(DomainError, match="already has exactly this system prompt"):
        services.version_create(agent=agent, system_prompt=V2, actor=requester)
    latest = agent.versions.order_by("-number").first()
    assert (latest.system_prompt, latest.origin, latest.created_by) == (V2, "promptctl", requester)
    assert emulator.stats()["agent_versions"] == 2


def test_a_sync_while_the_update_is_still_on_its_way_records_nothing_and_leaves_it_open(
    agent, requester, emulator_proxy
):
    emulator_proxy.hold_pattern = re.compile(r"POST /v1/agents/[^/]+")  # held before it reaches the server
    outcomes: dict[str, object] = {}

    def create() -> None:
        try:
            outcomes["made"] = services.version_create(agent=agent, system_prompt=V2, actor=requester)
        finally:
            connection.close()

    creator = threading.Thread(target=create)
    creator.start()
    try:
        assert emulator_proxy.wait_held(1)
        synced = services.agent_sync(agent=agent)
        assert synced.new_versions == [] and synced.reconciled == []
        assert VersionIntent.objects.get(agent=agent).outcome == VersionIntent.Outcome.OPEN  # may still land
    finally:
        emulator_proxy.release()
        creator.join(timeout=30)
    made = outcomes["made"]
    assert isinstance(made, AgentVersion) and made.origin == "promptctl" and made.created_by == requester
    assert VersionIntent.objects.get(agent=agent).outcome == VersionIntent.Outcome.MADE


def test_an_outside_version_that_inherits_the_marker_is_still_outside(agent, requester, emulator):
    """Metadata carries over to later versions: only the lowest marked version above the base is promptctl's."""
    ours = services.version_create(agent=agent, system_prompt=V2, actor=requester)
    outside = gateway.client().beta.agents.update(agent.remote_id, version=ours.number, system=V2 + "\nBe brief.")
    assert (outside.metadata or {}).get(gateway.WRITE_MARKER) == VersionIntent.objects.get(agent=agent).marker
    result = services.agent_sync(agent=agent)
    assert [(v.number, v.origin, v.created_by) for v in result.new_versions] == [(outside.version, "outside", None)]
    assert result.reconciled == []


def test_a_conflict_resolves_the_intent_as_not_made(agent, requester, emulator):
    outside = gateway.client().beta.agents.update(
        agent.remote_id, version=agent.latest_version_number, system=V2 + "\nFrom the console."
    )
    with pytest.raises(DomainError, match="Nothing was created|changed on the server"):
        services.version_create(agent=agent, system_prompt=V2, actor=requester)
    intent = VersionIntent.objects.get(agent=agent)
    assert intent.outcome == VersionIntent.Outcome.NOT_MADE and intent.finished_at is not None
    assert list(agent.versions.filter(number=outside.version).values_list("origin", flat=True)) == ["outside"]
    assert intent.history.count() == 2  # opened, then resolved: simple-history keeps both


def test_the_write_marker_is_bookkeeping_not_a_difference_people_see(agent, requester, emulator):
    v1 = agent.versions.get()
    v2 = services.version_create(agent=agent, system_prompt=V2, actor=requester)
    assert gateway.WRITE_MARKER in v2.config["metadata"], "each write carries its own marker on the server"
    diff = selectors.version_diff(agent=agent, left_number=v1.number, right_number=v2.number)
    assert not any(gateway.WRITE_MARKER in line for line in diff.config_unified), diff.config_unified
    assert any("ROUTING RULE" in line for line in diff.system_unified)
