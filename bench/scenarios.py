"""Benchmark scenarios; each returns rows ``{"metric", "value", "unit", "target", "met"}``."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.tutorial_loop import tutorial_serial_loop
from managed_agents.tickets import ticket_text
from promptctl.tutorial import TICKETS_FILE, tickets_load

_names = itertools.count(1)


@dataclass
class Context:
    emulator_url: str
    configure: Callable[..., None]
    reset: Callable[[], None]
    stats: Callable[[], dict]
    env: dict[str, str]
    stack: Any


def _row(metric: str, value: float, unit: str, target: str = "", met: bool | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"metric": metric, "value": value, "unit": unit, "target": target}
    if met is not None:
        row["met"] = met
    return row


def _tickets_file_times(copies: int) -> bytes:
    """The tutorial tickets ``copies`` times over, each copy with its own ids (``TKT-1001-c02``)."""
    tickets = tickets_load()
    lines = [
        json.dumps({**ticket, "id": f"{ticket['id']}-c{copy:02d}"})
        for copy in range(1, copies + 1)
        for ticket in tickets
    ]
    return ("\n".join(lines) + "\n").encode()


def _setup_agent(label: str, *, copies: int = 1):
    """A fresh agent with the tutorial's v1 prompt and the tickets (``copies`` times over) as its test set."""
    from django.contrib.auth import get_user_model

    from evals import services as eval_services
    from promptctl import services
    from promptctl.tutorial import V1_PROMPT

    user = get_user_model().objects.filter(username="bench").first() or services.user_create(
        username="bench", role="admin"
    )
    agent = services.agent_create(
        name=f"bench-{label}-{next(_names)}", model="claude-sonnet-4-6", system_prompt=V1_PROMPT, actor=user
    )
    data = TICKETS_FILE.read_bytes() if copies == 1 else _tickets_file_times(copies)
    imported = eval_services.testset_import(
        name=f"{agent.name}-tickets", data=data, filename=TICKETS_FILE.name, agent=agent, actor=user
    )
    return user, agent, agent.versions.get(), imported.version


def _run_to_end(
    *, agent_version, testset_version, user, repeats: int = 1, timeout: float = 900.0, progress_every: float = 0.0
):
    """Start an eval run on the worker; return it with the wall time seen from here (request to finish)."""
    from evals import services as eval_services
    from evals.models import EvalRun

    started = time.monotonic()
    run = eval_services.eval_run_start(
        agent_version=agent_version, testset_version=testset_version, repeats=repeats, actor=user
    )
    next_report = started + progress_every if progress_every else None
    while True:
        run.refresh_from_db()
        if run.status not in (EvalRun.Status.QUEUED, EvalRun.Status.RUNNING):
            break
        now = time.monotonic()
        if now - started > timeout:
            raise RuntimeError(f"eval run #{run.pk} did not finish within {timeout:.0f}s")
        if next_report and now >= next_report:
            print(f"bench:   {run.results.count()}/{run.unit_total} results after {now - started:.0f}s", flush=True)
            next_report = now + progress_every
        time.sleep(0.02)
    wall = time.monotonic() - started
    if run.status != EvalRun.Status.FINISHED:
        raise RuntimeError(f"eval run #{run.pk} ended {run.status}: {run.status_reason}")
    return run, wall


def tutorial_vs_run(context: Context) -> list[dict]:
    context.reset()
    context.configure(latency="1.0")
    user, agent, version, testset_version = _setup_agent("tutorial")
    texts = [ticket_text(subject=t["subject"], body=t["body"]) for t in tickets_load()]
    serial_wall, replies = tutorial_serial_loop(
        base_url=context.emulator_url,
        agent_id=agent.remote_id,
        version=version.number,
        environment_id=agent.environment_id,
        texts=texts,
    )
    run, run_wall = _run_to_end(agent_version=version, testset_version=testset_version, user=user)
    results = run.results.count()
    speedup = serial_wall / run_wall
    unarchived = context.stats()["sessions"]["unarchived"]
    return [
        _row("tutorial serial loop, 20 tickets", serial_wall, "s"),
        _row("promptctl eval run, 20 tickets (request to finished)", run_wall, "s", "<= 2.0", run_wall <= 2.0),
        _row("speed-up over the tutorial loop", speedup, "x", ">= 10", speedup >= 10.0),
        _row("results recorded", results, "results", "== 20", results == 20),
        _row("tutorial replies received", len([r for r in replies if r]), "replies", "== 20", len(replies) == 20),
        _row("unarchived sessions left by promptctl", unarchived, "sessions", "== 0", unarchived == 0),
    ]


def create_limit_600(context: Context) -> list[dict]:
    context.reset()
    context.configure(latency="0.5", create_limit=300)
    user, agent, version, testset_version = _setup_agent("limit", copies=30)
    run, wall = _run_to_end(agent_version=version, testset_version=testset_version, user=user, progress_every=15.0)
    stats = context.stats()
    too_many = stats["faults"].get("create_limit_429", 0) + stats["faults"].get("fault_429", 0)
    results = run.results.count()
    floor = 120.0
    return [
        _row(
            "600 sessions under 300/min create limit (request to finished)",
            wall,
            "s",
            "<= 132 (floor 120 + 10%)",
            wall <= floor * 1.10,
        ),
        _row("429 answers from the emulator", too_many, "responses", "== 0", too_many == 0),
        _row("results recorded", results, "results", "== 600", results == 600),
        _row(
            "unarchived sessions",
            stats["sessions"]["unarchived"],
            "sessions",
            "== 0",
            stats["sessions"]["unarchived"] == 0,
        ),
    ]


SCENARIOS: dict[str, Callable[[Context], list[dict]]] = {
    "tutorial_vs_run": tutorial_vs_run,
    "create_limit_600": create_limit_600,
}
