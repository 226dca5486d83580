"""Backup and restore as docs/OPERATIONS.md says, then ``promptctl audit verify`` on the restored copy."""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
from django.conf import settings

from tests.deployment.support import OPERATIONS, manage

# manage.py runs twice in fresh interpreters against the restored copy.
pytestmark = pytest.mark.slow

# --- backup and restore --------------------------------------------------------------------


def _history() -> None:
    """Users, an agent with two versions, a staging pin moved 1 -> 2 -> back to 1: audit events all along."""
    from promptctl import services
    from tests.change_control_support import CHANNEL, V1, V2, promote

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
    pg_env = {
        **os.environ,
        "PGHOST": params.get("HOST") or "127.0.0.1",
        "PGPORT": str(params.get("PORT") or 5432),
        "PGUSER": params.get("USER") or "postgres",
    }
    if params.get("PASSWORD"):
        pg_env["PGPASSWORD"] = params["PASSWORD"]
    dump = tmp_path / "promptctl.dump"
    restored = f"promptctl_restore_{secrets.token_hex(4)}"
    subprocess.run(
        ["pg_dump", "--format=custom", "--file", str(dump), params["NAME"]], env=pg_env, check=True, timeout=120
    )
    subprocess.run(["createdb", restored], env=pg_env, check=True, timeout=60)
    subprocess.run(
        ["pg_restore", "--no-owner", "--exit-on-error", "--dbname", restored, str(dump)],
        env=pg_env,
        check=True,
        timeout=120,
    )
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
    subprocess.run(
        ["sh", "-c", command.replace("python ", shlex.quote(sys.executable) + " ", 1)], check=True, timeout=60
    )
    return f"sqlite:///{copy}"


@pytest.mark.django_db(transaction=True)
def test_backup_and_restore_keep_the_audit_chain_and_the_pins(emulator, tmp_path):
    from django.db import connection

    from promptctl.models import AuditEvent

    _history()
    events = AuditEvent.objects.count()
    postgres = connection.vendor == "postgresql"
    restored_url = _postgres_backup_and_restore(tmp_path) if postgres else _sqlite_backup(tmp_path)
    env = {
        **os.environ,
        "DATABASE_URL": restored_url,
        "ANTHROPIC_BASE_URL": emulator.base_url,
        "PROMPTCTL_VAR_DIR": str(tmp_path / "var"),
        # The audit key is not in the database: a restore needs it from where it is kept (docs/OPERATIONS.md).
        "PROMPTCTL_AUDIT_KEY_FILE": settings.PROMPTCTL_AUDIT_KEY_FILE,
    }
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
