"""What a canary-served triage call adds, at 0 and ``--canary-rows`` logged canary rows (``python -m bench.canary_scale``).

A canary call adds two steps to logging the call (``triage.services.serving.triage_record``): the
counter increment (``canary_counter_add``) and the limit check (``canary_over_limits``), both in the
log insert's transaction. Both are timed together inside one open transaction, rolled back after (median ms
over ``--repeats`` calls), on a fresh
database, first with no canary rows, then after ``--canary-rows`` canary rows of the same pin revision
are bulk-logged and the revision's ``CanaryCounter`` is rebuilt from them (as migration triage 0009
does), so the check reads the figures a live canary of that size would have. For contrast the old
check, a count over the log (``canary_stats_counted``), is timed at both sizes.

PostgreSQL when ``DATABASE_URL`` names one (the bench's own database ``promptctl_bench_canary`` on that
server, dropped and created), SQLite otherwise. Writes JSON to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from bench.child import BENCH_CHILD, clean_child_run

DATABASE = "promptctl_bench_canary"


def _median_ms(step, repeats: int) -> float:
    step()  # warm-up
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        timings.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(timings), 2)


def _measure(options: argparse.Namespace) -> dict:
    import dataclasses

    from django.conf import settings
    from django.db import connection, transaction

    from bench import scale_seed
    from bench.api import _bench_setup, _emulator_process
    from managed_agents import gateway
    from triage import pins, selectors
    from triage.models import Outcome
    from triage.services.canary import canary_counter_add

    emulator, emulator_url = _emulator_process(latency=0.0)
    settings.ANTHROPIC_BASE_URL = emulator_url
    settings.ANTHROPIC_API_KEY = "emulator-accepts-any-key"
    gateway.client_reset()
    try:
        world = _bench_setup()
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
    agent, tickets = world["agent"], world["tickets"]
    route = dataclasses.replace(pins.pin_route(agent_name=agent.name, request_key="bench-canary"), canary=True)

    def canary_steps() -> None:
        canary_counter_add(agent_id=route.agent_id, pin_revision=route.pin_revision, outcome=Outcome.OK)
        selectors.canary_over_limits(route=route)

    def added_ms() -> dict:
        """Inside one open transaction, as in ``triage_record`` (whose commit a call pays anyway), rolled back."""
        from django.test.utils import CaptureQueriesContext

        with transaction.atomic():
            timed = _median_ms(canary_steps, options.repeats)
            with CaptureQueriesContext(connection) as queries:
                canary_steps()
            transaction.set_rollback(True)
        return {"median_ms": timed, "queries": len(queries.captured_queries)}

    def full_count() -> None:
        selectors.canary_stats_counted(agent_id=route.agent_id, pin_revision=route.pin_revision)

    result = {"database": connection.vendor, "canary_rows": {}}
    result["canary_rows"]["0"] = {
        "added_ms": added_ms(),
        "old_full_count_ms": _median_ms(full_count, options.repeats),
    }
    scale_seed.triage_requests_add(
        agent=agent, count=options.canary_rows, tickets=tickets, canary=True, pin_revision=route.pin_revision
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    result["canary_rows"][str(options.canary_rows)] = {
        "added_ms": added_ms(),
        "old_full_count_ms": _median_ms(full_count, options.repeats),
        "counter_equals_count": selectors.canary_stats(agent_id=route.agent_id, pin_revision=route.pin_revision)
        == selectors.canary_stats_counted(agent_id=route.agent_id, pin_revision=route.pin_revision),
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.canary_scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--canary-rows", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--json", default="var/bench-canary-scale.json")
    options = parser.parse_args(argv)
    if os.environ.get(BENCH_CHILD) == "1":
        import django

        django.setup()
        result = _measure(options)
        print(json.dumps(result, indent=2))
        Path(options.json).parent.mkdir(parents=True, exist_ok=True)
        Path(options.json).write_text(json.dumps(result, indent=2))
        return 0
    database_url = ""
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        from urllib.parse import urlparse

        from bench.scale import _postgres_recreate

        database_url = urlparse(os.environ["DATABASE_URL"])._replace(path=f"/{DATABASE}").geturl()
        _postgres_recreate(database_url)
    json_path = str(Path(options.json).resolve())
    argv_child = ["--canary-rows", str(options.canary_rows), "--repeats", str(options.repeats), "--json", json_path]
    return clean_child_run(module="bench.canary_scale", argv=argv_child, database_url=database_url) or 0


if __name__ == "__main__":
    sys.exit(main())
