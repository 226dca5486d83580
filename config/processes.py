"""The long-running processes of a promptctl deployment, defined once.

``python -m config.processes NAME`` replaces itself with process NAME.
``python -m config.processes --check NAME`` exits 0 when process NAME on
this host answers, else 1 with the reason (the docker-compose health checks).
The docker-compose services, the Dockerfile, ``make demo`` and CI all start
processes through this list, so the commands cannot drift apart.
"""

from __future__ import annotations

import http.client
import os
import socket
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

PROCESS_NAMES = ("web", "worker", "beat", "emulator")
CHECKED_PROCESS_NAMES = ("web", "worker", "emulator")


def _unknown(name: str) -> SystemExit:
    return SystemExit(f"unknown process {name!r}: choose {', '.join(PROCESS_NAMES[:-1])} or {PROCESS_NAMES[-1]}")


def _bind_host(host: str | None) -> str:
    return host or os.environ.get("PROMPTCTL_BIND_HOST", "127.0.0.1")


def _web_port(port: int | None) -> int:
    return port or int(os.environ.get("PROMPTCTL_WEB_PORT", "8000"))


def _emulator_port(port: int | None) -> int:
    return port or int(os.environ.get("PROMPTCTL_EMULATOR_PORT", "8765"))


def process_argv(name: str, *, host: str | None = None, port: int | None = None) -> list[str]:
    """The command line of one process; host and port default from the environment."""
    python = sys.executable
    if name == "web":
        # uvicorn supervises its worker processes (restarting dead ones) when --workers > 1.
        workers = os.environ.get("WEB_CONCURRENCY", "1")
        return [
            python,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--host",
            _bind_host(host),
            "--port",
            str(_web_port(port)),
            "--workers",
            workers,
            "--no-access-log",
            "--http",
            "config.serving:NoDelayHttpToolsProtocol",
        ]
    if name == "worker":
        return [
            python,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--loglevel",
            os.environ.get("CELERY_LOG_LEVEL", "WARNING"),
        ]
    if name == "beat":
        # The schedule file lives where settings keep all local state (writable by the image's user).
        var_dir = os.environ.get("PROMPTCTL_VAR_DIR") or str(BASE_DIR / "var")
        return [
            python,
            "-m",
            "celery",
            "-A",
            "config",
            "beat",
            "--loglevel",
            os.environ.get("CELERY_LOG_LEVEL", "WARNING"),
            "--schedule",
            os.path.join(var_dir, "celerybeat-schedule"),
        ]
    if name == "emulator":
        return [
            python,
            str(BASE_DIR / "manage.py"),
            "emulator",
            "--host",
            _bind_host(host),
            "--port",
            str(_emulator_port(port)),
        ]
    raise _unknown(name)


# --- health checks --------------------------------------------------------------------


def _probe_address(host: str | None) -> str:
    """Where a local probe connects: the bound address, or loopback when bound to every interface."""
    bound = _bind_host(host)
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(bound, bound)


def _probe_host_header() -> str:
    """A Host the web process accepts: the first ``DJANGO_ALLOWED_HOSTS`` entry usable as a name."""
    for entry in os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(","):
        entry = entry.strip()
        if entry:
            # "*" allows anything; ".example.com" also allows "example.com".
            return "localhost" if entry == "*" else entry.lstrip(".")
    return "localhost"  # the development default allows it


def _http_problem(*, address: str, port: int, path: str, host_header: str, timeout: float) -> str | None:
    connection = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Host": host_header})
        response = connection.getresponse()
        body = response.read(500).decode("utf-8", "replace")
    except OSError as error:
        return f"no answer at http://{address}:{port}{path}: {error}"
    finally:
        connection.close()
    if response.status != 200:
        return f"http://{address}:{port}{path} (Host: {host_header}) answered {response.status}: {body.strip()[:200]}"
    return None


def _worker_problem(*, timeout: float) -> str | None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from config.celery import app

    node = f"celery@{socket.gethostname()}"  # the worker's default node name on this host
    try:
        replies = app.control.ping(destination=[node], timeout=timeout, limit=1)
    except Exception as error:  # noqa: BLE001 - a broker that cannot be reached is the answer
        return f"could not ask {node} through the broker: {error}"
    if not any(node in reply for reply in replies):
        return f"{node} did not answer a ping through the broker within {timeout:.0f}s"
    return None


def process_check(name: str, *, host: str | None = None, port: int | None = None, timeout: float = 5.0) -> str | None:
    """``None`` when process ``name`` on this host answers, else why not.

    web: ``GET /healthz`` (the database answers) with a Host the settings allow;
    worker: this host's Celery node answers a ping through the broker;
    emulator: ``GET /_emulator/stats``. beat has no way to be asked.
    """
    if name == "web":
        return _http_problem(
            address=_probe_address(host),
            port=_web_port(port),
            path="/healthz",
            host_header=_probe_host_header(),
            timeout=timeout,
        )
    if name == "worker":
        return _worker_problem(timeout=timeout)
    if name == "emulator":
        return _http_problem(
            address=_probe_address(host),
            port=_emulator_port(port),
            path="/_emulator/stats",
            host_header="localhost",
            timeout=timeout,
        )
    if name in PROCESS_NAMES:
        raise SystemExit(f"{name} has no health check: choose {', '.join(CHECKED_PROCESS_NAMES)}")
    raise _unknown(name)


def main(argv: list[str]) -> None:
    usage = f"usage: python -m config.processes [--check] {{{'|'.join(PROCESS_NAMES)}}}"
    if len(argv) == 3 and argv[1] == "--check":
        problem = process_check(argv[2])
        if problem:
            raise SystemExit(f"{argv[2]} is unhealthy: {problem}")
        print(f"{argv[2]} is healthy")
        return
    if len(argv) != 2:
        raise SystemExit(usage)
    command = process_argv(argv[1])
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv)
