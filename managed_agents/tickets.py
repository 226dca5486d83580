"""Running one ticket on one pinned version: the single flow evals, the triage API, shadow runs and jobs share.

How a ticket is put to the agent (``ticket_text``), how the session runs
(``managed_agents.sessions``), how the reply is read (``verdicts``) and how the
ending maps to an outcome are written here once. Callers decide only what an
outcome means for them (an eval result, a logged triage call, a retry).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from managed_agents.adoption import session_adopt_async
from managed_agents.client import GatewayError, SessionTimeout, UpstreamUnavailable
from managed_agents.loop import sync_entry
from managed_agents.sessions import BeforeCreate, Transcript, session_run_async
from managed_agents.verdicts import verdict_parse

# How a ticket run ended. The failure values are also triage's logged outcomes.
RUN_OK = "ok"  # a valid verdict
RUN_INVALID = "invalid"  # a reply that is not a valid verdict
RUN_ERROR = "error"  # the session ended with an error event and no reply
RUN_TIMEOUT = "timeout"  # the session did not answer in time (interrupted, archived)
RUN_UNAVAILABLE = "unavailable"  # transient failures outlasted the retries
RUN_REFUSED = "refused"  # Managed Agents refused the request
TRANSIENT_OUTCOMES = (RUN_TIMEOUT, RUN_UNAVAILABLE)

# Widths of the stored labels (the model fields that keep them).
TEAM_WIDTH = 100
PRIORITY_WIDTH = 50
FORMAT_WARNING_WIDTH = 300


def ticket_text(*, subject: str, body: str) -> str:
    """``Subject: <subject>``, a blank line, then the body, exactly as the tutorial sent tickets."""
    return "Subject: " + subject + "\n\n" + body


@dataclass(frozen=True)
class TicketRun:
    """What came back from one ticket on one pinned version, already read and classified."""

    outcome: str  # one of the RUN_* values
    team: str  # "" unless the verdict is valid; cut to TEAM_WIDTH
    priority: str  # "" unless the verdict is valid; cut to PRIORITY_WIDTH
    problem: str  # why the reply is invalid, or the failure, for people
    format_warning: str  # the reply needed recovering (code fence, prose); cut to FORMAT_WARNING_WIDTH
    reply: str
    session_id: str  # "" when no session was made
    latency_seconds: float
    http_attempts: int
    usage: dict | None
    retry_after: float | None = None  # the server's advice, when it was unavailable
    failure: GatewayError | None = None  # the gateway's error, when the run failed

    @classmethod
    def ended_without_reply(
        cls,
        *,
        outcome: str,
        problem: str,
        started: float,
        failure: GatewayError | None = None,
        retry_after: float | None = None,
    ) -> TicketRun:
        """A run that produced no reply (a failure, or a caller that went away), timed from ``started``."""
        return cls(
            outcome=outcome,
            team="",
            priority="",
            problem=problem,
            format_warning="",
            reply="",
            session_id="",
            latency_seconds=time.monotonic() - started,
            http_attempts=0,
            usage=None,
            retry_after=retry_after,
            failure=failure,
        )

    @property
    def ok(self) -> bool:
        return self.outcome == RUN_OK

    @property
    def transient(self) -> bool:
        """A failure that may pass if the same ticket is tried again later."""
        return self.outcome in TRANSIENT_OUTCOMES


def _failed(error: GatewayError, *, started: float) -> TicketRun:
    if isinstance(error, SessionTimeout):
        outcome = RUN_TIMEOUT
    elif isinstance(error, UpstreamUnavailable):
        outcome = RUN_UNAVAILABLE
    else:
        outcome = RUN_REFUSED
    return TicketRun.ended_without_reply(
        outcome=outcome,
        problem=str(error),
        started=started,
        failure=error,
        retry_after=getattr(error, "retry_after", None) if outcome == RUN_UNAVAILABLE else None,
    )


async def ticket_run_async(
    *,
    agent_id: str,
    version: int,
    environment_id: str,
    text: str,
    allowed: Mapping[str, Sequence[str]],
    metadata: dict[str, str] | None = None,
    timeout: float | None = None,
    before_create: BeforeCreate | None = None,
) -> TicketRun:
    """Run ``text`` on ``agent_id`` pinned at ``version`` and read the verdict against the ``allowed`` labels.

    Never raises a ``GatewayError``: a failed session is a ``TicketRun`` whose
    outcome says how it failed, so every caller counts every ticket. A
    cancelled caller still cancels (the session is archived regardless).
    """
    started = time.monotonic()
    try:
        transcript = await session_run_async(
            agent_id=agent_id,
            version=version,
            environment_id=environment_id,
            text=text,
            timeout=timeout,
            metadata=metadata,
            before_create=before_create,
        )
    except GatewayError as error:
        return _failed(error, started=started)
    return _transcript_read(transcript, allowed)


def _transcript_read(transcript: Transcript, allowed: Mapping[str, Sequence[str]]) -> TicketRun:
    """A finished session's transcript as a classified run: valid verdict, invalid reply, or error."""
    fields: dict[str, Any] = {
        "reply": transcript.reply_text,
        "session_id": transcript.session_id,
        "latency_seconds": transcript.latency_seconds,
        "http_attempts": transcript.attempts,
        "usage": transcript.usage,
    }
    if not transcript.reply_text.strip() and transcript.errors:
        problem = "the session ended with an error and no reply: " + "; ".join(transcript.errors)
        return TicketRun(outcome=RUN_ERROR, team="", priority="", problem=problem, format_warning="", **fields)
    verdict = verdict_parse(reply=transcript.reply_text, allowed={key: tuple(value) for key, value in allowed.items()})
    return TicketRun(
        outcome=RUN_OK if verdict.ok else RUN_INVALID,
        team=(verdict.team or "")[:TEAM_WIDTH] if verdict.ok else "",
        priority=(verdict.priority or "")[:PRIORITY_WIDTH] if verdict.ok else "",
        problem=verdict.problem or "",
        format_warning=(verdict.format_warning or "")[:FORMAT_WARNING_WIDTH],
        **fields,
    )


ticket_run = sync_entry(ticket_run_async)


async def ticket_adopt_async(
    *, session_id: str, text: str, allowed: Mapping[str, Sequence[str]], timeout: float | None = None
) -> TicketRun | None:
    """The run an earlier (dead) attempt began in ``session_id``, finished without asking the model twice.

    ``None`` when that session cannot answer this ticket (see
    ``managed_agents.adoption.session_adopt``): the caller runs the ticket afresh.
    """
    started = time.monotonic()
    try:
        transcript = await session_adopt_async(session_id=session_id, text=text, timeout=timeout)
    except GatewayError as error:
        return _failed(error, started=started)
    return None if transcript is None else _transcript_read(transcript, allowed)


ticket_adopt = sync_entry(ticket_adopt_async)
