"""Serving a triage call: route it to the version pinned now, run one pinned session, log it whatever happens.

No network call happens inside a transaction: the session runs between the
read that routes it and the transaction that records it. Every call is logged
(valid, invalid, failed), so canary and shadow numbers count every call.
"""

from __future__ import annotations

import asyncio
import functools
import random
import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from managed_agents.tickets import TicketRun, ticket_run_async
from managed_agents.tickets import ticket_text as compose_ticket_text
from promptctl.dbsteps import db_step
from triage import pins
from triage.models import Outcome, TriageRequest
from triage.selectors import canary_over_limits, canary_policy_values
from triage.services.apikeys import Principal, api_key_authenticate
from triage.services.canary import canary_counter_add
from triage.services.common import AgentOutOfScope, TriageFailed, _log_fields

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")


# --- serving a triage call ------------------------------------------------------------


@dataclass(frozen=True)
class Ticket:
    subject: str
    body: str
    request_key: str | None = None

    @property
    def text(self) -> str:
        return compose_ticket_text(subject=self.subject, body=self.body)


@dataclass(frozen=True)
class Served:
    """The answer to one triage call."""

    request_id: int
    agent: str
    version: int
    channel: str
    canary: bool
    valid: bool
    team: str | None
    priority: str | None
    problem: str | None
    session_id: str
    latency_ms: int


def triage_admit(*, token: str, agent_name: str | None, request_key: str | None) -> tuple[Principal, pins.Route]:
    """A triage call's one database step before its session: the caller's key, then the version serving it."""
    principal = api_key_authenticate(token=token)
    return principal, triage_route(principal=principal, agent_name=agent_name, request_key=request_key)


def triage_route(*, principal: Principal, agent_name: str | None, request_key: str | None) -> pins.Route:
    """Route a call for ``principal``: the version pinned now, refused for agents the key may not call."""
    if agent_name is not None and not _NAME.match(agent_name):
        raise pins.UnknownAgent(
            f"There is no agent named {agent_name[:100]!r}: agent names are lowercase letters, digits and dashes "
            "(e.g. ticket-triage)."
        )
    route = pins.pin_route(agent_name=agent_name, request_key=request_key)
    if not principal.may_call(route.agent_id):
        raise AgentOutOfScope(
            f"API key {principal.name!r} may not call agent {route.agent_name!r}: it is scoped to other agents. "
            "Use a key issued for this agent, or ask the promptctl owners to issue one."
        )
    if not route.environment_id:
        raise pins.AgentNotServing(
            f"Agent {route.agent_name!r} has no environment recorded, so no session can be started for it. "
            "Its owners must re-register it with promptctl."
        )
    return route


def _session_metadata(*, route: pins.Route, principal_name: str, source: str) -> dict[str, str]:
    return {
        "promptctl_triage": source,
        "api_key": principal_name,
        "pin_revision": str(route.pin_revision),
        "canary": "1" if route.canary else "0",
    }


def _abandoned(*, started: float) -> TicketRun:
    """The run of a call whose caller went away before its session finished (the session is still archived)."""
    return TicketRun.ended_without_reply(
        outcome=Outcome.ABANDONED, problem="the caller went away before the session finished", started=started
    )


def triage_record(
    *,
    route: pins.Route,
    api_key_id: int | None,
    ticket: Ticket,
    source: str,
    received_at: datetime,
    latency_ms: int,
    run: TicketRun,
) -> TriageRequest:
    """Log one triage call; schedule its shadow run and, for a canary call, check the canary's limits.

    A valid canary reply is also drawn (the agent's ``CanaryPolicy.compare_percent``) to be answered by the
    production version in the background (``triage.canary_compare``): the canary watch's disagreement check.
    The draw is logged with the call (``compare_drawn``), so the sweep finds a comparison a worker lost.
    """
    from triage import tasks  # lazy: triage.tasks imports triage.services at module level

    compare = route.canary and run.ok and _canary_compare_drawn(route.agent_id)
    with transaction.atomic():
        request = TriageRequest.objects.create(
            agent_id=route.agent_id,
            channel=route.channel,
            version_id=route.version_id,
            pin_revision=route.pin_revision,
            canary=route.canary,
            shadow_version_id=route.shadow_version_id,
            api_key_id=api_key_id,
            source=source,
            request_key=ticket.request_key or "",
            subject=ticket.subject,
            body=ticket.body,
            received_at=received_at,
            latency_ms=max(0, latency_ms),
            compare_drawn=compare,
            **_log_fields(run),
        )
        request_id = request.pk
        if route.shadow_version_id:
            transaction.on_commit(lambda: tasks.shadow_run.delay(request_id))
        if route.canary:
            canary_counter_add(agent_id=route.agent_id, pin_revision=route.pin_revision, outcome=request.outcome)
        if route.canary and canary_over_limits(route=route):
            agent_id, revision = route.agent_id, route.pin_revision
            transaction.on_commit(lambda: tasks.canary_end.delay(agent_id, revision))
        if compare:
            transaction.on_commit(lambda: tasks.canary_compare.delay(request_id))
    return request


def _canary_compare_drawn(agent_id: int) -> bool:
    """Whether this valid canary reply is also put to the production version (the agent's compare share)."""
    percent = canary_policy_values(agent_id=agent_id)["compare_percent"]
    return random.randrange(100) < percent


def _served(route: pins.Route, request: TriageRequest) -> Served:
    ok = request.outcome == Outcome.OK
    return Served(
        request_id=request.pk,
        agent=route.agent_name,
        version=route.version_number,
        channel=route.channel,
        canary=route.canary,
        valid=ok,
        team=request.team if ok else None,
        priority=request.priority if ok else None,
        problem=None if ok else (request.problem or "the reply was not a valid verdict"),
        session_id=request.session_id,
        latency_ms=request.latency_ms,
    )


def _failed(run: TicketRun, request: TriageRequest, route: pins.Route) -> TriageFailed:
    return TriageFailed(
        f"{run.problem} (agent {route.agent_name} v{route.version_number}; logged as triage request #{request.pk})",
        outcome=run.outcome,
        request_id=request.pk,
        retry_after=run.retry_after,
    )


def _run_fields(route: pins.Route, ticket: Ticket, metadata: dict[str, str]) -> dict[str, Any]:
    """What every ticket run of a routed call is given: the pinned version, the ticket, its labels, its tags."""
    return {
        "agent_id": route.remote_agent_id,
        "version": route.version_number,
        "environment_id": route.environment_id,
        "text": ticket.text,
        "allowed": route.allowed,
        "metadata": metadata,
    }


async def triage_serve(*, token: str, agent_name: str | None, ticket: Ticket) -> Served:
    """Serve one call on the event loop: route now, run the pinned session without a thread, log it.

    The database steps (key and route before the session, the log after it) run on the long-lived database threads
    (``promptctl.dbsteps``); the session itself is awaited, so a caller waiting
    on it holds no thread.
    """
    received_at = timezone.now()
    started = time.monotonic()
    principal, route = await db_step(triage_admit, token=token, agent_name=agent_name, request_key=ticket.request_key)
    record = functools.partial(db_step, triage_record)
    fields = {
        "route": route,
        "api_key_id": principal.key_id,
        "ticket": ticket,
        "source": TriageRequest.Source.API,
        "received_at": received_at,
    }
    metadata = _session_metadata(route=route, principal_name=principal.name, source=TriageRequest.Source.API)
    try:
        run = await ticket_run_async(**_run_fields(route, ticket, metadata))
    except asyncio.CancelledError:
        # The caller went away (Django cancels the view when the client disconnects). The call is still
        # logged, in a task of its own so this cancellation cannot stop it.
        await asyncio.shield(
            asyncio.ensure_future(
                record(**fields, latency_ms=round((time.monotonic() - started) * 1000), run=_abandoned(started=started))
            )
        )
        raise
    request = await record(**fields, latency_ms=round((time.monotonic() - started) * 1000), run=run)
    if run.failure is not None:
        raise _failed(run, request, route)
    return _served(route, request)
