"""The image's tree rebuilt from the Dockerfile's own steps, then the compose commands and health checks run from it natively."""

from __future__ import annotations

import http.client
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from config.processes import process_check
from config.stack import free_port
from tests.deployment.support import (
    ROOT,
    compose,
    dockerfile_env,
    dockerfile_instructions,
    dockerfile_run_segment,
    env_example,
)

# --- the image's tree, run natively --------------------------------------------------------


def _in_tree(root: Path, value: str) -> str:
    """A container path moved under ``root`` (``/app`` -> ``root/app``); other values unchanged."""
    return str(root / value.lstrip("/")) if value.startswith("/") else value


def image_tree(root: Path) -> Path:
    """The image's /app, made the way the Dockerfile makes it: its COPY steps, then its collectstatic step."""
    workdir = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "WORKDIR"][-1]
    app = Path(_in_tree(root, workdir))
    app.mkdir(parents=True)
    ignored = shutil.ignore_patterns("__pycache__", "*.pyc")
    for keyword, arguments in dockerfile_instructions():
        if keyword != "COPY":
            continue
        *sources, destination = shlex.split(arguments)
        target = app / destination
        for source in sources:
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, target, ignore=ignored)
            else:
                shutil.copy(ROOT / source, target / Path(source).name if destination.endswith("/") else target)
    tokens = shlex.split(dockerfile_run_segment("collectstatic"))
    assignments = {}
    while "=" in tokens[0]:
        name, _, value = tokens.pop(0).partition("=")
        assignments[name] = _in_tree(root, value)
    assert tokens[:2] == ["python", "manage.py"]
    env = {**container_env(root), **assignments}
    result = subprocess.run(
        [sys.executable, *tokens[1:]], cwd=app, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return app


def container_env(root: Path, **extra: str) -> dict[str, str]:
    """What a container sees: the Dockerfile's ENV and .env.example with its secrets filled in.

    The compose ``environment`` (PostgreSQL and Redis containers) is left out:
    the embedded database and broker under the image's state directory stand in.
    The bind host is loopback: a test serves nothing beyond this machine.
    """
    env = {name: value for name, value in os.environ.items() if name in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    env.update({name: _in_tree(root, value) for name, value in dockerfile_env().items()})
    env.update({name: value for name, value in env_example().items() if value})
    env.update(
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        PROMPTCTL_AUDIT_KEY=secrets.token_urlsafe(48),
        POSTGRES_PASSWORD=secrets.token_hex(24),
        POSTGRES_APP_PASSWORD=secrets.token_hex(24),
        PROMPTCTL_BIND_HOST="127.0.0.1",
        ANTHROPIC_API_KEY="",
    )
    env.update(extra)
    Path(env["PROMPTCTL_VAR_DIR"]).mkdir(parents=True, exist_ok=True)
    return env


def compose_argv(argv: list[str]) -> list[str]:
    """A compose command or health check as this machine runs it (``python`` is this interpreter)."""
    if argv[0] == "CMD":
        argv = argv[1:]
    return [sys.executable if part == "python" else part for part in argv]


@contextmanager
def running(argv: list[str], *, cwd: Path, env: dict[str, str], log: Path):
    with open(log, "wb") as output:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_healthy(
    check: list[str], *, cwd: Path, env: dict[str, str], process: subprocess.Popen, log: Path, seconds: float = 90
) -> subprocess.CompletedProcess:
    deadline = time.monotonic() + seconds
    while True:
        assert process.poll() is None, f"the process exited ({process.returncode}): {log.read_text()[-2000:]}"
        result = subprocess.run(check, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
        if result.returncode == 0 or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def wait_for_log(pattern: str, *, process: subprocess.Popen, log: Path, seconds: float = 90) -> None:
    """Wait until the process's log matches ``pattern``: cheaper than polling a check that starts Django each time."""
    deadline = time.monotonic() + seconds
    while not re.search(pattern, log.read_text(errors="replace")) and time.monotonic() < deadline:
        assert process.poll() is None, f"the process exited ({process.returncode}): {log.read_text()[-2000:]}"
        time.sleep(0.2)


def get(port: int, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, {name.lower(): value for name, value in response.getheaders()}, response.read()
    finally:
        connection.close()


@pytest.mark.slow
def test_web_from_the_image_tree_serves_production_settings_and_passes_its_health_check(tmp_path):
    app = image_tree(tmp_path)
    port = free_port()
    env = container_env(tmp_path, PROMPTCTL_WEB_PORT=str(port))
    services = compose()["services"]
    check = compose_argv(services["web"]["healthcheck"]["test"])
    host = env["DJANGO_ALLOWED_HOSTS"].split(",")[0]

    migrated = subprocess.run(
        compose_argv(services["migrate"]["command"]), cwd=app, env=env, capture_output=True, text=True, timeout=300
    )
    assert migrated.returncode == 0, migrated.stderr
    before = subprocess.run(check, cwd=app, env=env, capture_output=True, text=True, timeout=60)
    assert before.returncode == 1
    assert "web is unhealthy: no answer at http://127.0.0.1" in before.stderr

    log = tmp_path / "web.log"
    with running(compose_argv(services["web"]["command"]), cwd=app, env=env, log=log) as web:
        healthy = wait_healthy(check, cwd=app, env=env, process=web, log=log)
        assert healthy.returncode == 0, healthy.stderr + log.read_text()[-2000:]
        assert healthy.stdout.strip() == "web is healthy"

        # Production settings are in force: plain HTTP is sent to HTTPS ...
        status, headers, _ = get(port, "/admin/login/", Host=host)
        assert status == 301
        assert headers["location"] == f"https://{host}/admin/login/"
        # ... and behind the TLS proxy the admin answers with HSTS and secure cookies,
        status, headers, page = get(port, "/admin/login/", Host=host, **{"X-Forwarded-Proto": "https"})
        assert status == 200
        assert headers["strict-transport-security"].startswith("max-age=31536000")
        assert "secure" in headers["set-cookie"].lower()
        # its stylesheet by the hashed name collectstatic wrote at build time, served by WhiteNoise.
        stylesheet = re.search(rb'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', page)
        assert stylesheet, page[:2000]
        status, headers, css = get(port, stylesheet.group(1).decode(), Host=host, **{"X-Forwarded-Proto": "https"})
        assert status == 200
        assert "max-age=315360000" in headers["cache-control"]
        assert b"body" in css
        # A Host outside DJANGO_ALLOWED_HOSTS is refused.
        status, _, _ = get(port, "/healthz", Host="attacker.example")
        assert status == 400


@pytest.mark.slow
def test_worker_beat_and_emulator_from_the_image_tree_pass_their_health_checks(tmp_path):
    app = image_tree(tmp_path)
    emulator_port = free_port()
    # Beat's sweep every second, and the worker logging at INFO, so the scheduled task is seen arriving.
    env = container_env(
        tmp_path, PROMPTCTL_EVAL_SWEEP_SECONDS="1", CELERY_LOG_LEVEL="INFO", PROMPTCTL_EMULATOR_PORT=str(emulator_port)
    )
    services = compose()["services"]
    assert (
        subprocess.run(
            compose_argv(services["migrate"]["command"]), cwd=app, env=env, timeout=300, capture_output=True
        ).returncode
        == 0
    )
    worker_check = compose_argv(services["worker"]["healthcheck"]["test"])
    emulator_check = compose_argv(services["emulator"]["healthcheck"]["test"])

    worker_log, beat_log, emulator_log = tmp_path / "worker.log", tmp_path / "beat.log", tmp_path / "emulator.log"
    with (
        running(compose_argv(services["worker"]["command"]), cwd=app, env=env, log=worker_log) as worker,
        running(compose_argv(services["emulator"]["command"]), cwd=app, env=env, log=emulator_log) as emulator,
    ):
        # The worker logs "ready" at INFO; the health check (a ping through the broker) must then pass.
        wait_for_log(r"@\S+ ready\.", process=worker, log=worker_log)
        healthy = wait_healthy(worker_check, cwd=app, env=env, process=worker, log=worker_log)
        assert healthy.returncode == 0, healthy.stderr + worker_log.read_text()[-2000:]
        assert healthy.stdout.strip() == "worker is healthy"
        healthy = wait_healthy(emulator_check, cwd=app, env=env, process=emulator, log=emulator_log)
        assert healthy.returncode == 0, healthy.stderr + emulator_log.read_text()[-2000:]

        with running(compose_argv(services["beat"]["command"]), cwd=app, env=env, log=beat_log) as beat:
            received = re.compile(r"Task evals\.sweep_runs\[[0-9a-f-]+\] received")
            deadline = time.monotonic() + 60
            while not received.search(worker_log.read_text()) and time.monotonic() < deadline:
                assert beat.poll() is None, beat_log.read_text()
                time.sleep(0.5)
            assert received.search(worker_log.read_text()), beat_log.read_text() + worker_log.read_text()[-2000:]
            # Beat keeps its schedule in the image's state directory, which its user may write.
            schedule = list(Path(env["PROMPTCTL_VAR_DIR"]).glob("celerybeat-schedule*"))
            assert schedule, beat_log.read_text()

    stopped = subprocess.run(worker_check, cwd=app, env=env, capture_output=True, text=True, timeout=60)
    assert stopped.returncode == 1
    assert "did not answer a ping" in stopped.stderr


def test_health_check_of_a_process_bound_to_every_interface_asks_loopback(monkeypatch):
    port = free_port()
    monkeypatch.setenv("DJANGO_ALLOWED_HOSTS", ".promptctl.example,localhost")

    problem = process_check("web", host="0.0.0.0", port=port, timeout=2)

    assert problem.startswith(f"no answer at http://127.0.0.1:{port}/healthz")
    with pytest.raises(SystemExit, match="beat has no health check"):
        process_check("beat")
    with pytest.raises(SystemExit, match="unknown process 'scheduler'"):
        process_check("scheduler")
