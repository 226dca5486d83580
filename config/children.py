"""promptctl's own processes as context managers: an API server or a Celery worker for one database and emulator.

``ApiServer`` starts the same uvicorn command a deployment runs
(``config.processes``) against a given database and emulator, and waits
until it answers. ``child_env`` turns Django's live connection settings
(including a test database's name) into the environment a child process
reads, so the child sees exactly the rows a test committed. The API
benchmark and the load tests use these.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from config.processes import BASE_DIR, process_argv
from config.stack import database_url, free_port


class _ChildProcess:
    """One child process of ours: started with its output in a log file under the var dir, stopped for sure."""

    stop_grace_seconds = 15.0

    def __init__(self, *, env: dict[str, str]) -> None:
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None

    def _spawn(self, argv: list[str], *, log_name: str) -> None:
        var_dir = Path(self.env.get("PROMPTCTL_VAR_DIR", BASE_DIR / "var"))
        var_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = var_dir / log_name
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(argv, cwd=BASE_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=self.stop_grace_seconds)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


class ApiServer(_ChildProcess):
    """A uvicorn process serving ``config.asgi:application`` on a loopback port."""

    def __init__(self, *, env: dict[str, str], workers: int = 1, port: int | None = None) -> None:
        super().__init__(env={**env, "WEB_CONCURRENCY": str(workers)})
        self.port = port or free_port()
        self.workers = workers

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 60.0) -> None:
        argv = process_argv("web", host="127.0.0.1", port=self.port)
        argv[argv.index("--workers") + 1] = str(self.workers)  # the list reads WEB_CONCURRENCY from this process
        self._spawn(argv, log_name=f"api-server-{self.port}.log")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the API server exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.base_url + "/healthz", timeout=2) as response:
                    if response.status == 200 and self._all_workers_up():
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the API server did not answer within {timeout:.0f}s:\n{self.log()}")

    def _all_workers_up(self) -> bool:
        if self.workers <= 1:
            return True
        return self.log().count("Application startup complete") >= self.workers


@contextmanager
def api_server(
    *, settings_dict: dict, emulator_url: str, workers: int = 1, extra_env: dict[str, str] | None = None
) -> Iterator[ApiServer]:
    """An API server on the database ``settings_dict`` names, talking to the emulator at ``emulator_url``."""
    env = {**child_env(settings_dict=settings_dict, emulator_url=emulator_url), **(extra_env or {})}
    with ApiServer(env=env, workers=workers) as server:
        yield server


class WorkerProcess(_ChildProcess):
    """A Celery worker (the deployment's command) for the database and emulator given."""

    stop_grace_seconds = 20.0

    def __init__(self, *, env: dict[str, str], concurrency: int = 4) -> None:
        super().__init__(env=env)
        self.concurrency = concurrency

    def start(self) -> None:
        argv = process_argv("worker") + [
            "--pool",
            "threads",
            "--concurrency",
            str(self.concurrency),
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ]
        self._spawn(argv, log_name=f"worker-{os.getpid()}-{time.monotonic_ns()}.log")


def child_env(*, settings_dict: dict, emulator_url: str) -> dict[str, str]:
    """Environment for a child process sharing this process's database and emulator."""
    return {
        "DATABASE_URL": database_url(settings_dict),
        "ANTHROPIC_BASE_URL": emulator_url,
        "ANTHROPIC_API_KEY": "emulator-accepts-any-key",
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings"),
    }
