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


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="tickets per phase (default 100)")
    parser.add_argument("--rate", type=float, default=0.25, help="lost-response rate on create and send (0.25)")
    parser.add_argument("--mode", choices=("500", "close"), default="500", help="how an answer is lost")
    parser.add_argument("--concurrency", type=int, default=20, help="runs at a time (default 20)")
    parser.add_argument("--seed", type=int, default=13, help="the emulator's fault dice")
    parser.add_argument("--json", default="", help="also write the results here")
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
    finally:
        server.stop()
    return {"runs": options.runs, "rate": options.rate, "mode": options.mode, "phases": results}


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
    return "\n".join(lines)


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
    return 0 if safe["stray_sessions"] == 0 and safe["sessions_answered_twice_or_more"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
