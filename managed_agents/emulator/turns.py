"""What a session does with a user message: run, think for the configured latency, reply, idle.

Event order per message: ``user.message``, ``session.status_running``,
``span.model_request_start``, then after the latency ``agent.message`` (one text block),
``span.model_request_end`` (token usage) and ``session.status_idle`` with stop reason
``end_turn``. Messages sent while running are queued and answered in order before the
session goes idle. ``user.interrupt`` drops the current turn and the queue at once.
"""

from __future__ import annotations

import hashlib
import random
import time
from typing import Any

from . import model
from .eventlog import record_event
from .state import EmulatorState, Session, Turn


def _estimated_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _become_idle(session: Session) -> None:
    """Caller holds the lock."""
    now = time.time()
    if session.running_since is not None:
        session.active_seconds += now - session.running_since
    session.running_since = None
    session.status = "idle"
    session.turn = None
    record_event(session, {"type": "session.status_idle", "stop_reason": {"type": "end_turn"}, "stop_details": None})


def _start_turn(state: EmulatorState, session: Session, text: str) -> None:
    """Caller holds the lock. Faults are drawn per turn: a stuck turn never schedules its reply."""
    knobs = state.knobs
    turn = Turn(
        token=state.next_turn_token(),
        text=text,
        malformed=state.fault_random.random() < knobs.fault_malformed,
        stuck=state.fault_random.random() < knobs.fault_stuck,
        model_request_start_id="",
    )
    if session.status != "running":
        session.status = "running"
        session.running_since = time.time()
        record_event(session, {"type": "session.status_running"})
    turn.model_request_start_id = record_event(session, {"type": "span.model_request_start"})["id"]
    session.turn = turn
    if turn.malformed:
        state.fault_counts["malformed"] += 1
    if turn.stuck:
        state.fault_counts["stuck"] += 1
        return
    latency = state.fault_random.uniform(knobs.latency_min, knobs.latency_max)
    state.scheduler.call_later(latency, lambda: _finish_turn(state, session.id, turn.token))


def user_message_received(
    state: EmulatorState, session: Session, content: list[dict[str, Any]], text: str
) -> dict[str, Any]:
    """Caller holds the lock. Records the message; starts a turn if idle, else queues it."""
    event = record_event(session, {"type": "user.message", "content": content})
    if session.status == "running":
        session.pending_texts.append(text)
    else:
        _start_turn(state, session, text)
    return event


def interrupt_received(state: EmulatorState, session: Session) -> dict[str, Any]:
    """Caller holds the lock. A running session stops now; an idle one only records the event."""
    event = record_event(session, {"type": "user.interrupt"})
    if session.status == "running":
        session.pending_texts.clear()
        _become_idle(session)
    return event


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


def _finish_turn(state: EmulatorState, session_id: str, token: int) -> None:
    """Runs on the scheduler thread; a turn interrupted or deleted meanwhile is silently dropped."""
    with state.lock:
        session = state.sessions.get(session_id)
        if session is None or session.turn is None or session.turn.token != token:
            return
        turn = session.turn
        system_prompt = session.agent_version.config.get("system") or ""
        noise = state.knobs.noise
        dice = _noise_random(state, system_prompt, turn.text)
    if turn.malformed:
        reply = model.malformed_reply(system_prompt, turn.text, dice)
    else:
        reply = model.triage_reply(system_prompt, turn.text, noise=noise, dice=dice)
    with state.lock:
        if session.turn is None or session.turn.token != token or session_id not in state.sessions:
            return
        record_event(session, {"type": "agent.message", "content": [{"type": "text", "text": reply}]})
        input_tokens = _estimated_tokens(system_prompt) + _estimated_tokens(turn.text)
        output_tokens = _estimated_tokens(reply)
        session.input_tokens += input_tokens
        session.output_tokens += output_tokens
        record_event(
            session,
            {
                "type": "span.model_request_end",
                "model_request_start_id": turn.model_request_start_id,
                "is_error": False,
                "model_usage": {
                    "input_tokens": input_tokens,
                    "output_tokens": output_tokens,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                },
            },
        )
        if session.pending_texts:
            _start_turn(state, session, session.pending_texts.popleft())
        else:
            _become_idle(session)
