"""``python -m demo [--serve=0|1]``: start the stack, play the story, serve the admin.

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
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[1]
DEMO_VAR_DIR = BASE_DIR / "var" / "demo"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo")
    parser.add_argument(
        "--serve", default="1", choices=("0", "1"), help="keep serving the admin after the story (default 1)"
    )
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
        stack.start("worker", process_argv("worker"))
        web_port = free_port(8000)
        stack.start("web", process_argv("web", port=web_port))
        web_url = f"http://127.0.0.1:{web_port}"
        stack.wait_http("web", f"{web_url}/healthz", seconds=60)
        print(f"demo: web server at {web_url}, Celery worker started (embedded filesystem broker)")
        print()
        story = subprocess.run([python, "-m", "demo.play", "--web-url", web_url], cwd=BASE_DIR, env=env)
        if story.returncode != 0:
            print(f"demo: the story stopped with exit code {story.returncode}; logs are in {DEMO_VAR_DIR}/logs")
            return story.returncode
        if options.serve == "1":
            print(f"\nServing the admin at {web_url}/admin/ (and the API the client calls) until Ctrl-C.")
            while stack.alive():
                time.sleep(0.5)
            print("demo: a process exited; stopping")
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
