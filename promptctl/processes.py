"""The long-running processes of a promptctl deployment, defined once.

``python -m promptctl.processes NAME`` replaces itself with process NAME. The
docker-compose services, ``make demo`` and CI all start processes through this
list, so the commands cannot drift apart.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def process_argv(name: str, *, host: str | None = None, port: int | None = None) -> list[str]:
    """The command line of one process; host and port default from the environment."""
    python = sys.executable
    bind_host = host or os.environ.get("PROMPTCTL_BIND_HOST", "127.0.0.1")
    if name == "web":
        web_port = port or int(os.environ.get("PROMPTCTL_WEB_PORT", "8000"))
        # uvicorn supervises its worker processes (restarting dead ones) when --workers > 1.
        workers = os.environ.get("WEB_CONCURRENCY", "1")
        return [python, "-m", "uvicorn", "promptctl.asgi:application", "--host", bind_host, "--port", str(web_port),
                "--workers", workers, "--no-access-log"]
    if name == "worker":
        return [python, "-m", "celery", "-A", "promptctl", "worker", "--loglevel", os.environ.get("CELERY_LOG_LEVEL", "WARNING")]
    if name == "beat":
        return [python, "-m", "celery", "-A", "promptctl", "beat", "--loglevel", "WARNING",
                "--schedule", os.path.join(os.environ.get("PROMPTCTL_VAR_DIR", "var"), "celerybeat-schedule")]
    if name == "emulator":
        emulator_port = port or int(os.environ.get("PROMPTCTL_EMULATOR_PORT", "8765"))
        return [python, str(BASE_DIR / "manage.py"), "emulator", "--host", bind_host, "--port", str(emulator_port)]
    raise SystemExit(f"unknown process {name!r}: choose web, worker, beat or emulator")


PROCESS_NAMES = ("web", "worker", "beat", "emulator")


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit(f"usage: python -m promptctl.processes {{{'|'.join(PROCESS_NAMES)}}}")
    command = process_argv(argv[1])
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv)
