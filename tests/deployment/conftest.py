"""Fixtures for the deployment tests: a PostgreSQL runtime role on this test database."""

from __future__ import annotations

import io
import uuid

import pytest


@pytest.fixture
def runtime_role(transactional_db):
    """A runtime role made by ``promptctl db roles`` on this test database; a unique name, dropped after.

    Transactional: the role, its grants and the rows the test makes are
    committed, so a second login as the role sees them.
    """
    from django.core.management import call_command
    from django.db import connections

    name = f"promptctl_rt_{uuid.uuid4().hex[:12]}"
    call_command("promptctl", "db", "roles", "--runtime-role", name, stdout=io.StringIO())
    yield name
    owner = connections["default"]
    with owner.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s AND pid <> pg_backend_pid()",
            [name],
        )
        cursor.execute(f'DROP OWNED BY "{name}"')  # its grants on this database
        cursor.execute(f'DROP ROLE "{name}"')


@pytest.fixture
def runtime_login(runtime_role):
    """A connection that logged in as the runtime role (autocommit: each statement stands alone)."""
    import psycopg
    from django.db import connection

    settings_dict = connection.settings_dict
    login = psycopg.connect(
        host=settings_dict["HOST"] or "127.0.0.1",
        port=settings_dict["PORT"] or 5432,
        dbname=settings_dict["NAME"],
        user=runtime_role,
        autocommit=True,
    )
    yield login
    login.close()


@pytest.fixture
def app_as_runtime_role(runtime_role):
    """Django's default connection logs in as the runtime role for the test, then as the owner again."""
    from django.db import connection

    connection.close()
    previous = connection.settings_dict["USER"]
    connection.settings_dict["USER"] = runtime_role
    yield runtime_role
    connection.close()
    connection.settings_dict["USER"] = previous
