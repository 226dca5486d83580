"""Helpers for evals tests (no fixtures here; those are in ``conftest.py``): the shipped tickets, units run
in this process, real Celery worker processes, and waiting for a run.

Workers are real ``celery -A config worker`` subprocesses pointed at the
test database, the test broker and the emulator; nothing of promptctl is mocked.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from django.conf import settings as django_settings
from django.db import connection

from config.stack import database_url
from evals.models import EvalRun

ROOT = Path(__file__).resolve().parents[2]
TICKETS = ROOT / "evals" / "data" / "support_tickets.jsonl"
CELERY = Path(sys.executable).with_name("celery")


def execute_all(run: EvalRun) -> EvalRun:
    """Run every missing unit in this process through the same service a worker task calls."""
    from evals import services

    for case_id, attempt in services._missing_units(run):
        services.eval_unit_execute(run_id=run.pk, case_id=case_id, attempt=attempt)
    run.refresh_from_db()
    return run


# Threads per test worker. Each busy thread holds a database connection, and with xdist several tests
# run workers at once: the deployment default (32) would exhaust PostgreSQL's 100 connections.
DEFAULT_CONCURRENCY = 8


class Workers:
    """Starts and stops real Celery worker processes for one test."""

    def __init__(self, *, emulator_url: str) -> None:
        self.emulator_url = emulator_url
        self.processes: list[subprocess.Popen] = []
        self.nodes: list[str] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DATABASE_URL=database_url(connection.settings_dict),
            CELERY_BROKER_URL=django_settings.CELERY_BROKER_URL,
            PROMPTCTL_VAR_DIR=str(django_settings.VAR_DIR),
            ANTHROPIC_BASE_URL=self.emulator_url,
            ANTHROPIC_API_KEY="emulator-accepts-any-key",
            PROMPTCTL_BACKOFF_BASE="0.05",
            PROMPTCTL_BACKOFF_CAP="0.5",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def purge(self) -> None:
        """Drop every message left on this test's broker (the same broker the workers consume)."""
        from config.celery import app

        app.control.purge()

    def start(self, *, concurrency: int = DEFAULT_CONCURRENCY, **extra: str) -> subprocess.Popen:
        node = f"test-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
        command = [str(CELERY), "-A", "config", "worker", "--loglevel=WARNING", "-n", node]
        command.append(f"--concurrency={concurrency}")
        process = subprocess.Popen(command, env=self.env(**extra), cwd=ROOT, start_new_session=True)
        self.processes.append(process)
        self.nodes.append(node)
        return process

    def wait_ready(self, *, timeout: float = 60.0) -> None:
        """Until every started worker answers a ping through the broker (it consumes from then on)."""
        from config.celery import app

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            replies = app.control.ping(destination=self.nodes, timeout=0.5)
            if {node for reply in replies for node in reply} >= set(self.nodes):
                return
        raise AssertionError(f"workers {self.nodes} did not all answer a ping within {timeout:.0f}s")

    def kill(self, process: subprocess.Popen) -> None:
        """SIGKILL the worker and everything it started: no chance to acknowledge or requeue."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def wait_for_run(run: EvalRun, *, timeout: float = 60.0, until=None) -> EvalRun:
    """Poll the database until the run is final (or ``until(run)`` holds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if until(run) if until else not run.is_active:
            return run
        time.sleep(0.1)
    progress = run.results.count()
    raise AssertionError(f"run #{run.pk} still {run.status} after {timeout}s with {progress}/{run.unit_total} results")
