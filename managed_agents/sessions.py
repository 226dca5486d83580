"""One pinned session turn, written once: create, stream, send, collect, always archive.

Rules this module keeps, and why:

- Sessions are always pinned (``{"type": "agent", "id", "version"}``); a bare
  agent id would mean "latest", which production must never use.
- The event stream is opened before the message is sent (the stream has no
  replay). If it breaks (an SSE ``error`` event, a dropped connection, a close
  mid-turn) it is reopened and the history listed after it, de-duplicating
  events by id; after a few breaks the history is polled with backoff instead
  (``events.list`` does not long-poll). The ticket is never sent again for a
  broken stream.
- The reply is the turn's final agent message; usage is cumulative over the
  turn's model requests. ``rescheduling`` is transient (the server retries by
  itself); ``terminated`` and a ``session.error`` the server gave up on fail
  the turn, and the transcript's ``errors`` say why.
- Every session is archived, in a shielded task that outlives a cancelled
  caller (an HTTP client that went away). A session still working after an
  interrupt is waited for (bounded) before archiving again. A failed archive
  is logged and reported in the transcript, never raised over the real outcome.
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
    used_stream_fallback: bool = False  # events had to be read from the history (a reconnect or polling)
    errors: tuple[str, ...] = field(default_factory=tuple)  # why the turn failed (session.error, terminated)
    messages: tuple[str, ...] = field(default_factory=tuple)  # every agent message of the turn, in order
    stream_reconnects: int = 0
    reschedules: int = 0  # times the session went rescheduling and came back (transient)


def _usage_add(total: dict, usage: dict) -> dict:
    """Token counts summed key by key (nested objects too); other values keep the latest."""
    summed = dict(total)
    for key, value in usage.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, dict)):
            summed[key] = value
        elif isinstance(value, dict):
            summed[key] = _usage_add(summed.get(key) or {}, value)
        else:
            summed[key] = summed.get(key, 0) + value
    return summed


def _error_text(error: Any) -> str:
    """A session.error's error for people: its type, message and what the server does next."""
    if error is None:
        return "session error"
    retry_status = getattr(getattr(error, "retry_status", None), "type", None)
    text = f"{getattr(error, 'type', 'error')}: {getattr(error, 'message', '') or str(error)}"
    return f"{text} (retry status {retry_status})" if retry_status else text


class _TurnCollector:
    """Folds session events (from the stream or the history) into one turn, once per event id.

    Rules: the reply is the turn's *final* agent message (a turn may hold several
    model requests, and the messages before the last are the agent thinking
    aloud; the verdict is read from the one answer, see ``managed_agents.verdicts``).
    Usage is cumulative over the turn: the latest ``session.usage`` snapshot when
    the server sends one, else the sum of every model request's usage. A
    ``session.error`` whose retry status is ``retrying`` and a
    ``session.status_rescheduled`` are transient (the server carries on by itself);
    ``terminated``, and an error the server gave up on, fail the turn.
    """

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.texts: list[str] = []
        self.session_usage: dict | None = None
        self.request_usage: dict | None = None
        self.stop_reason: str | None = None
        self.done = False
        self.errors: list[str] = []
        self.reschedules = 0

    def add(self, event: Any) -> None:
        event_id = getattr(event, "id", None)
        if event_id is not None:
            if event_id in self.seen:
                return
            self.seen.add(event_id)
        kind = getattr(event, "type", "")
        if kind == "agent.message":
            self.texts.append(
                "".join(
                    block.text
                    for block in getattr(event, "content", None) or []
                    if getattr(block, "type", None) == "text"
                )
            )
        elif kind == "session.status_idle":
            reason = getattr(getattr(event, "stop_reason", None), "type", None)
            self.stop_reason = reason
            if reason == "retries_exhausted" and not self.errors:
                self.errors.append("the session's retries ran out before it answered")
            # requires_action would wait for us forever: this agent has no tools, so the turn is over.
            self.done = True
        elif kind == "session.status_terminated":
            self.stop_reason = "terminated"
            self.errors.append("the session was terminated before it answered")
            self.done = True
        elif kind == "session.status_rescheduled":
            self.reschedules += 1
        elif kind == "session.error":
            error = getattr(event, "error", None)
            retrying = getattr(getattr(error, "retry_status", None), "type", None) == "retrying"
            if not retrying:
                self.errors.append(_error_text(error))
        elif kind == "session.usage":
            usage = getattr(event, "usage", None)
            self.session_usage = usage.model_dump(mode="json", exclude_none=True) if usage is not None else None
        elif kind == "span.model_request_end":
            model_usage = getattr(event, "model_usage", None)
            if model_usage is not None:
                self.request_usage = _usage_add(
                    self.request_usage or {}, model_usage.model_dump(mode="json", exclude_none=True)
                )

    def transcript(
        self,
        *,
        session_id: str,
        started: float,
        attempts: Attempts,
        archived: bool,
        used_stream_fallback: bool,
        stream_reconnects: int = 0,
    ) -> Transcript:
        """The finished turn as the gateway reports it (``started`` is the ``time.monotonic()`` the call began at)."""
        return Transcript(
            reply_text=self.reply,
            session_id=session_id,
            latency_seconds=time.monotonic() - started,
            usage=self.usage,
            event_count=self.event_count,
            attempts=attempts.total,
            retries=attempts.retries,
            stop_reason=self.stop_reason,
            archived=archived,
            used_stream_fallback=used_stream_fallback,
            errors=tuple(self.errors),
            messages=tuple(self.texts),
            stream_reconnects=stream_reconnects,
            reschedules=self.reschedules,
        )

    @property
    def reply(self) -> str:
        return self.texts[-1] if self.texts else ""

    @property
    def usage(self) -> dict | None:
        return self.session_usage if self.session_usage is not None else self.request_usage

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
    reconnects = 0
    timed_out = False
    finished = False
    try:
        used_fallback, reconnects = await _collect_turn(api, session_id, text, collector, attempts, deadline)
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
    return collector.transcript(
        session_id=session_id,
        started=started,
        attempts=attempts,
        archived=archived,
        used_stream_fallback=used_fallback,
        stream_reconnects=reconnects,
    )


session_run = sync_entry(session_run_async)


async def _collect_turn(
    api: Any, session_id: str, text: str, collector: _TurnCollector, attempts: Attempts, deadline: float
) -> tuple[bool, int]:
    """Stream the turn; returns whether the history had to be read, and how often the stream was reopened.

    The ticket is sent once, after the first stream is open. A stream that breaks
    (an SSE ``error`` event, a dropped connection, or a close before the turn
    ended) is reopened first and the history listed after it, so nothing
    recorded in the gap is missed and nothing is counted twice (events are
    folded once per id). After ``STREAM_RECONNECTS`` breaks the history is polled.
    """
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
    except BaseException:
        await stream.close()
        raise
    reconnects = 0
    listed_history = False
    while True:
        try:
            if await _follow_stream(stream, session_id, collector, deadline):
                return listed_history, reconnects
        finally:
            await stream.close()
        if time.monotonic() >= deadline:
            return listed_history, reconnects
        if reconnects >= STREAM_RECONNECTS:
            break
        await asyncio.sleep(min(0.05 * 2**reconnects, max(0.0, deadline - time.monotonic())))
        reconnects += 1
        try:
            stream = await with_retries_async(
                lambda: api.events.stream(session_id),
                what="reopen the event stream",
                attempts=attempts,
                deadline=deadline,
            )
        except (anthropic.APIStatusError, UpstreamUnavailable) as error:
            logger.info("could not reopen the event stream of %s (%s); polling history", session_id, describe(error))
            break
        listed_history = True
        try:
            for event in await _history(api, session_id, attempts, deadline):
                collector.add(event)
        except BaseException:
            await stream.close()
            raise
        if collector.done:
            await stream.close()
            return listed_history, reconnects
    if time.monotonic() >= deadline:
        return listed_history, reconnects
    await _poll_history(api, session_id, collector, attempts, deadline)
    return True, reconnects


# How many times a broken event stream is reopened before the history is polled instead.
STREAM_RECONNECTS = 3


async def _follow_stream(stream: Any, session_id: str, collector: _TurnCollector, deadline: float) -> bool:
    """Fold the stream's events in; True when the turn ended or the deadline passed, False when the stream broke."""
    try:
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            async for event in stream:
                collector.add(event)
                if collector.done:
                    return True
    except TimeoutError:
        return True
    except Exception as error:  # noqa: BLE001 - a broken stream (SSE error event, dropped connection) is reopened
        if time.monotonic() >= deadline:
            return True
        logger.info("event stream of %s broke (%s); reopening it", session_id, describe(error))
        return False
    logger.info("event stream of %s ended before the turn did; reopening it", session_id)
    return False


async def _history(api: Any, session_id: str, attempts: Attempts, deadline: float) -> list:
    """Every event of the session so far, oldest first (all pages)."""

    async def listing() -> list:
        return [event async for event in api.events.list(session_id)]

    return await with_retries_async(listing, what="list session events", attempts=attempts, deadline=deadline)


async def _poll_history(
    api: Any, session_id: str, collector: _TurnCollector, attempts: Attempts, deadline: float
) -> None:
    """List the session's events until the turn ends or the deadline passes (events.list does not long-poll)."""
    pause = 0.1
    while time.monotonic() < deadline:
        try:
            events = await _history(api, session_id, attempts, deadline)
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


# How long archiving waits for an interrupted session to reach idle (an interrupt is not instant).
ARCHIVE_IDLE_WAIT_SECONDS = 30.0
# While waiting, the interrupt is sent again this often, in case the first one was lost.
INTERRUPT_REPEAT_SECONDS = 5.0
WORKING_STATUSES = ("running", "rescheduling")


async def _archive(api: Any, session_id: str, *, interrupt_first: bool) -> bool:
    """Interrupt when asked, then archive; a session still working is waited for, bounded; never raises.

    A running (or rescheduling) session cannot be archived, and an interrupt can
    take a while to bring it to idle. So a refused archive is followed by
    watching the session's status (interrupting first if that was not done,
    and again now and then) until it stops working, for at most
    ``ARCHIVE_IDLE_WAIT_SECONDS``, and then archiving again.
    """
    interrupted = interrupt_first
    if interrupt_first:
        await _interrupt(api, session_id)
    deadline = time.monotonic() + ARCHIVE_IDLE_WAIT_SECONDS
    while True:
        try:
            await with_retries_async(lambda: api.archive(session_id), what="archive the session", deadline=deadline)
            return True
        except anthropic.APIStatusError as error:
            if error.status_code not in (400, 409) or time.monotonic() >= deadline:
                logger.warning("could not archive session %s: %s", session_id, describe(error))
                return False
        except Exception as error:  # noqa: BLE001 - a failed archive must not hide the real outcome
            logger.warning("could not archive session %s: %s", session_id, describe(error))
            return False
        # Refused: the session is still working. Interrupt it (once) and wait until it stops.
        if not interrupted:
            await _interrupt(api, session_id)
            interrupted = True
        if not await _wait_until_stopped(api, session_id, deadline):
            logger.warning(
                "could not archive session %s: it was still working %.0fs after the interrupt",
                session_id,
                ARCHIVE_IDLE_WAIT_SECONDS,
            )
            return False


async def _wait_until_stopped(api: Any, session_id: str, deadline: float) -> bool:
    """Poll the session until it is neither running nor rescheduling; False if the deadline passes first."""
    pause = 0.05
    next_interrupt = time.monotonic() + INTERRUPT_REPEAT_SECONDS
    while time.monotonic() < deadline:
        try:
            session = await with_retries_async(
                lambda: api.retrieve(session_id), what="read the session's status", deadline=deadline
            )
        except Exception as error:  # noqa: BLE001 - the archive attempt that follows reports the outcome
            logger.info("could not read the status of session %s: %s", session_id, describe(error))
            return time.monotonic() < deadline
        if session.status not in WORKING_STATUSES:
            return True
        if time.monotonic() >= next_interrupt:
            await _interrupt(api, session_id)
            next_interrupt = time.monotonic() + INTERRUPT_REPEAT_SECONDS
        await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, 0.5)
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
        if await _archive(api, session.id, interrupt_first=session.status in WORKING_STATUSES):
            archived.append(session.id)
    return archived


sessions_archive_tagged = sync_entry(sessions_archive_tagged_async)
