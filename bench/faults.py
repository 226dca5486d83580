"""Lost responses: what a plain retry duplicates and what promptctl's gateway does not (``python -m bench.faults``).

The emulator carries out ``sessions.create`` and ``events.send`` and then loses
the answer at ``--rate`` (a 500, or with ``--mode close`` a connection closed
with no response). The same ``--runs`` tickets are run twice, ``--concurrency``
at a time:

1. **plain retries**: the SDK called directly with its own retries on
   (``max_retries=2``), create, send, poll the history, archive, as the
   tutorial's loop does;
2. **promptctl**: ``managed_agents.tickets.ticket_run_async``, whose retries
   look for the earlier attempt's result by its marker before sending again.

For each it reports sessions made, stray (unarchived) sessions, sessions that
received the ticket twice, lost answers, outcomes and right teams. These are
eval-unit-like runs in one process, not eval units through Celery workers.

3. **end to end** (issue 13, "done when" 2): lost answers at ``--rate`` on
   EVERY route (lists, reads, archives and interrupts too), with the rest of
   promptctl in processes of its own: the triage agent is set up through the
   services (environment, agent, versions, the gated promotion, the route), and
   ``--agents`` more agents with two versions each are made, all under faults;
   then an eval run of ``--units`` units (the 20 tickets repeated) runs on a
   real Celery worker process, and ``--api-calls`` calls go to the triage API
   served by real uvicorn processes. It reports duplicate messages (sessions
   that received the ticket twice), duplicate results, stray sessions, stray
   agents (remote agents promptctl did not record) and versions labelled
   "changed outside promptctl" although promptctl made every one, all read
   from the emulator's stats and promptctl's database. ``--no-end-to-end``
   skips it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.child import clean_child_run

LOST_ROUTES = "POST /v1/sessions,POST /v1/sessions/{session_id}/events"
EVERY_ROUTE = ""  # the emulator's lost_routes: empty means every route


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="tickets per phase (default 100)")
    parser.add_argument("--rate", type=float, default=0.25, help="lost-response rate on create and send (0.25)")
    parser.add_argument("--mode", choices=("500", "close"), default="500", help="how an answer is lost")
    parser.add_argument("--concurrency", type=int, default=20, help="runs at a time (default 20)")
    parser.add_argument("--seed", type=int, default=13, help="the emulator's fault dice")
    parser.add_argument("--json", default="", help="also write the results here")
    parser.add_argument(
        "--end-to-end",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run phase 3: every route faulted, eval units on a Celery worker, calls through the API (default on)",
    )
    parser.add_argument("--units", type=int, default=100, help="eval units of phase 3, a multiple of 20 (100)")
    parser.add_argument("--api-calls", type=int, default=100, help="triage API calls of phase 3 (100)")
    parser.add_argument("--agents", type=int, default=5, help="extra agents of phase 3, two versions each (5)")
    return parser.parse_args(argv)


async def _plain_run(client: Any, *, pinned: dict, environment_id: str, text: str) -> str | None:
    """The tutorial's loop with the SDK's own retries: the reply, or None when a call failed for good."""
    import anthropic

    try:
        session = await client.beta.sessions.create(agent=pinned, environment_id=environment_id)
        await client.beta.sessions.events.send(
            session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": text}]}]
        )
        deadline = time.monotonic() + 30
        events: list = []
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            events = [event async for event in client.beta.sessions.events.list(session.id)]
            if events and events[-1].type == "session.status_idle":
                break
        await client.beta.sessions.archive(session.id)
    except anthropic.APIError:
        return None
    return "".join(
        block.text
        for event in events
        if event.type == "agent.message"
        for block in event.content
        if block.type == "text"
    )


def _phase_stats(server: Any, started: float) -> dict:
    stats = server.stats()
    return {
        "seconds": round(time.monotonic() - started, 2),
        "sessions_created": stats["sessions"]["created"],
        "stray_sessions": stats["sessions"]["unarchived"],
        "sessions_answered_twice_or_more": stats["user_messages"]["sessions_with_duplicates"],
        "user_messages": stats["user_messages"]["total"],
        "lost_answers": stats["faults"].get("fault_lost", 0),
    }


async def _phases(options: argparse.Namespace, server: Any, target: dict, chosen: list[dict]) -> dict:
    import anthropic

    from managed_agents import tickets
    from managed_agents.verdicts import verdict_parse

    limit = asyncio.Semaphore(options.concurrency)
    texts = [tickets.ticket_text(subject=ticket["subject"], body=ticket["body"]) for ticket in chosen]
    pinned = {"type": "agent", "id": target["agent_id"], "version": target["version"]}
    allowed = {key: tuple(value) for key, value in target["allowed"].items()}
    results: dict[str, dict] = {}

    started = time.monotonic()
    async with anthropic.AsyncAnthropic(base_url=server.base_url, api_key="bench", max_retries=2) as client:

        async def plain(text: str) -> str | None:
            async with limit:
                return await _plain_run(client, pinned=pinned, environment_id=target["environment_id"], text=text)

        replies = await asyncio.gather(*(plain(text) for text in texts))
    verdicts = [verdict_parse(reply=reply, allowed=allowed) if reply is not None else None for reply in replies]
    results["plain_retries"] = {
        **_phase_stats(server, started),
        "failed": sum(reply is None for reply in replies),
        "right_team": sum(bool(v and v.ok and v.team == t["team"]) for v, t in zip(verdicts, chosen, strict=True)),
        "format_warnings": sum(bool(v and v.format_warning) for v in verdicts),
    }

    server.reset()
    server.configure(fault_lost=options.rate, lost_routes=LOST_ROUTES, lost_mode=options.mode, seed=options.seed)
    target = await asyncio.to_thread(_target_make)
    started = time.monotonic()

    async def guarded(text: str, ticket: dict) -> tickets.TicketRun:
        async with limit:
            return await tickets.ticket_run_async(**target, text=text, metadata={"ticket": ticket["id"]})

    runs = await asyncio.gather(*(guarded(text, ticket) for text, ticket in zip(texts, chosen, strict=True)))
    results["promptctl"] = {
        **_phase_stats(server, started),
        "outcomes": dict(collections.Counter(run.outcome for run in runs)),
        "right_team": sum(run.ok and run.team == t["team"] for run, t in zip(runs, chosen, strict=True)),
        "format_warnings": sum(bool(run.format_warning) for run in runs),
    }
    return results


def _target_make() -> dict:
    from promptctl.tutorial import tutorial_ticket_target

    return tutorial_ticket_target(environment="bench-faults")


def _end_to_end(options: argparse.Namespace, server: Any) -> dict:
    """Phase 3: every route loses answers at ``--rate``; creates, eval units (worker) and API calls (uvicorn)."""
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Count

    from bench.api import _bench_setup
    from config.children import ApiServer, WorkerProcess, child_env
    from evals import services as eval_services
    from evals.models import EvalResult, EvalRun
    from promptctl import services
    from promptctl.models import Agent, AgentVersion, VersionIntent
    from promptctl.tutorial import TICKETS_FILE, V1_PROMPT, V2_PROMPT
    from triage.models import TriageRequest

    if options.units % 20:
        raise SystemExit("--units must be a multiple of 20 (the tutorial's tickets, repeated)")
    server.reset()
    call_command("migrate", verbosity=0)
    server.configure(fault_lost=options.rate, lost_routes=EVERY_ROUTE, lost_mode=options.mode, seed=options.seed)
    started = time.monotonic()
    # Creates under faults: the tutorial agent, its versions and promotions, then more agents and versions.
    world = _bench_setup()
    agent, requester = world["agent"], world["requester"]
    for index in range(options.agents):
        extra = services.agent_create(
            name=f"faulty-{index}", model="claude-sonnet-4-6", system_prompt=V1_PROMPT, actor=requester
        )
        services.version_create(agent=extra, system_prompt=V2_PROMPT, actor=requester)
        services.version_create(agent=extra, system_prompt=V2_PROMPT + "\nAnswer briefly.", actor=requester)
    creates_seconds = time.monotonic() - started

    imported = eval_services.testset_import(
        name="faults-tickets", data=TICKETS_FILE.read_bytes(), filename=TICKETS_FILE.name, agent=agent, actor=requester
    )
    version = agent.versions.get(number=world["v3"])
    env = {**child_env(settings_dict=connection.settings_dict, emulator_url=server.base_url)}
    env["PROMPTCTL_VAR_DIR"] = str(settings.VAR_DIR)
    api_outcomes: collections.Counter = collections.Counter()
    with WorkerProcess(env=env, concurrency=8) as worker:
        started = time.monotonic()
        run = eval_services.eval_run_start(
            agent_version=version, testset_version=imported.version, repeats=options.units // 20, actor=requester
        )
        deadline = time.monotonic() + 900
        while run.status in (EvalRun.Status.QUEUED, EvalRun.Status.RUNNING):
            if time.monotonic() > deadline or (worker.process and worker.process.poll() is not None):
                raise RuntimeError(f"eval run #{run.pk} did not finish; worker log:\n{worker.log()[-3000:]}")
            time.sleep(0.1)
            run.refresh_from_db()
        eval_seconds = time.monotonic() - started
    with ApiServer(env=env, workers=2) as api:
        started = time.monotonic()
        api_outcomes = asyncio.run(_api_calls(api.base_url, world, options.api_calls))
        api_seconds = time.monotonic() - started
    server.configure(fault_lost=0.0)  # what is left is read without faults
    for each in Agent.objects.all():
        services.agent_sync(agent=each)  # a version promptctl made but did not record would show up as outside
    stats = _settled_stats(server)
    remote_agents = {item.id for item in _remote_agents(server)}
    results = EvalResult.objects.filter(run=run)
    duplicate_results = sum(
        row["n"] - 1 for row in results.values("case", "attempt").annotate(n=Count("id")) if row["n"] > 1
    )
    return {
        "seconds_creates": round(creates_seconds, 2),
        "seconds_eval_run": round(eval_seconds, 2),
        "seconds_api_calls": round(api_seconds, 2),
        "lost_answers": stats["faults"].get("fault_lost", 0),
        "requests": sum(stats["requests"].values()),
        "eval_units": run.unit_total,
        "eval_run_status": run.status,
        "eval_results": results.count(),
        "duplicate_results": duplicate_results,
        "api_calls": options.api_calls,
        "api_outcomes": dict(api_outcomes),
        "api_calls_logged": TriageRequest.objects.filter(source=TriageRequest.Source.API).count(),
        "sessions_created": stats["sessions"]["created"],
        "stray_sessions": stats["sessions"]["unarchived"],
        "sessions_answered_twice_or_more": stats["user_messages"]["sessions_with_duplicates"],
        "remote_agents": len(remote_agents),
        "agents_recorded": Agent.objects.count(),
        "stray_agents": len(remote_agents - set(Agent.objects.values_list("remote_id", flat=True))),
        "remote_environments": stats["environments"],
        "remote_versions": stats["agent_versions"],
        "versions_recorded": AgentVersion.objects.count(),
        "versions_labelled_outside": AgentVersion.objects.filter(origin=AgentVersion.Origin.OUTSIDE).count(),
        "version_intents_open": VersionIntent.objects.filter(outcome=VersionIntent.Outcome.OPEN).count(),
    }


async def _api_calls(base_url: str, world: dict, calls: int) -> collections.Counter:
    """``calls`` triage calls, 10 at a time, through the API server; counts answers by HTTP status."""
    import httpx2

    outcomes: collections.Counter = collections.Counter()
    limit = asyncio.Semaphore(10)
    headers = {"Authorization": f"Bearer {world['secret']}"}
    tickets = world["tickets"]
    async with httpx2.AsyncClient(base_url=base_url, headers=headers, timeout=180) as client:

        async def one(index: int) -> None:
            ticket = tickets[index % len(tickets)]
            async with limit:
                response = await client.post(
                    "/api/v1/triage", json={"subject": ticket["subject"], "body": ticket["body"]}
                )
            outcomes[str(response.status_code)] += 1

        await asyncio.gather(*(one(index) for index in range(calls)))
    return outcomes


def _remote_agents(server: Any) -> list:
    from managed_agents import gateway

    return list(gateway.client().beta.agents.list(include_archived=True))


def _settled_stats(server: Any, *, seconds: float = 15.0) -> dict:
    """The emulator's stats once nothing is left to archive (or after ``seconds``): sweeps may still be running."""
    deadline = time.monotonic() + seconds
    stats = server.stats()
    while stats["sessions"]["unarchived"] and time.monotonic() < deadline:
        time.sleep(0.5)
        stats = server.stats()
    return stats


def _bench_run(options: argparse.Namespace) -> dict:
    from django.conf import settings

    from managed_agents.emulator.server import EmulatorServer
    from promptctl.tutorial import tickets_load

    server = EmulatorServer(host="127.0.0.1", port=0, latency=0.05)
    server.start()
    try:
        settings.ANTHROPIC_BASE_URL = server.base_url
        settings.ANTHROPIC_API_KEY = "bench"
        server.configure(fault_lost=options.rate, lost_routes=LOST_ROUTES, lost_mode=options.mode, seed=options.seed)
        target = _target_make()
        every = tickets_load()
        chosen = [every[index % len(every)] for index in range(options.runs)]
        results = asyncio.run(_phases(options, server, target, chosen))
        end_to_end = _end_to_end(options, server) if options.end_to_end else None
    finally:
        server.stop()
    document = {"runs": options.runs, "rate": options.rate, "mode": options.mode, "phases": results}
    if end_to_end is not None:
        document["end_to_end"] = end_to_end
    return document


def _markdown(results: dict) -> str:
    phases = results["phases"]
    rows = sorted({key for phase in phases.values() for key in phase})
    lines = [
        f"Lost responses: {results['runs']} tickets, {results['rate']:.0%} of creates and sends lose their answer "
        f"(mode {results['mode']})",
        "",
        "| | " + " | ".join(phases) + " |",
        "| --- | " + " | ".join("---" for _ in phases) + " |",
    ]
    for row in rows:
        lines.append(f"| {row} | " + " | ".join(str(phase.get(row, "")) for phase in phases.values()) + " |")
    end_to_end = results.get("end_to_end")
    if end_to_end:
        lines += [
            "",
            f"End to end: {results['rate']:.0%} of answers lost on every route (mode {results['mode']}); eval units "
            "on a Celery worker process, calls through the triage API's uvicorn processes",
            "",
            "| | value | target |",
            "| --- | --- | --- |",
        ]
        for key, value in end_to_end.items():
            lines.append(f"| {key} | {value} | {E2E_TARGETS.get(key, '')} |")
    return "\n".join(lines)


# Phase 3's "done when": these must be 0 (issue 13).
E2E_TARGETS = {
    "duplicate_results": "0",
    "stray_sessions": "0",
    "sessions_answered_twice_or_more": "0",
    "stray_agents": "0",
    "versions_labelled_outside": "0",
}


def _end_to_end_met(end_to_end: dict) -> bool:
    return (
        all(end_to_end[key] == 0 for key in E2E_TARGETS)
        and end_to_end["eval_results"] == end_to_end["eval_units"]
        and end_to_end["remote_agents"] == end_to_end["agents_recorded"]
    )


def main(argv: list[str] | None = None) -> int:
    options = _arguments(argv)
    exit_code = clean_child_run(module="bench.faults", argv=argv)
    if exit_code is not None:
        return exit_code
    import django

    django.setup()
    results = _bench_run(options)
    print(_markdown(results))
    if options.json:
        Path(options.json).write_text(json.dumps(results, indent=2))
    safe = results["phases"]["promptctl"]
    met = safe["stray_sessions"] == 0 and safe["sessions_answered_twice_or_more"] == 0
    if "end_to_end" in results:
        met = met and _end_to_end_met(results["end_to_end"])
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
