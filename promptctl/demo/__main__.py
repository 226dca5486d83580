"""``python -m promptctl.demo [--serve=0|1]``: start the stack, play the story, serve the admin.

Runs on embedded defaults only (SQLite and the filesystem broker under
``var/demo``), so it never touches a configured database. It starts the
emulator (unless ``ANTHROPIC_API_KEY`` is set and ``ANTHROPIC_BASE_URL`` is
not: then the live API is used), a real Celery worker process and the web
server, all on loopback, through the same process list docker-compose uses.
Every process it starts is stopped on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]
DEMO_VAR_DIR = BASE_DIR / "var" / "demo"


def _free_port(preferred: int) -> int:
    for candidate in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise SystemExit("no free port on 127.0.0.1")


def _wait_for(url: str, *, seconds: float, process: subprocess.Popen, name: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"demo: the {name} exited early (code {process.returncode}); see {DEMO_VAR_DIR}/logs/{name}.log")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"demo: the {name} did not answer at {url} within {seconds:.0f}s")


class Stack:
    """The processes the demo started; ``stop`` ends every one of them (their whole process groups)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.processes: dict[str, subprocess.Popen] = {}
        (DEMO_VAR_DIR / "logs").mkdir(parents=True, exist_ok=True)

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(DEMO_VAR_DIR / "logs" / f"{name}.log", "ab")
        process = subprocess.Popen(argv, cwd=BASE_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        self.processes[name] = process
        return process

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for name, process in self.processes.items():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m promptctl.demo")
    parser.add_argument("--serve", default="1", choices=("0", "1"), help="keep serving the admin after the story (default 1)")
    options = parser.parse_args(argv)

    env = dict(os.environ)
    for variable in ("DATABASE_URL", "CELERY_BROKER_URL"):
        if env.pop(variable, None):
            print(f"demo: ignoring {variable}: the demo runs on embedded defaults under var/demo")
    env["PROMPTCTL_VAR_DIR"] = str(DEMO_VAR_DIR)
    env.setdefault("DJANGO_DEBUG", "true")
    env["PYTHONUNBUFFERED"] = "1"
    live = bool(env.get("ANTHROPIC_API_KEY")) and not env.get("ANTHROPIC_BASE_URL")

    if DEMO_VAR_DIR.exists():
        print(f"demo: resetting the demo state from an earlier run ({DEMO_VAR_DIR.relative_to(BASE_DIR)})")
        shutil.rmtree(DEMO_VAR_DIR)
    DEMO_VAR_DIR.mkdir(parents=True)

    from promptctl.processes import process_argv

    python = sys.executable
    print("demo: migrating the embedded database")
    subprocess.run([python, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=BASE_DIR, env=env, check=True)

    stack = Stack(env)
    interrupted = {"flag": False}

    def on_signal(signum, _frame):
        interrupted["flag"] = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        if live:
            print("demo: ANTHROPIC_API_KEY is set and ANTHROPIC_BASE_URL is not: using the live Managed Agents API")
        else:
            emulator_port = _free_port(8765)
            env["ANTHROPIC_BASE_URL"] = f"http://127.0.0.1:{emulator_port}"
            emulator = stack.start("emulator", process_argv("emulator", port=emulator_port) + ["--latency", env.get("PROMPTCTL_DEMO_LATENCY", "0.2-0.6")])
            _wait_for(f"{env['ANTHROPIC_BASE_URL']}/_emulator/stats", seconds=30, process=emulator, name="emulator")
            print(f"demo: Managed Agents emulator at {env['ANTHROPIC_BASE_URL']}")
        stack.start("worker", process_argv("worker"))
        web_port = _free_port(8000)
        web = stack.start("web", process_argv("web", port=web_port))
        web_url = f"http://127.0.0.1:{web_port}"
        _wait_for(f"{web_url}/healthz", seconds=60, process=web, name="web")
        print(f"demo: web server at {web_url}, Celery worker started (embedded filesystem broker)")
        print()
        story = subprocess.run([python, "manage.py", "demo_story", "--web-url", web_url], cwd=BASE_DIR, env=env)
        if story.returncode != 0:
            print(f"demo: the story stopped with exit code {story.returncode}; logs are in {DEMO_VAR_DIR}/logs")
            return story.returncode
        if options.serve == "1":
            print(f"\nServing the admin at {web_url}/admin/ until Ctrl-C.")
            while all(process.poll() is None for process in stack.processes.values()):
                time.sleep(0.5)
            print("demo: a process exited; stopping")
        return 0
    except KeyboardInterrupt:
        print("\ndemo: stopping")
        return 0 if not interrupted["flag"] else 143
    finally:
        stack.stop()
        print("demo: every process it started is stopped")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
