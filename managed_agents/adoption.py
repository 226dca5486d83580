"""Finding the sessions an earlier (dead) attempt left, and finishing its turn instead of asking again.

A worker killed mid-session leaves a session nobody reads: its ``user.message``
may have been sent and even answered. The work that retries it (an async
triage job, a shadow run) tags every session it makes with its unit of work
(job id and attempt, request and candidate), so a later attempt can:

- list the agent's sessions carrying those tags (the API cannot filter by
  metadata, so the tags are matched here over the agent's sessions created
  since the work began: a bounded scan);
- adopt one whose history holds exactly the ticket's text: read the answer if
  the turn ended, or wait for it if it is still running. No second
  ``user.message`` is sent for work the model already has, so nothing is
  answered (or billed) twice. A session the ticket never reached is not
  adopted (the caller archives it and runs afresh: still one message);
- archive every other session of the dead attempt.

Only sessions pinned to the version the caller is about to use are adopted:
a verdict from another version is not this unit's answer.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from managed_agents.client import Attempts, async_client, describe, with_retries_async
from managed_agents.loop import sync_entry
from managed_agents.sessions import (
    LANDED_CLOCK_SLACK,
    Transcript,
    _archive,
    _event_text,
    _TurnCollector,
)

logger = logging.getLogger("managed_agents.gateway")

# The most sessions of one agent a lookup of tagged sessions reads.
TAGGED_SCAN_LIMIT = 2000


@dataclass(frozen=True)
class TaggedSession:
    """A session an earlier attempt made, as far as deciding whether to adopt it needs."""

    session_id: str
    version: int | None
    status: str
    archived: bool
    metadata: dict[str, str]


async def sessions_tagged_async(
    *, agent_id: str, metadata: dict[str, str], since: datetime.datetime | None = None
) -> list[TaggedSession]:
    """The agent's sessions (archived ones too) whose metadata includes all of ``metadata``, oldest first."""
    api = async_client().beta.sessions
    wanted = {str(key): str(value) for key, value in metadata.items()}
    # Archived ones too: a worker killed after archiving its session but before recording the answer left it there.
    query: dict[str, Any] = {"agent_id": agent_id, "include_archived": True, "order": "desc", "limit": 100}
    if since is not None:
        query["created_at_gte"] = since - LANDED_CLOCK_SLACK

    async def listing() -> list:
        found: list = []
        scanned = 0
        async for session in api.list(**query):
            scanned += 1
            tags = session.metadata or {}
            if all(tags.get(key) == value for key, value in wanted.items()):
                found.append(session)
            if scanned >= TAGGED_SCAN_LIMIT:
                break
        return found

    sessions = await with_retries_async(listing, what="list the agent's sessions")
    return [
        TaggedSession(
            session_id=session.id,
            version=getattr(getattr(session, "agent", None), "version", None),
            status=str(session.status),
            archived=session.archived_at is not None,
            metadata=dict(session.metadata or {}),
        )
        for session in reversed(sessions)
    ]


sessions_tagged = sync_entry(sessions_tagged_async)


async def _history(api: Any, session_id: str) -> list:
    async def listing() -> list:
        return [event async for event in api.events.list(session_id)]

    return await with_retries_async(listing, what="list session events")


def _turn_after(events: list, text: str) -> tuple[bool, _TurnCollector, bool]:
    """(the ticket was sent, the turn folded from the events after it, the turn was interrupted)."""
    collector = _TurnCollector()
    sent = interrupted = False
    for event in events:
        kind = getattr(event, "type", "")
        if not sent:
            sent = kind == "user.message" and _event_text(event) == text
            continue
        if kind == "user.interrupt":
            interrupted = True
        collector.add(event)
    return sent, collector, interrupted


async def session_adopt_async(*, session_id: str, text: str, timeout: float | None = None) -> Transcript | None:
    """Finish the turn an earlier attempt began in ``session_id`` with ``text``: read its answer, or wait for it.

    Returns ``None`` when the session cannot give this ticket's answer (the
    ticket never reached it, it holds another message, or it was archived or
    interrupted before the turn ended): the caller archives it and starts
    afresh. Otherwise the session is archived and its transcript returned, as
    ``session_run`` would have.
    """
    budget = settings.PROMPTCTL_SESSION_TIMEOUT if timeout is None else timeout
    started = time.monotonic()
    deadline = started + budget
    api = async_client().beta.sessions
    attempts = Attempts()
    session = await with_retries_async(lambda: api.retrieve(session_id), what="read the session", attempts=attempts)
    archived = session.archived_at is not None
    events = await _history(api, session_id)
    sent, collector, interrupted = _turn_after(events, text)
    other_messages = [e for e in events if getattr(e, "type", "") == "user.message" and _event_text(e) != text]
    if other_messages or interrupted or (archived and not collector.done):
        return None
    if not sent:
        return None  # the ticket never arrived: nothing to reuse, and nothing would be answered twice
    while not collector.done and time.monotonic() < deadline:
        await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        _sent, collector, interrupted = _turn_after(await _history(api, session_id), text)
        if interrupted:
            break
    if not archived:
        archived = await asyncio.shield(
            asyncio.ensure_future(_archive(api, session_id, interrupt_first=not collector.done))
        )
    if not collector.done:
        logger.info("adopted session %s did not finish its turn in time; it was archived", session_id)
        return None
    logger.info("adopted session %s of an earlier attempt: its answer is reused", session_id)
    return collector.transcript(
        session_id=session_id, started=started, attempts=attempts, archived=archived, used_stream_fallback=True
    )


session_adopt = sync_entry(session_adopt_async)


async def _retrieve(api: Any, session_id: str) -> Any:
    return await with_retries_async(lambda: api.retrieve(session_id), what="read the session")


async def sessions_archive_listed_async(*, session_ids: list[str]) -> list[str]:
    """Archive (interrupting first when running) the sessions named; returns those archived. Never raises."""
    api = async_client().beta.sessions
    archived: list[str] = []
    for session_id in session_ids:
        try:
            session = await _retrieve(api, session_id)
        except Exception as error:  # noqa: BLE001 - a stray left behind is logged, not raised over the outcome
            logger.warning("could not read session %s to archive it: %s", session_id, describe(error))
            continue
        if session.archived_at is not None:
            continue
        if await _archive(api, session_id, interrupt_first=session.status == "running"):
            archived.append(session_id)
    return archived


sessions_archive_listed = sync_entry(sessions_archive_listed_async)
