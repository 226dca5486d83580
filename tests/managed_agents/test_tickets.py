"""One ticket on one ticket_target version (``managed_agents.tickets``), through the real SDK against the emulator.

This is the one flow that evals, the triage API, jobs and shadow runs share,
so every way a run can end is pinned down here once.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from managed_agents import gateway, tickets
from tests.managed_agents.support import BILLING, text_of


def test_a_valid_verdict_is_read_and_the_sync_and_async_entries_agree(ticket_target, emulator):
    sync_run = tickets.ticket_run(**ticket_target, text=text_of(BILLING), metadata={"ticket": BILLING["id"]})
    async_run = asyncio.run(tickets.ticket_run_async(**ticket_target, text=text_of(BILLING)))
    assert sync_run.outcome == tickets.RUN_OK and sync_run.ok and not sync_run.transient
    assert (sync_run.team, sync_run.priority) == (async_run.team, async_run.priority) == ("billing", sync_run.priority)
    assert sync_run.priority in ("P1", "P2", "P3")
    assert sync_run.session_id and sync_run.session_id != async_run.session_id
    assert sync_run.reply.startswith("{") and sync_run.http_attempts >= 3 and sync_run.failure is None
    assert emulator.stats()["sessions"]["unarchived"] == 0


def test_a_label_the_prompt_does_not_allow_is_an_invalid_run_that_keeps_the_reply(ticket_target):
    run = tickets.ticket_run(
        **{**ticket_target, "allowed": {"team": ("sales",), "priority": ("P1",)}}, text=text_of(BILLING)
    )
    assert run.outcome == tickets.RUN_INVALID and not run.ok
    assert run.team == "" and run.priority == ""
    assert run.problem and run.reply.startswith("{")


def test_a_stuck_session_is_a_transient_timeout_and_is_archived(ticket_target, emulator):
    emulator.configure(fault_stuck=1.0)
    run = tickets.ticket_run(**ticket_target, text=text_of(BILLING), timeout=1.0)
    assert run.outcome == tickets.RUN_TIMEOUT and run.transient
    assert isinstance(run.failure, gateway.SessionTimeout) and "interrupted and archived" in run.problem
    assert emulator.stats()["sessions"]["unarchived"] == 0


def test_an_unreachable_service_is_transient_and_carries_no_reply(ticket_target, emulator, settings):
    settings.PROMPTCTL_MAX_ATTEMPTS = 2
    settings.PROMPTCTL_BACKOFF_BASE = 0.01
    emulator.configure(fault_500=1.0)
    run = tickets.ticket_run(**ticket_target, text=text_of(BILLING))
    emulator.configure(fault_500=0.0)
    assert run.outcome == tickets.RUN_UNAVAILABLE and run.transient
    assert isinstance(run.failure, gateway.UpstreamUnavailable) and "after 2 attempts" in run.problem
    assert run.reply == "" and run.session_id == ""


def test_an_unknown_agent_is_a_refusal_not_a_retry(ticket_target):
    run = tickets.ticket_run(**{**ticket_target, "agent_id": "agent_does_not_exist"}, text=text_of(BILLING))
    assert run.outcome == tickets.RUN_REFUSED and not run.transient
    assert "refused" in run.problem


def test_the_async_entry_waits_what_the_create_budget_asks_before_every_create(ticket_target, emulator):
    calls: list[float] = []

    def budget() -> float:
        calls.append(time.monotonic())
        return 0.3  # seconds until this caller's slot

    started = time.monotonic()
    run = asyncio.run(tickets.ticket_run_async(**ticket_target, text=text_of(BILLING), before_create=budget))
    assert run.ok and len(calls) == emulator.stats()["requests"]["POST /v1/sessions"] == 1
    assert time.monotonic() - started >= 0.3


def test_the_sync_entry_refuses_to_block_a_running_event_loop(ticket_target):
    async def inside_a_loop() -> None:
        tickets.ticket_run(**ticket_target, text=text_of(BILLING))

    with pytest.raises(RuntimeError, match="await it instead"):
        asyncio.run(inside_a_loop())
