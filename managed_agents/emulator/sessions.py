"""Sessions: create, read, list, update, archive, delete; the create-rate limit.

A session snapshots one agent version at creation: a bare agent id means the latest
version at that moment, ``{"type": "agent", "id", "version"}`` means exactly that
version. Later agent updates never change an existing session's behaviour.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from . import errors
from .eventlog import close_streams, record_event, user_message_accept
from .pagination import page_limit, paginate
from .resources import agent_get, agent_version_get, environment_get
from .state import SESSION_STATUSES, AgentVersion, EmulatorState, Session, new_id
from .timefilters import created_at_filter, include_archived
from .turns import WORKING_STATUSES, user_message_received

OVERRIDABLE_AGENT_FIELDS = ("system", "model", "tools", "mcp_servers", "skills")


def check_create_rate(state: EmulatorState) -> None:
    """Sliding-window limit on session creates; over it, 429 with the wait until a slot frees.

    Caller holds the lock, and the clock is read under it, so the window's times stay in
    order however many creates race. Refused creates do not use up the window.
    """
    limit = state.knobs.create_limit
    if limit is None:
        return
    now = time.monotonic()
    window = state.knobs.create_window
    times = state.session_create_times
    while times and times[0] <= now - window:
        times.popleft()
    if len(times) >= limit:
        wait = times[0] + window - now
        state.fault_counts["create_limit_429"] += 1
        raise errors.rate_limited(
            f"Session creates are limited to {limit} per {window:g} s and that many were made in the last "
            f"{window:g} s. Retry after {wait:.2f} s.",
            retry_after_seconds=wait,
        )
    times.append(now)


def _resolve_agent(state: EmulatorState, reference: Any) -> tuple[str, AgentVersion]:
    """Caller holds the lock. A bare id is the latest version; an object may pin one exactly."""
    if isinstance(reference, str) and reference:
        agent = agent_get(state, reference)
        version = agent.latest
    elif isinstance(reference, dict) and reference.get("type") in ("agent", "agent_with_overrides"):
        agent = agent_get(state, str(reference.get("id") or ""))
        version = (
            agent_version_get(agent, reference["version"]) if reference.get("version") is not None else agent.latest
        )
        if reference["type"] == "agent_with_overrides":
            overrides = {field: reference[field] for field in OVERRIDABLE_AGENT_FIELDS if field in reference}
            if "model" in overrides and isinstance(overrides["model"], str):
                overrides["model"] = {**version.config["model"], "id": overrides["model"]}
            version = AgentVersion(
                number=version.number, config={**version.config, **overrides}, created_at=version.created_at
            )
    else:
        raise errors.invalid_request(
            "Creating a session: `agent` must be an agent id string (latest version) or "
            '{"type": "agent", "id": ..., "version": N} (exactly that version).'
        )
    if agent.archived_at is not None:
        raise errors.invalid_request(f"Creating a session: agent {agent.id} is archived; use an active agent.")
    return agent.id, version


def session_create(state: EmulatorState, body: Mapping[str, Any]) -> dict[str, Any]:
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict) or len(metadata) > 16:
        raise errors.invalid_request("Creating a session: `metadata` must be an object of at most 16 string pairs.")
    environment_id = body.get("environment_id")
    if not isinstance(environment_id, str) or not environment_id:
        raise errors.invalid_request("Creating a session: `environment_id` is required (create an environment first).")
    initial_texts = [user_message_accept(event) for event in body.get("initial_events") or []]
    now = time.time()
    with state.lock:
        check_create_rate(state)
        environment = environment_get(state, environment_id)
        if environment.archived_at is not None:
            raise errors.invalid_request(
                f"Creating a session: environment {environment_id} is archived; create or pick an active one."
            )
        agent_id, version = _resolve_agent(state, body.get("agent"))
        session = Session(
            id=new_id("sesn"),
            sequence=state.next_sequence(),
            agent_id=agent_id,
            agent_version=version,
            environment_id=environment_id,
            metadata={str(k): str(v) for k, v in metadata.items()},
            title=body.get("title"),
            created_at=now,
            updated_at=now,
        )
        state.sessions[session.id] = session
        state.sessions_created += 1
        for content, text in initial_texts:
            user_message_received(state, session, content, text)
        return session.to_json()


def session_get(state: EmulatorState, session_id: str) -> Session:
    """Caller holds the lock."""
    session = state.sessions.get(session_id)
    if session is None:
        raise errors.not_found("session", session_id)
    return session


def session_retrieve(state: EmulatorState, session_id: str) -> dict[str, Any]:
    with state.lock:
        return session_get(state, session_id).to_json()


def session_list(state: EmulatorState, query: Mapping[str, str], statuses: list[str]) -> dict[str, Any]:
    limit = page_limit(query.get("limit"))
    order = query.get("order") or "desc"
    if order not in ("asc", "desc"):
        raise errors.invalid_request(f"order {order!r} must be asc or desc.")
    unknown = sorted(set(statuses) - set(SESSION_STATUSES))
    if unknown:
        raise errors.invalid_request(f"statuses {unknown} are not session statuses; use {', '.join(SESSION_STATUSES)}.")
    keep_created = created_at_filter(query)
    agent_id = query.get("agent_id")
    agent_version = query.get("agent_version")
    deployment_id = query.get("deployment_id")
    with state.lock:
        items = [
            session
            for session in state.sessions.values()
            if (include_archived(query) or session.archived_at is None)
            and (not statuses or session.status in statuses)
            and (not agent_id or session.agent_id == agent_id)
            and (not deployment_id or session.deployment_id == deployment_id)
            and (not (agent_id and agent_version) or str(session.agent_version.number) == agent_version)
            and keep_created(session.created_at)
        ]
        return paginate(
            items,
            sort_key=lambda session: session.sequence,
            render=Session.to_json,
            limit=limit,
            cursor=query.get("page"),
            descending=order == "desc",
            bidirectional=True,
        )


def session_update(state: EmulatorState, session_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """Title and metadata patches only; the agent snapshot of a session is not changed here."""
    with state.lock:
        session = session_get(state, session_id)
        if "title" in body:
            session.title = body["title"]
        if isinstance(body.get("metadata"), dict):
            for key, value in body["metadata"].items():
                if value is None:
                    session.metadata.pop(key, None)
                else:
                    session.metadata[key] = str(value)
        session.updated_at = time.time()
        return session.to_json()


def session_archive(state: EmulatorState, session_id: str) -> dict[str, Any]:
    """A running (or rescheduling) session is refused with 400 invalid_request_error: interrupt it first.

    400 rather than 409 because the SDK retries 409 on its own, and retrying an archive of
    a session that is still working only repeats the refusal.
    """
    with state.lock:
        session = session_get(state, session_id)
        if session.status in WORKING_STATUSES:
            raise errors.invalid_request(
                f"Session {session_id} is {session.status} and cannot be archived. Send a user.interrupt event, "
                "wait for session.status_idle, then archive it."
            )
        if session.archived_at is None:
            session.archived_at = session.updated_at = time.time()
            close_streams(session)
        return session.to_json()


def session_delete(state: EmulatorState, session_id: str) -> dict[str, Any]:
    """Deleting works in any status: the turn is dropped and open streams get ``session.deleted``."""
    with state.lock:
        session = session_get(state, session_id)
        session.turn = None
        session.pending_texts.clear()
        record_event(session, {"type": "session.deleted"})
        close_streams(session)
        del state.sessions[session_id]
        return {"id": session_id, "type": "session_deleted"}
