"""Fixtures for evals tests: the tutorial agent on the emulator, test sets, and real Celery workers.

Workers are real ``celery -A config worker`` subprocesses pointed at the
test database, the test broker and the emulator; nothing of promptctl is mocked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from managed_agents import ratelimit
from evals.models import EvalRun
from promptctl import services as promptctl_services
from config.stack import database_url

# The tutorial's people, agent (v1 prompt) and prompts, shared with the change-control tests.
from tests.promptctl.conftest import PASSWORD, V2, agent, requester, reviewer, second_reviewer  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
TICKETS = ROOT / "evals" / "data" / "support_tickets.jsonl"
CELERY = Path(sys.executable).with_name("celery")

@pytest.fixture
def versions(agent, requester):
    """(v1, v2) of the tutorial agent."""
    v1 = agent.versions.get()
    v2 = promptctl_services.version_create(agent=agent, system_prompt=V2, actor=requester)
    return v1, v2


@pytest.fixture
def gating_set(agent, requester):
    from evals import services

    imported = services.testset_import(
        name="support-tickets", data=TICKETS.read_bytes(), filename=TICKETS.name, agent=agent, gating=True, actor=requester
    )
    return imported.version


@pytest.fixture(autouse=True)
def _full_session_budget(settings):
    """Each test starts with the whole burst available (the budget is shared across runs by design)."""
    ratelimit.limiter_reset()
    yield


def execute_all(run: EvalRun) -> EvalRun:
    """Run every missing unit in this process through the same service a worker task calls."""
    from evals import services

    for case_id, attempt in services._missing_units(run):
        services.eval_unit_execute(run_id=run.pk, case_id=case_id, attempt=attempt)
    run.refresh_from_db()
    return run


@pytest.fixture
def generous_budget(settings):
    """For tests that run units one after another; the spacing of the shared budget is tested elsewhere."""
    settings.PROMPTCTL_SESSION_CREATE_BUDGET = 100_000


class Workers:
    """Starts and stops real Celery worker processes for one test."""

    def __init__(self, *, emulator_url: str) -> None:
        self.emulator_url = emulator_url
        self.processes: list[subprocess.Popen] = []

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
        subprocess.run([str(CELERY), "-A", "config", "purge", "-f"], env=self.env(), cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)

    def start(self, *, concurrency: int | None = None, **extra: str) -> subprocess.Popen:
        command = [str(CELERY), "-A", "config", "worker", "--loglevel=WARNING", "-n", f"test-{uuid.uuid4().hex[:8]}@%h"]
        if concurrency is not None:
            command.append(f"--concurrency={concurrency}")
        process = subprocess.Popen(command, env=self.env(**extra), cwd=ROOT, start_new_session=True)
        self.processes.append(process)
        return process

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


@pytest.fixture
def workers(transactional_db, emulator):
    pool = Workers(emulator_url=emulator.base_url)
    pool.purge()
    yield pool
    pool.stop_all()
    pool.purge()


def wait_for_run(run: EvalRun, *, timeout: float = 60.0, until=None) -> EvalRun:
    """Poll the database until the run is final (or ``until(run)`` holds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if (until(run) if until else not run.is_active):
            return run
        time.sleep(0.1)
    progress = run.results.count()
    raise AssertionError(f"run #{run.pk} still {run.status} after {timeout}s with {progress}/{run.unit_total} results")


from tests.browser_support import browser_page, chromium  # noqa: E402,F401  (fixtures for test_browser.py)
