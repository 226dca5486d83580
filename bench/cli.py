"""The client's start-up and round trip (``python -m bench.cli``, a step of ``make bench``).

Measures, as a person feels them (a new process each time, median of
``--repeats``):

- ``promptctl --help``: the thin client's start-up (``python -m promptctl_client``);
- ``promptctl change list``: one authenticated round trip to a running API
  server (uvicorn, ``config.children.ApiServer``) with a personal token;
- ``python manage.py promptctl change list``: the operator's CLI doing the same
  read, Django set-up included, for comparison.

Target: the first two at most 0.5 s each. Runs in a throw-away var dir and
SQLite database (or ``--database-url``), with the same world as ``bench.api``
(an agent with pins and change requests, on the emulator).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.child import clean_child_run
from config.processes import BASE_DIR

TARGET_SECONDS = 0.5


def _timed(argv: list[str], *, env: dict[str, str], repeats: int) -> dict:
    """Median and spread of ``repeats`` runs of ``argv`` after one warm-up; fails loudly on a non-zero exit."""
    seconds = []
    for attempt in range(repeats + 1):
        started = time.perf_counter()
        process = subprocess.run(argv, cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120)
        elapsed = time.perf_counter() - started
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {process.returncode}: {process.stderr.strip()}")
        if attempt:  # the first run warms the disk cache and the server's connections
            seconds.append(elapsed)
    return {
        "median_seconds": round(statistics.median(seconds), 3),
        "min_seconds": round(min(seconds), 3),
        "max_seconds": round(max(seconds), 3),
        "runs": len(seconds),
    }


def _server_only(base_url: str, token: str, *, repeats: int) -> dict:
    """The same GET from this process (no process start-up): how much of the round trip is the server's."""
    import urllib.request

    request = urllib.request.Request(base_url + "/api/v1/changes", headers={"Authorization": f"Bearer {token}"})
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
        seconds.append(time.perf_counter() - started)
    return {
        "median_seconds": round(statistics.median(seconds), 3),
        "min_seconds": round(min(seconds), 3),
        "max_seconds": round(max(seconds), 3),
        "runs": len(seconds),
    }


def _bench_run(options: argparse.Namespace) -> dict:
    from django.conf import settings
    from django.db import connection

    from bench.api import _bench_setup, _emulator_process, _machine
    from config.children import ApiServer, child_env
    from managed_agents import gateway
    from promptctl import services as change_services

    emulator, emulator_url = _emulator_process(latency=0.0)
    settings.ANTHROPIC_BASE_URL = emulator_url
    settings.ANTHROPIC_API_KEY = "emulator-accepts-any-key"
    gateway.client_reset()
    try:
        world = _bench_setup()
        token = change_services.token_create(user=world["requester"], actor=world["requester"], name="bench").secret
        env = child_env(settings_dict=connection.settings_dict, emulator_url=emulator_url)
        env["PROMPTCTL_VAR_DIR"] = str(settings.VAR_DIR)
        client_env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTCTL_")}
        client_env["XDG_CONFIG_HOME"] = str(Path(settings.VAR_DIR) / "client-config")
        manage_env = {**os.environ, **env}
        python = sys.executable
        results: dict = {"settings": vars(options).copy(), "machine": _machine(), "target_seconds": TARGET_SECONDS}
        results["client_help"] = _timed(
            [python, "-m", "promptctl_client", "--help"], env=client_env, repeats=options.repeats
        )
        with ApiServer(env=env, workers=1) as server:
            client_env.update({"PROMPTCTL_URL": server.base_url, "PROMPTCTL_TOKEN": token})
            results["client_change_list"] = _timed(
                [python, "-m", "promptctl_client", "change", "list"], env=client_env, repeats=options.repeats
            )
            results["server_change_list"] = _server_only(server.base_url, token, repeats=options.repeats)
        results["manage_change_list"] = _timed(
            [python, str(BASE_DIR / "manage.py"), "promptctl", "change", "list"],
            env=manage_env,
            repeats=options.repeats,
        )
        results["summary"] = {
            "client_help_within_target": results["client_help"]["median_seconds"] <= TARGET_SECONDS,
            "client_round_trip_within_target": results["client_change_list"]["median_seconds"] <= TARGET_SECONDS,
            "manage_over_client": round(
                results["manage_change_list"]["median_seconds"] / results["client_change_list"]["median_seconds"], 1
            ),
        }
        return results
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)


def _markdown(results: dict) -> str:
    lines = [
        f"Median of {results['client_help']['runs']} runs each, a new process per run; target {TARGET_SECONDS} s.",
        "",
        "| command | median (s) | min (s) | max (s) |",
        "|---|---:|---:|---:|",
    ]
    for key, name in (
        ("client_help", "`promptctl --help`"),
        ("client_change_list", "`promptctl change list` (HTTP round trip)"),
        ("server_change_list", "of which the server: `GET /api/v1/changes` from a warm process"),
        ("manage_change_list", "`python manage.py promptctl change list`"),
    ):
        row = results[key]
        lines.append(f"| {name} | {row['median_seconds']} | {row['min_seconds']} | {row['max_seconds']} |")
    lines.append("")
    for key, value in results["summary"].items():
        lines.append(f"- {key.replace('_', ' ')}: **{value}**")
    return "\n".join(lines)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cli", description="Time the promptctl client's start-up and one round trip."
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per command; the median is reported (5)")
    parser.add_argument("--database-url", default="", help="bench database (default: SQLite in a temporary folder)")
    parser.add_argument("--json", default="", help="also write the results as JSON to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = _arguments(argv)
    exit_code = clean_child_run(module="bench.cli", argv=argv, database_url=options.database_url)
    if exit_code is not None:
        return exit_code
    import django

    django.setup()
    results = _bench_run(options)
    print(_markdown(results))
    if options.json:
        Path(options.json).write_text(json.dumps(results, indent=2, default=str))
    within = results["summary"]["client_help_within_target"] and results["summary"]["client_round_trip_within_target"]
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
