"""The async twin of the gateway, through the real async SDK client against the emulator."""

from __future__ import annotations

import asyncio
import time

import pytest

from managed_agents import gateway
from managed_agents.verdicts import allowed_labels, verdict_parse
from tests.triage.support import TICKETS, V1, V2, ticket_text


@pytest.fixture
def agent(emulator):
    environment = gateway.environment_ensure(name="promptctl-tests")
    created = gateway.agent_create(name="ticket-triage", model="claude-sonnet-4-6", system=V1)
    return environment, created


def run(coroutine):
    return asyncio.run(coroutine)


def test_async_session_is_pinned_to_the_requested_version(agent, emulator):
    environment, created = agent
    gateway.agent_update(agent_id=created.agent_id, expected_version=created.version, system=V2)
    billing_about_usage = next(t for t in TICKETS if t["id"] == "TKT-1001")

    async def both():
        old = await gateway.session_run_async(
            agent_id=created.agent_id,
            version=created.version,
            environment_id=environment.id,
            text=ticket_text(billing_about_usage),
        )
        new = await gateway.session_run_async(
            agent_id=created.agent_id,
            version=created.version + 1,
            environment_id=environment.id,
            text=ticket_text(billing_about_usage),
        )
        return old, new

    old, new = run(both())
    allowed = allowed_labels(V1)
    assert verdict_parse(reply=old.reply_text, allowed=allowed).team == "billing"
    assert verdict_parse(reply=new.reply_text, allowed=allowed).team == "api-platform"
    assert old.archived and new.archived and old.session_id != new.session_id
    assert old.stop_reason == "end_turn" and old.attempts >= 3 and old.retries == 0
    assert emulator.stats()["sessions"]["unarchived"] == 0


def test_concurrent_sessions_share_one_loop_without_serialising(agent, emulator):
    """32 sessions of 0.5 s each on one event loop finish in far less than 32 × 0.5 s."""
    environment, created = agent
    emulator.configure(latency=0.5)

    async def many():
        return await asyncio.gather(
            *[
                gateway.session_run_async(
                    agent_id=created.agent_id,
                    version=created.version,
                    environment_id=environment.id,
                    text=ticket_text(TICKETS[index % len(TICKETS)]),
                )
                for index in range(32)
            ]
        )

    started = time.monotonic()
    transcripts = run(many())
    elapsed = time.monotonic() - started
    assert len({t.session_id for t in transcripts}) == 32
    assert all(verdict_parse(reply=t.reply_text, allowed=allowed_labels(V1)).ok for t in transcripts)
    assert elapsed < 6.0, f"32 concurrent 0.5 s sessions took {elapsed:.1f}s: the async path is serialising"
    assert emulator.stats()["sessions"]["unarchived"] == 0


def test_async_retries_injected_500s_and_429s(agent, emulator, settings):
    settings.PROMPTCTL_BACKOFF_BASE = 0.02
    settings.PROMPTCTL_MAX_ATTEMPTS = 12
    environment, created = agent
    emulator.configure(fault_500=0.2, fault_429=0.1, seed=11)

    async def all_tickets():
        return await asyncio.gather(
            *[
                gateway.session_run_async(
                    agent_id=created.agent_id,
                    version=created.version,
                    environment_id=environment.id,
                    text=ticket_text(ticket),
                    metadata={"ticket": ticket["id"]},
                )
                for ticket in TICKETS
            ]
        )

    transcripts = run(all_tickets())
    assert all(verdict_parse(reply=t.reply_text, allowed=allowed_labels(V1)).ok for t in transcripts)
    assert sum(t.retries for t in transcripts) > 0, "faults were injected, so some calls must have been retried"
    emulator.configure(fault_500=0.0, fault_429=0.0)
    assert emulator.stats()["sessions"]["unarchived"] == 0


def test_async_persistent_failures_end_with_upstream_unavailable(agent, emulator, settings):
    settings.PROMPTCTL_BACKOFF_BASE = 0.01
    settings.PROMPTCTL_MAX_ATTEMPTS = 3
    environment, created = agent
    emulator.configure(fault_500=1.0)
    with pytest.raises(gateway.UpstreamUnavailable) as failed:
        run(
            gateway.session_run_async(
                agent_id=created.agent_id, version=created.version, environment_id=environment.id, text="x"
            )
        )
    assert "after 3 attempts" in str(failed.value)


def test_async_stuck_session_times_out_is_interrupted_and_archived(agent, emulator):
    environment, created = agent
    emulator.configure(fault_stuck=1.0)
    started = time.monotonic()
    with pytest.raises(gateway.SessionTimeout) as timed_out:
        run(
            gateway.session_run_async(
                agent_id=created.agent_id,
                version=created.version,
                environment_id=environment.id,
                text="Subject: x\n\ny",
                timeout=1.0,
            )
        )
    assert time.monotonic() - started < 8.0
    assert "interrupted and archived" in str(timed_out.value)
    assert emulator.stats()["sessions"]["unarchived"] == 0


def test_cancelled_caller_still_archives_the_session(agent, emulator):
    """A client that goes away cancels the view's coroutine; the session must not be left running."""
    environment, created = agent
    emulator.configure(fault_stuck=1.0)

    async def cancel_midway():
        task = asyncio.ensure_future(
            gateway.session_run_async(
                agent_id=created.agent_id,
                version=created.version,
                environment_id=environment.id,
                text="Subject: x\n\ny",
                timeout=30.0,
            )
        )
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The shielded clean-up keeps running on the loop after the cancellation.
        for _ in range(100):
            if emulator.stats()["sessions"]["unarchived"] == 0:
                return True
            await asyncio.sleep(0.05)
        return False

    assert run(cancel_midway()) is True
    assert emulator.stats()["sessions"]["total"] == 1


def test_async_refuses_a_bare_agent_id_before_any_request(agent, emulator):
    environment, created = agent
    before = emulator.stats()["requests"]
    with pytest.raises(gateway.GatewayError) as refused:
        run(gateway.session_run_async(agent_id=created.agent_id, version=None, environment_id=environment.id, text="x"))
    assert "refusing 'latest'" in str(refused.value)
    assert emulator.stats()["requests"] == before


def test_async_malformed_reply_is_returned_not_raised(agent, emulator):
    environment, created = agent
    emulator.configure(fault_malformed=1.0)
    transcript = run(
        gateway.session_run_async(
            agent_id=created.agent_id,
            version=created.version,
            environment_id=environment.id,
            text=ticket_text(TICKETS[5]),
        )
    )
    verdict = verdict_parse(reply=transcript.reply_text, allowed=allowed_labels(V1))
    assert not verdict.ok or verdict.format_warning, "a malformed reply is either invalid or recovered with a warning"
    assert transcript.archived


def test_one_async_client_per_event_loop(emulator):
    async def two_lookups():
        return gateway.async_client(), gateway.async_client()

    first_a, first_b = run(two_lookups())
    second_a, _ = run(two_lookups())
    assert first_a is first_b
    assert second_a is not first_a
