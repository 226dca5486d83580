"""``promptctl``: the person's command line, a thin client of the change-control HTTP API.

It imports no Django, no anthropic and nothing of the server's packages (the
import-linter contract in pyproject.toml says so): only the standard library,
and only what a command needs, imported when it needs it, so ``promptctl
--help`` and one round trip each take well under half a second.

Every command is one or two HTTP calls to ``/api/v1/`` with a personal token;
the server decides and records who acted, so ``--as`` does not exist here.
``python manage.py promptctl`` remains the operator's CLI on the server.

- ``config``: where the URL and token come from (environment, then the config file);
- ``transport``: one request, and every failure turned into one line for people;
- ``output``: tables and ``--json``;
- ``files``: the local checks on files sent to the server (size cap, UTF-8, NUL);
- ``commands/``: the command groups, each ``register(subparsers)`` with handlers.
"""
