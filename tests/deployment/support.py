"""Helpers for the deployment tests (no tests or fixtures here). The production shape: settings, docker-compose.yml, Dockerfile, .env.example and docs/OPERATIONS.md.

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

import os
import re
import secrets
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
OPERATIONS = ROOT / "docs" / "OPERATIONS.md"
CODE_DIRS = ("config", "managed_agents", "promptctl", "evals", "triage", "bench", "demo", "redteam")
APP_IMAGE = "promptctl:latest"
SECRETS = {
    "DJANGO_SECRET_KEY",
    "POSTGRES_PASSWORD",
    "POSTGRES_APP_PASSWORD",
    "ANTHROPIC_API_KEY",
    "PROMPTCTL_AUDIT_KEY",
}
# As the owner, then the runtime role's grants (docker-compose.yml, docs/OPERATIONS.md "Database roles").
MIGRATE_COMMAND = [
    "python",
    "manage.py",
    "promptctl",
    "db",
    "migrate",
    "--runtime-role",
    "promptctl_app",
    "--password-env",
    "POSTGRES_APP_PASSWORD",
]


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
    """Every environment variable read in the project's packages (CODE_DIRS) and manage.py, with where."""
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
        row = dict(zip(header, cells, strict=False))  # a short row leaves its last columns out
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
        PROMPTCTL_AUDIT_KEY=secrets.token_urlsafe(48),
        PROMPTCTL_VAR_DIR=str(var_dir),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return {name: value for name, value in env.items() if value is not None}


def manage(*arguments: str, env: dict[str, str], cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *arguments], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
