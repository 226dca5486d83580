"""Shadow runs: a logged ticket answered again by another version after the response, to see where they disagree.

- Shadow mode: a sampled live ticket is sent to a candidate version
  (``shadow_run``); production answered the caller.
- The canary watch: a sampled ticket the canary answered is sent to the
  production version (``canary_compare``), so a canary that answers validly
  but differently (the tutorial's v2 sends billing tickets to api-platform) is
  seen, not only one whose replies are invalid or fail.

Both run from tasks after the response (the caller never waits), with the
network call outside any transaction, and keep one result per unit of work
(a redelivered task finds it).

A worker killed mid-run loses the task's message (the embedded broker drops
it). ``shadow_runs_sweep`` (every worker's sweep timer) finds logged requests
whose shadow candidate has no result once they are due, and sends them again
with ``resume``: that run first looks up the sessions tagged with the request
and candidate, adopts one that holds the ticket (so the model is not asked
twice) and archives the rest. ``canary_comparisons_sweep`` does the same for
canary calls drawn for comparison (the draw is logged with the call) while
their canary still runs.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from managed_agents.adoption import sessions_archive_listed, sessions_tagged
from managed_agents.client import GatewayError
from managed_agents.tickets import TicketRun, ticket_adopt, ticket_run
from managed_agents.verdicts import allowed_labels
from promptctl.models import Pin
from triage import selectors
from triage.models import CanaryComparison, Outcome, ShadowResult, TriageRequest
from triage.services.common import _log_fields

logger = logging.getLogger(__name__)

SHADOW_TAG = "promptctl_shadow"
CANARY_COMPARE_TAG = "promptctl_canary_compare"
SHADOW_SWEEP_BATCH = 200
# (what, request id, received at) -> when this process's sweep last sent it (monotonic): a request is sent again at most once per
# due window by one worker, so a run still in flight is not sent on every pass. Lost on restart: harmless.
_sweep_sent: dict[tuple[str, int, datetime], float] = {}


def _tagged_run(
    *, agent_remote_id: str, version: int, tags: dict[str, str], text: str, allowed: dict, since: datetime
) -> TicketRun | None:
    """What an earlier run of this unit left in a session tagged ``tags``: adopted, and the other ones archived."""
    try:
        tagged = sessions_tagged(agent_id=agent_remote_id, metadata=tags, since=since)
    except GatewayError as error:
        logger.warning("could not look up sessions tagged %s (%s); running afresh", tags, error)
        return None
    run: TicketRun | None = None
    adopted = ""
    for session in reversed(tagged):  # newest first
        if session.version != version:
            continue
        run = ticket_adopt(session_id=session.session_id, text=text, allowed=allowed)
        if run is not None:
            adopted = session.session_id
            break
    strays = [s.session_id for s in tagged if not s.archived and s.session_id != adopted]
    if strays:
        archived = sessions_archive_listed(session_ids=strays)
        logger.warning("archived %d stray session(s) tagged %s: %s", len(archived), tags, archived)
    return run


def _second_answer(*, request: TriageRequest, version, tags: dict[str, str], resume: bool) -> tuple[int, dict]:
    """``version``'s answer to a logged ticket, as a result row's fields (with ``agrees``) and its latency in ms.

    The session is tagged ``tags``; with ``resume`` an earlier run's tagged session is adopted first.
    """
    agent = request.agent
    started = time.monotonic()
    allowed = allowed_labels(version.system_prompt)
    run = None
    if resume:
        run = _tagged_run(
            agent_remote_id=agent.remote_id,
            version=version.number,
            tags=tags,
            text=request.ticket_text,
            allowed=allowed,
            since=request.received_at,
        )
    if run is None:
        run = ticket_run(
            agent_id=agent.remote_id,
            version=version.number,
            environment_id=agent.environment_id,
            text=request.ticket_text,
            allowed=allowed,
            metadata=tags,
        )
    latency_ms = round((time.monotonic() - started) * 1000)
    agrees = None
    if run.ok and request.outcome == Outcome.OK:
        agrees = run.team == request.team and run.priority == request.priority
    fields = {**_log_fields(run), "agrees": agrees}
    del fields["format_warning"]  # a second answer keeps no format warning
    return latency_ms, fields


# --- shadow mode ---------------------------------------------------------------------------


def shadow_run(*, request_id: int, resume: bool = False) -> ShadowResult | None:
    """Send a logged ticket to its shadow candidate and record where it disagrees with production.

    Never affects the caller (it runs after the response, from a task). One
    result per (request, version): a redelivered task finds it and returns it.
    With ``resume`` (sent by the sweep), an earlier run's session tagged with
    the request and candidate is adopted instead of asking again.
    """
    request = TriageRequest.objects.select_related("agent", "shadow_version", "version").filter(pk=request_id).first()
    candidate = request.shadow_version if request is not None else None
    if request is None or candidate is None:
        return None
    existing = ShadowResult.objects.filter(request=request, version=candidate).first()
    if existing is not None:
        return existing
    tags = {SHADOW_TAG: str(request.pk), "candidate": str(candidate.number)}
    latency_ms, fields = _second_answer(request=request, version=candidate, tags=tags, resume=resume)
    try:
        with transaction.atomic():
            return ShadowResult.objects.create(request=request, version=candidate, latency_ms=latency_ms, **fields)
    except IntegrityError:
        return ShadowResult.objects.get(request=request, version=candidate)


def shadow_runs_sweep(*, now: datetime | None = None) -> list[int]:
    """Send again every due shadow run that has no result; returns the request ids.

    Due: logged more than ``PROMPTCTL_SHADOW_SWEEP_AFTER_SECONDS`` ago (long
    enough for the first run to have finished) and less than
    ``PROMPTCTL_SHADOW_SWEEP_HORIZON_SECONDS`` ago (older traffic is not worth
    a session). A result is recorded whatever the run's outcome, so a request
    is sent again only while its run is lost, and by one process at most once
    per due window; a repeat finds the result, or adopts the session of a run
    still in flight, so nothing is answered twice.
    """
    from triage import tasks  # lazy: triage.tasks imports triage.services at module level

    since, until = _sweep_window(now or timezone.now())
    recorded = ShadowResult.objects.filter(request=OuterRef("pk"), version=OuterRef("shadow_version"))
    rows = list(
        TriageRequest.objects.filter(shadow_version__isnull=False, received_at__lt=until, received_at__gte=since)
        .filter(~Exists(recorded))
        .order_by("received_at")
        .values_list("pk", "received_at")[:SHADOW_SWEEP_BATCH]
    )
    due = _not_sent_lately([("shadow", *row) for row in rows])
    for request_id in due:
        tasks.shadow_run.delay(request_id, True)
    if due:
        logger.warning("sweep sent %d lost shadow run(s) again: requests %s", len(due), due)
    return due


def _sweep_window(now: datetime) -> tuple[datetime, datetime]:
    """Logged between these two moments: old enough that the first run has finished, young enough to be worth it."""
    return (
        now - timedelta(seconds=settings.PROMPTCTL_SHADOW_SWEEP_HORIZON_SECONDS),
        now - timedelta(seconds=settings.PROMPTCTL_SHADOW_SWEEP_AFTER_SECONDS),
    )


def _not_sent_lately(keys: list[tuple[str, int, datetime]]) -> list[int]:
    """The request ids of ``keys`` this process's sweep has not sent within the due window; marks them sent."""
    clock = time.monotonic()
    window = settings.PROMPTCTL_SHADOW_SWEEP_AFTER_SECONDS
    for key, sent_at in list(_sweep_sent.items()):
        if clock - sent_at >= window:
            del _sweep_sent[key]
    due = []
    for key in keys:
        if key not in _sweep_sent:
            _sweep_sent[key] = clock
            due.append(key[1])
    return due


# --- the canary watch: production answers a sample of the canary's tickets ----------------------


def canary_compare(*, request_id: int, resume: bool = False) -> CanaryComparison | None:
    """Run a ticket the canary answered on the production version, record both verdicts, check the limit.

    Only while the canary that served it still runs (the pin is at the call's
    revision): the production version compared is the one pinned beside it.
    A canary reply that was not a valid verdict is not compared (the invalid
    and error limits count it). When the comparisons cross the agent's
    disagreement limit, ``triage.canary_end`` is sent on commit. With
    ``resume`` (sent by the sweep), an earlier run's session tagged with the
    request is adopted instead of asking again.
    """
    from triage import tasks  # lazy: triage.tasks imports triage.services at module level

    request = TriageRequest.objects.select_related("agent").filter(pk=request_id, canary=True).first()
    if request is None or request.outcome != Outcome.OK:
        return None
    existing = CanaryComparison.objects.filter(request=request).first()
    if existing is not None:
        return existing
    pin = Pin.objects.select_related("version").filter(agent_id=request.agent_id, channel=request.channel).first()
    if pin is None or pin.revision != request.pin_revision or not pin.canary_version_id:
        return None
    production = pin.version
    tags = {CANARY_COMPARE_TAG: str(request.pk), "production": str(production.number)}
    latency_ms, fields = _second_answer(request=request, version=production, tags=tags, resume=resume)
    agrees = fields["agrees"]
    try:
        with transaction.atomic():
            comparison = CanaryComparison.objects.create(
                request=request,
                agent_id=request.agent_id,
                pin_revision=request.pin_revision,
                production_version=production,
                latency_ms=latency_ms,
                **fields,
            )
            if agrees is not None and selectors.canary_disagreement_over(
                agent_id=request.agent_id, channel=request.channel, pin_revision=request.pin_revision
            ):
                agent_id, revision = request.agent_id, request.pin_revision
                transaction.on_commit(lambda: tasks.canary_end.delay(agent_id, revision))
    except IntegrityError:
        return CanaryComparison.objects.get(request=request)
    return comparison


def canary_comparisons_sweep(*, now: datetime | None = None) -> list[int]:
    """Send again every due canary comparison that has no result; returns the request ids.

    Due: a canary call of a canary still running (the pin at the call's
    revision) that was drawn for comparison (``compare_drawn``, logged with the
    call) and answered validly, in the same window as shadow runs, with no
    ``CanaryComparison``. Sent with ``resume``, so a lost run's session is
    adopted rather than the production version asked twice.
    """
    from triage import tasks  # lazy: triage.tasks imports triage.services at module level

    since, until = _sweep_window(now or timezone.now())
    recorded = CanaryComparison.objects.filter(request=OuterRef("pk"))
    keys: list[tuple[str, int, datetime]] = []
    for pin in Pin.objects.filter(canary_version__isnull=False).only("agent_id", "channel", "revision"):
        rows = (
            TriageRequest.objects.filter(
                agent_id=pin.agent_id,
                pin_revision=pin.revision,
                compare_drawn=True,
                channel=pin.channel,
                canary=True,
                outcome=Outcome.OK,
                received_at__lt=until,
                received_at__gte=since,
            )
            .filter(~Exists(recorded))
            .order_by("received_at")
            .values_list("pk", "received_at")[:SHADOW_SWEEP_BATCH]
        )
        keys += [("canary", pk, received_at) for pk, received_at in rows]
    due = _not_sent_lately(keys)
    for request_id in due:
        tasks.canary_compare.delay(request_id, True)
    if due:
        logger.warning("sweep sent %d lost canary comparison(s) again: requests %s", len(due), due)
    return due
