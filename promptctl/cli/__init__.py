"""Subcommand groups of ``python manage.py promptctl``.

Each group is a module with ``register(subparsers)``: it adds its parser(s)
and sets ``handler`` on each leaf to a function ``handler(options, out) -> object``.
A handler calls services only. It returns data: a ``dict``/``list`` printed
as JSON with ``--json``, or rendered by ``out.human(...)`` calls made before
returning. Refusals are ``DomainError`` and become one line on stderr with exit 1.

The groups are listed in ``promptctl.registry`` (``cli_groups``): change
control registers its own, and the apps above register theirs in ``ready()``.
"""
