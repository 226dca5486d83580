"""``python manage.py promptctl <group> <action> ...``: the scriptable front door.

Human-readable output by default, ``--json`` for machines, exit 1 with a
one-line reason on any refusal. Groups live in modules listed in
``promptctl.registry.registry.cli_groups``; each handler is a thin caller of services.
"""

from __future__ import annotations

import importlib
import sys

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from promptctl.cli.common import Output
from promptctl.errors import DomainError
from promptctl.middleware import request_id_bind
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
            # One request id per command, so its audit events can be found together; access changes
            # made by the command are recorded as the --as user's (promptctl.services.access).
            with request_id_bind(), acting_user_bind(_named_user(getattr(namespace, "actor", None))):
                result = handler(namespace, out)
        except DomainError as error:
            self.stderr.write(f"error: {error}")
            sys.exit(1)
        exit_code = 0
        if isinstance(result, tuple):
            result, exit_code = result
        if options["json"] and result is not None:
            out.emit_json(result)
        if exit_code:
            sys.exit(exit_code)


def _named_user(username: str | None):
    """The active user ``--as`` names, or None (the handler itself refuses an unknown name, with the reason)."""
    if not username:
        return None
    return get_user_model().objects.filter(username=username, is_active=True).first()
