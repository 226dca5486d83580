"""Retries that cannot do the work twice: a lost response on sessions.create or events.send.

The emulator's lost-response fault carries a request out and then loses the
answer (a 500, or a connection closed with no response). A plain retry would
then make a second session or send the ticket twice; the gateway looks for the
earlier attempt's result by its marker first. Everything runs through the real
SDK against the emulator over HTTP.
"""

from __future__ import annotations

import asyncio

import pytest

from managed_agents import sessions, tickets
from managed_agents.client import Attempts, UpstreamUnavailable, client, with_retries
from tests.managed_agents.support import CREATE, SEND, TICKETS, text_of


@pytest.mark.parametrize("mode", ["500", "close"])
def test_a_lost_create_response_adopts_the_session_that_landed(ticket_target, emulator, quick_retries, mode):
    emulator.configure(fault_lost=1.0, lost_routes=CREATE, lost_mode=mode)
    ticket_target.pop("allowed")
    transcript = sessions.session_run(**ticket_target, text=text_of(TICKETS[0]), metadata={"ticket": "TKT-1001"})
    stats = emulator.stats()
    assert stats["faults"]["fault_lost"] == 1  # the one create was carried out and its answer lost
    assert stats["requests"][CREATE] == 1  # and it was never sent again
    assert stats["sessions"]["created"] == 1 and stats["sessions"]["unarchived"] == 0
    assert transcript.retries >= 1 and transcript.reply_text.startswith('{"team": "billing"')


@pytest.mark.parametrize("mode", ["500", "close"])
def test_a_lost_send_response_does_not_send_the_ticket_twice(ticket_target, emulator, quick_retries, mode):
    emulator.configure(fault_lost=1.0, lost_routes=SEND, lost_mode=mode)
    run = tickets.ticket_run(**ticket_target, text=text_of(TICKETS[0]))
    stats = emulator.stats()
    assert run.outcome == tickets.RUN_OK and run.team == TICKETS[0]["team"] and not run.format_warning
    assert stats["requests"][SEND] == 1 and stats["faults"]["fault_lost"] == 1
    assert stats["user_messages"] == {"total": 1, "sessions_by_count": {"1": 1}, "sessions_with_duplicates": 0}
    assert stats["sessions"]["unarchived"] == 0


def test_a_create_that_failed_without_landing_is_sent_again(ticket_target, emulator, quick_retries):
    """A 500 before the work (not a lost answer): the lookup finds nothing, so the create is repeated once."""
    emulator.configure(fault_500=0.5, seed=1)
    run = tickets.ticket_run(**ticket_target, text=text_of(TICKETS[1]))
    stats = emulator.stats()
    assert run.outcome == tickets.RUN_OK
    assert stats["sessions"]["created"] == 1 and stats["sessions"]["unarchived"] == 0
    assert stats["user_messages"]["sessions_with_duplicates"] == 0 and stats["faults"]["fault_500"] >= 1


@pytest.mark.parametrize("mode", ["500", "close"])
def test_thirty_runs_at_a_quarter_lost_responses_answer_each_ticket_once(ticket_target, emulator, quick_retries, mode):
    emulator.configure(fault_lost=0.25, lost_routes=f"{CREATE},{SEND}", lost_mode=mode, seed=13)
    chosen = [TICKETS[index % len(TICKETS)] for index in range(30)]

    async def all_runs() -> list[tickets.TicketRun]:
        return await asyncio.gather(
            *(
                tickets.ticket_run_async(**ticket_target, text=text_of(ticket), metadata={"ticket": ticket["id"]})
                for ticket in chosen
            )
        )

    runs = asyncio.run(all_runs())
    stats = emulator.stats()
    assert stats["faults"]["fault_lost"] >= 8  # about a quarter of 60 creates and sends lost their answer
    assert [run.outcome for run in runs] == [tickets.RUN_OK] * 30
    assert [run.team for run in runs] == [ticket["team"] for ticket in chosen]
    assert not any(run.format_warning for run in runs)
    assert stats["sessions"]["created"] == 30 and stats["sessions"]["unarchived"] == 0
    assert stats["user_messages"] == {"total": 30, "sessions_by_count": {"1": 30}, "sessions_with_duplicates": 0}


def test_the_sync_policy_adopts_what_landed_too(emulator, quick_retries):
    """``with_retries(landed=...)``: an agent create whose answer was lost is found by its marker, not made twice."""
    emulator.configure(fault_lost=1.0, lost_routes="POST /v1/agents")
    api = client().beta.agents
    marker = {"promptctl_call": "create-once"}
    counter = Attempts()

    def landed():
        return next((agent for agent in api.list() if agent.metadata == marker), None)

    agent = with_retries(
        lambda: api.create(name="ticket-triage", model="claude-sonnet-4-6", system="Answer.", metadata=marker),
        what="create the agent",
        attempts=counter,
        landed=landed,
    )
    stats = emulator.stats()
    assert agent.metadata == marker and stats["agents"] == 1 and stats["requests"]["POST /v1/agents"] == 1
    assert (counter.total, counter.unknown_outcomes, counter.adopted) == (2, 1, 1)


def test_a_rate_limit_is_retried_without_looking(emulator, quick_retries):
    """A 429 was not carried out: the call is simply sent again and the lookup never runs."""
    emulator.configure(fault_429=1.0, retry_after=0.01)
    looked = []

    def landed():
        looked.append(True)
        return None

    counter = Attempts()
    with pytest.raises(UpstreamUnavailable):
        with_retries(lambda: client().beta.agents.list(), what="list agents", attempts=counter, landed=landed)
    assert looked == [] and counter.unknown_outcomes == 0 and counter.total >= 2


def test_a_create_that_gives_up_after_a_lost_answer_archives_what_landed(ticket_target, emulator, settings):
    settings.PROMPTCTL_MAX_ATTEMPTS = 1  # no retry: the run fails, but the session it made must not stay open
    emulator.configure(fault_lost=1.0, lost_routes=CREATE)
    run = tickets.ticket_run(**ticket_target, text=text_of(TICKETS[0]))
    stats = emulator.stats()
    assert run.outcome == tickets.RUN_UNAVAILABLE and run.transient
    assert stats["sessions"]["created"] == 1 and stats["sessions"]["unarchived"] == 0
    assert stats["user_messages"]["total"] == 0
