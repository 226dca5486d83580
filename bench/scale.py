"""The scale step of ``make bench`` (``python -m bench.scale``): each page and hot path at ~10² and ~10⁵ rows.

For each size a fresh database (PostgreSQL when ``--database postgres`` or ``DATABASE_URL`` names one:
the bench's own database, ``--database-url`` or ``promptctl_bench_scale``; SQLite otherwise) is seeded (``bench.scale_seed`` says
how: a world made through the services, grown by bulk copies, the audit chain appended as
``audit_record`` does), then each page of issue 16's table is fetched with the Django test client
as a superuser: ``--repeats`` times after one warm-up, median milliseconds, queries and bytes.
The canary-served call's added cost (``triage.selectors.canary_over_limits``) is timed at 0 and
``--canary-rows`` canary rows of the pin revision. Prints both sizes side by side with the ratio
and writes JSON (``--json``, default ``var/bench-scale.json``).

Targets (issue 16): every page within 2× between the sizes and none over 500 ms at the large one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.child import clean_child_run

TARGET_RATIO = 2.0
TARGET_MS = 500.0
DEFAULT_PG_DATABASE = "promptctl_bench_scale"


def _postgres_url(explicit: str) -> str:
    """The bench's own database: ``--database-url``, else ``DATABASE_URL``'s server with ``promptctl_bench_scale``.

    It is dropped and created again for every size, so it is never the installation's database.
    """
    if explicit:
        return explicit
    from urllib.parse import urlparse

    configured = os.environ.get("DATABASE_URL", "")
    if configured.startswith("postgres"):
        return urlparse(configured)._replace(path=f"/{DEFAULT_PG_DATABASE}").geturl()
    return f"postgres://postgres@127.0.0.1:5432/{DEFAULT_PG_DATABASE}"


def _postgres_recreate(url: str) -> None:
    """Drop and create the bench database so every size starts empty (never the installation's own)."""
    from urllib.parse import urlparse

    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def _page(client, url: str, *, repeats: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    response = client.get(url)  # warm-up: caches, the planner's statistics
    if response.status_code != 200:
        raise RuntimeError(f"GET {url} answered {response.status_code}")
    # A server closes its connection after each request (CONN_MAX_AGE 0); the test client keeps it. Closing
    # it once here is what a deployment does, and on SQLite it is when the planner's statistics are kept
    # up to date (``PRAGMA optimize``, config/sqlite/base.py).
    connection.close()
    timings = []
    for _ in range(repeats):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(url)
            timings.append((time.perf_counter() - started) * 1000)
    return {
        "url": url,
        "median_ms": round(statistics.median(timings), 1),
        "min_ms": round(min(timings), 1),
        "queries": len(queries.captured_queries),
        "bytes": len(response.content),
        "rows_shown": _rows_shown(response),
    }


def _rows_shown(response) -> int | None:
    """How many rows a list page showed (rows of the admin's ``#result_list`` table), or None for another page."""
    body = response.content.decode()
    start = body.find('id="result_list"')
    if start < 0:
        return None
    table = body[start : body.find("</table>", start)]
    return table.split("<tbody>", 1)[-1].count("<tr")


def _canary_added(route, *, repeats: int) -> float:
    """Median ms of the canary check a canary-served triage call adds (``canary_over_limits``)."""
    from triage import selectors as triage_selectors

    triage_selectors.canary_over_limits(route=route)
    timings = []
    for _ in range(max(repeats * 4, 20)):
        started = time.perf_counter()
        triage_selectors.canary_over_limits(route=route)
        timings.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(timings), 2)


def _size_run(size: int, options: argparse.Namespace) -> dict:
    """Seed one fresh database at ``size`` rows per table and measure every page there."""
    import dataclasses

    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.urls import reverse

    from bench import scale_seed
    from bench.api import _bench_setup, _emulator_process
    from managed_agents import gateway
    from promptctl import services as change_services
    from promptctl.audit import audit_verify
    from promptctl.models import AuditEvent, ChangeRequest
    from triage import pins

    emulator, emulator_url = _emulator_process(latency=0.0)
    settings.ANTHROPIC_BASE_URL = emulator_url
    settings.ANTHROPIC_API_KEY = "emulator-accepts-any-key"
    gateway.client_reset()
    try:
        started = time.perf_counter()
        world = _bench_setup()
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
    agent, tickets = world["agent"], world["tickets"]
    admin = change_services.user_create(username="bench-superuser", role="admin")
    type(admin).objects.filter(pk=admin.pk).update(is_superuser=True, is_staff=True)
    cases = max(20, min(2_000, size // 50))
    testset_version = scale_seed.testset_import_big(
        name="bench-scale", tickets=tickets, cases=cases, actor=admin, agent=agent
    )
    seeded = {"setup_seconds": round(time.perf_counter() - started, 1)}
    # Every list measured shows a full first page at every size (``--page-rows``, the admin's 100), so the
    # ratio compares a page of the same length over a small and a big table, not a page of 7 rows with one
    # of 100: half the change requests end withdrawn, one audit event in four is a version.create, one
    # logged request in ten is invalid.
    page = options.page_rows
    steps = [
        ("versions", lambda: scale_seed.versions_grow(agent=agent, count=max(size, page), creator=world["requester"])),
        (
            "change_requests",
            lambda: scale_seed.changes_grow(agent=agent, count=max(size, 2 * page), reviewer=world["reviewer"]),
        ),
        (
            "audit_events",
            lambda: scale_seed.audit_events_append(count=max(size, 4 * page), agent_id=agent.pk, actor=admin),
        ),
        (
            "eval_results",
            lambda: scale_seed.eval_runs_grow(
                agent=agent, testset_version=testset_version, results=max(size, page), min_runs=page
            ),
        ),
        (
            "triage_requests",
            lambda: scale_seed.triage_requests_add(agent=agent, count=max(size, 10 * page), tickets=tickets),
        ),
    ]
    for name, step in steps:
        began = time.perf_counter()
        step()
        seeded[f"{name}_seconds"] = round(time.perf_counter() - began, 1)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    from evals.models import EvalResult, EvalRun, TestCase
    from promptctl.models import AgentVersion
    from triage.models import TriageRequest

    rows = {
        "versions": AgentVersion.objects.count(),
        "change_requests": ChangeRequest.objects.count(),
        "audit_events": AuditEvent.objects.count(),
        "eval_runs": EvalRun.objects.count(),
        "eval_results": EvalResult.objects.count(),
        "test_cases": TestCase.objects.count(),
        "triage_requests": TriageRequest.objects.count(),
    }
    # The chain's links, MACs and checkpoints. The live-state record checks are left out here: they compare
    # every change request with its events, and the seeded copies have none (they would name each one).
    from promptctl.registry import registry

    record_checks = list(registry.record_checks)
    registry.record_checks.clear()
    began = time.perf_counter()
    try:
        verification = audit_verify()
    finally:
        registry.record_checks.extend(record_checks)
    audit = {
        "ok": verification.ok,
        "chain_intact": verification.first_broken_sequence is None,
        "seconds": round(time.perf_counter() - began, 1),
        "message": verification.message,
    }
    call_command("collectstatic", interactive=False, verbosity=0)  # DEBUG is off: pages need the manifest

    client = Client(SERVER_NAME="localhost")
    client.force_login(admin)
    pages = {
        "agent page": reverse("admin:promptctl_agent_change", args=[agent.pk]),
        "agent timeline": reverse("admin:promptctl_agent_timeline", args=[agent.pk]),
        "agent's versions list": reverse("admin:promptctl_agentversion_changelist") + f"?agent__id__exact={agent.pk}",
        "test-set version page": reverse("admin:evals_testsetversion_change", args=[testset_version.pk]),
        "eval runs list": reverse("admin:evals_evalrun_changelist"),
        # No subject holds "invoice" (every index entry that could is probed); one in ten holds "rate".
        "triage requests ?q=invoice": reverse("admin:triage_triagerequest_changelist") + "?q=invoice",
        "triage requests ?q=rate": reverse("admin:triage_triagerequest_changelist") + "?q=rate",
        "triage requests ?outcome=invalid": reverse("admin:triage_triagerequest_changelist") + "?outcome=invalid",
        "change requests list": reverse("admin:promptctl_changerequest_changelist"),
        "change requests ?status=withdrawn": reverse("admin:promptctl_changerequest_changelist")
        + "?status__exact=withdrawn",
        "audit log": reverse("admin:promptctl_auditevent_changelist"),
        "audit log ?verb=version.create": reverse("admin:promptctl_auditevent_changelist")
        + "?verb__exact=version.create",
    }
    measured = {}
    for name, url in pages.items():
        try:
            measured[name] = _page(client, url, repeats=options.repeats)
        except Exception as error:  # a page that fails is reported, not hidden
            measured[name] = {"url": url, "error": f"{type(error).__name__}: {error}"}

    route = dataclasses.replace(pins.pin_route(agent_name=agent.name, request_key="scale-canary"), canary=True)
    canary_rows = options.canary_rows if size >= options.canary_from else 0
    canary = {"rows_0_ms": _canary_added(route, repeats=options.repeats)}
    if canary_rows:
        scale_seed.triage_requests_add(
            agent=agent, count=canary_rows, tickets=tickets, canary=True, pin_revision=route.pin_revision
        )
        canary[f"rows_{canary_rows}_ms"] = _canary_added(route, repeats=options.repeats)
    answer = {
        "size": size,
        "database": connection.vendor,
        "rows": rows,
        "seed": seeded,
        "audit_verify": audit,
        "pages": measured,
        "canary_added": canary,
    }
    if options.log_rows and size >= options.canary_from:
        answer["log"] = _log_grown(client, pages, agent=agent, tickets=tickets, options=options)
    return answer


def _log_grown(client, pages: dict[str, str], *, agent, tickets, options: argparse.Namespace) -> dict:
    """The request log grown to ``--log-rows`` logged calls (the other tables as they are), its pages again."""
    from django.db import connection

    from bench import scale_seed
    from triage.models import TriageRequest

    began = time.perf_counter()
    missing = options.log_rows - TriageRequest.objects.count()
    if missing > 0:
        scale_seed.triage_requests_add(agent=agent, count=missing, tickets=tickets)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE triage_triagerequest")
    return {
        "rows": TriageRequest.objects.count(),
        "seed_seconds": round(time.perf_counter() - began, 1),
        "pages": {name: _page(client, url, repeats=options.repeats) for name, url in pages.items() if "triage" in name},
    }


def _cell(page: dict) -> str:
    shown = f", {page['rows_shown']} shown" if page.get("rows_shown") is not None else ""
    return f"{page['median_ms']} ms, {page['queries']} q, {page['bytes']:,} B{shown}"


def _table(results: list[dict]) -> str:
    small, large = results[0], results[-1]
    lines = [
        f"Database: {small['database']}; rows at the two sizes: "
        + ", ".join(f"{name} {small['rows'][name]:,} → {large['rows'][name]:,}" for name in small["rows"]),
        "",
        f"| page / path | ~{small['size']:,} rows: ms, queries, bytes, rows shown "
        f"| ~{large['size']:,} rows: ms, queries, bytes, rows shown "
        "| ratio | within target |",
        "|---|---|---|---:|---|",
    ]
    for name, first in small["pages"].items():
        last = large["pages"].get(name, {})
        if "error" in first or "error" in last:
            lines.append(f"| {name} | {first.get('error', '')} | {last.get('error', '')} | — | no |")
            continue
        ratio = last["median_ms"] / first["median_ms"] if first["median_ms"] else float("inf")
        within = ratio <= TARGET_RATIO and last["median_ms"] <= TARGET_MS
        lines.append(f"| {name} | {_cell(first)} | {_cell(last)} | {ratio:.2f}× | {'yes' if within else 'NO'} |")
    canary = large["canary_added"]
    lines.append(
        "| canary-served call, added | "
        + ", ".join(f"{value} ms at {key.split('_')[1]} canary rows" for key, value in small["canary_added"].items())
        + " | "
        + ", ".join(f"{value} ms at {int(key.split('_')[1]):,} canary rows" for key, value in canary.items())
        + " | | |"
    )
    if "log" in large:
        log = large["log"]
        lines += [
            "",
            f"The request log grown to {log['rows']:,} rows (in {log['seed_seconds']} s), the other tables as above:",
            "",
            f"| page | ~{small['size']:,} rows | {log['rows']:,} logged requests | ratio | within target |",
            "|---|---|---|---:|---|",
        ]
        for name, page in log["pages"].items():
            first = small["pages"][name]
            ratio = page["median_ms"] / first["median_ms"] if first["median_ms"] else float("inf")
            within = ratio <= TARGET_RATIO and page["median_ms"] <= TARGET_MS
            lines.append(f"| {name} | {_cell(first)} | {_cell(page)} | {ratio:.2f}× | {'yes' if within else 'NO'} |")
    lines.append("")
    for result in results:
        lines.append(
            f"- ~{result['size']:,} rows: seeded in "
            + ", ".join(f"{key.removesuffix('_seconds')} {value} s" for key, value in result["seed"].items())
            + f"; audit chain {'intact' if result['audit_verify'].get('chain_intact') else 'BROKEN'}"
            + f" ({result['audit_verify']['message'][:160]}) "
            f"({result['audit_verify']['seconds']} s)"
        )
    return "\n".join(lines)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,100000", help="rows per table at each size, comma-separated")
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgres"),
        default="",
        help="default: postgres when DATABASE_URL names a PostgreSQL database, else sqlite",
    )
    parser.add_argument(
        "--database-url",
        default="",
        help="the PostgreSQL database to drop, create and seed "
        "(default: DATABASE_URL's server, database promptctl_bench_scale)",
    )
    parser.add_argument(
        "--log-rows",
        type=int,
        default=0,
        help="after the largest size, grow the request log to this many rows and fetch its pages again (0: no)",
    )
    parser.add_argument(
        "--page-rows",
        type=int,
        default=100,
        help="rows behind each measured list's first page at every size (100: the admin's page)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed fetches per page; the median is reported (5)")
    parser.add_argument("--canary-rows", type=int, default=50_000, help="canary rows for the canary check (50000)")
    parser.add_argument("--canary-from", type=int, default=10_000, help="add canary rows at sizes from this one")
    parser.add_argument("--json", default="var/bench-scale.json", help="write the results as JSON here")
    parser.add_argument("--size-json", default="", help=argparse.SUPPRESS)  # the child's answer for one size
    parser.add_argument(
        "--merge", default="", help="earlier sizes' JSON answers to print beside these (comma-separated)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = _arguments(argv)
    if options.size_json:  # in the child: one size, one fresh database
        import django

        django.setup()
        result = _size_run(int(options.sizes), options)
        Path(options.size_json).write_text(json.dumps(result, default=str))
        return 0
    database = options.database or (
        "postgres" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "sqlite"
    )
    results = []
    for path in filter(None, options.merge.split(",")):  # earlier --json answers (or one size's answer)
        earlier = json.loads(Path(path).read_text())
        results.extend(earlier["sizes"] if "sizes" in earlier else [earlier])
    with tempfile.TemporaryDirectory(prefix="promptctl-bench-scale-") as scratch:
        for size in [int(part) for part in options.sizes.split(",")]:
            database_url = ""
            if database == "postgres":
                database_url = _postgres_url(options.database_url)
                _postgres_recreate(database_url)
            answer = Path(scratch) / f"size-{size}.json"
            child_argv = [
                "--sizes",
                str(size),
                "--repeats",
                str(options.repeats),
                "--canary-rows",
                str(options.canary_rows),
                "--canary-from",
                str(options.canary_from),
                "--page-rows",
                str(options.page_rows),
                "--log-rows",
                str(options.log_rows),
                "--size-json",
                str(answer),
            ]
            began = time.perf_counter()
            code = clean_child_run(module="bench.scale", argv=child_argv, database_url=database_url)
            if code:
                print(f"the size {size} run failed (exit {code})", file=sys.stderr)
                return code
            result = json.loads(answer.read_text())
            result["wall_seconds"] = round(time.perf_counter() - began, 1)
            results.append(result)
    if options.json:
        Path(options.json).parent.mkdir(parents=True, exist_ok=True)
        Path(options.json).write_text(
            json.dumps({"target_ratio": TARGET_RATIO, "target_ms": TARGET_MS, "sizes": results}, indent=2, default=str)
        )
    print(_table(results))
    small, large = results[0], results[-1]
    log_pages = large.get("log", {}).get("pages", {})
    within = all(
        log_pages[name]["median_ms"] <= min(TARGET_MS, TARGET_RATIO * small["pages"][name]["median_ms"])
        for name in log_pages
    ) and all(
        "error" not in large["pages"][name]
        and "error" not in first
        and large["pages"][name]["median_ms"] <= TARGET_MS
        and large["pages"][name]["median_ms"] <= TARGET_RATIO * first["median_ms"]
        for name, first in small["pages"].items()
    )
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
