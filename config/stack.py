"""Starting promptctl's own processes on loopback, for the demo, benchmarks and tests.

Every process comes from ``config.processes`` (the list docker-compose uses)
and runs in its own process group, so ``Stack.stop`` ends it and anything it
spawned, whatever happened before.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

from config.processes import BASE_DIR


def free_port(preferred: int = 0) -> int:
    """``preferred`` when it is free on 127.0.0.1, else any free port."""
    for candidate in (preferred, 0) if preferred else (0,):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise OSError("no free port on 127.0.0.1")


def database_url(settings_dict: dict) -> str:
    """``DATABASE_URL`` for the database ``settings_dict`` describes (a connection's live settings)."""
    engine = settings_dict["ENGINE"]
    name = settings_dict["NAME"]
    if engine in ("django.db.backends.sqlite3", "config.sqlite"):
        return "sqlite:///" + str(Path(name).resolve())
    if "postgresql" in engine:
        user = urllib.parse.quote(settings_dict.get("USER") or "", safe="")
        password = urllib.parse.quote(settings_dict.get("PASSWORD") or "", safe="")
        credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = settings_dict.get("HOST") or "127.0.0.1"
        port = settings_dict.get("PORT") or "5432"
        return f"postgres://{credentials}{host}:{port}/{name}"
    raise ValueError(f"cannot hand database engine {engine} to a child process")


class Stack:
    """Processes started together and stopped together; logs go to ``log_dir/NAME.log``."""

    def __init__(self, *, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen] = {}
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        with open(self.log_dir / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                argv,
                cwd=BASE_DIR,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.processes[name] = process
        return process

    def wait_http(self, name: str, url: str, *, seconds: float = 60.0) -> None:
        """Wait until ``url`` answers; refuse early when the process died."""
        process = self.processes[name]
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"the {name} exited early (code {process.returncode}); see {self.log_dir / (name + '.log')}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"the {name} did not answer at {url} within {seconds:.0f}s")

    def alive(self) -> bool:
        return all(process.poll() is None for process in self.processes.values())

    def exited(self) -> list[str]:
        """The names of the processes that have ended, in start order."""
        return [name for name, process in self.processes.items() if process.poll() is not None]

    def death_report(self, name: str, *, lines: int = 20) -> str:
        """Which process ended, how, and the last ``lines`` lines of its log: what a person needs first."""
        process = self.processes[name]
        log = self.log_dir / f"{name}.log"
        try:
            tail = log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            tail = []
        code = process.returncode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        head = f"the {name} process (pid {process.pid}) exited ({how}); last {len(tail)} lines of {log}:"
        return "\n".join([head, *("    " + line for line in tail)])

    def stop(self, name: str | None = None, *, sig: int = signal.SIGTERM, grace: float = 15.0) -> None:
        """Stop one process (or all), escalating to SIGKILL after ``grace`` seconds."""
        names = [name] if name else list(self.processes)
        for each in names:
            process = self.processes[each]
            if process.poll() is None:
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        for each in names:
            process = self.processes.pop(each)
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
