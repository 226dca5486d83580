"""``python manage.py promptctl <group> <action> ...``: the scriptable front door.

Human-readable output by default, ``--json`` for machines, exit 1 with a
one-line reason on any refusal. A command that acts as a person needs that
person's token in ``$PROMPTCTL_TOKEN`` (``promptctl.cli.common.cli_principal``). Groups live in modules listed in
``promptctl.registry.registry.cli_groups``; each handler is a thin caller of services.
"""

from __future__ import annotations

import importlib
import sys

from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError, connection

from promptctl.cli.common import Output, cli_principal
from promptctl.errors import DomainError
from promptctl.middleware import request_id_bind, token_bind
from promptctl.registry import registry
from promptctl.services.access import acting_user_bind


def _group_module(module_name: str):
    """The group module, or ``None`` when that module does not exist (yet); other import errors surface."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name:
            return None
        raise


def _unmigrated_database() -> str | None:
    """One line naming the database and what to do, when it lacks migrations (``None`` when it has them all)."""
    from django.db.migrations.executor import MigrationExecutor

    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError:
        return None  # the database cannot be read at all (not there, refused): its own error says more
    if not pending:
        return None
    return (
        f"the database {connection.settings_dict['NAME']} is not migrated: run `python manage.py migrate`, or set "
        "PROMPTCTL_VAR_DIR (or DATABASE_URL) to the state you mean, e.g. PROMPTCTL_VAR_DIR=var/demo after make demo."
    )


class Command(BaseCommand):
    help = "Change control for Managed Agents prompt versions (agents, versions, changes, evals, audit)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print machine-readable JSON only")
        groups = parser.add_subparsers(dest="group", metavar="GROUP", required=True)
        for module_name in registry.cli_groups:
            module = _group_module(module_name)
            if module is not None:
                module.register(groups)

    def handle(self, *args, **options) -> None:
        from argparse import Namespace

        namespace = Namespace(**options)
        out = Output(json_mode=options["json"], stream=self.stdout)
        handler = options.get("handler")
        if handler is None:
            self.stderr.write("error: choose an action; see --help")
            sys.exit(2)
        try:
            # A person-acting command (one with --as) acts as the owner of $PROMPTCTL_TOKEN, checked here;
            # others (bootstrap, audit, db roles, reads) are the operator's. One request id per command, so
            # its audit events can be found together; they name the token, and access changes made by the
            # command are recorded as the token's user's (promptctl.services.access).
            principal = cli_principal(namespace) if "actor" in options else None
            namespace.principal = principal
            user = principal.user if principal is not None else None
            with (
                request_id_bind(),
                token_bind(principal.ref if principal is not None else "", user),
                acting_user_bind(user),
            ):
                result = handler(namespace, out)
        except DomainError as error:
            self.stderr.write(f"error: {error}")
            sys.exit(1)
        except DatabaseError:
            unmigrated = _unmigrated_database()
            if unmigrated is None:
                raise
            self.stderr.write(f"error: {unmigrated}")
            sys.exit(1)
        exit_code = 0
        if isinstance(result, tuple):
            result, exit_code = result
        if options["json"] and result is not None:
            out.emit_json(result)
        if exit_code:
            sys.exit(exit_code)
