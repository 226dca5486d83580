"""``promptctl testset import|list`` and ``promptctl eval run|show|compare``, over the API.

``eval run --wait`` polls ``GET /runs/{id}`` every half second: a progress bar
on stderr when it is a terminal, one line per change of progress otherwise.
It exits 1 when the run ends other than finished (or ``--timeout`` passes,
or no worker has been alive for the server's ``worker_stale_seconds`` while
the run waits: the message names the command that starts one);
``eval compare`` exits 1 when a team regresses, so CI can gate on either.
"""

from __future__ import annotations

import sys

from promptctl_client.display import comparison_show, progress_bar, run_show
from promptctl_client.transport import ClientError

POLL_SECONDS = 0.5
FINAL = ("finished", "failed", "cancelled")


def register(groups) -> None:
    testset = groups.add_parser("testset", help="labelled test sets: import, list")
    actions = testset.add_subparsers(dest="action", metavar="ACTION", required=True)
    importing = actions.add_parser("import", help="import a JSONL or CSV file as a new version of a test set")
    importing.add_argument("file", metavar="FILE")
    importing.add_argument("--name", required=True, help="the test set's name (created on first import)")
    importing.add_argument("--agent", help="check labels against this agent's prompt; the set belongs to it")
    importing.add_argument("--gating", action="store_true", help="make it the agent's gating set for promotions")
    importing.add_argument("--format", choices=["jsonl", "csv"], help="default: from the file name")
    importing.set_defaults(handler=testset_import)
    actions.add_parser("list", help="test sets and their latest contents").set_defaults(handler=testset_list)

    evals = groups.add_parser("eval", help="eval runs and comparisons of agent versions")
    actions = evals.add_subparsers(dest="action", metavar="ACTION", required=True)
    run = actions.add_parser("run", help="score a version on a test set in the background workers")
    run.add_argument("--agent", required=True)
    run.add_argument("--version", required=True, type=int)
    run.add_argument("--testset", help="test set name (default: the agent's gating set)")
    run.add_argument("--repeats", type=int, default=1, help="answers per ticket (1-20); >1 measures flakiness")
    run.add_argument("--wait", action="store_true", help="follow the run until it ends (progress bar on a terminal)")
    run.add_argument("--timeout", type=float, default=None, help="with --wait: give up waiting after this many seconds")
    run.set_defaults(handler=eval_run)
    show = actions.add_parser("show", help="a run: progress, per-team scores, confusion matrix")
    show.add_argument("run_id", type=int, metavar="RUN_ID")
    show.set_defaults(handler=eval_show)
    compare = actions.add_parser("compare", help="compare two versions' latest finished runs; exit 1 on regression")
    compare.add_argument("--agent", required=True)
    compare.add_argument("--baseline", type=int, metavar="N", help="baseline version number")
    compare.add_argument("--candidate", type=int, metavar="M", help="candidate version number")
    compare.add_argument("--testset", help="test set name (default: the agent's gating set)")
    compare.add_argument("--baseline-run", type=int, metavar="RUN_ID", help="compare this exact run instead")
    compare.add_argument("--candidate-run", type=int, metavar="RUN_ID", help="compare this exact run instead")
    compare.set_defaults(handler=eval_compare)


# --- test sets ------------------------------------------------------------------------


def testset_import(options, ctx):
    from promptctl_client.files import text_file_read

    content = text_file_read(options.file, what="test set", setting="PROMPTCTL_MAX_TESTSET_BYTES")
    file_format = options.format or ("csv" if options.file.lower().endswith(".csv") else "jsonl")
    body = {"name": options.name, "gating": options.gating, "format": file_format, "content": content}
    if options.agent:
        body["agent"] = options.agent
    data = ctx.api.post("/testsets/import", body)
    verb = "Imported" if data.get("created", True) else "Already had"
    gating = f" (gating set of {data['agent']})" if data.get("gating") and data.get("agent") else ""
    ctx.out.human(
        f"{verb} {data['testset']} v{data['version']}: {data['cases']} tickets, contents {data['content_hash'][:12]}{gating}."
    )
    for warning in data.get("label_warnings", []):
        ctx.out.human(f"  warning: {warning['message']}")
    return data


def testset_list(options, ctx):
    rows = ctx.api.get("/testsets")
    ctx.out.table(
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


def _wait(ctx, run: dict, *, show_bar: bool, timeout: float | None) -> dict:
    """Poll the run until it is final; a bar on a terminal, a line per change of progress otherwise."""
    import shutil
    import time

    stream = sys.stderr
    deadline = None if timeout is None else time.monotonic() + timeout
    last = None
    last_alive = time.monotonic()  # a worker starting as the wait begins gets the whole window to say so
    while True:
        progress = {"run": run["id"], **run["progress"], "status": run["status"]}
        if show_bar:
            stream.write(progress_bar(progress, shutil.get_terminal_size((80, 24)).columns))
            stream.flush()
        elif (progress["done"], progress["status"]) != last and not ctx.out.json_mode:
            stream.write(f"run #{run['id']}: {progress['done']}/{progress['total']} {progress['status']}\n")
            stream.flush()
        last = (progress["done"], progress["status"])
        if run["status"] in FINAL:
            break
        if run.get("workers_alive", 1):  # an older server without the field: never stop on it
            last_alive = time.monotonic()
        elif time.monotonic() - last_alive > float(run.get("worker_stale_seconds") or 15):
            if show_bar:
                stream.write("\n")
            raise ClientError(f"Run #{run['id']}: {run.get('worker_warning') or 'no Celery worker is consuming.'}")
        if deadline is not None and time.monotonic() > deadline:
            if show_bar:
                stream.write("\n")
            raise ClientError(
                f"Run #{run['id']} is still {run['status']} after {timeout:g}s; it goes on in the workers. "
                f"Follow it with `promptctl eval show {run['id']}`."
            )
        time.sleep(POLL_SECONDS)
        run = ctx.api.get(f"/runs/{run['id']}")
    if show_bar:
        stream.write("\n")
    return run


def eval_run(options, ctx):
    body = {"agent": options.agent, "version": options.version, "repeats": options.repeats}
    if options.testset:
        body["testset"] = options.testset
    run = ctx.api.post("/runs", body)
    ctx.out.human(
        f"Started run #{run['id']}: {run['agent']} v{run['version']} on {run['testset']} v{run['testset_version']}, "
        f"{run['progress']['total']} unit(s)."
    )
    if not options.wait:
        return run
    show_bar = not ctx.out.json_mode and sys.stderr.isatty()
    run = _wait(ctx, run, show_bar=show_bar, timeout=options.timeout)
    if "scores" not in run:
        run = ctx.api.get(f"/runs/{run['id']}")
    run_show(ctx.out, run)
    return run, 0 if run["status"] == "finished" else 1


def eval_show(options, ctx):
    summary = ctx.api.get(f"/runs/{options.run_id}")
    run_show(ctx.out, summary)
    return summary


# --- comparisons -----------------------------------------------------------------------


def eval_compare(options, ctx):
    if options.baseline_run or options.candidate_run:
        if not (options.baseline_run and options.candidate_run):
            raise ClientError(
                "Give both --baseline-run and --candidate-run, or compare versions with --baseline/--candidate."
            )
    elif options.baseline is None or options.candidate is None:
        raise ClientError("Give --baseline N and --candidate M (version numbers) to compare.")
    body = {
        "agent": options.agent,
        "baseline": options.baseline,
        "candidate": options.candidate,
        "testset": options.testset,
        "baseline_run": options.baseline_run,
        "candidate_run": options.candidate_run,
    }
    summary = ctx.api.post("/comparisons", {key: value for key, value in body.items() if value is not None})
    comparison_show(ctx.out, summary)
    return summary, 1 if summary["regressed"] else 0
