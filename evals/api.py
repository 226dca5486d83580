"""The evals part of the change-control API: test sets, eval runs, comparisons.

Mounted beside ``promptctl.api`` on the triage API's ``NinjaAPI`` with personal
tokens; same rules (thin views over ``evals.services`` and ``evals.selectors``,
the CLI's JSON shapes, writes inside ``acting(request)``). ``POST /runs``
answers at once with the queued run (its units are enqueued on commit for the
Celery workers); ``GET /runs/{id}`` shows its progress as ``eval show`` does.
Both run answers add ``workers_alive`` (workers with a fresh heartbeat),
``worker_stale_seconds`` and ``worker_warning`` (set while the run waits on no
live worker), so ``promptctl eval run --wait`` can say when nothing consumes.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router, Status

from evals import selectors, services
from evals.schemas import ComparisonIn, RunIn, TestsetImportIn
from promptctl import selectors as promptctl_selectors
from promptctl.api import acting, in_db_step
from promptctl.schemas import READ_ERRORS, WRITE_ERRORS

router = Router(tags=["evals"])


@router.post(
    "/testsets/import",
    response={200: dict[str, Any], 201: dict[str, Any], **WRITE_ERRORS},
    summary="Store a JSONL or CSV file as the newest version of a test set (201 new, 200 same contents)",
)
@in_db_step
def testset_import(request: HttpRequest, payload: TestsetImportIn):
    agent = promptctl_selectors.agent_get(name=payload.agent) if payload.agent else None
    with acting(request):
        imported = services.testset_import(
            name=payload.name,
            data=payload.content,
            filename=f"{payload.name}.{payload.format}",
            file_format=payload.format,
            agent=agent,
            gating=payload.gating,
            actor=request.auth.user,
        )
    return Status(
        201 if imported.created else 200,
        selectors.testset_version_as_dict(version=imported.version, created=imported.created),
    )


@router.get("/testsets", response={200: list[dict[str, Any]], **READ_ERRORS}, summary="Test sets and their contents")
@in_db_step
def testset_list(request: HttpRequest):
    return selectors.testset_list_summary()


@router.post(
    "/runs",
    response={201: dict[str, Any], **WRITE_ERRORS},
    summary="Score a version on a test set in the background workers (answers at once)",
)
@in_db_step
def eval_run(request: HttpRequest, payload: RunIn):
    agent = promptctl_selectors.agent_get(name=payload.agent)
    version = promptctl_selectors.version_get(agent=agent, number=payload.version)
    testset_version = selectors.testset_version_for_run(agent=agent, name=payload.testset)
    with acting(request):
        run = services.eval_run_start(
            agent_version=version, testset_version=testset_version, repeats=payload.repeats, actor=request.auth.user
        )
    return Status(201, selectors.eval_run_shown(run=run, with_scores=False))


@router.get(
    "/runs/{run_id}",
    response={200: dict[str, Any], **READ_ERRORS},
    summary="A run: progress (done, total, status), per-team scores, confusion matrix",
)
@in_db_step
def eval_show(request: HttpRequest, run_id: int):
    run = selectors.eval_run_get(run_id=run_id)
    return selectors.eval_run_shown(run=run)


@router.post(
    "/comparisons",
    response={201: dict[str, Any], **WRITE_ERRORS},
    summary="Compare two versions' latest finished runs, or two exact runs",
)
@in_db_step
def eval_compare(request: HttpRequest, payload: ComparisonIn):
    agent = promptctl_selectors.agent_get(name=payload.agent)
    with acting(request):
        if payload.baseline_run is not None and payload.candidate_run is not None:
            comparison = services.comparison_create(
                baseline_run=selectors.eval_run_get(run_id=payload.baseline_run),
                candidate_run=selectors.eval_run_get(run_id=payload.candidate_run),
                actor=request.auth.user,
            )
        else:
            assert payload.baseline is not None and payload.candidate is not None  # ComparisonIn's rule
            comparison = services.comparison_for_versions(
                agent=agent,
                baseline_number=payload.baseline,
                candidate_number=payload.candidate,
                testset=selectors.testset_get(name=payload.testset) if payload.testset else None,
                actor=request.auth.user,
            )
    return Status(201, selectors.comparison_summary(comparison=comparison))


@router.get(
    "/comparisons/{comparison_id}", response={200: dict[str, Any], **READ_ERRORS}, summary="A comparison's summary"
)
@in_db_step
def comparison_show(request: HttpRequest, comparison_id: int):
    return selectors.comparison_summary(comparison=selectors.comparison_get(comparison_id=comparison_id))
