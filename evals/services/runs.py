"""Eval runs: starting one, running and recording its units, finishing, cancelling, resuming, tidying its sessions.

- A run's state moves only here, inside ``transaction.atomic()`` with the run
  row locked by ``select_for_update()`` and its starting state checked.
- Recording a result locks the run row first, then inserts (once per unit:
  the unique key makes a redelivered unit a no-op), then counts: whichever
  result lands last sees every other one and finishes the run, exactly once.
- The database, not the broker, says what is left: resume and the sweep
  dispatch every (case, attempt) that has no result. A duplicate message
  finds the result already there and does nothing.
- No network call happens inside a transaction: the session runs between the
  "may I start" check and the transaction that records its result.
"""

from __future__ import annotations

import logging
import random
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from evals import selectors
from evals.importing import label_warnings
from evals.models import EvalResult, EvalRun, TestCase, TestSetVersion
from evals.services.common import UnitRetryLater
from managed_agents import gateway, ratelimit, verdicts
from managed_agents.tickets import RUN_INVALID, RUN_OK, ticket_run
from promptctl.errors import DomainError
from promptctl.models import AgentVersion
from promptctl.records import saved_by

logger = logging.getLogger(__name__)


# --- runs -----------------------------------------------------------------------


def eval_run_start(
    *, agent_version: AgentVersion, testset_version: TestSetVersion, repeats: int = 1, actor: Any = None
) -> EvalRun:
    """Queue a run of ``agent_version`` on ``testset_version``; its units are dispatched after commit."""
    if not 1 <= repeats <= EvalRun.MAX_REPEATS:
        raise DomainError(f"repeats must be between 1 and {EvalRun.MAX_REPEATS}, got {repeats}.")
    agent = agent_version.agent
    if not agent.environment_id:
        raise DomainError(
            f"Agent {agent.name} has no environment recorded, so no session can be started for it. "
            "Recreate or re-register the agent with promptctl."
        )
    allowed = verdicts.allowed_labels(agent_version.system_prompt)
    cases = list(testset_version.cases.values("external_id", "team", "priority"))
    warnings = label_warnings(
        cases=[{"id": c["external_id"], "team": c["team"], "priority": c["priority"]} for c in cases], allowed=allowed
    )
    with transaction.atomic():
        run = saved_by(
            EvalRun(
                agent_version=agent_version,
                testset_version=testset_version,
                repeats=repeats,
                unit_total=len(cases) * repeats,
                allowed_labels={key: list(value) for key, value in allowed.items()},
                label_warnings=warnings,
                started_by=actor if getattr(actor, "pk", None) else None,
            ),
            actor,
        )
        run_id = run.pk
        transaction.on_commit(lambda: eval_units_dispatch(run_id=run_id))
    return run


def _missing_units(run: EvalRun) -> list[tuple[int, int]]:
    done = set(run.results.values_list("case_id", "attempt"))
    case_ids = list(run.testset_version.cases.order_by("position").values_list("id", flat=True))
    # Attempt-major order: with a shared budget every ticket gets its first answer before any repeat.
    return [
        (case_id, attempt)
        for attempt in range(1, run.repeats + 1)
        for case_id in case_ids
        if (case_id, attempt) not in done
    ]


def eval_units_dispatch(*, run_id: int) -> int:
    """Send one task per unit that has no result yet; returns how many were sent."""
    from evals.tasks import run_unit  # lazy: evals.tasks imports evals.services at module level

    run = EvalRun.objects.select_related("testset_version").get(pk=run_id)
    if not run.is_active:
        return 0
    units = _missing_units(run)
    for case_id, attempt in units:
        run_unit.delay(run_id, case_id, attempt)
    return len(units)


def _run_locked(run_id: int) -> EvalRun:
    return EvalRun.objects.select_for_update().get(pk=run_id)


def _run_mark_running(run_id: int) -> None:
    with transaction.atomic():
        run = _run_locked(run_id)
        if run.status != EvalRun.Status.QUEUED:
            return
        run.status = EvalRun.Status.RUNNING
        run.started_at = timezone.now()
        saved_by(run, None)


def _transient_countdown(task_try: int) -> float:
    ceiling = min(60.0, 2.0 * (2 ** (task_try - 1)))
    return random.uniform(ceiling / 2, ceiling)


def eval_unit_execute(
    *, run_id: int, case_id: int, attempt: int, task_try: int = 1, last_try: bool = True
) -> EvalResult | None:
    """Run one (case, attempt) of a run through one pinned session and record what came back.

    A no-op when the run is no longer active or the unit already has a result.
    Transient upstream failures raise ``UnitRetryLater`` unless this is the last
    try, when they are recorded as an ``error`` result so the run still ends.
    """
    run = EvalRun.objects.select_related("agent_version__agent").filter(pk=run_id).first()
    case = TestCase.objects.filter(pk=case_id).first()
    if run is None or case is None or case.version_id != run.testset_version_id:
        logger.warning(
            "unit (run %s, case %s, attempt %s) names nothing that exists; dropped", run_id, case_id, attempt
        )
        return None
    if not run.is_active:
        return None
    existing = EvalResult.objects.filter(run_id=run_id, case_id=case_id, attempt=attempt).first()
    if existing is not None:
        return existing
    if run.status == EvalRun.Status.QUEUED:
        _run_mark_running(run_id)
    version = run.agent_version
    agent = version.agent
    outcome = ticket_run(
        agent_id=agent.remote_id,
        version=version.number,
        environment_id=agent.environment_id,
        text=case.ticket_text,
        allowed=run.allowed_labels or {},
        metadata={"promptctl_run": str(run_id), "ticket": case.external_id, "attempt": str(attempt)},
        # Every create attempt, retries included, takes a slot of the shared budget.
        before_create=ratelimit.session_slot_reserve,
    )
    if outcome.transient and not last_try:
        raise UnitRetryLater(outcome.problem, countdown=_transient_countdown(task_try)) from outcome.failure
    if outcome.failure is not None:
        return eval_result_record(
            run=run,
            case=case,
            attempt=attempt,
            kind=EvalResult.Kind.ERROR,
            problem=outcome.problem,
            task_attempts=task_try,
        )
    kind = {RUN_OK: EvalResult.Kind.OK, RUN_INVALID: EvalResult.Kind.INVALID}.get(
        outcome.outcome, EvalResult.Kind.ERROR
    )
    return eval_result_record(
        run=run,
        case=case,
        attempt=attempt,
        kind=kind,
        predicted_team=outcome.team,
        predicted_priority=outcome.priority,
        raw_reply=outcome.reply,
        problem=outcome.problem,
        format_warning=outcome.format_warning,
        latency_seconds=outcome.latency_seconds,
        session_id=outcome.session_id,
        http_attempts=outcome.http_attempts,
        task_attempts=task_try,
        usage=outcome.usage,
    )


def eval_result_record(
    *,
    run: EvalRun,
    case: TestCase,
    attempt: int,
    kind: str,
    predicted_team: str = "",
    predicted_priority: str = "",
    raw_reply: str = "",
    problem: str = "",
    format_warning: str = "",
    latency_seconds: float | None = None,
    session_id: str = "",
    http_attempts: int = 0,
    task_attempts: int = 1,
    usage: dict | None = None,
) -> EvalResult:
    """Store one unit's result (once) and finish the run when it was the last one.

    Returns the stored result, which is the earlier one when the unit was
    already recorded. A result for a run that was cancelled meanwhile is still
    kept (the session happened), but never finishes the run.
    """
    if not 1 <= attempt <= run.repeats:
        raise DomainError(f"Attempt {attempt} is outside 1..{run.repeats} for run #{run.pk}.")
    with transaction.atomic():
        locked = _run_locked(run.pk)
        existing = EvalResult.objects.filter(run_id=run.pk, case_id=case.pk, attempt=attempt).first()
        if existing is not None:
            return existing
        result = EvalResult.objects.create(
            run=locked,
            case=case,
            attempt=attempt,
            kind=kind,
            predicted_team=predicted_team[:100],
            predicted_priority=predicted_priority[:50],
            raw_reply=raw_reply,
            problem=problem,
            format_warning=format_warning,
            latency_seconds=latency_seconds,
            session_id=session_id[:200],
            attempts=http_attempts,
            task_attempts=task_attempts,
            usage=usage,
        )
        if locked.is_active and locked.results.count() >= locked.unit_total:
            _run_finish(locked)
    return result


def _run_finish(run: EvalRun) -> None:
    """Final transition of a locked, active run whose every unit has a result."""
    scores = selectors.eval_run_score(run=run)
    errors = scores["overall"]["errors"]
    run.scores = scores
    run.overall_correct = scores["overall"]["correct"]
    run.overall_total = scores["overall"]["total"]
    run.finished_at = timezone.now()
    run.started_at = run.started_at or run.finished_at
    if errors >= run.unit_total:
        first = (
            run.results.filter(kind=EvalResult.Kind.ERROR)
            .order_by("created_at")
            .values_list("problem", flat=True)
            .first()
        )
        run.status = EvalRun.Status.FAILED
        run.status_reason = f"every unit failed, so nothing was scored. First error: {first}"
    else:
        run.status = EvalRun.Status.FINISHED
        run.status_reason = f"{errors} of {run.unit_total} units failed and are not scored" if errors else ""
    saved_by(run, None)
    _sessions_tidy_after_commit(run)


def _sessions_tidy_after_commit(run: EvalRun) -> None:
    from evals import tasks  # lazy: evals.tasks imports evals.services at module level

    run_id = run.pk
    transaction.on_commit(lambda: tasks.tidy_run_sessions.delay(run_id))


def eval_run_sessions_tidy(*, run_id: int) -> list[str]:
    """Archive sessions of an ended run that nobody archived (a killed worker's, a retried create's stray).

    Only for runs that have ended: then no unit of the run is legitimately in
    flight, so every unarchived session tagged with the run is a leftover.
    """
    run = EvalRun.objects.select_related("agent_version__agent").filter(pk=run_id).first()
    if run is None or run.is_active:
        return []
    archived = gateway.sessions_archive_tagged(
        metadata={"promptctl_run": str(run_id)}, agent_id=run.agent_version.agent.remote_id
    )
    if archived:
        logger.warning(
            "run #%s: archived %d session(s) left unarchived: %s", run_id, len(archived), ", ".join(archived)
        )
    return archived


def eval_run_cancel(*, run: EvalRun, actor: Any = None) -> EvalRun:
    """Stop a queued or running run: units not yet started do nothing when they arrive."""
    with transaction.atomic():
        run = _run_locked(run.pk)
        if not run.is_active:
            raise DomainError(f"Run #{run.pk} is already {run.status}: there is nothing left to cancel.")
        run.status = EvalRun.Status.CANCELLED
        run.finished_at = timezone.now()
        who = getattr(actor, "username", None)
        run.status_reason = f"cancelled by {who}" if who else "cancelled"
        saved_by(run, actor)
        _sessions_tidy_after_commit(run)
    return run


def eval_run_resume(*, run: EvalRun, actor: Any = None, stalled_for: float | None = None) -> int:
    """Dispatch again every unit of an active run that has no result; returns how many.

    With ``stalled_for``, only when the run has had no new result (and no
    resume) for that many seconds: the check is repeated under the row lock,
    so concurrent sweeps resume a run once. A run whose units are all recorded
    but which is somehow still active is finished here.
    """
    with transaction.atomic():
        run = _run_locked(run.pk)
        if not run.is_active:
            if stalled_for is not None:
                return 0
            raise DomainError(f"Run #{run.pk} is {run.status}: only queued or running runs can be resumed.")
        now = timezone.now()
        if stalled_for is not None:
            last = run.results.aggregate(last=Max("created_at"))["last"]
            moments = [moment for moment in (last, run.resumed_at, run.started_at, run.created_at) if moment]
            if max(moments) > now - timedelta(seconds=stalled_for):
                return 0
        if run.results.count() >= run.unit_total:
            _run_finish(run)
            return 0
        run.resume_count += 1
        run.resumed_at = now
        saved_by(run, actor)
        run_id = run.pk
        missing = len(_missing_units(run))
        transaction.on_commit(lambda: eval_units_dispatch(run_id=run_id))
    logger.warning("resumed run #%s: %d unit(s) dispatched again", run_id, missing)
    return missing


def eval_runs_sweep(*, stall_seconds: float | None = None) -> dict[int, int]:
    """Resume every active run that has made no progress for ``stall_seconds`` (default from settings).

    The broker may lose a unit (the embedded broker drops what a killed worker
    held; Redis holds it back for the visibility timeout). The database knows
    what is missing, so this is what guarantees every run ends.
    """
    stall = settings.PROMPTCTL_EVAL_STALL_SECONDS if stall_seconds is None else stall_seconds
    resumed: dict[int, int] = {}
    for run in EvalRun.objects.filter(status__in=EvalRun.ACTIVE_STATUSES).order_by("pk"):
        try:
            count = eval_run_resume(run=run, stalled_for=stall)
        except DomainError:
            continue
        if count:
            resumed[run.pk] = count
    return resumed
