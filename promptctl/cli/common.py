"""Helpers shared by CLI groups: the acting user (proven by ``$PROMPTCTL_TOKEN``), output."""

from __future__ import annotations

import os
from typing import Any

from promptctl import services
from promptctl.errors import DomainError
from promptctl.services import TokenPrincipal

# One table and JSON printer for both CLIs: the person's client (stdlib only) owns it, the operator's reuses it.
from promptctl_client.output import Output  # noqa: F401 - re-exported for the CLI groups

TOKEN_ENV = "PROMPTCTL_TOKEN"


def add_actor_argument(parser, *, required: bool = True) -> None:
    """The command acts as a person: the owner of ``PROMPTCTL_TOKEN``; ``--as`` only asserts who that is."""
    parser.add_argument(
        "--as",
        dest="actor",
        metavar="USER",
        help=f"assert the acting user: must be the owner of ${TOKEN_ENV} (the token decides who acts)",
    )
    parser.set_defaults(actor_required=required)


def cli_principal(options) -> TokenPrincipal | None:
    """Who a person-acting command acts as: the owner of ``$PROMPTCTL_TOKEN``, checked now.

    ``--as`` never chooses the actor (anyone can type a name); it must match the
    token's user. A read-only token cannot act. Without a token, a command whose
    actor is optional runs as the operator (recorded with no actor).
    """
    claimed = getattr(options, "actor", None)
    secret = os.environ.get("PROMPTCTL_TOKEN", "").strip()
    if not secret:
        if claimed:
            raise DomainError(
                f"--as {claimed} needs {claimed}'s own token: set {TOKEN_ENV} to a personal token of {claimed} "
                "(admin: Personal tokens, or `promptctl token create`); --as alone proves nothing."
            )
        if getattr(options, "actor_required", True):
            raise DomainError(
                f"No token: this command acts as a person, so set {TOKEN_ENV} to your personal token "
                "(admin: Personal tokens, or `promptctl token create`)."
            )
        return None
    principal = services.token_authenticate(secret=secret)
    if claimed and claimed != principal.user.username:
        raise DomainError(
            f"--as {claimed} does not match the token's user {principal.user.username}: a token acts only as its "
            f"owner. Use {claimed}'s own token, or drop --as."
        )
    if principal.read_only:
        raise DomainError(
            f"Token {principal.name!r} of {principal.user.username} is read-only and cannot act: use a token "
            "without --read-only for changes."
        )
    return principal


def actor_from_options(options, *, required: bool = True) -> Any:
    """The user the command acts as (``cli_principal``, resolved by the command before the handler runs)."""
    principal = getattr(options, "principal", None)
    if principal is None:
        if required:
            raise DomainError(f"No token: set {TOKEN_ENV} to your personal token (`promptctl token create`).")
        return None
    return principal.user
