"""``python -m demo [--serve=0|1]``: start the stack, play the story, serve the admin.

Runs on embedded defaults only (SQLite and the filesystem broker under
``var/demo``), so it never touches a configured database. It starts the
emulator (unless ``ANTHROPIC_API_KEY`` is set and ``ANTHROPIC_BASE_URL`` is
not: then the live API is used), a real Celery worker process and the web
server, all on loopback, through the same process list docker-compose uses.
Every process it starts is stopped on exit, Ctrl-C included. It watches its
children while the story plays and while it serves: when one exits, it stops
within a second, naming the process and printing the tail of its log.
``PROMPTCTL_DEMO_VAR_DIR`` moves the state folder (tests use a temporary one).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[1]
DEMO_VAR_DIR = Path(os.environ.get("PROMPTCTL_DEMO_VAR_DIR") or BASE_DIR / "var" / "demo").resolve()
WATCH_SECONDS = 0.5


def _shown(path: Path) -> str:
    return str(path.relative_to(BASE_DIR)) if path.is_relative_to(BASE_DIR) else str(path)


def _child_died(stack) -> str | None:
    """A report on the first of the stack's processes that has ended, or None while all run."""
    exited = stack.exited()
    return stack.death_report(exited[0]) if exited else None


def _play(stack, argv: list[str], env: dict[str, str]) -> int | str:
    """Run the story, watching the stack: its exit code, or the death report of a process that ended."""
    story = subprocess.Popen(argv, cwd=BASE_DIR, env=env)
    try:
        while story.poll() is None:
            report = _child_died(stack)
            if report:
                return report
            time.sleep(WATCH_SECONDS)
        return story.returncode
    finally:
        if story.poll() is None:
            story.terminate()
            try:
                story.wait(timeout=10)
            except subprocess.TimeoutExpired:
                story.kill()
                story.wait()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo")
    parser.add_argument(
        "--serve", default="1", choices=("0", "1"), help="keep serving the admin after the story (default 1)"
    )
    options = parser.parse_args(argv)

    env = dict(os.environ)
    for variable in ("DATABASE_URL", "CELERY_BROKER_URL"):
        if env.pop(variable, None):
            print(f"demo: ignoring {variable}: the demo runs on embedded defaults under {_shown(DEMO_VAR_DIR)}")
    env["PROMPTCTL_VAR_DIR"] = str(DEMO_VAR_DIR)
    env.setdefault("DJANGO_DEBUG", "true")
    env["PYTHONUNBUFFERED"] = "1"
    live = bool(env.get("ANTHROPIC_API_KEY")) and not env.get("ANTHROPIC_BASE_URL")

    if DEMO_VAR_DIR.exists() and any(DEMO_VAR_DIR.iterdir()) and not (DEMO_VAR_DIR / "logs").is_dir():
        print(f"demo: {DEMO_VAR_DIR} holds files but no earlier demo's logs/; refusing to delete it")
        return 2
    if DEMO_VAR_DIR.exists():
        print(f"demo: resetting the demo state from an earlier run ({_shown(DEMO_VAR_DIR)})")
        shutil.rmtree(DEMO_VAR_DIR)
    DEMO_VAR_DIR.mkdir(parents=True)

    from config.processes import process_argv
    from config.stack import Stack, free_port

    python = sys.executable
    print("demo: migrating the embedded database")
    subprocess.run([python, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=BASE_DIR, env=env, check=True)

    stack = Stack(env=env, log_dir=DEMO_VAR_DIR / "logs")
    interrupted = {"flag": False}

    def on_signal(signum, _frame):
        interrupted["flag"] = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        if live:
            print("demo: ANTHROPIC_API_KEY is set and ANTHROPIC_BASE_URL is not: using the live Managed Agents API")
        else:
            emulator_port = free_port(8765)
            env["ANTHROPIC_BASE_URL"] = f"http://127.0.0.1:{emulator_port}"
            stack.start(
                "emulator",
                process_argv("emulator", port=emulator_port)
                + ["--latency", env.get("PROMPTCTL_DEMO_LATENCY", "0.2-0.6")],
            )
            stack.wait_http("emulator", f"{env['ANTHROPIC_BASE_URL']}/_emulator/stats", seconds=30)
            print(f"demo: Managed Agents emulator at {env['ANTHROPIC_BASE_URL']}")
        worker = stack.start("worker", process_argv("worker"))
        web_port = free_port(8000)
        stack.start("web", process_argv("web", port=web_port))
        web_url = f"http://127.0.0.1:{web_port}"
        stack.wait_http("web", f"{web_url}/healthz", seconds=60)
        print(f"demo: web server at {web_url}, Celery worker started (pid {worker.pid}, embedded filesystem broker)")
        print()
        story = _play(stack, [python, "-m", "demo.play", "--web-url", web_url], env)
        if isinstance(story, str):
            print(f"\ndemo: stopping the story: {story}")
            return 1
        if story != 0:
            print(f"demo: the story stopped with exit code {story}; logs are in {DEMO_VAR_DIR}/logs")
            return story
        if options.serve == "1":
            print(f"\nServing the admin at {web_url}/admin/ (and the API the client calls) until Ctrl-C.")
            while (report := _child_died(stack)) is None:
                time.sleep(WATCH_SECONDS)
            print(f"demo: stopping: {report}")
            return 1
        else:
            print("\ndemo: not serving (SERVE=0): the client lines above need `make demo` serving; the operator's line")
            print("      works on var/demo as it is now")
        return 0
    except RuntimeError as failure:
        print(f"demo: {failure}")
        return 1
    except KeyboardInterrupt:
        print("\ndemo: stopping")
        return 0 if not interrupted["flag"] else 143
    finally:
        stack.stop()
        print("demo: every process it started is stopped")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
