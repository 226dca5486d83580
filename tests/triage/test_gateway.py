"""The gateway through the real SDK against the emulator over loopback HTTP."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anthropic
import pytest

from managed_agents import gateway
from managed_agents.verdicts import allowed_labels, verdict_parse
from tests.triage.support import TICKETS, V1, V2, ticket_text


def total_requests(emulator) -> int:
    return sum(emulator.stats()["requests"].values())


@pytest.fixture
def agent(emulator):
    environment = gateway.environment_ensure(name="promptctl-tests")
    created = gateway.agent_create(name="ticket-triage", model="claude-sonnet-4-6", system=V1)
    return environment, created


def test_environment_ensure_reuses_by_name(emulator):
    first = gateway.environment_ensure(name="shared-env")
    second = gateway.environment_ensure(name="shared-env")
    assert first.id == second.id
    assert gateway.environment_ensure(name="other-env").id != first.id


def test_agent_lifecycle_and_configuration_hash(agent):
    _environment, created = agent
    assert created.version >= 1 and created.system == V1 and created.model == "claude-sonnet-4-6"
    updated = gateway.agent_update(agent_id=created.agent_id, expected_version=created.version, system=V2)
    assert updated.version > created.version
    assert updated.config_sha256 != created.config_sha256
    again = gateway.agent_retrieve(agent_id=created.agent_id, version=created.version)
    assert again.system == V1 and again.config_sha256 == created.config_sha256
    versions = gateway.agent_versions(agent_id=created.agent_id)
    assert [v.version for v in versions] == [created.version, updated.version]
    assert gateway.agent_retrieve(agent_id=created.agent_id).version == updated.version
    gateway.agent_archive(agent_id=created.agent_id)


def test_stale_conditional_update_fails_after_exactly_one_request(agent, emulator):
    _environment, created = agent
    gateway.agent_update(agent_id=created.agent_id, expected_version=created.version, system=V2)
    before = total_requests(emulator)
    with pytest.raises(gateway.VersionConflict) as refused:
        gateway.agent_update(agent_id=created.agent_id, expected_version=created.version, system=V1 + "\nBe brief.")
    assert total_requests(emulator) - before == 1
    assert refused.value.server_version is not None and refused.value.server_version > created.version
    assert "Another change landed first" in str(refused.value)


def test_session_is_pinned_to_the_requested_version(agent, emulator):
    environment, created = agent
    gateway.agent_update(agent_id=created.agent_id, expected_version=created.version, system=V2)
    billing_about_usage = next(t for t in TICKETS if t["id"] == "TKT-1001")
    old = gateway.session_run(
        agent_id=created.agent_id,
        version=created.version,
        environment_id=environment.id,
        text=ticket_text(billing_about_usage),
    )
    new = gateway.session_run(
        agent_id=created.agent_id,
        version=created.version + 1,
        environment_id=environment.id,
        text=ticket_text(billing_about_usage),
    )
    allowed = allowed_labels(V1)
    assert verdict_parse(reply=old.reply_text, allowed=allowed).team == "billing"
    assert verdict_parse(reply=new.reply_text, allowed=allowed).team == "api-platform"
    assert old.archived and new.archived
    assert emulator.stats()["sessions"]["unarchived"] == 0


def test_transcript_reports_what_happened(agent):
    environment, created = agent
    transcript = gateway.session_run(
        agent_id=created.agent_id,
        version=created.version,
        environment_id=environment.id,
        text=ticket_text(TICKETS[0]),
        metadata={"promptctl_run": "7", "ticket": "TKT-1001", "attempt": "1"},
    )
    assert transcript.session_id and transcript.reply_text.startswith("{")
    assert transcript.stop_reason == "end_turn"
    assert transcript.event_count >= 3  # user.message, agent.message, status events
    assert transcript.attempts >= 3 and transcript.retries == 0  # create, stream, send
    assert transcript.latency_seconds > 0


def test_every_ticket_answered_through_injected_500s_and_429s(agent, emulator, settings):
    settings.PROMPTCTL_BACKOFF_BASE = 0.02
    settings.PROMPTCTL_MAX_ATTEMPTS = 12
    environment, created = agent
    emulator.configure(fault_500=0.2, fault_429=0.1, seed=7)

    def run(ticket):
        return gateway.session_run(
            agent_id=created.agent_id,
            version=created.version,
            environment_id=environment.id,
            text=ticket_text(ticket),
            metadata={"ticket": ticket["id"]},
        )

    with ThreadPoolExecutor(max_workers=10) as pool:
        transcripts = list(pool.map(run, TICKETS))
    allowed = allowed_labels(V1)
    assert len(transcripts) == 20
    assert all(verdict_parse(reply=t.reply_text, allowed=allowed).ok for t in transcripts)
    assert sum(t.retries for t in transcripts) > 0, "faults were injected, so some calls must have been retried"
    emulator.configure(fault_500=0.0, fault_429=0.0)
    sessions = emulator.stats()["sessions"]
    assert sessions["unarchived"] == 0 and sessions["archived"] == sessions["total"] >= 20


def test_stuck_session_times_out_is_interrupted_and_archived(agent, emulator):
    environment, created = agent
    emulator.configure(fault_stuck=1.0)
    with pytest.raises(gateway.SessionTimeout) as timed_out:
        gateway.session_run(
            agent_id=created.agent_id,
            version=created.version,
            environment_id=environment.id,
            text="Subject: x\n\ny",
            timeout=1.0,
        )
    assert "interrupted and archived" in str(timed_out.value)
    assert emulator.stats()["sessions"]["unarchived"] == 0


def test_malformed_reply_is_returned_not_raised(agent, emulator):
    environment, created = agent
    emulator.configure(fault_malformed=1.0)
    verdicts = [
        verdict_parse(
            reply=gateway.session_run(
                agent_id=created.agent_id,
                version=created.version,
                environment_id=environment.id,
                text=ticket_text(ticket),
            ).reply_text,
            allowed=allowed_labels(V1),
        )
        for ticket in TICKETS[:8]
    ]
    # Every malformed reply is either invalid (kept raw) or recovered with a format warning; none is clean.
    assert all((not v.ok) or v.format_warning for v in verdicts)
    assert any(not v.ok and v.raw for v in verdicts)


def test_persistent_failures_end_with_upstream_unavailable(agent, emulator, settings):
    settings.PROMPTCTL_BACKOFF_BASE = 0.01
    settings.PROMPTCTL_MAX_ATTEMPTS = 3
    environment, created = agent
    emulator.configure(fault_500=1.0)
    with pytest.raises(gateway.UpstreamUnavailable) as failed:
        gateway.session_run(agent_id=created.agent_id, version=created.version, environment_id=environment.id, text="x")
    assert "after 3 attempts" in str(failed.value)


def test_timestamp_versions_are_large_and_survive(emulator):
    emulator.configure(versions="timestamp")
    created = gateway.agent_create(name="big-numbers", model="claude-sonnet-4-6", system=V1)
    updated = gateway.agent_update(agent_id=created.agent_id, expected_version=created.version, system=V2)
    assert created.version > 2**31 and updated.version > created.version
    assert gateway.agent_retrieve(agent_id=created.agent_id, version=created.version).system == V1


def test_unpinned_sessions_are_refused_before_any_request(emulator):
    with pytest.raises(gateway.GatewayError, match="pinned"):
        gateway.session_run(agent_id="agent_x", version=None, environment_id="env", text="x")  # type: ignore[arg-type]


def test_no_endpoint_configured_is_a_clear_error(settings):
    settings.ANTHROPIC_API_KEY = ""
    settings.ANTHROPIC_BASE_URL = ""
    gateway.client_reset()
    with pytest.raises(gateway.GatewayError, match="ANTHROPIC_API_KEY"):
        gateway.client()


def test_only_the_gateway_imports_the_sdk():
    root = Path(__file__).resolve().parents[2]
    offenders = [
        str(path.relative_to(root))
        for package in ("promptctl", "triage", "evals")
        for path in (root / package).rglob("*.py")
        if path.name != "gateway.py"
        and "emulator" not in path.parts
        and ("import anthropic" in path.read_text() or "from anthropic" in path.read_text())
    ]
    assert offenders == []
    assert anthropic.__version__


def test_an_empty_base_url_in_the_environment_means_the_live_api(settings, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "")
    settings.ANTHROPIC_BASE_URL = ""
    settings.ANTHROPIC_API_KEY = "sk-ant-test-not-a-real-key"
    gateway.client_reset()
    try:
        assert str(gateway.client().base_url).rstrip("/") == gateway.LIVE_API_BASE_URL
    finally:
        gateway.client_reset()


def test_before_create_runs_for_every_create_attempt_retries_included(agent, emulator, settings):
    settings.PROMPTCTL_BACKOFF_BASE = 0.01
    settings.PROMPTCTL_MAX_ATTEMPTS = 20
    environment, created = agent
    emulator.configure(fault_500=0.5, seed=3)
    calls = []
    for ticket in TICKETS[:6]:
        gateway.session_run(
            agent_id=created.agent_id,
            version=created.version,
            environment_id=environment.id,
            text=ticket_text(ticket),
            before_create=lambda: calls.append(1),
        )
    emulator.configure(fault_500=0.0)
    creates = emulator.stats()["requests"]["POST /v1/sessions"]
    assert len(calls) == creates > 6, "with half the requests failing, some creates were retried and each took a slot"


def test_tagged_sessions_left_behind_are_found_and_archived(agent, emulator):
    environment, created = agent
    client = anthropic.Anthropic(base_url=emulator.base_url, api_key="x")
    pinned = {"type": "agent", "id": created.agent_id, "version": created.version}
    strays = [
        client.beta.sessions.create(
            agent=pinned, environment_id=environment.id, metadata={"promptctl_run": "41", "ticket": f"T{n}"}
        )
        for n in range(3)
    ]
    other = client.beta.sessions.create(agent=pinned, environment_id=environment.id, metadata={"promptctl_run": "42"})
    archived = gateway.sessions_archive_tagged(metadata={"promptctl_run": "41"}, agent_id=created.agent_id)
    assert sorted(archived) == sorted(s.id for s in strays)
    assert client.beta.sessions.retrieve(other.id).archived_at is None
    assert emulator.stats()["sessions"]["unarchived"] == 1
