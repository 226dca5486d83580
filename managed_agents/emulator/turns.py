"""What a session does with a user message: run, think for the configured latency, reply, idle.

Event order per message: ``user.message``, ``session.status_running``,
``span.model_request_start``, then after the latency ``agent.message`` (one text block),
``span.model_request_end`` (token usage) and ``session.status_idle`` with stop reason
``end_turn``. Messages sent while running are queued and answered in order before the
session goes idle. ``user.interrupt`` drops the current turn and the queue.

Knobs give a turn the other shapes the live API produces (docs/EMULATOR.md):

- ``turn_steps`` N: N model requests, each a ``span.model_request_start``, one
  ``agent.message`` and a ``span.model_request_end`` with that request's usage; the
  first N-1 messages are short narration and the last one is the answer. The latency
  is shared out over the steps.
- ``fault_rescheduling``: before its first model request the turn gets a
  ``session.error`` whose ``retry_status`` is ``retrying``, the session goes
  ``rescheduling`` (``session.status_rescheduled``), and after ``reschedule_delay``
  it is ``running`` again (``session.status_running``) and the turn carries on.
- ``fault_terminated``: the last model request fails: ``session.error``
  (``unknown_error``, retry status ``terminal``) and ``session.status_terminated``;
  no answer, and the session accepts no more events.
- ``fault_session_error``: the last model request fails: ``session.error``
  (``model_overloaded_error``, retry status ``exhausted``) and ``session.status_idle``
  with stop reason ``retries_exhausted``; no answer.
- ``interrupt_delay``: an interrupt drops the turn at once, but the session stays
  ``running`` that long before it goes idle (so archiving it is refused meanwhile).

Fault dice are drawn only for knobs above 0, so seeded runs that do not use the new
knobs draw exactly the sequence they always drew.
"""

from __future__ import annotations

import hashlib
import random
import time
from typing import Any

from . import model
from .eventlog import record_event
from .state import EmulatorState, Session, Turn

NARRATION = (
    "Reading the ticket.",
    "Checking which team owns this kind of problem.",
    "Weighing how urgent it is.",
)
WORKING_STATUSES = ("running", "rescheduling")  # a session in these cannot be archived


def _estimated_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _draw(state: EmulatorState, knob: str) -> bool:
    """Caller holds the lock. A per-turn fault; no die is rolled for a knob at 0."""
    rate = getattr(state.knobs, knob)
    hit = rate > 0 and state.fault_random.random() < rate
    if hit:
        state.fault_counts[knob] += 1
    return hit


def _stop_running(session: Session) -> None:
    """Caller holds the lock: the turn, the queue's claim on it and the active clock stop."""
    now = time.time()
    if session.running_since is not None:
        session.active_seconds += now - session.running_since
    session.running_since = None
    session.turn = None
    session.stopping_token = None


def _become_idle(session: Session, stop_reason: str = "end_turn") -> None:
    """Caller holds the lock."""
    _stop_running(session)
    session.status = "idle"
    record_event(session, {"type": "session.status_idle", "stop_reason": {"type": stop_reason}, "stop_details": None})


def _start_turn(state: EmulatorState, session: Session, text: str) -> None:
    """Caller holds the lock. Faults are drawn per turn: a stuck turn never schedules its reply."""
    knobs = state.knobs
    turn = Turn(
        token=state.next_turn_token(),
        text=text,
        malformed=state.fault_random.random() < knobs.fault_malformed,
        stuck=state.fault_random.random() < knobs.fault_stuck,
        model_request_start_id="",
        steps=knobs.turn_steps,
    )
    if _draw(state, "fault_terminated"):
        turn.ending = "terminated"
    elif _draw(state, "fault_session_error"):
        turn.ending = "error"
    turn.rescheduled = _draw(state, "fault_rescheduling")
    if session.status != "running":
        session.status = "running"
        session.running_since = time.time()
        record_event(session, {"type": "session.status_running"})
    session.turn = turn
    if turn.malformed:
        state.fault_counts["malformed"] += 1
    if turn.stuck:
        state.fault_counts["stuck"] += 1
    else:
        turn.step_latency = state.fault_random.uniform(knobs.latency_min, knobs.latency_max) / turn.steps
    if turn.rescheduled:
        _reschedule(state, session, turn)
    else:
        _begin_model_request(state, session, turn)


def _reschedule(state: EmulatorState, session: Session, turn: Turn) -> None:
    """Caller holds the lock: a retrying error, ``rescheduling``, and later ``running`` again."""
    record_event(
        session,
        {
            "type": "session.error",
            "error": {
                "type": "model_overloaded_error",
                "message": "Emulated fault: the model is overloaded; the session is rescheduled and will retry.",
                "retry_status": {"type": "retrying"},
            },
        },
    )
    session.status = "rescheduling"
    record_event(session, {"type": "session.status_rescheduled"})
    state.scheduler.call_later(state.knobs.reschedule_delay, lambda: _resume(state, session.id, turn.token))


def _resume(state: EmulatorState, session_id: str, token: int) -> None:
    """Runs on the scheduler thread: a rescheduled session runs again (unless interrupted meanwhile)."""
    with state.lock:
        session = state.sessions.get(session_id)
        if session is None or session.turn is None or session.turn.token != token:
            return
        session.status = "running"
        record_event(session, {"type": "session.status_running"})
        _begin_model_request(state, session, session.turn)


def _begin_model_request(state: EmulatorState, session: Session, turn: Turn) -> None:
    """Caller holds the lock."""
    turn.model_request_start_id = record_event(session, {"type": "span.model_request_start"})["id"]
    if turn.stuck:
        return
    state.scheduler.call_later(turn.step_latency, lambda: _finish_step(state, session.id, turn.token))


def user_message_received(
    state: EmulatorState, session: Session, content: list[dict[str, Any]], text: str
) -> dict[str, Any]:
    """Caller holds the lock. Records the message; starts a turn if idle, else queues it."""
    event = record_event(session, {"type": "user.message", "content": content})
    if session.status in WORKING_STATUSES:
        session.pending_texts.append(text)
    else:
        _start_turn(state, session, text)
    return event


def interrupt_received(state: EmulatorState, session: Session) -> dict[str, Any]:
    """Caller holds the lock. A working session stops (after ``interrupt_delay``); an idle one only records it.

    The turn and the queue are dropped at once either way, so nothing more is answered;
    a second interrupt while the session winds down changes nothing.
    """
    event = record_event(session, {"type": "user.interrupt"})
    if session.status not in WORKING_STATUSES or session.stopping_token is not None:
        return event
    session.pending_texts.clear()
    delay = state.knobs.interrupt_delay
    if delay <= 0:
        _become_idle(session)
        return event
    session.turn = None
    session.status = "running"
    token = state.next_turn_token()
    session.stopping_token = token
    state.scheduler.call_later(delay, lambda: _finish_interrupt(state, session.id, token))
    return event


def _finish_interrupt(state: EmulatorState, session_id: str, token: int) -> None:
    """Runs on the scheduler thread: the interrupted session reaches idle; messages sent meanwhile start."""
    with state.lock:
        session = state.sessions.get(session_id)
        if session is None or session.stopping_token != token:
            return
        _become_idle(session)
        if session.pending_texts:
            _start_turn(state, session, session.pending_texts.popleft())


def _noise_random(state: EmulatorState, system_prompt: str, text: str) -> random.Random:
    """Caller holds the lock. With a seed, the n-th answer to the same prompt and ticket is reproducible.

    Keying the dice on (seed, prompt, ticket, occurrence) instead of one shared generator
    keeps results independent of which of many concurrent sessions happens to finish first.
    """
    seed = state.knobs.seed
    if seed is None:
        return random.Random()
    digest = hashlib.sha256(f"{system_prompt}\x00{text}".encode()).hexdigest()
    occurrence = state.noise_occurrences[digest]
    state.noise_occurrences[digest] += 1
    return random.Random(f"{seed}:{digest}:{occurrence}")


def _request_end(session: Session, turn: Turn, *, input_tokens: int, output_tokens: int, is_error: bool) -> None:
    """Caller holds the lock. Usage is counted per model request and adds up on the session."""
    session.input_tokens += input_tokens
    session.output_tokens += output_tokens
    turn.input_tokens += input_tokens
    turn.output_tokens += output_tokens
    record_event(
        session,
        {
            "type": "span.model_request_end",
            "model_request_start_id": turn.model_request_start_id,
            "is_error": is_error,
            "model_usage": {
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        },
    )


def _fail_turn(session: Session, turn: Turn, input_tokens: int) -> None:
    """Caller holds the lock. The last model request failed: an error event, then terminated or idle."""
    _request_end(session, turn, input_tokens=input_tokens, output_tokens=0, is_error=True)
    session.pending_texts.clear()
    if turn.ending == "terminated":
        error = {
            "type": "unknown_error",
            "message": "Emulated fault: the session hit an unrecoverable error and was terminated.",
            "retry_status": {"type": "terminal"},
        }
        record_event(session, {"type": "session.error", "error": error})
        _stop_running(session)
        session.status = "terminated"
        record_event(session, {"type": "session.status_terminated"})
        return
    error = {
        "type": "model_overloaded_error",
        "message": "Emulated fault: the model stayed overloaded and the session's retries ran out.",
        "retry_status": {"type": "exhausted"},
    }
    record_event(session, {"type": "session.error", "error": error})
    _become_idle(session, stop_reason="retries_exhausted")


def _finish_step(state: EmulatorState, session_id: str, token: int) -> None:
    """Runs on the scheduler thread; a turn interrupted or deleted meanwhile is silently dropped."""
    with state.lock:
        session = state.sessions.get(session_id)
        if session is None or session.turn is None or session.turn.token != token:
            return
        turn = session.turn
        final = turn.steps_done + 1 >= turn.steps
        system_prompt = session.agent_version.config.get("system") or ""
        noise = state.knobs.noise
        answers = final and turn.ending == "reply"
        dice = _noise_random(state, system_prompt, turn.text) if answers else None
    if not answers:
        reply = "" if final else NARRATION[turn.steps_done % len(NARRATION)]
    elif turn.malformed:
        reply = model.malformed_reply(system_prompt, turn.text, dice or random.Random())
    else:
        reply = model.triage_reply(system_prompt, turn.text, noise=noise, dice=dice)
    with state.lock:
        if session.turn is None or session.turn.token != token or session_id not in state.sessions:
            return
        # Each model request reads the prompt, the ticket and what the agent said so far in this turn.
        input_tokens = _estimated_tokens(system_prompt) + _estimated_tokens(turn.text) + turn.output_tokens
        if final and turn.ending != "reply":
            _fail_turn(session, turn, input_tokens)
            return
        record_event(session, {"type": "agent.message", "content": [{"type": "text", "text": reply}]})
        _request_end(session, turn, input_tokens=input_tokens, output_tokens=_estimated_tokens(reply), is_error=False)
        turn.steps_done += 1
        if not final:
            _begin_model_request(state, session, turn)
        elif session.pending_texts:
            _start_turn(state, session, session.pending_texts.popleft())
        else:
            _become_idle(session)
