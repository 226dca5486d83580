"""What every play uses: the attacker's context (raw SQL as the owner), and how an outcome is judged."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import connection

NOT_CAUGHT = "NOT CAUGHT"


@dataclass
class Context:
    backend: str
    var_dir: Path

    def user(self, username: str) -> Any:
        from django.contrib.auth import get_user_model

        return get_user_model().objects.get(username=username)

    def agent(self) -> Any:
        from demo.story import AGENT_NAME
        from promptctl.models import Agent

        return Agent.objects.get(name=AGENT_NAME)

    def owner_sql(self, statements: list[str | tuple[str, list]]) -> None:
        """Run SQL (``%s`` parameters) as whoever owns the data: the SQLite file's holder, or PostgreSQL's owner.

        The file's holder drops every trigger first; PostgreSQL's owner switches them off for the session.
        """
        statements = [(each, []) if isinstance(each, str) else each for each in statements]
        connection.close()
        if self.backend == "sqlite":
            raw = sqlite3.connect(str(connection.settings_dict["NAME"]), isolation_level=None)
            try:
                raw.execute("BEGIN")
                for (trigger,) in raw.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
                    raw.execute(f'DROP TRIGGER "{trigger}"')
                for statement, params in statements:
                    raw.execute(statement.replace("%s", "?"), params)
                raw.execute("COMMIT")
            finally:
                raw.close()
        else:
            with connection.cursor() as cursor:
                cursor.execute("SET session_replication_role = replica")  # the owner switches the triggers off
                for statement, params in statements:
                    cursor.execute(statement, params)
                cursor.execute("SET session_replication_role = DEFAULT")

    def rows(self, sql: str, params: list | None = None) -> list[tuple]:
        with connection.cursor() as cursor:
            cursor.execute(sql, params or [])
            return list(cursor.fetchall())


def runtime_role_tries(statements: list[str]) -> tuple[str, str]:
    """Log in as the runtime role ``db roles`` grants (PostgreSQL) and run each statement: all must be refused."""
    import psycopg

    from promptctl.services.database_roles import login_as, runtime_role_apply

    role = "promptctl_redteam_app"
    runtime_role_apply(role=role)
    login = login_as(role)
    refusals = []
    try:
        for statement in statements:
            try:
                login.execute(statement)
            except psycopg.Error as error:
                refusals.append(f"{statement.split()[0]}: {str(error).splitlines()[0]}")
            else:
                return NOT_CAUGHT, f"the runtime role ran: {statement}"
    finally:
        login.close()
    return "refused", "; ".join(refusals)


def verify_outcome() -> tuple[str, str]:
    """``audit verify`` after an attack on the record: detected (with its words) or not."""
    from promptctl.audit import audit_verify

    result = audit_verify()
    if result.ok:
        return NOT_CAUGHT, f"audit verify passed: {result.message}"
    return "detected", f"audit verify: {result.message}"


def refused(call: Callable[[], Any]) -> tuple[str, str]:
    """Run a door's call; a DomainError (or a database refusal) is the outcome we want."""
    from django.db import DatabaseError, transaction

    from promptctl.errors import DomainError

    try:
        with transaction.atomic():
            result = call()
    except DomainError as error:
        return "refused", f"promptctl: {error}"
    except DatabaseError as error:
        return "refused", f"the database: {str(error).strip().splitlines()[0]}"
    return NOT_CAUGHT, f"it went through: {result!r}"[:300]


def cli_refused(*args: str) -> tuple[str, str]:
    """Run ``promptctl ARGS`` in-process, as a person at a shell would; exit code 1 with one line is a refusal."""
    import io

    from django.core.management import call_command

    errors = io.StringIO()
    try:
        call_command("promptctl", *args, stdout=io.StringIO(), stderr=errors)
    except SystemExit as exit_:
        lines = errors.getvalue().strip().splitlines()
        if exit_.code == 1 and len(lines) == 1:
            return "refused", f"promptctl: {lines[0].removeprefix('error: ')}"
        return NOT_CAUGHT, f"exit {exit_.code} with {len(lines)} lines: {errors.getvalue()[:200]}"
    return NOT_CAUGHT, "the command succeeded"


@dataclass(frozen=True)
class Attack:
    name: str
    play: Callable[[Context], tuple[str, str]]
    backends: tuple[str, ...] = field(default=("sqlite", "postgres"))
