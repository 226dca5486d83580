"""The production shape: settings, docker-compose.yml, Dockerfile, .env.example and docs/OPERATIONS.md.

Docker has no engine on these machines, so the image and the compose stack
cannot run here. What can be checked is checked for real:

- ``manage.py check --deploy`` with production settings, in a subprocess.
- docker-compose.yml against the compose-spec JSON schema shipped inside the
  ``check-jsonschema`` package (no network at test time), plus the rules the
  schema cannot say: every app service runs a process from
  ``config.processes``, health checks, dependencies, volumes, profiles,
  and every variable is one the code reads and .env.example names.
- The image's tree rebuilt from the Dockerfile's own COPY and collectstatic
  lines, then the compose commands and health checks run from it natively
  (embedded SQLite and broker instead of the postgres/redis containers).
- Backup and restore as docs/OPERATIONS.md says, then ``promptctl audit verify``
  on the restored copy.
- docs/OPERATIONS.md lists every environment variable the code reads.
"""

from __future__ import annotations

import http.client
import importlib.resources
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.parse
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from config.processes import CHECKED_PROCESS_NAMES, PROCESS_NAMES, process_argv, process_check
from config.stack import free_port

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
OPERATIONS = ROOT / "docs" / "OPERATIONS.md"
CODE_DIRS = ("promptctl", "triage", "evals", "bench")
APP_IMAGE = "promptctl:latest"
SECRETS = {"DJANGO_SECRET_KEY", "POSTGRES_PASSWORD", "ANTHROPIC_API_KEY"}
MIGRATE_COMMAND = ["python", "manage.py", "migrate", "--noinput"]


# --- reading the files ---------------------------------------------------------------------


def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def app_services() -> dict[str, dict]:
    return {name: service for name, service in compose()["services"].items() if service.get("image") == APP_IMAGE}


def process_of(service: dict) -> str | None:
    """NAME when the service runs ``python -m config.processes NAME``."""
    command = service.get("command")
    if isinstance(command, list) and command[:3] == ["python", "-m", "config.processes"] and len(command) == 4:
        return command[3]
    return None


def env_example() -> dict[str, str]:
    """Assignments in .env.example; a commented-out ``# NAME=value`` is named too (value None)."""
    names: dict[str, str | None] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        active = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        commented = re.match(r"^#\s*([A-Z][A-Z0-9_]*)=", line)
        if active:
            names[active.group(1)] = active.group(2)
        elif commented:
            names.setdefault(commented.group(1), None)
    return names


ENV_READ_PATTERNS = [
    r"\benv\.(?:str|int|float|bool|list|tuple|dict|json|url|db_url|cache_url|path)\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']",
    r"\benv\.get\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']",
    r"\bos\.environ\.(?:get|setdefault|pop)\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']",
    r"\bos\.getenv\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']",
    r"\bos\.environ\[\s*[\"']([A-Z][A-Z0-9_]*)[\"']\s*\](?!\s*=[^=])",
]


def variables_read_by_code() -> dict[str, set[str]]:
    """Every environment variable read in promptctl/, triage/, evals/, bench/ and manage.py, with where."""
    found: dict[str, set[str]] = {}
    files = [ROOT / "manage.py"] + [path for folder in CODE_DIRS for path in sorted((ROOT / folder).rglob("*.py"))]
    for path in files:
        text = path.read_text()
        for pattern in ENV_READ_PATTERNS:
            for name in re.findall(pattern, text):
                found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def operations_table() -> dict[str, dict[str, str]]:
    """The rows of the table under '## Environment variables' in docs/OPERATIONS.md, by variable."""
    text = OPERATIONS.read_text()
    section = text.split("\n## Environment variables", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip().lower() for cell in rows[0].strip("|").split("|")]
    table: dict[str, dict[str, str]] = {}
    for line in rows[2:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        row = dict(zip(header, cells))
        for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[0]):
            table[name] = row
    return table


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, arguments = current.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        current = ""
    return instructions


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, arguments in dockerfile_instructions():
        if keyword == "ENV":
            for assignment in shlex.split(arguments):
                name, _, value = assignment.partition("=")
                env[name] = value
    return env


def dockerfile_run_segment(word: str) -> str:
    """The one ``&&``-separated part of a RUN line that contains ``word``."""
    segments = [
        segment.strip()
        for keyword, arguments in dockerfile_instructions()
        if keyword == "RUN"
        for segment in arguments.split("&&")
        if word in segment
    ]
    assert len(segments) == 1, f"expected one RUN step with {word!r} in the Dockerfile, found {segments}"
    return segments[0]


# --- production settings -------------------------------------------------------------------


def production_env(var_dir: Path, **extra: str) -> dict[str, str]:
    """This process's environment without promptctl's variables, plus production settings."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "PROMPTCTL_", "CELERY_", "ANTHROPIC_")) and name != "DATABASE_URL"
    }
    env.update(
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        DJANGO_ALLOWED_HOSTS="promptctl.example",
        PROMPTCTL_VAR_DIR=str(var_dir),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return {name: value for name, value in env.items() if value is not None}


def manage(*arguments: str, env: dict[str, str], cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *arguments], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env(tmp_path))

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNINGS" not in output
    assert "System check identified no issues" in output


@pytest.mark.parametrize(
    ("secret_key", "says"),
    [(None, "DJANGO_SECRET_KEY is not set"), ("", "DJANGO_SECRET_KEY is not set"), ("short-key", "DJANGO_SECRET_KEY is too weak")],
)
def test_production_start_up_refuses_a_missing_or_weak_secret_key(tmp_path, secret_key, says):
    result = manage("check", env=production_env(tmp_path, DJANGO_SECRET_KEY=secret_key))

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert says in result.stderr
    assert "secrets.token_urlsafe" in result.stderr  # says how to make one


def test_production_start_up_refuses_missing_allowed_hosts(tmp_path):
    result = manage("check", env=production_env(tmp_path, DJANGO_ALLOWED_HOSTS=None))

    assert result.returncode != 0
    assert "ImproperlyConfigured: DJANGO_ALLOWED_HOSTS is not set" in result.stderr


def test_development_needs_no_environment_at_all(tmp_path):
    env = production_env(tmp_path, DJANGO_DEBUG=None, DJANGO_SECRET_KEY=None, DJANGO_ALLOWED_HOSTS=None)

    result = manage("check", env=env)

    assert result.returncode == 0, result.stderr


# --- docker-compose.yml --------------------------------------------------------------------


def test_compose_file_matches_the_compose_specification_schema():
    pytest.importorskip("check_jsonschema", reason="the compose-spec schema ships in check-jsonschema (dev dependency)")
    import jsonschema

    schema_file = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)

    errors = [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(compose())]

    assert schema["title"] == "Compose Specification"
    assert errors == []


def test_every_app_service_runs_a_process_from_the_shared_list():
    services = app_services()
    processes = {name: process_of(service) for name, service in services.items()}
    one_shots = [name for name, service in services.items() if service.get("command") == MIGRATE_COMMAND]

    assert one_shots == ["migrate"]
    assert services["migrate"]["restart"] == "no"
    for name, process in processes.items():
        if name in one_shots:
            continue
        assert process in PROCESS_NAMES, f"service {name} runs {services[name].get('command')}, not a promptctl process"
        assert process_argv(process)[0] == sys.executable
    assert sorted(process for process in processes.values() if process) == sorted(PROCESS_NAMES)
    # Every app service is the one image, built from this Dockerfile.
    assert all(service["build"] == "." for service in services.values())


def test_servers_and_long_running_app_processes_have_health_checks():
    services = compose()["services"]

    for name in ("postgres", "redis", "web", "worker", "emulator"):
        assert services[name]["healthcheck"]["test"], f"{name} has no health check"
    for name, service in app_services().items():
        process = process_of(service)
        if process in CHECKED_PROCESS_NAMES:
            # The same check the tests below run natively against the same processes.
            assert service["healthcheck"]["test"] == ["CMD", "python", "-m", "config.processes", "--check", process]


def test_dependencies_name_services_that_can_satisfy_them():
    services = compose()["services"]

    for name, service in services.items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on {target}, which is not a service"
            if rule["condition"] == "service_healthy":
                assert services[target].get("healthcheck"), f"{name} waits for {target} to be healthy, but it has no check"
            if rule["condition"] == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{name} waits for {target} to finish, but it restarts"
    for name in ("web", "worker", "beat"):
        assert set(services[name]["depends_on"]) == {"postgres", "redis", "migrate"}


def test_named_volumes_are_declared():
    document = compose()
    declared = set(document.get("volumes") or {})

    used = {
        volume.split(":", 1)[0]
        for service in document["services"].values()
        for volume in service.get("volumes", [])
        if not volume.startswith((".", "/"))
    }

    assert used == {"postgres-data", "redis-data"}
    assert used <= declared


def test_the_emulator_runs_only_in_the_offline_profile():
    services = compose()["services"]

    assert services["emulator"]["profiles"] == ["offline"]
    assert [name for name, service in services.items() if service.get("profiles")] == ["emulator"]


def test_every_compose_variable_is_named_in_env_example_and_read_by_someone():
    text = COMPOSE_FILE.read_text()
    interpolated = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))
    example = env_example()
    read_by_code = variables_read_by_code()

    assert interpolated == {"POSTGRES_PASSWORD"}
    assert interpolated <= set(example)
    # Each variable in .env.example is read by promptctl (or the SDK through settings), or by compose itself.
    assert set(example) - set(read_by_code) - interpolated == set()
    for name, service in app_services().items():
        assert service["env_file"] == ".env"
        assert set(service["environment"]) <= set(read_by_code), f"{name} sets variables nothing reads"


def test_env_example_leaves_only_secrets_empty():
    example = env_example()

    empty = {name for name, value in example.items() if value == ""}

    assert empty == SECRETS
    # An empty ANTHROPIC_BASE_URL is not "unset" to the SDK: it would replace the live API's address.
    assert example["ANTHROPIC_BASE_URL"] is None
    assert example["DJANGO_DEBUG"] == "false"


# --- Dockerfile ----------------------------------------------------------------------------


def test_dockerfile_default_command_is_a_process_from_the_shared_list():
    commands = [json.loads(arguments) for keyword, arguments in dockerfile_instructions() if keyword == "CMD"]

    assert len(commands) == 1
    assert commands[0][:3] == ["python", "-m", "config.processes"]
    assert commands[0][3] in PROCESS_NAMES
    assert not [keyword for keyword, _ in dockerfile_instructions() if keyword == "ENTRYPOINT"]


def test_dockerfile_installs_exactly_the_pinned_dependencies_of_pyproject(tmp_path):
    requirements_step = dockerfile_run_segment("tomllib").split(">")[0]
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")

    result = subprocess.run(
        ["sh", "-c", requirements_step.replace("python ", shlex.quote(sys.executable) + " ", 1)],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    )

    pinned = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert result.stdout.split() == pinned
    assert any(requirement.startswith("uvicorn==") for requirement in pinned)


def test_dockerfile_runs_as_an_unprivileged_user_owning_the_state_directory():
    users = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "USER"]
    chown = dockerfile_run_segment("chown")

    assert users == ["promptctl"]
    assert dockerfile_env()["PROMPTCTL_VAR_DIR"] in chown.split()


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
    result = subprocess.run([sys.executable, *tokens[1:]], cwd=app, env=env, capture_output=True, text=True, timeout=300)
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
        POSTGRES_PASSWORD=secrets.token_hex(24),
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
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
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


def wait_healthy(check: list[str], *, cwd: Path, env: dict[str, str], process: subprocess.Popen, log: Path,
                 seconds: float = 90) -> subprocess.CompletedProcess:
    deadline = time.monotonic() + seconds
    while True:
        assert process.poll() is None, f"the process exited ({process.returncode}): {log.read_text()[-2000:]}"
        result = subprocess.run(check, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
        if result.returncode == 0 or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


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

    migrated = subprocess.run(compose_argv(services["migrate"]["command"]), cwd=app, env=env,
                              capture_output=True, text=True, timeout=300)
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
    env = container_env(tmp_path, PROMPTCTL_EVAL_SWEEP_SECONDS="1", CELERY_LOG_LEVEL="INFO",
                        PROMPTCTL_EMULATOR_PORT=str(emulator_port))
    services = compose()["services"]
    assert subprocess.run(compose_argv(services["migrate"]["command"]), cwd=app, env=env, timeout=300,
                          capture_output=True).returncode == 0
    worker_check = compose_argv(services["worker"]["healthcheck"]["test"])
    emulator_check = compose_argv(services["emulator"]["healthcheck"]["test"])

    worker_log, beat_log, emulator_log = tmp_path / "worker.log", tmp_path / "beat.log", tmp_path / "emulator.log"
    with running(compose_argv(services["worker"]["command"]), cwd=app, env=env, log=worker_log) as worker, \
            running(compose_argv(services["emulator"]["command"]), cwd=app, env=env, log=emulator_log) as emulator:
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


# --- backup and restore --------------------------------------------------------------------


def _history() -> None:
    """Users, an agent with two versions, a staging pin moved 1 -> 2 -> back to 1: audit events all along."""
    from promptctl import services
    from tests.promptctl.conftest import CHANNEL, V1, V2, promote

    requester = services.user_create(username="rita", role="requester", password="correct-horse-battery")
    reviewer = services.user_create(username="victor", role="reviewer", password="correct-horse-battery")
    agent = services.agent_create(name="ticket-triage", model="claude-sonnet-4-6", system_prompt=V1, actor=requester)
    services.version_create(agent=agent, system_prompt=V2, actor=requester)
    promote(agent, 1, requester, reviewer, channel=CHANNEL)
    promote(agent, 2, requester, reviewer, channel=CHANNEL)
    promote(agent, 1, requester, reviewer, kind="rollback", channel=CHANNEL)


def _postgres_backup_and_restore(tmp_path: Path) -> str:
    """pg_dump -Fc, then pg_restore into a new empty database, as docs/OPERATIONS.md says; its URL."""
    from django.db import connection

    params = connection.settings_dict
    pg_env = {**os.environ, "PGHOST": params.get("HOST") or "127.0.0.1", "PGPORT": str(params.get("PORT") or 5432),
              "PGUSER": params.get("USER") or "postgres"}
    if params.get("PASSWORD"):
        pg_env["PGPASSWORD"] = params["PASSWORD"]
    dump = tmp_path / "promptctl.dump"
    restored = f"promptctl_restore_{secrets.token_hex(4)}"
    subprocess.run(["pg_dump", "--format=custom", "--file", str(dump), params["NAME"]], env=pg_env, check=True, timeout=120)
    subprocess.run(["createdb", restored], env=pg_env, check=True, timeout=60)
    subprocess.run(["pg_restore", "--no-owner", "--exit-on-error", "--dbname", restored, str(dump)],
                   env=pg_env, check=True, timeout=120)
    password = f":{urllib.parse.quote(params['PASSWORD'])}" if params.get("PASSWORD") else ""
    return f"postgres://{pg_env['PGUSER']}{password}@{pg_env['PGHOST']}:{pg_env['PGPORT']}/{restored}"


def _postgres_drop(url: str) -> None:
    parsed = urllib.parse.urlparse(url)
    env = {**os.environ, "PGHOST": parsed.hostname, "PGPORT": str(parsed.port), "PGUSER": parsed.username or "postgres"}
    if parsed.password:
        env["PGPASSWORD"] = urllib.parse.unquote(parsed.password)
    subprocess.run(["dropdb", "--if-exists", parsed.path.lstrip("/")], env=env, check=True, timeout=60)


def _sqlite_backup(tmp_path: Path) -> str:
    """The online backup of the embedded database, with the command docs/OPERATIONS.md gives; its URL."""
    from django.db import connection

    copy = tmp_path / "promptctl-backup.sqlite3"
    section = OPERATIONS.read_text().split("### SQLite", 1)[1]
    command = re.search(r"```\n(python -c .+?)\n```", section, re.S).group(1)
    command = command.replace("var/promptctl.sqlite3", str(connection.settings_dict["NAME"]))
    command = command.replace("promptctl-backup.sqlite3", str(copy))
    subprocess.run(["sh", "-c", command.replace("python ", shlex.quote(sys.executable) + " ", 1)], check=True, timeout=60)
    return f"sqlite:///{copy}"


@pytest.mark.django_db(transaction=True)
def test_backup_and_restore_keep_the_audit_chain_and_the_pins(emulator, tmp_path):
    from django.db import connection

    from promptctl.models import AuditEvent

    _history()
    events = AuditEvent.objects.count()
    postgres = connection.vendor == "postgresql"
    restored_url = _postgres_backup_and_restore(tmp_path) if postgres else _sqlite_backup(tmp_path)
    env = {**os.environ, "DATABASE_URL": restored_url, "ANTHROPIC_BASE_URL": emulator.base_url,
           "PROMPTCTL_VAR_DIR": str(tmp_path / "var")}
    try:
        verified = manage("promptctl", "--json", "audit", "verify", env=env)
        status = manage("promptctl", "--json", "agent", "status", "--agent", "ticket-triage", env=env)
    finally:
        if postgres:
            _postgres_drop(restored_url)

    assert verified.returncode == 0, verified.stderr
    verification = json.loads(verified.stdout)
    assert verification["ok"] is True
    assert verification["checked"] == events > 5
    assert status.returncode == 0, status.stderr
    pins = json.loads(status.stdout)["pins"]
    assert pins["staging"]["version"] == 1
    assert pins["staging"]["revision"] == 3


# --- docs/OPERATIONS.md --------------------------------------------------------------------


def test_operations_lists_every_environment_variable_the_code_reads():
    table = operations_table()
    read = variables_read_by_code()

    missing = {name: sorted(where) for name, where in read.items() if name not in table}

    assert missing == {}, f"docs/OPERATIONS.md's table does not list {missing}"


def test_operations_lists_only_variables_something_reads():
    table = operations_table()
    read = set(variables_read_by_code())
    compose_variables = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    test_variables = set(re.findall(r"os\.environ\.get\(\s*\"([A-Z][A-Z0-9_]*)\"", (ROOT / "tests" / "conftest.py").read_text()))

    unread = set(table) - read - compose_variables - test_variables - {"ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"}

    assert unread == set()
    assert all(row["default"] for row in table.values()), "every row needs a default (or 'none')"


def test_operations_lists_every_env_example_variable_and_no_default_for_the_secret_key():
    table = operations_table()

    assert set(env_example()) <= set(table)
    assert "DJANGO_SECRET_KEY" in table and "none" in table["DJANGO_SECRET_KEY"]["default"].lower()
