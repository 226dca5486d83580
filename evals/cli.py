"""``promptctl testset import|list|show`` and ``promptctl eval run|show|compare|cancel|resume``.

Handlers are thin callers of ``evals.services`` and ``evals.selectors``.
``eval compare`` exits 1 when the comparison regresses, so CI can gate on it;
``eval run --wait`` exits 1 when the run ends other than finished, and stops
with the worker hint when no worker has been alive for
``PROMPTCTL_WORKER_STALE_SECONDS`` while the run waits (the run goes on).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from django.conf import settings

from evals import selectors, services
from evals.models import EvalRun
from promptctl import selectors as promptctl_selectors
from promptctl.cli.common import actor_from_options, add_actor_argument
from promptctl.errors import DomainError
from promptctl.inputs import file_read_capped
from promptctl_client.display import comparison_show, progress_bar, run_show


def _json_flag(parser) -> None:
    # Also accepted after the action; SUPPRESS keeps `promptctl --json eval ...` working.
    parser.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print machine-readable JSON only"
    )


def _optional_actor(parser) -> None:
    # With $PROMPTCTL_TOKEN the token's user is recorded on what is created; without, the operator (no one).
    add_actor_argument(parser, required=False)


def _actor(options):
    return actor_from_options(options, required=False)


def register(groups) -> None:
    testset = groups.add_parser("testset", help="labelled test sets: import, list, show")
    testset_actions = testset.add_subparsers(dest="action", metavar="ACTION", required=True)

    importing = testset_actions.add_parser("import", help="import a JSONL or CSV file as a new version of a test set")
    importing.add_argument("file", metavar="FILE")
    importing.add_argument("--name", required=True, help="the test set's name (created on first import)")
    importing.add_argument("--agent", help="check labels against this agent's prompt; the set belongs to it")
    importing.add_argument("--gating", action="store_true", help="make it the agent's gating set for promotions")
    importing.add_argument("--format", choices=["jsonl", "csv"], help="default: from the file name")
    _optional_actor(importing)
    _json_flag(importing)
    importing.set_defaults(handler=testset_import)

    listing = testset_actions.add_parser("list", help="test sets and their latest contents")
    _json_flag(listing)
    listing.set_defaults(handler=testset_list)

    evals = groups.add_parser("eval", help="eval runs and comparisons of agent versions")
    eval_actions = evals.add_subparsers(dest="action", metavar="ACTION", required=True)

    run = eval_actions.add_parser("run", help="score a version on a test set in the background workers")
    run.add_argument("--agent", required=True)
    run.add_argument("--version", required=True, type=int)
    run.add_argument("--testset", help="test set name (default: the agent's gating set); its latest contents are used")
    run.add_argument("--repeats", type=int, default=1, help="answers per ticket (1-20); >1 measures flakiness")
    run.add_argument("--wait", action="store_true", help="follow the run until it ends (progress bar on a terminal)")
    run.add_argument("--timeout", type=float, default=None, help="with --wait: give up waiting after this many seconds")
    _optional_actor(run)
    _json_flag(run)
    run.set_defaults(handler=eval_run)

    show = eval_actions.add_parser("show", help="a run: progress, per-team scores, confusion matrix")
    show.add_argument("run_id", type=int, metavar="RUN_ID")
    _json_flag(show)
    show.set_defaults(handler=eval_show)

    compare = eval_actions.add_parser(
        "compare", help="compare two versions' latest finished runs; exit 1 when a team regresses"
    )
    compare.add_argument("--agent", required=True)
    compare.add_argument("--baseline", type=int, metavar="N", help="baseline version number")
    compare.add_argument("--candidate", type=int, metavar="M", help="candidate version number")
    compare.add_argument("--testset", help="test set name (default: the agent's gating set)")
    compare.add_argument("--baseline-run", type=int, metavar="RUN_ID", help="compare this exact run instead")
    compare.add_argument("--candidate-run", type=int, metavar="RUN_ID", help="compare this exact run instead")
    _optional_actor(compare)
    _json_flag(compare)
    compare.set_defaults(handler=eval_compare)

    cancel = eval_actions.add_parser("cancel", help="stop a queued or running run")
    cancel.add_argument("run_id", type=int, metavar="RUN_ID")
    _optional_actor(cancel)
    _json_flag(cancel)
    cancel.set_defaults(handler=eval_cancel)

    resume = eval_actions.add_parser("resume", help="dispatch again every unit of a run that has no result yet")
    resume.add_argument("run_id", type=int, metavar="RUN_ID")
    _optional_actor(resume)
    _json_flag(resume)
    resume.set_defaults(handler=eval_resume)


# --- test sets ------------------------------------------------------------------------


def testset_import(options, out):
    path = Path(options.file)
    # Read in chunks and stop at the cap: `testset import /dev/zero` is refused, not read until memory runs out.
    data = file_read_capped(
        options.file, cap=settings.PROMPTCTL_MAX_TESTSET_BYTES, what="test set", setting="PROMPTCTL_MAX_TESTSET_BYTES"
    )
    agent = promptctl_selectors.agent_get(name=options.agent) if options.agent else None
    imported = services.testset_import(
        name=options.name,
        data=data,
        filename=path.name,
        file_format=options.format,
        agent=agent,
        gating=options.gating,
        actor=_actor(options),
    )
    version = imported.version
    verb = "Imported" if imported.created else "Already had"
    out.human(
        f"{verb} {version.testset.name} v{version.number}: {version.case_count} tickets, contents {version.content_hash[:12]}"
        + (" (gating set of " + version.testset.agent.name + ")" if version.testset.gating else "")
        + "."
    )
    for warning in version.label_warnings:
        out.human(f"  warning: {warning['message']}")
    return selectors.testset_version_as_dict(version=version, created=imported.created)


def testset_list(options, out):
    rows = selectors.testset_list_summary()
    out.table(
        [
            [
                r["name"],
                r["agent"] or "-",
                "yes" if r["gating"] else "",
                r["version"],
                r["cases"],
                (r["content_hash"] or "")[:12],
                r["warnings"],
            ]
            for r in rows
        ],
        ["test set", "agent", "gating", "version", "tickets", "contents", "label warnings"],
    )
    return rows


# --- runs -----------------------------------------------------------------------------


def _wait(run: EvalRun, *, show_bar: bool, timeout: float | None) -> EvalRun:
    """Follow the run in the database (the source of truth) until it is final."""
    stream = sys.stderr
    deadline = None if timeout is None else time.monotonic() + timeout
    interval = 0.05
    stale = settings.PROMPTCTL_WORKER_STALE_SECONDS
    last_alive = time.monotonic()  # a worker starting as the wait begins gets the whole window to say so
    while True:
        run.refresh_from_db()
        if show_bar:
            stream.write(progress_bar(selectors.eval_run_progress(run=run), shutil.get_terminal_size((80, 24)).columns))
            stream.flush()
        if not run.is_active:
            break
        if selectors.workers_alive():
            last_alive = time.monotonic()
        elif time.monotonic() - last_alive > stale:
            if show_bar:
                stream.write("\n")
            raise DomainError(f"Run #{run.pk}: " + selectors.workers_missing_message(status=run.status))
        if deadline is not None and time.monotonic() > deadline:
            if show_bar:
                stream.write("\n")
            raise DomainError(
                f"Run #{run.pk} is still {run.status} after {timeout:g}s; it goes on in the workers. "
                f"Follow it with `promptctl eval show {run.pk}`; is a worker running (`celery -A config worker`)?"
            )
        time.sleep(interval)
        interval = min(interval * 1.5, 0.5)
    if show_bar:
        stream.write("\n")
    return run


def eval_run(options, out):
    agent = promptctl_selectors.agent_get(name=options.agent)
    version = promptctl_selectors.version_get(agent=agent, number=options.version)
    testset_version = selectors.testset_version_for_run(agent=agent, name=options.testset)
    testset = testset_version.testset
    run = services.eval_run_start(
        agent_version=version, testset_version=testset_version, repeats=options.repeats, actor=_actor(options)
    )
    out.human(
        f"Started run #{run.pk}: {agent.name} v{version.number} on {testset.name} v{testset_version.number}, "
        f"{run.unit_total} unit(s)."
    )
    if not options.wait:
        return selectors.eval_run_shown(run=run, with_scores=False)
    run = _wait(run, show_bar=not out.json_mode and sys.stderr.isatty(), timeout=options.timeout)
    summary = selectors.eval_run_summary(run=run)
    run_show(out, summary)
    return summary, 0 if run.status == EvalRun.Status.FINISHED else 1


def eval_show(options, out):
    run = selectors.eval_run_get(run_id=options.run_id)
    summary = selectors.eval_run_shown(run=run)
    run_show(out, summary)
    return summary


def eval_cancel(options, out):
    run = services.eval_run_cancel(run=selectors.eval_run_get(run_id=options.run_id), actor=_actor(options))
    out.human(f"Cancelled run #{run.pk}; units not yet started will do nothing.")
    return selectors.eval_run_summary(run=run, with_scores=False)


def eval_resume(options, out):
    run = selectors.eval_run_get(run_id=options.run_id)
    dispatched = services.eval_run_resume(run=run, actor=_actor(options))
    run.refresh_from_db()
    if dispatched:
        out.human(f"Run #{run.pk}: dispatched {dispatched} unit(s) that had no result yet.")
    else:
        out.human(f"Run #{run.pk}: nothing was missing; it is {run.status}.")
    return {"run": run.pk, "dispatched": dispatched, "status": run.status}


# --- comparisons -----------------------------------------------------------------------


def eval_compare(options, out):
    agent = promptctl_selectors.agent_get(name=options.agent)
    actor = _actor(options)
    if options.baseline_run or options.candidate_run:
        if not (options.baseline_run and options.candidate_run):
            raise DomainError(
                "Give both --baseline-run and --candidate-run, or compare versions with --baseline/--candidate."
            )
        comparison = services.comparison_create(
            baseline_run=selectors.eval_run_get(run_id=options.baseline_run),
            candidate_run=selectors.eval_run_get(run_id=options.candidate_run),
            actor=actor,
        )
    else:
        if options.baseline is None or options.candidate is None:
            raise DomainError("Give --baseline N and --candidate M (version numbers) to compare.")
        testset = selectors.testset_get(name=options.testset) if options.testset else None
        comparison = services.comparison_for_versions(
            agent=agent,
            baseline_number=options.baseline,
            candidate_number=options.candidate,
            testset=testset,
            actor=actor,
        )
    summary = selectors.comparison_summary(comparison=comparison)
    comparison_show(out, summary)
    return summary, 1 if summary["regressed"] else 0
