"""Session events API: send (``user.message``, ``user.interrupt``), list (paginated), stream."""

from __future__ import annotations

import datetime
import queue
from collections.abc import Mapping
from typing import Any

from . import errors
from .eventlog import close_streams, subscribe, unsubscribe, user_message_accept
from .pagination import page_limit, paginate
from .sessions import session_get
from .state import EmulatorState, Session
from .timefilters import created_at_filter
from .turns import interrupt_received, user_message_received

SUPPORTED_SEND_TYPES = ("user.message", "user.interrupt")


def events_send(state: EmulatorState, session_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """All events are validated before any is applied, so a bad batch changes nothing."""
    events = body.get("events")
    if not isinstance(events, list) or not events:
        raise errors.invalid_request("Sending events: `events` must be a non-empty array.")
    accepted: list[tuple[str, Any]] = []
    for event in events:
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "user.message":
            accepted.append((kind, user_message_accept(event)))
        elif kind == "user.interrupt":
            accepted.append((kind, None))
        else:
            raise errors.invalid_request(
                f"Sending events: type {kind!r} is not supported by the emulator; use {', '.join(SUPPORTED_SEND_TYPES)}."
            )
    with state.lock:
        session = session_get(state, session_id)
        if session.archived_at is not None:
            raise errors.invalid_request(
                f"Session {session_id} is archived and accepts no events; create a new session."
            )
        if session.status == "terminated":
            raise errors.invalid_request(
                f"Session {session_id} is terminated and accepts no events; create a new session."
            )
        recorded = []
        for kind, message in accepted:
            if kind == "user.message":
                content, text = message
                recorded.append(user_message_received(state, session, content, text))
            else:
                recorded.append(interrupt_received(state, session))
        return {"data": recorded}


def _event_time(event: Mapping[str, Any]) -> float:
    return datetime.datetime.fromisoformat(event["processed_at"].replace("Z", "+00:00")).timestamp()


def events_list(state: EmulatorState, session_id: str, query: Mapping[str, str], types: list[str]) -> dict[str, Any]:
    """Oldest first by default (``order=desc`` for newest first); not a long-poll: answers at once."""
    limit = page_limit(query.get("limit"))
    order = query.get("order") or "asc"
    if order not in ("asc", "desc"):
        raise errors.invalid_request(f"order {order!r} must be asc or desc.")
    keep_created = created_at_filter(query)
    with state.lock:
        session = session_get(state, session_id)
        indexed = [
            (index, event)
            for index, event in enumerate(session.events)
            if (not types or event["type"] in types) and keep_created(_event_time(event))
        ]
        return paginate(
            indexed,
            sort_key=lambda pair: pair[0],
            render=lambda pair: pair[1],
            limit=limit,
            cursor=query.get("page"),
            descending=order == "desc",
        )


def stream_open(state: EmulatorState, session_id: str) -> tuple[Session, queue.SimpleQueue]:
    """Subscribe before the response headers go out, so nothing sent after ``stream()`` returns is missed."""
    with state.lock:
        session = session_get(state, session_id)
        subscriber = subscribe(session)
        if session.archived_at is not None:
            close_streams(session)  # an archived session will never have another event
        return session, subscriber


def stream_close(state: EmulatorState, session: Session, subscriber: queue.SimpleQueue) -> None:
    with state.lock:
        unsubscribe(session, subscriber)
