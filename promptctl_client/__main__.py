"""``promptctl [--json] GROUP ACTION ...``: parse, call the API, print; exit 0, 1 (refused or failed) or 2 (usage).

``--json`` may stand anywhere on the line: it is taken out of argv before
argparse sees it (not after a ``--``). Handlers are ``handler(options, ctx)``
and return data (printed as JSON with ``--json``), or ``(data, exit_code)``.
"""

from __future__ import annotations

import sys


def json_flag_take(argv: list[str]) -> tuple[list[str], bool]:
    """argv without its ``--json`` flags (those before a ``--``), and whether there was one."""
    rest, found = [], False
    for index, arg in enumerate(argv):
        if arg == "--":
            rest.extend(argv[index:])
            break
        if arg == "--json":
            found = True
        else:
            rest.append(arg)
    return rest, found


class Context:
    """What a handler gets besides its options: the output, and the API (configured on first use)."""

    def __init__(self, out) -> None:
        self.out = out
        self._api = None

    @property
    def api(self):
        if self._api is None:
            from promptctl_client.config import settings_resolve
            from promptctl_client.transport import Api

            self._api = Api(settings_resolve())
        return self._api


def parser_build():
    import argparse

    from promptctl_client.commands import account, changes, evals

    parser = argparse.ArgumentParser(
        prog="promptctl",
        description="Change control for Managed Agents prompt versions, through the promptctl API "
        "(PROMPTCTL_URL, PROMPTCTL_TOKEN or `promptctl login`). --json anywhere prints the server's JSON only.",
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON only (anywhere on the line)")
    groups = parser.add_subparsers(dest="group", metavar="GROUP", required=True)
    for group in (account, changes, evals):
        group.register(groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv, json_mode = json_flag_take(list(sys.argv[1:] if argv is None else argv))
    options = parser_build().parse_args(argv)
    from promptctl_client.config import ConfigError
    from promptctl_client.output import Output
    from promptctl_client.transport import ClientError

    out = Output(json_mode=json_mode)
    options.json = json_mode
    try:
        result = options.handler(options, Context(out))
    except (ClientError, ConfigError) as error:
        sys.stdout.flush()
        sys.stderr.write(f"error: {error}\n")
        return 1
    except (KeyError, TypeError, AttributeError) as error:
        # The server answered 2xx with a shape this client does not know: one line, not a traceback.
        sys.stderr.write(
            f"error: the server's answer lacks what this client expects ({type(error).__name__}: {error}); "
            "is this client as new as the server? Install the server's version of promptctl.\n"
        )
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        return 130
    exit_code = 0
    if isinstance(result, tuple):
        result, exit_code = result
    if json_mode and result is not None:
        out.emit_json(result)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
