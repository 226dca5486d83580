"""``python -m redteam [--database sqlite|postgres|both]``: play the insider's attacks and print what stopped each.

For each database it starts from nothing (SQLite under ``var/redteam/``, or a
PostgreSQL database of its own, ``promptctl_redteam``), migrates, starts the
emulator and a Celery worker through the same process list as ``make demo``,
plays the tutorial's story as the baseline, then plays each attack in
``redteam/attacks.py`` on a fresh copy of that baseline (``redteam/play.py``).
The table says, per attack, whether it was refused, detected (and how
``audit verify`` named it), recorded (allowed, and the trail names who) or
NOT CAUGHT; a control play checks that the honest baseline verifies. The exit
code is 1 if any attack was not caught or the control raised a false alarm.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[1]
VAR_DIR = BASE_DIR / "var" / "redteam"
POSTGRES_URL = os.environ.get("PROMPTCTL_REDTEAM_POSTGRES", "postgres://postgres@127.0.0.1:5432")


def _play_backend(backend: str, *, only: list[str]) -> list[dict]:
    from config.processes import process_argv
    from config.stack import Stack, free_port

    var_dir = VAR_DIR / backend
    if var_dir.exists():
        shutil.rmtree(var_dir)
    var_dir.mkdir(parents=True)
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.update(PROMPTCTL_VAR_DIR=str(var_dir), DJANGO_DEBUG="true", PYTHONUNBUFFERED="1")
    # Checkpoints every second, so the checkpoint file's deletion is due for detection two seconds after a pin
    # move rather than ten minutes (docs/SECURITY.md, "What is not covered").
    env["PROMPTCTL_AUDIT_CHECKPOINT_SECONDS"] = "1"
    env.pop("ANTHROPIC_API_KEY", None)  # never the live API
    if backend == "postgres":
        env["DATABASE_URL"] = f"{POSTGRES_URL}/promptctl_redteam"
        env["PROMPTCTL_REDTEAM_POSTGRES"] = POSTGRES_URL
    python = sys.executable
    results_file = var_dir / "results.json"
    stack = Stack(env=env, log_dir=var_dir / "logs")
    try:
        emulator_port = free_port(8765)
        env["ANTHROPIC_BASE_URL"] = f"http://127.0.0.1:{emulator_port}"
        stack.start("emulator", process_argv("emulator", port=emulator_port) + ["--latency", "0"])
        stack.wait_http("emulator", f"{env['ANTHROPIC_BASE_URL']}/_emulator/stats", seconds=30)
        # The play starts and stops the worker itself: it is needed for the baseline's eval runs only.
        argv = [python, "-m", "redteam.play", "--backend", backend, "--results", str(results_file)]
        for name in only:
            argv += ["--only", name]
        played = subprocess.run(argv, cwd=BASE_DIR, env=env)
        if played.returncode not in (0, 1):
            raise RuntimeError(f"the {backend} play stopped with exit code {played.returncode}")
    finally:
        stack.stop()
    return json.loads(results_file.read_text())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m redteam")
    parser.add_argument("--database", choices=("sqlite", "postgres", "both"), default="sqlite")
    parser.add_argument("--only", action="append", default=[], metavar="ATTACK", help="play only this attack")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    options = parser.parse_args(argv)
    backends = ("sqlite", "postgres") if options.database == "both" else (options.database,)

    rows: list[dict] = []
    for backend in backends:
        print(f"redteam: {backend}: baseline (the tutorial's story), then each attack on a fresh copy", flush=True)
        rows += _play_backend(backend, only=options.only)

    from redteam.report import table

    print()
    print(table(rows))
    if options.json:
        Path(options.json).write_text(json.dumps(rows, indent=2))
    missed = [row for row in rows if row["outcome"] in ("NOT CAUGHT", "FALSE ALARM")]
    if missed:
        print(f"\nredteam: {len(missed)} play(s) NOT CAUGHT or a FALSE ALARM on the honest baseline")
        return 1
    print(f"\nredteam: every attack refused or detected ({len(rows)} plays)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
