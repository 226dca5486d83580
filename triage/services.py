"""Writes of the triage API: keys, serving and logging triage calls, jobs, shadow runs, canary checks, corrections.

Rules every service keeps, and why:

- A triage call reads the pin at request time (``triage.pins``), runs one
  pinned session, and is logged whatever happens (valid, invalid, failed), so
  canary and shadow numbers count every call.
- No network call happens inside a transaction: the session runs between the
  read that routes it and the transaction that records it.
- Side effects (shadow runs, ending a canary, running a job) are Celery tasks
  sent on commit; each task's service is idempotent (a unique key per unit of
  work, a final state is a no-op).
- API keys are stored as SHA-256 hashes of 256-bit random secrets; the secret
  is returned once, by ``api_key_create``, and never again. A revoked key is
  refused on its next request: every request reads the key row.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable, Sequence

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from promptctl.dbsteps import db_step
from promptctl.errors import DomainError
from promptctl.records import saved_by
from managed_agents.tickets import ticket_text as compose_ticket_text
from promptctl.models import PRODUCTION, Agent, AgentVersion, ChangeRequest, Pin
from triage import pins, selectors
from triage.models import (
    ApiKey,
    ApiKeyUsage,
    CanaryCheck,
    Outcome,
    RoutingPolicy,
    ShadowResult,
    TriageCorrection,
    TriageJob,
    TriageRequest,
)
from managed_agents.tickets import RUN_ERROR, TicketRun, ticket_run, ticket_run_async
from managed_agents.verdicts import allowed_labels

logger = logging.getLogger(__name__)

KEY_PREFIX = "pctl_"
SHOWN_PREFIX_LENGTH = 12
USAGE_RESOLUTION = timedelta(minutes=1)  # last-used time is recorded to within this
SYSTEM_USERNAME = "promptctl"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")
_KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")


# --- refusals ---------------------------------------------------------------------


class ApiKeyRefused(DomainError):
    """The request carries no usable API key."""


class AgentOutOfScope(DomainError):
    """The key is valid but not for this agent."""


class TriageFailed(DomainError):
    """The session behind a triage call failed after retries; the call was logged as ``request_id``."""

    def __init__(self, message: str, *, outcome: str, request_id: int | None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.request_id = request_id
        self.retry_after = retry_after


def _require(user: Any, permission: str, doing: str) -> None:
    if user is None or not user.is_active or not user.has_perm(f"triage.{permission}"):
        who = getattr(user, "username", None) or "An anonymous user"
        raise DomainError(
            f"{who} may not {doing}: that needs the triage.{permission} permission (admins have it). "
            "Ask an admin to do it or to grant the permission."
        )


# --- API keys ---------------------------------------------------------------------


def _key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class IssuedKey:
    """A new key and its secret; the secret exists only here and is never stored."""

    key: ApiKey
    secret: str


def api_key_create(
    *, name: str, actor: Any, agent_names: Sequence[str] = (), all_agents: bool = False
) -> IssuedKey:
    """Issue a key for the agents named (or for all agents); the secret is returned once and stored only hashed."""
    _require(actor, "add_apikey", "create API keys")
    name = (name or "").strip()
    if not _KEY_NAME.match(name):
        raise DomainError(
            f"API key name {name!r} is not allowed: use letters, digits, dashes and underscores "
            "(e.g. helpdesk-prod), at most 100 characters."
        )
    names = sorted({agent_name.strip() for agent_name in agent_names if agent_name and agent_name.strip()})
    if all_agents and names:
        raise DomainError("A key is either for all agents or for the agents named, not both: drop --agent or --all-agents.")
    if not all_agents and not names:
        raise DomainError("Say which agents the key may call (--agent NAME, repeatable), or that it may call all agents.")
    agents = list(Agent.objects.filter(name__in=names))
    missing = sorted(set(names) - {agent.name for agent in agents})
    if missing:
        raise DomainError(f"No agent named {', '.join(map(repr, missing))}: `promptctl agent list` shows the agents.")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    try:
        with transaction.atomic():
            key = saved_by(
                ApiKey(
                    name=name,
                    prefix=secret[:SHOWN_PREFIX_LENGTH],
                    key_hash=_key_hash(secret),
                    all_agents=all_agents,
                    created_by=actor,
                ),
                actor,
            )
            if agents:
                key.agents.set(agents)
            ApiKeyUsage.objects.create(key=key)
    except IntegrityError as error:
        raise DomainError(f"An API key named {name!r} already exists: pick another name or revoke that one first.") from error
    return IssuedKey(key=key, secret=secret)


def api_key_revoke(*, key: ApiKey, actor: Any) -> ApiKey:
    """Revoke ``key``: its next request is refused (every request reads the key row)."""
    _require(actor, "change_apikey", "revoke API keys")
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(pk=key.pk)
        if key.revoked_at is not None:
            raise DomainError(f"API key {key.name!r} was already revoked on {key.revoked_at:%Y-%m-%d %H:%M:%S} UTC.")
        key.revoked_at = timezone.now()
        key.revoked_by = actor
        saved_by(key, actor)
    return key


def api_key_get(*, name: str) -> ApiKey:
    key = ApiKey.objects.filter(name=name).first()
    if key is None:
        raise DomainError(f"There is no API key named {name!r}: `promptctl apikey list` shows them.")
    return key


@dataclass(frozen=True)
class Principal:
    """The caller behind a request: which key, and which agents it may call."""

    key_id: int
    name: str
    all_agents: bool
    agent_ids: frozenset[int]

    def may_call(self, agent_id: int) -> bool:
        return self.all_agents or agent_id in self.agent_ids


_last_touched: dict[str, float] = {}


def api_key_token_check(token: str) -> str:
    """``token`` if it has the shape of a promptctl key (no database read); refused otherwise."""
    if not token or len(token) > 200 or not token.startswith(KEY_PREFIX):
        raise ApiKeyRefused(
            "This API key is not valid: send the key promptctl issued, as `Authorization: Bearer pctl_...`. "
            "Keys are created with `promptctl apikey create` or in the admin."
        )
    return token


def api_key_authenticate(*, token: str) -> Principal:
    """The key ``token`` names, read from the database now (so a revocation applies to the next request)."""
    api_key_token_check(token)
    key_hash = _key_hash(token)
    # key_hash is unique: a slice, not first(), which would add an ORDER BY to compile on every call.
    row = next(iter(ApiKey.objects.filter(key_hash=key_hash).values("id", "name", "all_agents", "revoked_at")[:1]), None)
    if row is None:
        raise ApiKeyRefused(
            "This API key is not known to promptctl (it may be mistyped, or from another installation). "
            "Ask the promptctl owners for a key."
        )
    if row["revoked_at"] is not None:
        raise ApiKeyRefused(
            f"API key {row['name']!r} was revoked on {row['revoked_at']:%Y-%m-%d %H:%M:%S} UTC and can no longer "
            "be used. Ask the promptctl owners for a new key."
        )
    agent_ids: frozenset[int] = frozenset()
    if not row["all_agents"]:
        agent_ids = frozenset(ApiKey.agents.through.objects.filter(apikey_id=row["id"]).values_list("agent_id", flat=True))
    _api_key_touch(row["id"], key_hash)
    return Principal(key_id=row["id"], name=row["name"], all_agents=row["all_agents"], agent_ids=agent_ids)


def _api_key_touch(key_id: int, key_hash: str) -> None:
    """Record the key's last use, at most once a minute per process (a write per request would contend).

    Remembered by the key's hash, which no other key ever has (a row id can be reused after a restore).
    """
    now_monotonic = time.monotonic()
    if now_monotonic - _last_touched.get(key_hash, -1e9) < USAGE_RESOLUTION.total_seconds():
        return
    _last_touched[key_hash] = now_monotonic
    now = timezone.now()
    ApiKeyUsage.objects.filter(key_id=key_id).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - USAGE_RESOLUTION)
    ).update(last_used_at=now)


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


def _log_fields(run: TicketRun) -> dict[str, Any]:
    """A ticket run as a log row: a session that ended in an error event with no reply counts as invalid output."""
    outcome = Outcome.INVALID if run.outcome == RUN_ERROR else run.outcome
    return {
        "outcome": outcome,
        "team": run.team,
        "priority": run.priority,
        "problem": run.problem,
        "format_warning": run.format_warning,
        "reply": run.reply,
        "session_id": run.session_id,
    }


def _abandoned(*, started: float) -> TicketRun:
    """The run of a call whose caller went away before its session finished (the session is still archived)."""
    return TicketRun(
        outcome=Outcome.ABANDONED, team="", priority="", problem="the caller went away before the session finished",
        format_warning="", reply="", session_id="", latency_seconds=time.monotonic() - started, http_attempts=0,
        usage=None,
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
    """Log one triage call; schedule its shadow run and, for a canary call, check the canary's limits."""
    from triage import tasks

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
            **_log_fields(run),
        )
        request_id = request.pk
        if route.shadow_version_id:
            transaction.on_commit(lambda: tasks.shadow_run.delay(request_id))
        if route.canary and canary_over_limits(route=route):
            agent_id, revision = route.agent_id, route.pin_revision
            transaction.on_commit(lambda: tasks.canary_end.delay(agent_id, revision))
    return request


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
        "route": route, "api_key_id": principal.key_id, "ticket": ticket, "source": TriageRequest.Source.API,
        "received_at": received_at,
    }
    metadata = _session_metadata(route=route, principal_name=principal.name, source=TriageRequest.Source.API)
    try:
        run = await ticket_run_async(**_run_fields(route, ticket, metadata))
    except asyncio.CancelledError:
        # The caller went away (Django cancels the view when the client disconnects). The call is still
        # logged, in a task of its own so this cancellation cannot stop it.
        await asyncio.shield(asyncio.ensure_future(
            record(**fields, latency_ms=round((time.monotonic() - started) * 1000), run=_abandoned(started=started))
        ))
        raise
    request = await record(**fields, latency_ms=round((time.monotonic() - started) * 1000), run=run)
    if run.failure is not None:
        raise _failed(run, request, route)
    return _served(route, request)


# --- asynchronous jobs ------------------------------------------------------------------


def triage_job_create(*, principal: Principal, agent_name: str | None, ticket: Ticket) -> TriageJob:
    """Accept a call to run later; refused now for an unknown agent or one the key may not call.

    The pin is read again when the job runs: a job serves the version pinned at
    the time it runs, like any other request.
    """
    route = triage_route(principal=principal, agent_name=agent_name, request_key=ticket.request_key)
    from triage import tasks

    with transaction.atomic():
        job = TriageJob(
            agent_id=route.agent_id,
            api_key_id=principal.key_id,
            subject=ticket.subject,
            body=ticket.body,
            request_key=ticket.request_key or "",
        )
        saved_by(job, None)
        job_id = str(job.pk)
        transaction.on_commit(lambda: tasks.triage_job_run.delay(job_id))
    return job


def triage_job_accept(*, token: str, agent_name: str | None, ticket: Ticket) -> TriageJob:
    """``triage_job_create`` for the key ``token`` names: the API's one database step for a queued call."""
    return triage_job_create(principal=api_key_authenticate(token=token), agent_name=agent_name, ticket=ticket)


def triage_job_read(*, token: str, job_id: str) -> TriageJob:
    """The job ``job_id`` if the key ``token`` names created it (one database step)."""
    return selectors.triage_job_get(api_key_id=api_key_authenticate(token=token).key_id, job_id=job_id)


def _job_finish(*, job_id: Any, attempt: int, status: str, request: TriageRequest | None = None,
                error_code: str = "", error_message: str = "") -> TriageJob | None:
    job = TriageJob.objects.select_for_update().get(pk=job_id)
    if job.status in TriageJob.FINAL_STATUSES or job.attempts != attempt:
        return None  # another worker's attempt owns the job now
    job.status = status
    job.request = request
    job.error_code = error_code
    job.error_message = error_message
    job.finished_at = timezone.now()
    return saved_by(job, None)


def triage_job_run(*, job_id: Any) -> TriageJob | None:
    """Run a queued job once: route at run time, one pinned session, log it, finish the job.

    A final job is left alone (a redelivered message is a no-op). A job found
    running was started by a worker that died: it is started again, and only
    the newest attempt may finish it.
    """
    with transaction.atomic():
        job = TriageJob.objects.select_for_update().select_related("agent", "api_key").filter(pk=job_id).first()
        if job is None:
            logger.warning("job %s does not exist (any more); its message is dropped", job_id)
            return None
        if job.status in TriageJob.FINAL_STATUSES:
            return job
        job.status = TriageJob.Status.RUNNING
        job.attempts += 1
        job.started_at = timezone.now()
        saved_by(job, None)
        attempt = job.attempts
    key = job.api_key
    ticket = Ticket(subject=job.subject, body=job.body, request_key=job.request_key or None)
    received_at = timezone.now()
    started = time.monotonic()
    try:
        if key.revoked_at is not None:
            raise ApiKeyRefused(f"API key {key.name!r} was revoked before the job ran.")
        principal = Principal(
            key_id=key.pk,
            name=key.name,
            all_agents=key.all_agents,
            agent_ids=frozenset(key.agents.values_list("pk", flat=True)),
        )
        route = triage_route(principal=principal, agent_name=job.agent.name, request_key=ticket.request_key)
    except DomainError as refusal:
        with transaction.atomic():
            _job_finish(job_id=job.pk, attempt=attempt, status=TriageJob.Status.FAILED,
                        error_code=getattr(refusal, "reason", "refused"), error_message=str(refusal))
        job.refresh_from_db()
        return job
    metadata = {**_session_metadata(route=route, principal_name=key.name, source="job"), "job": str(job.pk)}
    run = ticket_run(**_run_fields(route, ticket, metadata))
    with transaction.atomic():
        current = TriageJob.objects.select_for_update().get(pk=job.pk)
        if current.status in TriageJob.FINAL_STATUSES or current.attempts != attempt:
            return current
        request = triage_record(
            route=route,
            api_key_id=key.pk,
            ticket=ticket,
            source=TriageRequest.Source.JOB,
            received_at=received_at,
            latency_ms=round((time.monotonic() - started) * 1000),
            run=run,
        )
        if run.failure is None:
            finished = _job_finish(job_id=job.pk, attempt=attempt, status=TriageJob.Status.DONE, request=request)
        else:
            error = _failed(run, request, route)
            finished = _job_finish(
                job_id=job.pk, attempt=attempt, status=TriageJob.Status.FAILED, request=request,
                error_code=error.outcome, error_message=str(error),
            )
    return finished or TriageJob.objects.get(pk=job.pk)


# --- shadow mode ---------------------------------------------------------------------------


def shadow_run(*, request_id: int) -> ShadowResult | None:
    """Send a logged ticket to its shadow candidate and record where it disagrees with production.

    Never affects the caller (it runs after the response, from a task). One
    result per (request, version): a redelivered task finds it and returns it.
    """
    request = (
        TriageRequest.objects.select_related("agent", "shadow_version", "version").filter(pk=request_id).first()
    )
    if request is None or request.shadow_version_id is None:
        return None
    candidate = request.shadow_version
    existing = ShadowResult.objects.filter(request=request, version=candidate).first()
    if existing is not None:
        return existing
    agent = request.agent
    started = time.monotonic()
    run = ticket_run(
        agent_id=agent.remote_id,
        version=candidate.number,
        environment_id=agent.environment_id,
        text=request.ticket_text,
        allowed=allowed_labels(candidate.system_prompt),
        metadata={"promptctl_shadow": str(request.pk), "candidate": str(candidate.number)},
    )
    latency_ms = round((time.monotonic() - started) * 1000)
    agrees = None
    if run.ok and request.outcome == Outcome.OK:
        agrees = run.team == request.team and run.priority == request.priority
    fields = _log_fields(run)
    del fields["format_warning"]  # a shadow result keeps no format warning
    if run.failure is not None:
        fields = {"outcome": run.outcome, "problem": run.problem}
    fields["agrees"] = agrees
    try:
        with transaction.atomic():
            return ShadowResult.objects.create(request=request, version=candidate, latency_ms=latency_ms, **fields)
    except IntegrityError:
        return ShadowResult.objects.get(request=request, version=candidate)


# --- canary limits ---------------------------------------------------------------------------


_POLICY_DEFAULTS = {
    name: RoutingPolicy._meta.get_field(name).default
    for name in ("canary_max_invalid_rate", "canary_max_error_rate", "canary_min_requests")
}


def _canary_limits(agent_id: int) -> dict[str, Any]:
    values = RoutingPolicy.objects.filter(agent_id=agent_id).values(*_POLICY_DEFAULTS).first()
    return values or dict(_POLICY_DEFAULTS)


def _over(stats: selectors.CanaryStats, limits: dict[str, Any]) -> bool:
    if stats.requests < limits["canary_min_requests"]:
        return False
    return stats.invalid_rate > limits["canary_max_invalid_rate"] or stats.error_rate > limits["canary_max_error_rate"]


def canary_over_limits(*, route: pins.Route) -> bool:
    """Whether the canary that served ``route`` newly crossed its agent's limits (small indexed reads).

    False once a check has ended this canary, so later canary calls do not queue the task again.
    """
    if CanaryCheck.objects.filter(canary_change_id=route.pin_change_id).exists():
        return False
    stats = selectors.canary_stats(agent_id=route.agent_id, pin_revision=route.pin_revision)
    return _over(stats, _canary_limits(route.agent_id))


def system_user_ensure() -> Any:
    """The ``promptctl`` service account that files automatic change requests (a requester; cannot log in)."""
    from promptctl import services as change_services

    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(
        username=SYSTEM_USERNAME, defaults={"is_active": True, "is_staff": False}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    if not user.has_perm("promptctl.add_changerequest"):
        groups = change_services.roles_ensure()
        user.groups.add(groups[change_services.REQUESTERS])
        user = user_model.objects.get(pk=user.pk)  # drop the cached permissions
    return user


def canary_end(*, agent_id: int, pin_revision: int) -> CanaryCheck | None:
    """File the change request that ends a canary over its limits, with the numbers as its evidence.

    promptctl is the requester, so any one eligible reviewer may approve it;
    applying it still needs that approval. One check per canary (a unique key
    on the change request that started it): a repeated task returns the first.
    Does nothing when the pin has moved on or the canary is back within limits.
    """
    from promptctl import services as change_services

    pin = (
        Pin.objects.select_related("agent", "version", "canary_version")
        .filter(agent_id=agent_id, channel=PRODUCTION)
        .first()
    )
    if pin is None or pin.revision != pin_revision or not pin.canary_version_id:
        return None
    existing = CanaryCheck.objects.filter(canary_change_id=pin.change_id).first()
    if existing is not None:
        return existing
    stats = selectors.canary_stats(agent_id=agent_id, pin_revision=pin_revision)
    limits = _canary_limits(agent_id)
    if not _over(stats, limits):
        return None
    system_user = system_user_ensure()
    check = CanaryCheck(
        agent=pin.agent,
        channel=pin.channel,
        canary_change_id=pin.change_id,
        pin_revision=pin.revision,
        canary_version=pin.canary_version,
        canary_percent=pin.canary_percent,
        requests=stats.requests,
        invalid=stats.invalid,
        errors=stats.errors,
        max_invalid_rate=limits["canary_max_invalid_rate"],
        max_error_rate=limits["canary_max_error_rate"],
    )
    summary = check.summary()
    try:
        with transaction.atomic():
            change = change_services.change_request_create(
                agent=pin.agent,
                kind=ChangeRequest.Kind.ROLLBACK,
                target_number=pin.version.number,
                channel=pin.channel,
                reason=(
                    f"promptctl ends the canary automatically: {summary}. Approving and applying this request "
                    f"sends all traffic back to v{pin.version.number}."
                ),
                evidence_ref=f"canary check of change request #{pin.change_id}: {summary}",
                actor=system_user,
                filed_by_promptctl=True,
            )
            check.end_change = change
            check.save()
    except IntegrityError:
        return CanaryCheck.objects.filter(canary_change_id=pin.change_id).first()
    return check


# --- corrections and test sets ------------------------------------------------------------------


def triage_correct(*, request: TriageRequest, team: str, priority: str, actor: Any, note: str = "") -> TriageCorrection:
    """Record a reviewer's verdict for a logged call (the log row itself stays as served)."""
    _require(actor, "add_triagecorrection", "correct triage verdicts")
    team, priority = (team or "").strip(), (priority or "").strip()
    if not team or not priority:
        raise DomainError("A correction needs both a team and a priority.")
    allowed = allowed_labels(request.version.system_prompt)
    for field, value in (("team", team), ("priority", priority)):
        choices = allowed.get(field)
        if choices and value not in choices:
            raise DomainError(
                f"{field} {value!r} is not one the agent's prompt (v{request.version.number}) can produce: "
                f"choose one of {', '.join(choices)}."
            )
    with transaction.atomic():
        correction = TriageCorrection.objects.select_for_update().filter(request=request).first()
        if correction is None:
            correction = TriageCorrection(request=request, corrected_by=actor)
        correction.team, correction.priority, correction.note = team, priority, (note or "").strip()
        correction.corrected_by = actor
        correction.corrected_at = timezone.now()
        saved_by(correction, actor)
    return correction


def _label_of(request: TriageRequest) -> tuple[str, str] | None:
    correction = getattr(request, "correction", None) if hasattr(request, "correction") else None
    if correction is not None:
        return correction.team, correction.priority
    if request.outcome == Outcome.OK:
        return request.team, request.priority
    return None


def triage_requests_to_testset(*, requests: Iterable[TriageRequest], testset: Any, actor: Any) -> Any:
    """Add logged calls to ``testset`` as a new version: its current cases plus these tickets.

    Each ticket is labelled with its correction, or with the verdict it was
    served when nobody corrected it; a call without a valid verdict must be
    corrected first. Tickets already in the set are not added twice.
    """
    from evals import selectors as eval_selectors
    from evals import services as eval_services

    chosen = list(
        TriageRequest.objects.filter(pk__in=[r.pk for r in requests]).select_related("correction", "agent").order_by("pk")
    )
    if not chosen:
        raise DomainError("Select at least one logged request to add to the test set.")
    if testset.agent_id is not None:
        foreign = [r.pk for r in chosen if r.agent_id != testset.agent_id]
        if foreign:
            raise DomainError(
                f"Test set {testset.name!r} belongs to agent {testset.agent.name}; requests "
                f"{', '.join(f'#{pk}' for pk in foreign)} were served by another agent. Pick that agent's set."
            )
    unlabelled = [r.pk for r in chosen if _label_of(r) is None]
    if unlabelled:
        raise DomainError(
            f"Requests {', '.join(f'#{pk}' for pk in unlabelled)} have no valid verdict to use as a label: "
            "correct their verdicts first, then add them."
        )
    lines: list[dict[str, Any]] = []
    existing_ids: set[str] = set()
    if testset.versions.exists():
        latest = eval_selectors.testset_version_latest(testset=testset)
        for case in latest.cases.order_by("position"):
            existing_ids.add(case.external_id)
            lines.append({
                "id": case.external_id, "subject": case.subject, "body": case.body,
                "team": case.team, "priority": case.priority, "tags": list(case.tags or []),
            })
    added = 0
    for request in chosen:
        case_id = f"triage-{request.pk}"
        if case_id in existing_ids:
            continue
        team, priority = _label_of(request)
        lines.append({
            "id": case_id, "subject": request.subject, "body": request.body, "team": team, "priority": priority,
            "tags": ["from-triage-log", "corrected" if hasattr(request, "correction") else "as-served"],
        })
        added += 1
    if not added:
        raise DomainError(f"Every selected request is already in test set {testset.name!r}: nothing new to add.")
    data = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n"
    return eval_services.testset_import(
        name=testset.name, data=data, filename="triage-log.jsonl", file_format="jsonl",
        agent=testset.agent, actor=actor,
    )


# --- routing policy -----------------------------------------------------------------------------


def routing_policy_save(*, policy: RoutingPolicy, actor: Any) -> RoutingPolicy:
    """Save an agent's routing policy; making it the default takes the default from any other agent."""
    if policy.shadow_version_id and policy.shadow_version.agent_id != policy.agent_id:
        raise DomainError(
            f"The shadow version must be a version of {policy.agent.name}; v{policy.shadow_version.number} belongs "
            f"to {policy.shadow_version.agent.name}."
        )
    if policy.shadow_percent and not policy.shadow_version_id:
        raise DomainError("Choose the shadow version to sample live tickets to, or set the shadow percentage to 0.")
    with transaction.atomic():
        Agent.objects.select_for_update().get(pk=policy.agent_id)
        if policy.is_default:
            for other in RoutingPolicy.objects.select_for_update().filter(is_default=True).exclude(pk=policy.pk):
                other.is_default = False
                saved_by(other, actor)
        policy.updated_at = timezone.now()
        saved_by(policy, actor)
    return policy


def routing_policy_for(*, agent: Agent) -> RoutingPolicy:
    """The agent's routing policy, or an unsaved one with the defaults."""
    return RoutingPolicy.objects.filter(agent=agent).first() or RoutingPolicy(agent=agent)


def shadow_evidence(*, version: AgentVersion) -> dict[str, Any]:
    """A candidate's shadow numbers as a snapshot, for promotion evidence and the admin."""
    return selectors.shadow_summary(version_id=version.pk).as_dict()
