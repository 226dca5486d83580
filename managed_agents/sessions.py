"""One pinned session turn, written once: create, stream, send, collect, always archive.

Rules this module keeps, and why:

- Sessions are always pinned (``{"type": "agent", "id", "version"}``); a bare
  agent id would mean "latest", which production must never use.
- The event stream is opened before the message is sent (the stream has no
  replay). If it breaks, the history is listed instead, de-duplicating events
  by id (``events.list`` does not long-poll, so it is polled with backoff).
- Every session is archived, in a shielded task that outlives a cancelled
  caller (an HTTP client that went away); a failed archive is logged and
  reported in the transcript, never raised over the real outcome.
- Creating a session and sending the ticket are not idempotent, so neither is
  simply repeated after a failure whose outcome is unknown (a 5xx, a timeout, a
  dropped connection: the work may have been done and only the answer lost).
  Every create carries a ``promptctl_call`` marker in its metadata, made once
  per logical create and reused by every retry; before a retry the agent's
  recent sessions are listed (the API cannot filter by metadata, so the
  marker is matched here, over a bounded scan) and a session that landed is
  adopted. Before re-sending the ticket, the session's ``user.message`` events
  are listed and a message with exactly the ticket's text counts as sent (the
  session is new and only ever receives this one message). When a create had
  an unknown outcome, any other session carrying the same marker (a lookup
  that missed) is archived when the run ends.
- The flow is async; ``session_run`` and ``sessions_archive_tagged`` are thin
  sync wrappers that run it on the process's background loop
  (``managed_agents.loop``). There is no second, synchronous copy to drift.
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings

from managed_agents.client import (
    Attempts,
    GatewayError,
    SessionTimeout,
    UpstreamUnavailable,
    async_client,
    describe,
    refusal,
    with_retries_async,
)
from managed_agents.loop import sync_entry

if TYPE_CHECKING:
    import anthropic
    from anthropic.types.beta.beta_managed_agents_agent_params import BetaManagedAgentsAgentParams
else:
    from managed_agents.sdk import anthropic  # the SDK is imported on first use (managed_agents.sdk)

logger = logging.getLogger("managed_agents.gateway")

# Runs before every session-create attempt, retries included (a shared create budget counts them
# all). It runs on a worker thread, off the loop, and returns None or the seconds still to wait.
BeforeCreate = Callable[[], Any]


@dataclass(frozen=True)
class Transcript:
    reply_text: str
    session_id: str
    latency_seconds: float
    usage: dict | None
    event_count: int
    attempts: int  # HTTP attempts over the whole run, first tries included
    retries: int  # how many of those were retries of a transient failure
    stop_reason: str | None
    archived: bool
    used_stream_fallback: bool = False
    errors: tuple[str, ...] = field(default_factory=tuple)


class _TurnCollector:
    """Folds session events (from the stream or the history) into one turn, once per event id."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.texts: list[str] = []
        self.usage: dict | None = None
        self.stop_reason: str | None = None
        self.done = False
        self.errors: list[str] = []

    def add(self, event: Any) -> None:
        event_id = getattr(event, "id", None)
        if event_id is not None:
            if event_id in self.seen:
                return
            self.seen.add(event_id)
        kind = getattr(event, "type", "")
        if kind == "agent.message":
            for block in getattr(event, "content", None) or []:
                if getattr(block, "type", None) == "text":
                    self.texts.append(block.text)
        elif kind == "session.status_idle":
            reason = getattr(getattr(event, "stop_reason", None), "type", None)
            self.stop_reason = reason
            # requires_action would wait for us forever: this agent has no tools, so the turn is over.
            self.done = True
        elif kind == "session.status_terminated":
            self.stop_reason = self.stop_reason or "terminated"
            self.done = True
        elif kind == "session.error":
            self.errors.append(str(getattr(event, "error", None) or "session error"))
        elif kind == "session.usage":
            usage = getattr(event, "usage", None)
            self.usage = usage.model_dump(mode="json", exclude_none=True) if usage is not None else None
        elif kind == "span.model_request_end" and self.usage is None:
            model_usage = getattr(event, "model_usage", None)
            if model_usage is not None:
                self.usage = model_usage.model_dump(mode="json", exclude_none=True)

    @property
    def event_count(self) -> int:
        return len(self.seen)


def _user_message(text: str) -> dict:
    return {"type": "user.message", "content": [{"type": "text", "text": text}]}


def _pinned(agent_id: str, version: int) -> BetaManagedAgentsAgentParams:
    if not agent_id or version is None:
        raise GatewayError("A session must be pinned to an agent id and an explicit version; refusing 'latest'.")
    return {"type": "agent", "id": agent_id, "version": int(version)}


# The metadata key of the client-generated marker of one logical session create.
CALL_MARKER = "promptctl_call"
# How many of the agent's recent sessions a lookup for a landed create reads at most.
LANDED_SCAN_LIMIT = 500
# Creation times are the server's clock: look back this far past our own start.
LANDED_CLOCK_SLACK = datetime.timedelta(seconds=120)
# The most a sweep of a retried create's strays may add to a run (the service may be down).
STRAYS_SWEEP_SECONDS = 10.0


def _session_tags(metadata: dict[str, str] | None) -> dict[str, str]:
    """Metadata within the API's size limits, with a unique call id so strays can be found and archived."""
    tags = {str(k)[:64]: str(v)[:512] for k, v in (metadata or {}).items()}
    tags.setdefault(CALL_MARKER, uuid.uuid4().hex)
    return tags


async def _session_landed(
    api: Any, *, pinned: BetaManagedAgentsAgentParams, marker: str, since: datetime.datetime
) -> Any | None:
    """The session an earlier create attempt made, found by its marker among the agent's recent sessions."""
    scanned = 0
    listing = api.list(
        agent_id=pinned["id"], agent_version=pinned["version"], created_at_gte=since, order="desc", limit=100
    )
    async for session in listing:
        if (session.metadata or {}).get(CALL_MARKER) == marker:
            return session
        scanned += 1
        if scanned >= LANDED_SCAN_LIMIT:
            break
    return None


def _event_text(event: Any) -> str:
    return "".join(getattr(block, "text", "") for block in getattr(event, "content", None) or [])


async def _message_landed(api: Any, session_id: str, text: str) -> Any | None:
    """Our ticket, if an earlier send attempt delivered it: the new session's user.message with exactly its text."""
    async for event in api.events.list(session_id, types=["user.message"]):
        if _event_text(event) == text:
            return event
    return None


async def _before_create(hook: BeforeCreate | None) -> None:
    if hook is None:
        return
    wait = await asyncio.to_thread(hook)  # it may take a file lock or call Redis: off the loop
    if inspect.isawaitable(wait):
        wait = await wait
    if isinstance(wait, (int, float)) and wait > 0:
        await asyncio.sleep(wait)


async def session_run_async(
    *,
    agent_id: str,
    version: int,
    environment_id: str,
    text: str,
    timeout: float | None = None,
    metadata: dict[str, str] | None = None,
    before_create: BeforeCreate | None = None,
) -> Transcript:
    """Run one pinned turn: create, stream, send, collect until idle; always archive.

    On timeout the session is interrupted, archived, and ``SessionTimeout`` is
    raised. If the caller is cancelled (for example the HTTP client went away)
    the session is still interrupted and archived: archiving runs in a
    shielded task that outlives the cancellation.
    """
    budget = settings.PROMPTCTL_SESSION_TIMEOUT if timeout is None else timeout
    started = time.monotonic()
    deadline = started + budget
    attempts = Attempts()
    collector = _TurnCollector()
    api = async_client().beta.sessions
    tags = _session_tags(metadata)
    pinned = _pinned(agent_id, version)

    since = datetime.datetime.now(datetime.UTC) - LANDED_CLOCK_SLACK

    async def create() -> Any:
        await _before_create(before_create)
        return await api.create(agent=pinned, environment_id=environment_id, metadata=tags)

    async def landed() -> Any | None:
        return await _session_landed(api, pinned=pinned, marker=tags[CALL_MARKER], since=since)

    try:
        session = await with_retries_async(
            create, what="create a session", attempts=attempts, deadline=deadline, landed=landed
        )
    except (anthropic.APIStatusError, UpstreamUnavailable) as error:
        if attempts.unknown_outcomes:  # an attempt may have landed after all: archive it before giving up
            await asyncio.shield(asyncio.ensure_future(_strays_sweep({CALL_MARKER: tags[CALL_MARKER]}, agent_id)))
        if isinstance(error, UpstreamUnavailable):
            raise
        raise refusal(error, what=f"create a session for agent {agent_id} version {version}") from error
    session_id = session.id
    # A create whose answer was lost may have left a session the lookup missed: sweep the marker at the end.
    sweep = {CALL_MARKER: tags[CALL_MARKER]} if attempts.unknown_outcomes else None
    used_fallback = False
    timed_out = False
    finished = False
    try:
        used_fallback = await _collect_turn(api, session_id, text, collector, attempts, deadline)
        timed_out = not collector.done
        finished = True
    finally:
        # Interrupt (when the turn did not end) and archive in a task of its own,
        # so a cancellation of this coroutine cannot leave the session running.
        cleanup = asyncio.ensure_future(
            _end_session(api, session_id, interrupt_first=not finished or timed_out, sweep=sweep, agent_id=agent_id)
        )
        archived = await asyncio.shield(cleanup)
    if timed_out:
        raise SessionTimeout(
            f"Session {session_id} (agent {agent_id} version {version}) did not answer within {budget:.0f}s; "
            "it was interrupted and archived. Raise PROMPTCTL_SESSION_TIMEOUT if the agent is just slow."
        )
    return Transcript(
        reply_text="".join(collector.texts),
        session_id=session_id,
        latency_seconds=time.monotonic() - started,
        usage=collector.usage,
        event_count=collector.event_count,
        attempts=attempts.total,
        retries=attempts.retries,
        stop_reason=collector.stop_reason,
        archived=archived,
        used_stream_fallback=used_fallback,
        errors=tuple(collector.errors),
    )


session_run = sync_entry(session_run_async)


async def _collect_turn(
    api: Any, session_id: str, text: str, collector: _TurnCollector, attempts: Attempts, deadline: float
) -> bool:
    """Stream the turn; returns True when it had to fall back to listing the history."""
    stream = await with_retries_async(
        lambda: api.events.stream(session_id), what="open the event stream", attempts=attempts, deadline=deadline
    )
    try:
        await with_retries_async(
            lambda: api.events.send(session_id, events=[_user_message(text)]),
            what="send the ticket",
            attempts=attempts,
            deadline=deadline,
            landed=lambda: _message_landed(api, session_id, text),
        )
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                async for event in stream:
                    collector.add(event)
                    if collector.done:
                        return False
        except TimeoutError:
            return False
        except Exception as error:  # noqa: BLE001 - a broken stream falls back to the history
            if time.monotonic() >= deadline:
                return False
            logger.info("event stream of %s broke (%s); listing history instead", session_id, describe(error))
    finally:
        await stream.close()
    if time.monotonic() >= deadline:
        return False
    await _poll_history(api, session_id, collector, attempts, deadline)
    return True


async def _poll_history(
    api: Any, session_id: str, collector: _TurnCollector, attempts: Attempts, deadline: float
) -> None:
    """List the session's events until the turn ends or the deadline passes (events.list does not long-poll)."""
    pause = 0.1

    async def history() -> list:
        return [event async for event in api.events.list(session_id)]

    while time.monotonic() < deadline:
        try:
            events = await with_retries_async(history, what="list session events", attempts=attempts, deadline=deadline)
        except UpstreamUnavailable:
            if time.monotonic() >= deadline:
                return
            raise
        for event in events:
            collector.add(event)
        if collector.done:
            return
        await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, 1.0)


async def _interrupt(api: Any, session_id: str) -> None:
    try:
        await with_retries_async(
            lambda: api.events.send(session_id, events=[{"type": "user.interrupt"}]),
            what="interrupt the session",
            deadline=time.monotonic() + 5.0,
        )
    except Exception as error:  # noqa: BLE001 - archiving still follows
        logger.warning("could not interrupt session %s: %s", session_id, describe(error))


async def _end_session(
    api: Any,
    session_id: str,
    *,
    interrupt_first: bool,
    sweep: dict[str, str] | None = None,
    agent_id: str | None = None,
) -> bool:
    """Interrupt when asked, archive, then archive the strays tagged ``sweep``; never raises."""
    archived = await _archive(api, session_id, interrupt_first=interrupt_first)
    if sweep:
        await _strays_sweep(sweep, agent_id)
    return archived


async def _strays_sweep(tags: dict[str, str], agent_id: str | None) -> None:
    """Archive the unarchived sessions a retried create left with ``tags``; logs, never raises."""
    try:
        async with asyncio.timeout(STRAYS_SWEEP_SECONDS):
            strays = await sessions_archive_tagged_async(metadata=tags, agent_id=agent_id)
    except Exception as error:  # noqa: BLE001 - a failed sweep must not hide the real outcome
        logger.warning("could not sweep the sessions tagged %s: %s", tags, describe(error))
    else:
        if strays:
            logger.info("archived %d stray session(s) of a retried create: %s", len(strays), strays)


async def _archive(api: Any, session_id: str, *, interrupt_first: bool) -> bool:
    """Interrupt when asked, then archive (interrupting again if still running); never raises."""
    if interrupt_first:
        await _interrupt(api, session_id)
    deadline = time.monotonic() + 10.0
    for _ in range(5):
        try:
            await with_retries_async(lambda: api.archive(session_id), what="archive the session", deadline=deadline)
            return True
        except anthropic.APIStatusError as error:
            if error.status_code in (400, 409) and time.monotonic() < deadline:
                # A running session cannot be archived: interrupt, give it a moment, try again.
                await _interrupt(api, session_id)
                await asyncio.sleep(0.2)
                continue
            logger.warning("could not archive session %s: %s", session_id, describe(error))
            return False
        except Exception as error:  # noqa: BLE001 - a failed archive must not hide the real outcome
            logger.warning("could not archive session %s: %s", session_id, describe(error))
            return False
    return False


async def sessions_archive_tagged_async(*, metadata: dict[str, str], agent_id: str | None = None) -> list[str]:
    """Archive every unarchived session whose metadata includes all of ``metadata``; return their ids.

    The SDK sends no idempotency key, so a retried create, or a worker killed
    mid-session, can leave a session nobody will archive. Sessions carry
    promptctl's tags (run, ticket, attempt), and this finds them again. Running
    ones are interrupted first. Use it only for work known to be over.
    """
    api = async_client().beta.sessions

    async def listing() -> list:
        return [session async for session in api.list(agent_id=agent_id or anthropic.omit)]

    sessions = await with_retries_async(listing, what="list sessions")
    wanted = {str(key): str(value) for key, value in metadata.items()}
    archived: list[str] = []
    for session in sessions:
        if session.archived_at is not None:
            continue
        tags = session.metadata or {}
        if any(tags.get(key) != value for key, value in wanted.items()):
            continue
        if await _archive(api, session.id, interrupt_first=session.status == "running"):
            archived.append(session.id)
    return archived


sessions_archive_tagged = sync_entry(sessions_archive_tagged_async)
