"""Running the triage API as real processes: for the benchmark (``make bench``) and the load tests.

``ApiServer`` starts the same uvicorn command a deployment runs
(``promptctl.processes``) against a given database and emulator, and waits
until it answers. ``database_url`` turns Django's live connection settings
(including a test database's name) into the ``DATABASE_URL`` a child process
reads, so the server sees exactly the rows a test committed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from promptctl.processes import BASE_DIR, process_argv


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def database_url(settings_dict: dict) -> str:
    """``DATABASE_URL`` for the database ``settings_dict`` describes (a connection's live settings)."""
    engine = settings_dict["ENGINE"]
    name = settings_dict["NAME"]
    if "sqlite3" in engine:
        return "sqlite:///" + str(Path(name).resolve())
    if "postgresql" in engine:
        user = urllib.parse.quote(settings_dict.get("USER") or "", safe="")
        password = urllib.parse.quote(settings_dict.get("PASSWORD") or "", safe="")
        credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = settings_dict.get("HOST") or "127.0.0.1"
        port = settings_dict.get("PORT") or "5432"
        return f"postgres://{credentials}{host}:{port}/{name}"
    raise ValueError(f"cannot hand database engine {engine} to a child process")


class ApiServer:
    """A uvicorn process serving ``promptctl.asgi:application`` on a loopback port."""

    def __init__(self, *, env: dict[str, str], workers: int = 1, port: int | None = None) -> None:
        self.port = port or free_port()
        self.workers = workers
        self.env = {**os.environ, **env, "WEB_CONCURRENCY": str(workers), "PYTHONUNBUFFERED": "1"}
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 60.0) -> None:
        argv = process_argv("web", host="127.0.0.1", port=self.port)
        argv[argv.index("--workers") + 1] = str(self.workers)  # the list reads WEB_CONCURRENCY from this process
        var_dir = Path(self.env.get("PROMPTCTL_VAR_DIR", BASE_DIR / "var"))
        var_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = var_dir / f"api-server-{self.port}.log"
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(argv, cwd=BASE_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
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

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None

    def __enter__(self) -> "ApiServer":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


@contextmanager
def api_server(*, settings_dict: dict, emulator_url: str, workers: int = 1, extra_env: dict[str, str] | None = None) -> Iterator[ApiServer]:
    """An API server on the database ``settings_dict`` names, talking to the emulator at ``emulator_url``."""
    env = {**child_env(settings_dict=settings_dict, emulator_url=emulator_url), **(extra_env or {})}
    with ApiServer(env=env, workers=workers) as server:
        yield server



class WorkerProcess:
    """A Celery worker (the deployment's command) for the database and emulator given."""

    def __init__(self, *, env: dict[str, str], concurrency: int = 4) -> None:
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.concurrency = concurrency
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None

    def start(self) -> None:
        argv = process_argv("worker") + ["--pool", "threads", "--concurrency", str(self.concurrency),
                                         "--without-heartbeat", "--without-gossip", "--without-mingle"]
        var_dir = Path(self.env.get("PROMPTCTL_VAR_DIR", BASE_DIR / "var"))
        var_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = var_dir / f"worker-{os.getpid()}-{time.monotonic_ns()}.log"
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(argv, cwd=BASE_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None

    def __enter__(self) -> "WorkerProcess":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def child_env(*, settings_dict: dict, emulator_url: str) -> dict[str, str]:
    """Environment for a child process sharing this process's database and emulator."""
    return {
        "DATABASE_URL": database_url(settings_dict),
        "ANTHROPIC_BASE_URL": emulator_url,
        "ANTHROPIC_API_KEY": "emulator-accepts-any-key",
        "DJANGO_SETTINGS_MODULE": "promptctl.settings",
    }
