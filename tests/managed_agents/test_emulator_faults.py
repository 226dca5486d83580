"""The failures the live API can produce, made by the emulator's knobs, and how the gateway meets each one.

Every test runs the real ``anthropic`` SDK over loopback HTTP against the emulator,
through the gateway's one session flow (``managed_agents.sessions`` and
``managed_agents.tickets``): error bodies with ``request_id``, 529 overloaded,
an SSE ``error`` event and a server-closed stream mid-turn, rescheduling,
terminated and errored sessions, turns with several model requests, and an
interrupt that takes time to reach idle.
"""

from __future__ import annotations

import json
import time
import urllib.request

import anthropic
import pytest

from managed_agents import gateway, sessions, tickets
from managed_agents.client import client
from managed_agents.management.commands.emulator import Command as EmulatorCommand
from tests.managed_agents.support import BILLING, CREATE, SEND, text_of

STREAM = "GET /v1/sessions/{session_id}/events/stream"


@pytest.fixture
def target(ticket_target):
    """The keyword arguments of ``session_run`` (no labels)."""
    return {key: value for key, value in ticket_target.items() if key != "allowed"}


def sent_once(stats: dict) -> bool:
    return stats["user_messages"] == {"total": 1, "sessions_by_count": {"1": 1}, "sessions_with_duplicates": 0}


def session_usage(session_id: str) -> dict:
    return client().beta.sessions.retrieve(session_id).usage.model_dump()


# --- 1. error bodies ------------------------------------------------------------------------------


def test_error_bodies_carry_the_request_id_of_their_header(emulator):
    with pytest.raises(anthropic.NotFoundError) as refused:
        client().beta.sessions.retrieve("sesn_01doesnotexist")
    body = refused.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "not_found_error" and body["error"]["message"]
    assert body["request_id"].startswith("req_") and body["request_id"] == refused.value.request_id


def test_a_stale_update_is_a_409_invalid_request_error_the_gateway_words_as_a_conflict(ticket_target, emulator):
    gateway.agent_update(agent_id=ticket_target["agent_id"], expected_version=ticket_target["version"], system="B")
    with pytest.raises(anthropic.ConflictError) as raw:
        client().beta.agents.update(ticket_target["agent_id"], version=ticket_target["version"], system="C")
    assert raw.value.status_code == 409 and raw.value.type == "invalid_request_error"
    assert raw.value.body["request_id"] == raw.value.request_id
    with pytest.raises(gateway.VersionConflict):
        gateway.agent_update(agent_id=ticket_target["agent_id"], expected_version=ticket_target["version"], system="D")


# --- 2. 529 overloaded --------------------------------------------------------------------------------


def test_overloaded_529s_are_retried_and_counted(ticket_target, emulator, quick_retries):
    emulator.configure(fault_529=0.5, fault_routes=f"{CREATE},{SEND}", seed=3)
    run = tickets.ticket_run(**ticket_target, text=text_of(BILLING))
    stats = emulator.stats()
    overloaded = stats["faults"]["fault_529"]
    assert run.outcome == tickets.RUN_OK and run.team == "billing"
    assert overloaded >= 1 and stats["requests"][CREATE] + stats["requests"][SEND] == 2 + overloaded
    assert run.http_attempts >= 3 + overloaded  # create, stream, send, and every overloaded attempt
    assert sent_once(stats) and stats["sessions"]["created"] == 1 and stats["sessions"]["unarchived"] == 0


def test_a_persistent_529_ends_as_unavailable_a_transient_outcome(ticket_target, emulator, quick_retries, settings):
    settings.PROMPTCTL_MAX_ATTEMPTS = 3
    emulator.configure(fault_529=1.0, fault_routes=CREATE)
    run = tickets.ticket_run(**ticket_target, text=text_of(BILLING))
    assert run.outcome == tickets.RUN_UNAVAILABLE and run.transient  # an eval unit retries it later
    assert "HTTP 529" in run.problem and "after 3 attempts" in run.problem
    assert emulator.stats()["faults"]["fault_529"] == 3


def test_fault_routes_keep_the_faults_off_other_routes(ticket_target, emulator):
    emulator.configure(fault_529=1.0, fault_500=1.0, fault_429=1.0, fault_routes="POST /v1/agents")
    run = tickets.ticket_run(**ticket_target, text=text_of(BILLING))
    assert run.outcome == tickets.RUN_OK and emulator.stats()["faults"] == {}


# --- 3. broken event streams ---------------------------------------------------------------------------


@pytest.mark.parametrize("knob", ["fault_stream_error", "fault_stream_close"])
def test_a_stream_broken_mid_turn_is_reopened_and_the_ticket_sent_once(target, emulator, quick_retries, knob):
    emulator.configure(**{knob: 1.0}, stream_fault_after=1, latency=0.3)
    transcript = sessions.session_run(**target, text=text_of(BILLING))
    stats = emulator.stats()
    assert stats["faults"][knob] >= 1 and transcript.stream_reconnects >= 1 and transcript.used_stream_fallback
    assert transcript.reply_text.startswith('{"team": "billing"') and transcript.stop_reason == "end_turn"
    assert stats["requests"][SEND] == 1 and sent_once(stats)
    assert stats["requests"][STREAM] == transcript.stream_reconnects + 1
    # Events seen on a stream and again in the history were folded once: usage is not doubled.
    usage = session_usage(transcript.session_id)
    assert transcript.usage is not None
    assert (transcript.usage["input_tokens"], transcript.usage["output_tokens"]) == (
        usage["input_tokens"],
        usage["output_tokens"],
    )
    assert stats["sessions"]["unarchived"] == 0


def test_streams_that_keep_breaking_fall_back_to_polling_the_history(ticket_target, emulator, quick_retries):
    emulator.configure(fault_stream_error=1.0, stream_fault_after=0, latency=1.6, turn_steps=8)
    run = tickets.ticket_run(**ticket_target, text=text_of(BILLING))
    stats = emulator.stats()
    assert run.outcome == tickets.RUN_OK and run.team == "billing"
    assert stats["requests"][STREAM] == sessions.STREAM_RECONNECTS + 1  # then polling, no more streams
    assert stats["requests"][SEND] == 1 and sent_once(stats) and stats["sessions"]["unarchived"] == 0


# --- 4. session statuses ----------------------------------------------------------------------------------


def test_rescheduling_is_transient(target, emulator):
    emulator.configure(fault_rescheduling=1.0, reschedule_delay=0.2)
    transcript = sessions.session_run(**target, text=text_of(BILLING))
    events = list(client().beta.sessions.events.list(transcript.session_id))
    kinds = [event.type for event in events]
    assert "session.status_rescheduled" in kinds and kinds.count("session.status_running") == 2
    assert transcript.reschedules == 1 and transcript.errors == () and transcript.stop_reason == "end_turn"
    assert transcript.reply_text.startswith('{"team": "billing"')


def test_a_terminated_session_fails_the_attempt_with_a_clear_message(ticket_target, emulator):
    emulator.configure(fault_terminated=1.0)
    run = tickets.ticket_run(**ticket_target, text=text_of(BILLING))
    stats = emulator.stats()
    assert run.outcome == tickets.RUN_ERROR and not run.ok and run.team == ""
    assert "terminated" in run.problem and "unknown_error" in run.problem and "retry status terminal" in run.problem
    assert stats["sessions"]["by_status"]["terminated"] == 1 and stats["sessions"]["unarchived"] == 0
    kinds = [event.type for event in client().beta.sessions.events.list(run.session_id)]
    assert kinds[-2:] == ["session.error", "session.status_terminated"] and "agent.message" not in kinds


def test_a_session_error_the_server_gave_up_on_fails_the_attempt(ticket_target, emulator):
    emulator.configure(fault_session_error=1.0)
    run = tickets.ticket_run(**ticket_target, text=text_of(BILLING))
    assert run.outcome == tickets.RUN_ERROR and run.session_id
    assert "model_overloaded_error" in run.problem and "retry status exhausted" in run.problem
    assert emulator.stats()["sessions"]["unarchived"] == 0


# --- 5. several model requests and agent messages in one turn ---------------------------------------------


def test_the_verdict_is_the_final_agent_message_and_usage_adds_up(ticket_target, target, emulator):
    emulator.configure(turn_steps=3)
    transcript = sessions.session_run(**target, text=text_of(BILLING))
    events = list(client().beta.sessions.events.list(transcript.session_id))
    assert [event.type for event in events].count("span.model_request_end") == 3
    assert len(transcript.messages) == 3 and transcript.reply_text == transcript.messages[-1]
    usage = session_usage(transcript.session_id)
    assert transcript.usage is not None
    assert transcript.usage["output_tokens"] == usage["output_tokens"] > 0
    assert transcript.usage["input_tokens"] == usage["input_tokens"]
    run = tickets.ticket_run(**ticket_target, text=text_of(BILLING))
    assert run.outcome == tickets.RUN_OK and run.team == "billing" and not run.format_warning


# --- 6. an interrupt that takes time ------------------------------------------------------------------------


def test_archiving_waits_for_a_slow_interrupt_to_reach_idle(target, emulator):
    emulator.configure(fault_stuck=1.0, interrupt_delay=1.0)
    started = time.monotonic()
    with pytest.raises(gateway.SessionTimeout):
        sessions.session_run(**target, text=text_of(BILLING), timeout=0.3)
    waited = time.monotonic() - started
    stats = emulator.stats()
    assert stats["sessions"]["unarchived"] == 0 and stats["sessions"]["by_status"]["idle"] == 1
    assert stats["requests"]["POST /v1/sessions/{session_id}/archive"] >= 2  # refused while running, then done
    assert 1.0 <= waited < 10.0


def test_the_tagged_sweep_also_waits_for_a_slow_interrupt(target, emulator):
    emulator.configure(fault_stuck=1.0, interrupt_delay=0.5)
    session = client().beta.sessions.create(
        agent={"type": "agent", "id": target["agent_id"], "version": target["version"]},
        environment_id=target["environment_id"],
        metadata={"promptctl_run": "sweep-me"},
    )
    client().beta.sessions.events.send(
        session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "x"}]}]
    )
    archived = sessions.sessions_archive_tagged(metadata={"promptctl_run": "sweep-me"}, agent_id=target["agent_id"])
    assert archived == [session.id] and emulator.stats()["sessions"]["unarchived"] == 0


# --- the knobs themselves -----------------------------------------------------------------------------------


def test_the_new_knobs_are_settable_by_flag_keyword_and_control_endpoint(emulator):
    parser = EmulatorCommand().create_parser("manage.py", "emulator")
    options = parser.parse_args(["--fault-529", "0.1", "--turn-steps", "3", "--interrupt-delay", "0.5"])
    assert (options.fault_529, options.turn_steps, options.interrupt_delay) == (0.1, 3, 0.5)
    request = urllib.request.Request(
        emulator.base_url + "/_emulator/config",
        data=json.dumps({"fault_stream_close": 0.2, "fault_routes": [CREATE, SEND], "reschedule_delay": 0}).encode(),
        method="POST",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request) as answer:
        knobs = json.load(answer)
    assert knobs["fault_stream_close"] == 0.2 and knobs["fault_routes"] == f"{CREATE},{SEND}"
    with pytest.raises(ValueError, match="fault_routes names unknown route"):
        emulator.configure(fault_routes="POST /v1/nowhere")
    with pytest.raises(ValueError, match="turn_steps"):
        emulator.configure(turn_steps=0)
    with pytest.raises(ValueError, match="interrupt_delay"):
        emulator.configure(interrupt_delay=-1)


def test_a_terminated_session_accepts_no_more_events_but_can_be_archived(target, emulator):
    emulator.configure(fault_terminated=1.0)
    api = client().beta.sessions
    session = api.create(
        agent={"type": "agent", "id": target["agent_id"], "version": target["version"]},
        environment_id=target["environment_id"],
    )
    api.events.send(session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "x"}]}])
    deadline = time.monotonic() + 5
    while api.retrieve(session.id).status != "terminated" and time.monotonic() < deadline:
        time.sleep(0.02)
    with pytest.raises(anthropic.BadRequestError, match="terminated and accepts no events"):
        api.events.send(session.id, events=[{"type": "user.interrupt"}])
    assert api.archive(session.id).archived_at is not None


# --- eval units keep their policy: transient failures retry later, a failed session is an error result ------


def test_eval_units_retry_a_529_later_and_record_a_terminated_session_as_an_error(agent, requester, emulator, settings):
    from evals import services as eval_services
    from evals.models import EvalResult
    from tests.evals.support import TICKETS as TICKETS_FILE

    settings.PROMPTCTL_SESSION_CREATE_BUDGET = 100_000
    settings.PROMPTCTL_MAX_ATTEMPTS = 2
    settings.PROMPTCTL_BACKOFF_BASE = settings.PROMPTCTL_BACKOFF_CAP = 0.01
    testset = eval_services.testset_import(name="faults", data=TICKETS_FILE.read_bytes(), filename="t.jsonl").version
    run = eval_services.eval_run_start(
        agent_version=agent.versions.get(), testset_version=testset, repeats=1, actor=requester
    )
    first, second = list(eval_services.runs._missing_units(run))[:2]

    emulator.configure(fault_529=1.0, fault_routes=CREATE)
    with pytest.raises(eval_services.UnitRetryLater, match="HTTP 529"):
        eval_services.eval_unit_execute(run_id=run.pk, case_id=first[0], attempt=first[1], last_try=False)
    assert not EvalResult.objects.filter(run=run).exists()

    emulator.configure(fault_529=0.0, fault_terminated=1.0)
    result = eval_services.eval_unit_execute(run_id=run.pk, case_id=second[0], attempt=second[1], last_try=False)
    assert result is not None and result.kind == EvalResult.Kind.ERROR and result.session_id
    assert "terminated" in result.problem and "unknown_error" in result.problem
    stats = emulator.stats()
    assert stats["sessions"]["unarchived"] == 0 and stats["user_messages"]["sessions_with_duplicates"] == 0
