"""The triage API benchmark (``python -m bench.api``, a step of ``make bench``).

The API runs as real uvicorn processes (``config.children.ApiServer``) in front
of the emulator; this process drives the load with the SDK's own async HTTP
stack and compares it with calling the SDK directly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.child import clean_child_run
from config.children import ApiServer, child_env
from config.processes import BASE_DIR
from config.stack import free_port
from managed_agents.tickets import ticket_text

# =============================================================================
# --- The benchmark: ``python -m bench.api`` (``make bench``) -------------
# =============================================================================
#
# Runs in a throw-away PROMPTCTL_VAR_DIR with its own database (SQLite there, or
# --database-url for PostgreSQL), so it never touches a real installation. The
# emulator runs in a process of its own; the API runs as uvicorn workers; this
# process drives the load with the same async HTTP stack the SDK uses.


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))
    return ordered[index]


@dataclass
class LoadResult:
    name: str
    requests: int
    seconds: float
    latencies: list[float]
    failures: int

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "requests": self.requests,
            "failures": self.failures,
            "seconds": round(self.seconds, 3),
            "throughput_per_second": round(self.throughput, 2),
            "p50_ms": round(_percentile(self.latencies, 0.50) * 1000, 1),
            "p99_ms": round(_percentile(self.latencies, 0.99) * 1000, 1),
        }


async def _drive(name: str, call, *, requests: int, concurrency: int) -> LoadResult:
    """Run ``call(index)`` ``requests`` times with at most ``concurrency`` in flight."""
    semaphore = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    failures = 0

    async def one(index: int) -> None:
        nonlocal failures
        async with semaphore:
            started = time.monotonic()
            try:
                await call(index)
            except Exception:  # noqa: BLE001 - counted, reported
                failures += 1
                return
            latencies.append(time.monotonic() - started)

    started = time.monotonic()
    await asyncio.gather(*(one(index) for index in range(requests)))
    return LoadResult(
        name=name, requests=requests, seconds=time.monotonic() - started, latencies=latencies, failures=failures
    )


def _machine() -> dict:
    """What the numbers were measured on: CPU count and model, and one core's speed at plain Python."""
    model = ""
    try:
        model = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "",
        )
    except OSError:
        pass
    started = time.process_time()
    total = 0
    for number in range(5_000_000):
        total += number
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python_loop_5m_seconds": round(time.process_time() - started, 3),
    }


def _emulator_process(*, latency: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(BASE_DIR / "manage.py"), "emulator", "--port", str(port), "--latency", str(latency)],
        cwd=BASE_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the emulator did not start")


def _emulator_configure(url: str, **knobs) -> None:
    request = urllib.request.Request(
        url + "/_emulator/config",
        data=json.dumps(knobs).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request, timeout=10).read()


def _bench_setup():
    """A production agent (v1 through the evals gate, then v3 by comparison), people, and an API key."""
    from django.core.management import call_command

    from evals import services as eval_services
    from promptctl import services as change_services
    from triage import services as triage_services

    call_command("migrate", verbosity=0)
    tickets = [
        json.loads(line)
        for line in (BASE_DIR / "evals" / "data" / "support_tickets.jsonl").read_text().splitlines()
        if line.strip()
    ]
    prompt = (
        "You are a support-ticket triage agent for a usage-billed API product.\n"
        "Read the ticket and respond with ONLY a single line of raw JSON (no code fences, no prose):\n"
        '{"team": "<billing|auth|api-platform|dashboard>", "priority": "<P1|P2|P3>"}\n'
        "Route based on the customer's actual problem, not surface keywords."
    )
    requester = change_services.user_create(username="bench-requester", role="requester")
    reviewer = change_services.user_create(username="bench-reviewer", role="reviewer")
    admin = change_services.user_create(username="bench-admin", role="admin")
    agent = change_services.agent_create(
        name="ticket-triage", model="claude-sonnet-4-6", system_prompt=prompt, actor=requester
    )
    imported = eval_services.testset_import(
        name="bench-gate",
        data="\n".join(json.dumps(t) for t in tickets[:4]),
        filename="gate.jsonl",
        agent=agent,
        gating=True,
        actor=admin,  # choosing the gating set needs evals.change_gating_testset
    )

    def run_now(version):
        run = eval_services.eval_run_start(agent_version=version, testset_version=imported.version, actor=requester)
        for case in imported.version.cases.order_by("position"):
            eval_services.eval_unit_execute(run_id=run.pk, case_id=case.pk, attempt=1)
        return run

    def move(number, kind, evidence=None):
        change = change_services.change_request_create(
            agent=agent, kind=kind, target_number=number, reason=f"bench {kind}", actor=requester, evidence_ref=evidence
        )
        change_services.change_request_approve(change=change, reviewer=reviewer)
        change_services.change_request_apply(change=change, actor=reviewer)

    v1 = agent.versions.get()
    move(v1.number, "promote", f"run:{run_now(v1).pk}")
    v3 = change_services.version_create(
        agent=agent, system_prompt=prompt + "\nAnswer with the JSON line only.", actor=requester
    )
    run_now(v3)
    comparison = eval_services.comparison_for_versions(
        agent=agent, baseline_number=v1.number, candidate_number=v3.number
    )
    move(v3.number, "promote", f"comparison:{comparison.pk}")
    move(None, "route")  # the default agent moves only by an approved change request
    secret = triage_services.api_key_create(name="bench", actor=admin, all_agents=True).secret
    return {
        "agent": agent,
        "v1": v1.number,
        "v3": v3.number,
        "requester": requester,
        "reviewer": reviewer,
        "secret": secret,
        "tickets": tickets,
    }


def _bench_run(options: argparse.Namespace) -> dict:
    import httpx2
    from django.conf import settings
    from django.db import connection

    from managed_agents import gateway
    from promptctl import services as change_services

    emulator, emulator_url = _emulator_process(latency=0.0)
    settings.ANTHROPIC_BASE_URL = emulator_url
    settings.ANTHROPIC_API_KEY = "emulator-accepts-any-key"
    gateway.client_reset()
    try:
        world = _bench_setup()
        agent, tickets = world["agent"], world["tickets"]
        texts = [ticket_text(subject=t["subject"], body=t["body"]) for t in tickets]
        payloads = [{"subject": t["subject"], "body": t["body"]} for t in tickets]
        _emulator_configure(emulator_url, latency=options.latency)
        results: dict = {"settings": vars(options).copy(), "machine": _machine(), "runs": []}

        async def direct(concurrency: int, requests: int, name: str) -> LoadResult:
            async def call(index: int) -> None:
                await gateway.session_run_async(
                    agent_id=agent.remote_id,
                    version=world["v3"],
                    environment_id=agent.environment_id,
                    text=texts[index % len(texts)],
                )

            return await _drive(name, call, requests=requests, concurrency=concurrency)

        env = child_env(settings_dict=connection.settings_dict, emulator_url=emulator_url)
        env["PROMPTCTL_VAR_DIR"] = str(settings.VAR_DIR)
        with ApiServer(env=env, workers=options.workers) as server:
            headers = {"Authorization": f"Bearer {world['secret']}"}

            async def through_api(concurrency: int, requests: int, name: str, seen: list | None = None) -> LoadResult:
                limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
                async with httpx2.AsyncClient(
                    base_url=server.base_url, headers=headers, limits=limits, timeout=120
                ) as client:

                    async def call(index: int) -> None:
                        started = time.monotonic()
                        response = await client.post("/api/v1/triage", json=payloads[index % len(payloads)])
                        response.raise_for_status()
                        if seen is not None:
                            seen.append((started, time.monotonic(), response.json()["version"]))

                    return await _drive(name, call, requests=requests, concurrency=concurrency)

            async def all_runs() -> None:
                # Warm both paths (connections, imports) before measuring.
                await direct(8, 16, "warm-up")
                await through_api(8, 16, "warm-up")
                for concurrency, requests in ((1, options.serial_requests), (options.concurrency, options.requests)):
                    results["runs"].append(
                        (await direct(concurrency, requests, f"SDK direct, {concurrency} concurrent")).as_dict()
                    )
                    results["runs"].append(
                        (await through_api(concurrency, requests, f"API, {concurrency} concurrent")).as_dict()
                    )

                # Rollback under load: v3 is pinned; apply a rollback to v1 while the API is busy.
                seen: list = []
                load = asyncio.ensure_future(
                    through_api(options.concurrency, options.requests, "API during a rollback", seen)
                )
                while len(seen) < options.requests // 3:
                    await asyncio.sleep(0.01)
                commit = await asyncio.to_thread(_apply_rollback, change_services, world)
                rollback_run = await load
                results["runs"].append(rollback_run.as_dict())
                first_new = await asyncio.to_thread(_first_received_on, agent, world["v1"], commit["wall"])
                started_after = [s for s in seen if s[0] > commit["monotonic"]]
                results["rollback"] = {
                    "apply_seconds": round(commit["apply_seconds"], 4),
                    # Negative: a request that arrived before the commit read the pin after it (it waited in line).
                    "earliest_arrival_served_by_new_pin_relative_to_commit_ms": (
                        round((first_new - commit["wall"]).total_seconds() * 1000, 1) if first_new else None
                    ),
                    "requests_started_after_commit": len(started_after),
                    "of_which_served_by_old_version": sum(1 for s in started_after if s[2] != world["v1"]),
                    "first_response_with_new_version_after_commit_ms": round(
                        (min((s[1] for s in seen if s[2] == world["v1"]), default=float("nan")) - commit["monotonic"])
                        * 1000,
                        1,
                    ),
                }

            asyncio.run(all_runs())
        by_name = {run["name"]: run for run in results["runs"]}
        api_load, direct_load = (
            by_name[f"API, {options.concurrency} concurrent"],
            by_name[f"SDK direct, {options.concurrency} concurrent"],
        )
        api_one, direct_one = by_name["API, 1 concurrent"], by_name["SDK direct, 1 concurrent"]
        results["summary"] = {
            "throughput_ratio_api_to_direct": round(
                api_load["throughput_per_second"] / direct_load["throughput_per_second"], 3
            ),
            "added_latency_p50_ms_at_concurrency": round(api_load["p50_ms"] - direct_load["p50_ms"], 1),
            "added_latency_p99_ms_at_concurrency": round(api_load["p99_ms"] - direct_load["p99_ms"], 1),
            "added_latency_p50_ms_serial": round(api_one["p50_ms"] - direct_one["p50_ms"], 1),
            "added_latency_p99_ms_serial": round(api_one["p99_ms"] - direct_one["p99_ms"], 1),
        }
        return results
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)


def _first_received_on(agent, number: int, since):
    """When the first logged request served by version ``number`` arrived (around ``since``)."""
    from datetime import timedelta

    from django.db import close_old_connections

    from triage.models import TriageRequest

    close_old_connections()
    return (
        TriageRequest.objects.filter(agent=agent, version__number=number, received_at__gte=since - timedelta(seconds=5))
        .order_by("received_at")
        .values_list("received_at", flat=True)
        .first()
    )


def _apply_rollback(change_services, world) -> dict:
    from django.db import close_old_connections
    from django.utils import timezone

    close_old_connections()
    change = change_services.change_request_create(
        agent=world["agent"],
        kind="rollback",
        target_number=world["v1"],
        reason="bench rollback",
        actor=world["requester"],
    )
    change_services.change_request_approve(change=change, reviewer=world["reviewer"])
    started = time.monotonic()
    change_services.change_request_apply(change=change, actor=world["reviewer"])
    return {"monotonic": time.monotonic(), "wall": timezone.now(), "apply_seconds": time.monotonic() - started}


def _markdown(results: dict) -> str:
    machine = results["machine"]
    lines = [
        f"Machine: {machine['cpus']} CPUs ({machine['cpu_model'] or 'unknown model'}); a 5M-step Python loop takes "
        f"{machine['python_loop_5m_seconds']} s of CPU.",
        "",
        "| run | requests | failures | throughput (req/s) | p50 (ms) | p99 (ms) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for run in results["runs"]:
        lines.append(
            f"| {run['name']} | {run['requests']} | {run['failures']} | {run['throughput_per_second']} | "
            f"{run['p50_ms']} | {run['p99_ms']} |"
        )
    lines.append("")
    for key, value in {**results["summary"], **{f"rollback: {k}": v for k, v in results["rollback"].items()}}.items():
        lines.append(f"- {key.replace('_', ' ')}: **{value}**")
    return "\n".join(lines)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.api", description="Benchmark the triage API against the SDK called directly."
    )
    parser.add_argument("--latency", type=float, default=0.5, help="emulated session latency in seconds (0.5)")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent clients (64)")
    parser.add_argument("--requests", type=int, default=1280, help="requests per loaded run (1280)")
    parser.add_argument("--serial-requests", type=int, default=50, help="requests of the one-at-a-time runs (50)")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes (2)")
    parser.add_argument("--database-url", default="", help="bench database (default: SQLite in a temporary folder)")
    parser.add_argument("--json", default="", help="also write the results as JSON to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = _arguments(argv)
    exit_code = clean_child_run(module="bench.api", argv=argv, database_url=options.database_url)
    if exit_code is not None:
        return exit_code
    import django

    django.setup()
    results = _bench_run(options)
    print(_markdown(results))
    if options.json:
        Path(options.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
