"""The runtime database role: the app's PostgreSQL login can add to the record but not rewrite it.

Rules, and why:

- Two logins. The tables' owner runs the migrations (``DATABASE_OWNER_URL``,
  the ``owner`` alias); the web process, workers, beat and the CLI connect as a
  runtime role (``DATABASE_URL``) that owns nothing. Only an owner or a
  superuser may drop or disable a trigger, alter a table or TRUNCATE it without
  the privilege, so the runtime role cannot switch the database guards off.
- The record's tables (agent versions, approvals, audit events, every
  ``ImmutableRecord`` of the apps above) are granted SELECT and INSERT only:
  the runtime role cannot UPDATE, DELETE or TRUNCATE them, whatever the
  triggers say.
- Retention is the one exception, and the database bounds it: the columns of
  customer text that a purge empties (``registry.redactions``: the request
  log's, the jobs' history copies') get a column-level UPDATE, and
  django-simple-history's tables get DELETE for pruning. Guard triggers
  installed here refuse any UPDATE of those tables that is not exactly the
  redaction, any redaction or history deletion younger than the retention
  floor, and the deletion of an object's latest history row. The floor
  (``RetentionFloor``) is the retention policy in the settings when the owner
  runs this command; the runtime role can only read it, so the login that
  runs the hourly purge cannot shorten the policy it runs under.
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
from dataclasses import asdict, dataclass, field

from django.apps import apps
from django.db import DatabaseError, connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from simple_history.models import HistoricalChanges

from promptctl import registry
from promptctl.audit import audit_record
from promptctl.errors import DomainError
from promptctl.models import RetentionFloor
from promptctl.records import ImmutableRecord
from promptctl.registry import RetentionPolicy

READ = ("SELECT",)
APPEND = ("SELECT", "INSERT")
PRUNABLE = ("SELECT", "INSERT", "DELETE")
NO_DELETE = ("SELECT", "INSERT", "UPDATE")
FULL = ("SELECT", "INSERT", "UPDATE", "DELETE")
ALL_TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")

# promptctl's record models that are not ``ImmutableRecord`` subclasses (their own save/delete refuse).
# An audit segment is sealed by an insert; only the owner archives it (deleting events), so only the owner updates it.
RECORD_MODELS = {"promptctl.agentversion", "promptctl.approval", "promptctl.auditevent", "promptctl.auditsegment"}
NO_DELETE_MODELS = {"promptctl.changerequest", "promptctl.pin", "promptctl.auditchainhead"}
READ_ONLY_TABLES = {"django_migrations"}
READ_ONLY_MODELS = {"promptctl.retentionfloor"}

ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class TableGrant:
    table: str
    privileges: tuple[str, ...]
    why: str
    update_columns: tuple[str, ...] = ()  # a column-level UPDATE: retention's redaction, guarded by a trigger


@dataclass
class RuntimeRoleReport:
    role: str
    database: str
    created: bool
    password_set: bool
    grants: list[TableGrant] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    floor: RetentionPolicy | None = None

    def as_dict(self) -> dict:
        return {
            "role": self.role,
            "database": self.database,
            "created": self.created,
            "password_set": self.password_set,
            "grants": {grant.table: list(grant.privileges) for grant in self.grants},
            "update_columns": {
                grant.table: list(grant.update_columns) for grant in self.grants if grant.update_columns
            },
            "retention_floor_days": asdict(self.floor) if self.floor else None,
            "problems": self.problems,
        }


def _redacted_columns(model: type[models.Model]) -> tuple[str, ...]:
    for redaction in registry.redactions():
        if redaction.model._meta.db_table == model._meta.db_table:
            fields = (*redaction.text_fields, redaction.stamp_field)
            return tuple(_column(model, name) for name in fields)
    return ()


def _model_grant(model: type[models.Model]) -> TableGrant:
    label = model._meta.label_lower
    table = model._meta.db_table
    redacted = _redacted_columns(model)
    if issubclass(model, HistoricalChanges):
        return TableGrant(
            table, PRUNABLE, "history is appended; pruned past the retention floor, latest row kept", redacted
        )
    if issubclass(model, ImmutableRecord) or label in RECORD_MODELS:
        why = "part of the record: written once" + ("; its text emptied once by retention" if redacted else "")
        return TableGrant(table, APPEND, why, redacted)
    if label in READ_ONLY_MODELS:
        return TableGrant(table, READ, "set by the owner only")
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


def runtime_role_sql(*, role: str, database: str, schema: str = "public", floor: RetentionPolicy | None = None) -> str:
    """The script a DBA runs as the tables' owner (``psql -v ON_ERROR_STOP=1 -1 -f``), after every migrate."""
    role = _role_checked(role)
    floor = floor or RetentionPolicy.from_settings()
    grants = runtime_grants()
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
        *_grant_statements(name=name, database=database, schema=schema, grants=grants),
        *_guard_statements(schema=schema, grants=grants, floor=floor),
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
        table = f"{schema_name}.{_quote(grant.table)}"
        statements.append(f"GRANT {', '.join(grant.privileges)} ON TABLE {table} TO {name};")
        if grant.update_columns:
            columns = ", ".join(_quote(column) for column in grant.update_columns)
            statements.append(f"GRANT UPDATE ({columns}) ON TABLE {table} TO {name};")
    statements.append(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema_name} TO {name};")
    return statements


# BEFORE UPDATE on a redacted table: exactly the redaction (text emptied, the stamp set once, every other
# column unchanged) of a row older than the ticket-text floor. Arguments: stamp column, age column, text columns.
REDACTION_GUARD = """CREATE OR REPLACE FUNCTION promptctl_redaction_guard() RETURNS trigger AS $$
DECLARE
  text_columns text[] := TG_ARGV[2:];
  before jsonb := to_jsonb(OLD);
  after jsonb := to_jsonb(NEW);
  floor_days integer;
  text_column text;
BEGIN
  IF before->>TG_ARGV[0] IS NOT NULL OR after->>TG_ARGV[0] IS NULL THEN
    RAISE EXCEPTION 'promptctl: only retention changes % (text emptied once, % stamped): UPDATE refused', TG_TABLE_NAME, TG_ARGV[0];
  END IF;
  IF (after->>TG_ARGV[0])::timestamptz NOT BETWEEN now() - interval '5 minutes' AND clock_timestamp() + interval '5 minutes' THEN
    RAISE EXCEPTION 'promptctl: %.% is stamped with the time of the redaction, not another: UPDATE refused', TG_TABLE_NAME, TG_ARGV[0];
  END IF;
  FOREACH text_column IN ARRAY text_columns LOOP
    IF after->>text_column <> '' THEN
      RAISE EXCEPTION 'promptctl: retention empties %.%, it never rewrites it: UPDATE refused', TG_TABLE_NAME, text_column;
    END IF;
  END LOOP;
  IF (before - text_columns - TG_ARGV[0]) IS DISTINCT FROM (after - text_columns - TG_ARGV[0]) THEN
    RAISE EXCEPTION 'promptctl: retention changes only the text of %: UPDATE refused', TG_TABLE_NAME;
  END IF;
  SELECT ticket_text_days INTO floor_days FROM promptctl_retentionfloor WHERE id = 1;
  IF floor_days IS NOT NULL AND (before->>TG_ARGV[1])::timestamptz > now() - make_interval(days => floor_days) THEN
    RAISE EXCEPTION 'promptctl: ticket text younger than % days is kept (the retention floor): UPDATE on % refused', floor_days, TG_TABLE_NAME;
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql"""

# BEFORE DELETE on a history table: only rows older than the history floor, never an object's latest row.
# Arguments: the object's key column, the history row's key column.
HISTORY_PRUNE_GUARD = """CREATE OR REPLACE FUNCTION promptctl_history_prune_guard() RETURNS trigger AS $$
DECLARE
  floor_days integer;
  newer boolean;
BEGIN
  SELECT history_days INTO floor_days FROM promptctl_retentionfloor WHERE id = 1;
  IF floor_days IS NOT NULL AND OLD.history_date > now() - make_interval(days => floor_days) THEN
    RAISE EXCEPTION 'promptctl: history younger than % days is kept (the retention floor): DELETE on % refused', floor_days, TG_TABLE_NAME;
  END IF;
  EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.%I WHERE %I = ($1).%I AND %I > ($1).%I)',
                 TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[0], TG_ARGV[0], TG_ARGV[1], TG_ARGV[1])
    INTO newer USING OLD;
  IF NOT newer THEN
    RAISE EXCEPTION 'promptctl: an object''s latest history row is kept: DELETE on % refused', TG_TABLE_NAME;
  END IF;
  RETURN OLD;
END $$ LANGUAGE plpgsql"""


def _column(model: type[models.Model], field_name: str) -> str:
    field = model._meta.get_field(field_name)
    if not isinstance(field, models.Field) or not field.column:
        raise TypeError(f"{model._meta.label}.{field_name} is not a column")
    return field.column


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class _Guard:
    """One retention guard trigger: on ``table``, before ``event``, calling ``call`` (a guard function)."""

    table: str
    kind: str  # the trigger name's suffix
    event: str
    call: str


def _guards() -> list[_Guard]:
    """Every retention guard ``db roles`` installs: history pruning bounded, and each redaction exactly."""
    guards = []
    for model in _history_models():
        object_key = _column(model, model.instance_type._meta.pk.attname)  # type: ignore[attr-defined]
        row_key = _column(model, model._meta.pk.name)
        call = f"promptctl_history_prune_guard({_literal(object_key)}, {_literal(row_key)})"
        guards.append(_Guard(model._meta.db_table, "delete_retention", "DELETE", call))
    for redaction in registry.redactions():
        model = redaction.model
        arguments = [redaction.stamp_field, redaction.age_field, *redaction.text_fields]
        columns = ", ".join(_literal(_column(model, field)) for field in arguments)
        guards.append(
            _Guard(model._meta.db_table, "update_retention", "UPDATE", f"promptctl_redaction_guard({columns})")
        )
    return guards


def guard_triggers() -> dict[str, str]:
    """Trigger name -> table of every guard ``db roles`` installs (for the check)."""
    return {_trigger_name(guard.table, guard.kind): guard.table for guard in _guards()}


# Each guard function's body as this release installs it (the text between its $$ quotes, as pg_proc keeps it).
GUARD_FUNCTIONS = {
    "promptctl_redaction_guard": REDACTION_GUARD.split("$$")[1],
    "promptctl_history_prune_guard": HISTORY_PRUNE_GUARD.split("$$")[1],
}


def _trigger_name(table: str, kind: str) -> str:
    """``<table>_<kind>``: named to fire after a table's own guards (PostgreSQL fires them by name)."""
    return f"{table[: 63 - len(kind) - 1]}_{kind}"


def _history_models() -> list[type[models.Model]]:
    return sorted(
        (model for model in apps.get_models() if issubclass(model, HistoricalChanges)),
        key=lambda model: model._meta.db_table,
    )


def _guard_statements(*, schema: str, grants: list[TableGrant], floor: RetentionPolicy) -> list[str]:
    """The retention guards and floor (PostgreSQL): owner-created, so the runtime role cannot drop them."""
    present = {grant.table for grant in grants}
    statements = [REDACTION_GUARD + ";", HISTORY_PRUNE_GUARD + ";"]
    for guard in _guards():
        if guard.table not in present:
            continue
        name = _quote(_trigger_name(guard.table, guard.kind))
        qualified = f"{_quote(schema)}.{_quote(guard.table)}"
        statements += [
            f"DROP TRIGGER IF EXISTS {name} ON {qualified};",
            f"CREATE TRIGGER {name} BEFORE {guard.event} ON {qualified} FOR EACH ROW EXECUTE FUNCTION {guard.call};",
        ]
    floor_table = f"{_quote(schema)}.{_quote(RetentionFloor._meta.db_table)}"
    if RetentionFloor._meta.db_table in present:
        statements.append(
            f"INSERT INTO {floor_table} (id, ticket_text_days, history_days, set_at) "
            f"VALUES (1, {int(floor.ticket_text_days)}, {int(floor.history_days)}, now()) "
            "ON CONFLICT (id) DO UPDATE SET ticket_text_days = EXCLUDED.ticket_text_days, "
            "history_days = EXCLUDED.history_days, set_at = EXCLUDED.set_at;"
        )
    return statements


def _owner_connection(using: str) -> BaseDatabaseWrapper:
    connection = connections[using]
    if connection.vendor != "postgresql":
        raise DomainError(
            "Database roles are for PostgreSQL: SQLite has no logins (whoever can open the file can change it), "
            "so set DATABASE_URL to PostgreSQL, or print the script with --sql."
        )
    return connection


def login_as(role: str, *, using: str = "default"):
    """A new autocommit psycopg connection to ``using``'s database, logged in as ``role`` (no password: local trust).

    For checking what a role may do from outside Django's connection: the
    red-team plays and the tests that try the runtime role's grants.
    """
    import psycopg

    settings_dict = _owner_connection(using).settings_dict
    return psycopg.connect(
        host=settings_dict["HOST"] or "127.0.0.1",
        port=settings_dict["PORT"] or 5432,
        dbname=settings_dict["NAME"],
        user=role,
        autocommit=True,
    )


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


def runtime_role_apply(
    *, role: str, password: str | None = None, using: str = "default", floor: RetentionPolicy | None = None
) -> RuntimeRoleReport:
    """Create ``role`` if missing, grant it exactly what ``runtime_grants`` says and set the guards, in one transaction.

    Run as the tables' owner. Idempotent: every earlier table and sequence
    privilege of the role in this schema is revoked first, so a table that
    became part of the record loses UPDATE and DELETE on the next run.
    """
    role = _role_checked(role)
    connection = _owner_connection(using)
    name = _quote(role)
    floor = floor or RetentionPolicy.from_settings()
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
            before = _floor_held(cursor) if RetentionFloor._meta.db_table in existing else None
            for statement in [
                *_grant_statements(name=name, database=database, schema=schema, grants=grants),
                *_guard_statements(schema=schema, grants=grants, floor=floor),
            ]:
                cursor.execute(statement)
            if RetentionFloor._meta.db_table in existing and before != floor and using == "default":
                # How soon any login may erase customer text and history: a change the record keeps.
                audit_record(
                    actor=None,
                    verb="retention.floor",
                    object_type="retention floor",
                    object_id="1",
                    before=asdict(before) if before else {},
                    after=asdict(floor),
                )
    except DatabaseError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DomainError(
            f"Granting {role} failed ({first_line}): run this as the tables' owner with CREATEROLE "
            "(DATABASE_OWNER_URL), or have a DBA run the script from --sql."
        ) from error
    report = RuntimeRoleReport(
        role=role, database=database, created=created, password_set=bool(password), grants=grants, floor=floor
    )
    report.problems = runtime_role_check(role=role, using=using).problems
    return report


def _floor_held(cursor) -> RetentionPolicy | None:
    cursor.execute(f"SELECT ticket_text_days, history_days FROM {_quote(RetentionFloor._meta.db_table)} WHERE id = 1")
    row = cursor.fetchone()
    return RetentionPolicy(*row) if row else None


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
            if "UPDATE" not in held:
                cursor.execute(
                    "SELECT column_name FROM information_schema.column_privileges WHERE grantee = %s "
                    "AND table_schema = %s AND table_name = %s AND privilege_type = 'UPDATE'",
                    [role, schema, grant.table],
                )
                columns = {column for (column,) in cursor.fetchall()}
                if columns != set(grant.update_columns):
                    report.problems.append(
                        f"{grant.table}: may update columns {', '.join(sorted(columns)) or 'none'}, "
                        f"should {', '.join(sorted(grant.update_columns)) or 'none'}"
                    )
        report.problems += _guard_problems(cursor, schema=schema, existing=existing, role=role)
    return report


def _guard_problems(cursor, *, schema: str, existing: set[str], role: str) -> list[str]:
    """Retention guards missing, or a floor that is not the settings' policy."""
    problems = []
    cursor.execute(
        "SELECT tgname FROM pg_trigger JOIN pg_class ON pg_class.oid = tgrelid "
        "JOIN pg_namespace ON pg_namespace.oid = relnamespace WHERE nspname = %s AND NOT tgisinternal",
        [schema],
    )
    installed = {name for (name,) in cursor.fetchall()}
    missing = sorted(name for name, table in guard_triggers().items() if table in existing and name not in installed)
    if missing:
        problems.append(
            f"retention guards missing ({', '.join(missing)}): run `promptctl db roles --runtime-role {role}`"
        )
    # A guard installed by an older release keeps its old body until `db roles` replaces it.
    cursor.execute(
        "SELECT proname, prosrc FROM pg_proc JOIN pg_namespace ON pg_namespace.oid = pronamespace "
        "WHERE nspname = %s AND proname = ANY(%s)",
        [schema, list(GUARD_FUNCTIONS)],
    )
    bodies = dict(cursor.fetchall())
    stale = sorted(name for name, body in bodies.items() if body != GUARD_FUNCTIONS[name])
    if stale:
        problems.append(
            f"retention guards out of date ({', '.join(stale)}): run `promptctl db roles --runtime-role {role}` "
            "as the owner"
        )
    if RetentionFloor._meta.db_table in existing:
        held_floor = _floor_held(cursor)
        wanted = RetentionPolicy.from_settings()
        if held_floor != wanted:
            held = f"{held_floor.ticket_text_days} and {held_floor.history_days} days" if held_floor else "no floor"
            problems.append(
                f"the retention floor is {held}, the policy {wanted.ticket_text_days} and {wanted.history_days} days "
                f"(ticket text, history): run `promptctl db roles --runtime-role {role}` as the owner"
            )
    return problems
