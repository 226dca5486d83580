"""``promptctl db roles``: the PostgreSQL runtime role the app connects as (docs/OPERATIONS.md, "Database roles").

It runs with the owner's login (the ``owner`` alias when ``DATABASE_OWNER_URL``
is set), not as a promptctl user: the database's own privileges decide whether
it may grant, so it takes no ``--as``.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings
from django.db import connections

from promptctl.errors import DomainError
from promptctl.services.database_roles import runtime_role_apply, runtime_role_check, runtime_role_sql


def register(groups) -> None:
    group = groups.add_parser("db", help="database logins and privileges")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    roles = actions.add_parser(
        "roles",
        help="create or update the runtime role and grant it what the app needs (re-run after every migrate)",
    )
    roles.add_argument("--runtime-role", required=True, metavar="ROLE", help="the login DATABASE_URL uses")
    secret = roles.add_mutually_exclusive_group()
    secret.add_argument("--password-file", metavar="FILE", help="set the role's password from the first line of FILE")
    secret.add_argument(
        "--password-env", metavar="VAR", help="set the role's password from environment variable VAR (compose)"
    )
    roles.add_argument(
        "--database", metavar="ALIAS", help="the alias to grant through (default: owner if set, else default)"
    )
    mode = roles.add_mutually_exclusive_group()
    mode.add_argument("--sql", action="store_true", help="print the SQL script for a DBA instead of running it")
    mode.add_argument(
        "--check",
        action="store_true",
        help="compare the role's privileges with what they should be; exit 1 on a difference",
    )
    roles.set_defaults(handler=db_roles)

    migrate = actions.add_parser(
        "migrate",
        help="migrate as the tables' owner, then (PostgreSQL) grant the runtime role what the new schema needs",
    )
    migrate.add_argument("--runtime-role", metavar="ROLE", help="PostgreSQL: the login DATABASE_URL uses")
    secret = migrate.add_mutually_exclusive_group()
    secret.add_argument("--password-file", metavar="FILE", help="set the role's password from the first line of FILE")
    secret.add_argument("--password-env", metavar="VAR", help="set the role's password from environment variable VAR")
    migrate.set_defaults(handler=db_migrate, database=None, sql=False, check=False)


def _alias(options) -> str:
    if options.database:
        if options.database not in settings.DATABASES:
            raise DomainError(f"No database alias {options.database!r}: use one of {', '.join(settings.DATABASES)}.")
        return options.database
    return "owner" if "owner" in settings.DATABASES else "default"


def _password(options) -> str | None:
    if options.password_env:
        value = os.environ.get(options.password_env, "").strip()
        if not value:
            raise DomainError(f"--password-env {options.password_env}: that variable is not set or empty.")
        return value
    if not options.password_file:
        return None
    try:
        lines = Path(options.password_file).read_text().splitlines()
    except OSError as error:
        raise DomainError(f"Cannot read --password-file {options.password_file}: {error.strerror}.") from error
    if not lines or not lines[0].strip():
        raise DomainError(f"--password-file {options.password_file} holds no password: put it on the first line.")
    return lines[0].strip()


def _columns_note(columns: tuple[str, ...]) -> str:
    return f"; UPDATE ({', '.join(columns)})" if columns else ""


def db_roles(options, out):
    alias = _alias(options)
    if options.sql:
        if options.password_file:
            raise DomainError("--sql prints no password: run the script, then `\\password ROLE` in psql.")
        script = runtime_role_sql(role=options.runtime_role, database=settings.DATABASES[alias]["NAME"])
        out.stream.write(script)
        return None
    if options.check:
        report = runtime_role_check(role=options.runtime_role, using=alias)
    else:
        report = runtime_role_apply(role=options.runtime_role, password=_password(options), using=alias)
        out.human(
            f"{'Created' if report.created else 'Updated'} role {report.role} on {report.database}"
            f"{' and set its password' if report.password_set else ''}; granted:"
        )
        out.table(
            [
                [grant.table, ", ".join(grant.privileges) + _columns_note(grant.update_columns)]
                for grant in report.grants
            ],
            ["table", "privileges"],
        )
        if report.floor:
            out.human(
                f"Retention floor: ticket text kept {report.floor.ticket_text_days} days, history "
                f"{report.floor.history_days} days (PROMPTCTL_RETENTION_*_DAYS); the app cannot remove anything younger."
            )
    for problem in report.problems:
        out.human(f"problem: {problem}")
    if options.check and not report.problems:
        out.human(f"Role {report.role} holds exactly the privileges it should on {len(report.grants)} tables.")
    if report.problems:
        if options.json:
            return report.as_dict(), 1
        raise DomainError(
            f"Role {report.role} does not hold the privileges it should ({len(report.problems)} differences above)."
        )
    return report.as_dict()


def db_migrate(options, out):
    """The deployment's one-shot: ``migrate`` through the owner alias, then ``db roles`` (compose's ``migrate``)."""
    from django.core.management import call_command

    alias = _alias(options)
    call_command("migrate", database=alias, interactive=False, verbosity=1, stdout=out.stream)
    vendor = connections[alias].vendor
    if vendor != "postgresql" or not options.runtime_role:
        out.human(f"Migrated through {alias!r}; no runtime role to grant ({vendor}, one login does everything).")
        return {"migrated": alias, "runtime_role": None}
    return db_roles(options, out)
