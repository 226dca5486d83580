"""``python -m demo`` watches the processes it started: a dead worker stops it at once, with the worker's log tail.

The launcher runs as a real process on a temporary state folder
(``PROMPTCTL_DEMO_VAR_DIR``), with its emulator, Celery worker and web server;
the test SIGKILLs the worker while the story plays.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


class Launcher:
    """The demo launcher as a child process, its output collected line by line."""

    def __init__(self, var_dir: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
        env.update(PROMPTCTL_DEMO_VAR_DIR=str(var_dir), PYTHONUNBUFFERED="1")
        env.pop("PROMPTCTL_VAR_DIR", None)
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "demo", "--serve=1"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, *, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.output)
            if found:
                return found
            assert self.process.poll() is None, f"the launcher exited early:\n{self.output}"
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} within {timeout:.0f}s:\n{self.output}")

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # the launcher stops every process it started
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.reader.join(timeout=5)


@pytest.fixture
def launcher(tmp_path):
    running = Launcher(tmp_path / "demo")
    yield running
    running.close()


def test_killing_the_demos_worker_stops_the_launcher_with_the_workers_log_tail(launcher, tmp_path):
    started = launcher.wait_for(r"Celery worker started \(pid (\d+)", timeout=120)
    worker_pid = int(started.group(1))
    time.sleep(1.0)  # the story has begun
    os.killpg(worker_pid, signal.SIGKILL)
    killed_at = time.monotonic()
    code = launcher.process.wait(timeout=15)
    assert time.monotonic() - killed_at < 15
    launcher.reader.join(timeout=5)
    assert code == 1, launcher.output
    output = launcher.output
    assert f"the worker process (pid {worker_pid}) exited (killed by signal 9)" in output, output
    assert f"lines of {tmp_path / 'demo' / 'logs' / 'worker.log'}:" in output, output
    assert "every process it started is stopped" in output
    assert (tmp_path / "demo" / "logs" / "worker.log").exists()  # the state went to the folder given
