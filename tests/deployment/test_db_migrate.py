"""Compose's one-shot ``migrate`` service: migrate as the owner, grant the runtime role, and the app runs as it.

Runs ``python manage.py promptctl db migrate`` exactly as docker-compose.yml
does, on a PostgreSQL database of its own, with ``DATABASE_URL`` naming a
role that does not exist yet (it is created by the command) and
``DATABASE_OWNER_URL`` the owner; then the app's own commands log in as the
runtime role, and that role is refused what the record forbids.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import psycopg
import pytest

from tests.deployment.support import MIGRATE_COMMAND

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _manage(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    argv = [sys.executable if part == "python" else part for part in argv]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_the_migrate_service_grants_the_runtime_role_and_the_app_runs_as_it(tmp_path, settings):
    owner = settings.DATABASES["default"]
    host, port = owner["HOST"] or "127.0.0.1", owner["PORT"] or "5432"
    name, role, password = f"dbmigrate_{uuid.uuid4().hex[:8]}", f"app_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin = psycopg.connect(host=host, port=port, user=owner["USER"] or "postgres", dbname="postgres", autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        env = {
            **os.environ,
            "DJANGO_DEBUG": "true",
            "PROMPTCTL_VAR_DIR": str(tmp_path),
            "DATABASE_URL": f"postgres://{role}:{password}@{host}:{port}/{name}",
            "DATABASE_OWNER_URL": f"postgres://{owner['USER'] or 'postgres'}@{host}:{port}/{name}",
            "APP_PASSWORD": password,
        }
        argv = MIGRATE_COMMAND[:-2] + ["--password-env", "APP_PASSWORD"]
        argv[argv.index("promptctl_app")] = role
        migrated = _manage(argv, env)
        assert migrated.returncode == 0, migrated.stderr[-2000:]
        assert f"role {role}" in migrated.stdout

        app_env = {key: value for key, value in env.items() if key != "DATABASE_OWNER_URL"}
        created = _manage(["python", "manage.py", "promptctl", "user", "add", "root", "--role", "admin"], app_env)
        assert created.returncode == 0, created.stderr[-2000:]
        verified = _manage(["python", "manage.py", "promptctl", "audit", "verify"], app_env)
        assert verified.returncode == 0 and "Audit chain verified: 2 events" in verified.stdout

        login = psycopg.connect(host=host, port=port, user=role, password=password, dbname=name, autocommit=True)
        try:
            assert login.execute("SELECT current_user").fetchone()[0] == role
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                login.execute("TRUNCATE promptctl_auditevent")
        finally:
            login.close()
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        admin.close()
