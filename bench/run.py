"""``make bench``: speed targets, measured on embedded defaults, printed as a table and written as JSON.

Scenarios (each against the emulator in its own process, promptctl's work on a
real Celery worker process):

- ``tutorial_vs_run``: twenty tickets at 1.0 s emulated latency, the tutorial's
  serial loop (send, poll ``events.list`` every second) against a promptctl
  eval run. Targets: promptctl at most 2.0 s wall and at least 10x faster.
- ``create_limit_600``: 600 sessions (20 tickets x 30 repeats) under a
  300-per-minute session-create limit on the emulator. Target: within 10 % of
  the 120 s floor, zero 429s.
- ``api_*``: the internal triage API (``bench.api``), when present.

Usage: ``python bench/run.py [--only NAME ...] [--output PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
import urllib.request
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[1]
BENCH_VAR_DIR = BASE_DIR / "var" / "bench"
sys.path.insert(0, str(BASE_DIR))


def _prepare_environment() -> dict[str, str]:
    for variable in ("DATABASE_URL", "CELERY_BROKER_URL", "ANTHROPIC_API_KEY"):
        os.environ.pop(variable, None)
    if BENCH_VAR_DIR.exists():
        shutil.rmtree(BENCH_VAR_DIR)
    BENCH_VAR_DIR.mkdir(parents=True)
    os.environ["PROMPTCTL_VAR_DIR"] = str(BENCH_VAR_DIR)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["PYTHONUNBUFFERED"] = "1"
    return dict(os.environ)


def _emulator_configure(base_url: str, **knobs) -> None:
    request = urllib.request.Request(
        f"{base_url}/_emulator/config",
        data=json.dumps(knobs).encode(),
        method="POST",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5):
        pass


def _emulator_reset(base_url: str) -> None:
    request = urllib.request.Request(
        f"{base_url}/_emulator/reset", data=b"{}", method="POST", headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5):
        pass


def _emulator_stats(base_url: str) -> dict:
    with urllib.request.urlopen(f"{base_url}/_emulator/stats", timeout=5) as response:
        return json.load(response)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench/run.py")
    parser.add_argument("--only", nargs="*", default=None, help="scenario names to run (default: all)")
    parser.add_argument("--output", default=str(BASE_DIR / "var" / "bench-evals.json"))
    options = parser.parse_args(argv)

    env = _prepare_environment()
    import django

    django.setup()
    from django.core.management import call_command

    from bench import scenarios
    from config.processes import process_argv
    from config.stack import Stack, free_port

    call_command("migrate", verbosity=0, interactive=False)
    stack = Stack(env=env, log_dir=BENCH_VAR_DIR / "logs")
    emulator_port = free_port()
    emulator_url = f"http://127.0.0.1:{emulator_port}"
    env["ANTHROPIC_BASE_URL"] = emulator_url
    os.environ["ANTHROPIC_BASE_URL"] = emulator_url
    from django.conf import settings

    settings.ANTHROPIC_BASE_URL = emulator_url
    results: list[dict] = []
    try:
        stack.start("emulator", process_argv("emulator", port=emulator_port))
        stack.wait_http("emulator", f"{emulator_url}/_emulator/stats", seconds=30)
        stack.start("worker", process_argv("worker"))
        context = scenarios.Context(
            emulator_url=emulator_url,
            configure=lambda **knobs: _emulator_configure(emulator_url, **knobs),
            reset=lambda: _emulator_reset(emulator_url),
            stats=lambda: _emulator_stats(emulator_url),
            env=env,
            stack=stack,
        )
        for name, scenario in scenarios.SCENARIOS.items():
            if options.only and name not in options.only:
                continue
            print(f"bench: {name} …", flush=True)
            started = time.monotonic()
            rows = scenario(context)
            for row in rows:
                row.setdefault("scenario", name)
            results.extend(rows)
            print(f"bench: {name} done in {time.monotonic() - started:.1f}s", flush=True)
    finally:
        stack.stop()

    _print_table(results)
    document = {
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": results,
    }
    output = Path(options.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nbench: JSON written to {output}")
    return 0 if all(row.get("met", True) for row in results) else 1


def _print_table(results: list[dict]) -> None:
    headers = ("scenario", "metric", "value", "unit", "target", "met")
    rows = [[str(row.get(h, "")) if h != "value" else _format(row["value"]) for h in headers] for row in results]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    print()
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if value < 100 else f"{value:.1f}"
    return str(value)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
