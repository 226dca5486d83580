"""A session's event history and its live subscribers (open SSE streams).

Events are appended, never changed. A stream sees only events recorded after it
subscribed, exactly like the live service: there is no replay, so a client must open
the stream before sending the message it wants to hear the answer to.
"""

from __future__ import annotations

import queue
import time
from typing import Any

from . import errors
from .state import Session, new_id, rfc3339

STREAM_CLOSED = None  # put on a subscriber queue: the stream ends after what is already queued


def record_event(session: Session, payload: dict[str, Any]) -> dict[str, Any]:
    """Caller holds the lock. Stamps id and ``processed_at``, appends, and fans out to streams."""
    now = time.time()
    event = {"id": new_id("sevt"), **payload}
    event.setdefault("processed_at", rfc3339(now))
    session.events.append(event)
    session.updated_at = now
    for subscriber in session.subscribers:
        subscriber.put(event)
    return event


def close_streams(session: Session) -> None:
    """Caller holds the lock. Every open stream of the session finishes and its connection closes."""
    for subscriber in session.subscribers:
        subscriber.put(STREAM_CLOSED)
    session.subscribers.clear()


def subscribe(session: Session) -> queue.SimpleQueue:
    """Caller holds the lock; the queue receives events recorded from now on."""
    subscriber: queue.SimpleQueue = queue.SimpleQueue()
    session.subscribers.add(subscriber)
    return subscriber


def unsubscribe(session: Session, subscriber: queue.SimpleQueue) -> None:
    """Caller holds the lock."""
    session.subscribers.discard(subscriber)


def user_message_accept(event: Any) -> tuple[list[dict[str, Any]], str]:
    """Validate a ``user.message`` event; return its content blocks and their text joined."""
    if not isinstance(event, dict) or event.get("type") != "user.message":
        raise errors.invalid_request("Expected a user.message event with a `content` array of text blocks.")
    content = event.get("content")
    if not isinstance(content, list) or not content:
        raise errors.invalid_request("A user.message event needs a non-empty `content` array of blocks.")
    texts = []
    for block in content:
        if not isinstance(block, dict) or "type" not in block:
            raise errors.invalid_request("Each user.message content block must be an object with a `type`.")
        if block["type"] == "text":
            if not isinstance(block.get("text"), str):
                raise errors.invalid_request("A text content block needs a string `text`.")
            texts.append(block["text"])
    return list(content), "\n\n".join(texts)
