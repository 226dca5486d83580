"""The runtime database role: the app's PostgreSQL login can add to the record but not rewrite it.

Rules, and why:

- Two logins. The tables' owner runs the migrations (``DATABASE_OWNER_URL``,
  the ``owner`` alias); the web process, workers, beat and the CLI connect as a
  runtime role (``DATABASE_URL``) that owns nothing. Only an owner or a
  superuser may drop or disable a trigger, alter a table or TRUNCATE it without
  the privilege, so the runtime role cannot switch the database guards off.
- The record's tables (agent versions, approvals, audit events, every
  ``ImmutableRecord`` of the apps above, and django-simple-history's history
  tables) are granted SELECT and INSERT only: the runtime role cannot UPDATE,
  DELETE or TRUNCATE them, whatever the triggers say.
- Change requests and pins are granted SELECT, INSERT and UPDATE: the triggers
  decide which updates are allowed (a closed request never changes, a pin moves
  only by an approved request); neither can be deleted. The audit chain head
  gets the same (the appender creates and advances its one row).
- ``django_migrations`` is read-only; every other table gets SELECT, INSERT,
  UPDATE and DELETE. TRUNCATE, REFERENCES and TRIGGER are granted on nothing;
  sequences get USAGE and SELECT.
- Grants are per table, so columns a migration adds are covered. Tables a
  migration adds are not: the command revokes and grants again in one
  transaction, and is meant to be run after every ``migrate``.
- A role that is a superuser, can bypass row security, is the owner (or a
  member of it), or owns a table of the schema is refused: privileges would
  not hold it back.

Granting is the owner's act, done with the owner's login; there is no acting
user of promptctl to check or to record, so it writes no audit event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from django.apps import apps
from django.db import DatabaseError, connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from simple_history.models import HistoricalChanges

from promptctl.errors import DomainError
from promptctl.records import ImmutableRecord

READ = ("SELECT",)
APPEND = ("SELECT", "INSERT")
NO_DELETE = ("SELECT", "INSERT", "UPDATE")
FULL = ("SELECT", "INSERT", "UPDATE", "DELETE")
ALL_TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")

# promptctl's record models that are not ``ImmutableRecord`` subclasses (their own save/delete refuse).
RECORD_MODELS = {"promptctl.agentversion", "promptctl.approval", "promptctl.auditevent"}
NO_DELETE_MODELS = {"promptctl.changerequest", "promptctl.pin", "promptctl.auditchainhead", "promptctl.auditsegment"}
READ_ONLY_TABLES = {"django_migrations"}

ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class TableGrant:
    table: str
    privileges: tuple[str, ...]
    why: str


@dataclass
class RuntimeRoleReport:
    role: str
    database: str
    created: bool
    password_set: bool
    grants: list[TableGrant] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "role": self.role,
            "database": self.database,
            "created": self.created,
            "password_set": self.password_set,
            "grants": {grant.table: list(grant.privileges) for grant in self.grants},
            "problems": self.problems,
        }


def _model_grant(model: type[models.Model]) -> TableGrant:
    label = model._meta.label_lower
    table = model._meta.db_table
    if issubclass(model, HistoricalChanges):
        return TableGrant(table, APPEND, "history is appended, never rewritten")
    if issubclass(model, ImmutableRecord) or label in RECORD_MODELS:
        return TableGrant(table, APPEND, "part of the record: written once")
    if label in NO_DELETE_MODELS:
        return TableGrant(table, NO_DELETE, "updated only as the triggers allow; never deleted")
    return TableGrant(table, FULL, "mutable")


def runtime_grants() -> list[TableGrant]:
    """What the runtime role may do to each table of the installed models (and ``django_migrations``)."""
    grants = {grant.table: grant for grant in [TableGrant(t, READ, "read-only") for t in READ_ONLY_TABLES]}
    for model in apps.get_models(include_auto_created=True):
        if model._meta.proxy or not model._meta.managed:
            continue
        grants.setdefault(model._meta.db_table, _model_grant(model))
    return sorted(grants.values(), key=lambda grant: grant.table)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _role_checked(role: str) -> str:
    if not ROLE_NAME.match(role):
        raise DomainError(
            f"Runtime role name {role!r} is not a plain lower-case identifier: use letters, digits and _, e.g. promptctl_app."
        )
    return role


def runtime_role_sql(*, role: str, database: str, schema: str = "public") -> str:
    """The script a DBA runs as the tables' owner (``psql -v ON_ERROR_STOP=1 -1 -f``), after every migrate."""
    role = _role_checked(role)
    name = _quote(role)
    literal = "'" + role + "'"
    lines = [
        f"-- promptctl runtime role {role} on database {database}: run as the owner of the tables, after every migrate.",
        "DO $$ BEGIN",
        f"  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {literal}) THEN",
        f"    CREATE ROLE {name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;",
        "  END IF;",
        f"  IF (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = {literal})",
        f"     OR pg_has_role({literal}, current_user, 'MEMBER')",
        f"     OR EXISTS (SELECT FROM pg_tables WHERE schemaname = '{schema}' AND tableowner = {literal}) THEN",
        f"    RAISE EXCEPTION 'role {role} is a superuser, the owner, a member of it or owns tables: privileges cannot hold it back';",
        "  END IF;",
        "END $$;",
        *_grant_statements(name=name, database=database, schema=schema, grants=runtime_grants()),
        f"-- Set its password from psql without writing it down: \\password {role}",
    ]
    return "\n".join(lines) + "\n"


def _grant_statements(*, name: str, database: str, schema: str, grants: list[TableGrant]) -> list[str]:
    schema_name = _quote(schema)
    statements = [
        f"GRANT CONNECT, TEMPORARY ON DATABASE {_quote(database)} TO {name};",
        f"GRANT USAGE ON SCHEMA {schema_name} TO {name};",
        f"REVOKE CREATE ON SCHEMA {schema_name} FROM {name};",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema_name} FROM {name};",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema_name} FROM {name};",
    ]
    for grant in grants:
        statements.append(
            f"GRANT {', '.join(grant.privileges)} ON TABLE {schema_name}.{_quote(grant.table)} TO {name};"
        )
    statements.append(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema_name} TO {name};")
    return statements


def _owner_connection(using: str) -> BaseDatabaseWrapper:
    connection = connections[using]
    if connection.vendor != "postgresql":
        raise DomainError(
            "Database roles are for PostgreSQL: SQLite has no logins (whoever can open the file can change it), "
            "so set DATABASE_URL to PostgreSQL, or print the script with --sql."
        )
    return connection


def _role_refusal(cursor, *, role: str, schema: str) -> str | None:
    cursor.execute("SELECT current_user")
    owner = cursor.fetchone()[0]
    if role == owner:
        return f"{role} is the login running this command: run it as the tables' owner (DATABASE_OWNER_URL) and name a separate role for the app."
    cursor.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s", [role])
    row = cursor.fetchone()
    if row is None:
        return None
    if row[0] or row[1]:
        return (
            f"Role {role} is a superuser or bypasses row security: privileges cannot hold it back. Name another role."
        )
    cursor.execute("SELECT pg_has_role(%s, current_user, 'MEMBER')", [role])
    if cursor.fetchone()[0]:
        return f"Role {role} is a member of the owner {owner} and would share its powers: name another role."
    cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s AND tableowner = %s", [schema, role])
    owned = [name for (name,) in cursor.fetchall()]
    if owned:
        return f"Role {role} owns {', '.join(sorted(owned))}: an owner can drop the guards. Run migrations as the owner and name another role."
    return None


def runtime_role_apply(*, role: str, password: str | None = None, using: str = "default") -> RuntimeRoleReport:
    """Create ``role`` if missing and grant it exactly what ``runtime_grants`` says, in one transaction.

    Run as the tables' owner. Idempotent: every earlier table and sequence
    privilege of the role in this schema is revoked first, so a table that
    became part of the record loses UPDATE and DELETE on the next run.
    """
    role = _role_checked(role)
    connection = _owner_connection(using)
    name = _quote(role)
    try:
        with transaction.atomic(using=using), connection.cursor() as cursor:
            cursor.execute("SELECT current_database(), current_schema()")
            database, schema = cursor.fetchone()
            refusal = _role_refusal(cursor, role=role, schema=schema)
            if refusal:
                raise DomainError(refusal)
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
            created = cursor.fetchone() is None
            if created:
                cursor.execute(
                    f"CREATE ROLE {name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
                )
            if password:
                # A SCRAM verifier made here: the password itself never reaches the server or its logs.
                verifier = connection.connection.pgconn.encrypt_password(
                    password.encode(), role.encode(), b"scram-sha-256"
                )
                cursor.execute(f"ALTER ROLE {name} PASSWORD '{verifier.decode()}'")
            existing = set(connection.introspection.table_names(cursor))
            grants = [grant for grant in runtime_grants() if grant.table in existing]
            for statement in _grant_statements(name=name, database=database, schema=schema, grants=grants):
                cursor.execute(statement)
    except DatabaseError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DomainError(
            f"Granting {role} failed ({first_line}): run this as the tables' owner with CREATEROLE "
            "(DATABASE_OWNER_URL), or have a DBA run the script from --sql."
        ) from error
    report = RuntimeRoleReport(
        role=role, database=database, created=created, password_set=bool(password), grants=grants
    )
    report.problems = runtime_role_check(role=role, using=using).problems
    return report


def runtime_role_check(*, role: str, using: str = "default") -> RuntimeRoleReport:
    """Compare the role's table privileges with ``runtime_grants``; ``problems`` names every difference."""
    role = _role_checked(role)
    connection = _owner_connection(using)
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database(), current_schema()")
        database, schema = cursor.fetchone()
        report = RuntimeRoleReport(role=role, database=database, created=False, password_set=False)
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
        if cursor.fetchone() is None:
            report.problems.append(f"role {role} does not exist: run `promptctl db roles --runtime-role {role}`")
            return report
        refusal = _role_refusal(cursor, role=role, schema=schema)
        if refusal:
            report.problems.append(refusal)
        existing = set(connection.introspection.table_names(cursor))
        report.grants = [grant for grant in runtime_grants() if grant.table in existing]
        for grant in report.grants:
            qualified = f"{_quote(schema)}.{_quote(grant.table)}"
            cursor.execute(
                "SELECT privilege FROM unnest(%s::text[]) AS privilege WHERE has_table_privilege(%s, %s, privilege)",
                [list(ALL_TABLE_PRIVILEGES), role, qualified],
            )
            held = {privilege for (privilege,) in cursor.fetchall()}
            if held != set(grant.privileges):
                report.problems.append(
                    f"{grant.table}: holds {', '.join(sorted(held)) or 'nothing'}, should hold {', '.join(grant.privileges)}"
                )
    return report
