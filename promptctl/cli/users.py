"""``promptctl user add`` and ``promptctl token create|revoke|list``: people, bots, and their tokens.

``user add`` of the first admin, while no superuser exists, is the operator's
bootstrap and needs no token; every later ``user add`` acts as the admin whose
token is in ``$PROMPTCTL_TOKEN``. A token's secret is printed once, by
``token create`` (or ``user add --token-name`` for a bot or the bootstrap admin).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model

from promptctl import services
from promptctl.cli.common import actor_from_options, add_actor_argument
from promptctl.errors import DomainError
from promptctl.models import PersonalToken
from promptctl.services import ROLES


def register(groups) -> None:
    group = groups.add_parser("user", help="people, service accounts (bots) and their roles")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="create a user in a role")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--password", help="lets the user log in to the admin (where they create their own token)")
    add.add_argument("--email", default="")
    add.add_argument(
        "--token-name", help="also issue a token of that name (a bot's, or the bootstrap admin's); printed once"
    )
    add_actor_argument(add, required=False)
    add.set_defaults(handler=user_add)

    tokens = groups.add_parser("token", help="personal access tokens (the CLI and the API act as their owner)")
    token_actions = tokens.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = token_actions.add_parser("create", help="create a token (its secret is printed once)")
    create.add_argument("--name", required=True, help="what it is for, e.g. laptop or ci")
    create.add_argument("--for", dest="owner", metavar="BOT", help="a service account's token (admins only)")
    expiry = create.add_mutually_exclusive_group()
    expiry.add_argument("--expires-in-days", type=int, default=90, help="default 90")
    expiry.add_argument("--no-expiry", action="store_true", help="never expires (revoke it when done)")
    create.add_argument("--read-only", action="store_true", help="may read, never change anything")
    add_actor_argument(create)
    create.set_defaults(handler=token_create)

    revoke = token_actions.add_parser("revoke", help="revoke a token; its next use is refused")
    revoke.add_argument("name")
    revoke.add_argument("--for", dest="owner", metavar="USER", help="another user's token (admins only)")
    add_actor_argument(revoke)
    revoke.set_defaults(handler=token_revoke)

    listing = token_actions.add_parser("list", help="your tokens (never their secrets)")
    add_actor_argument(listing)
    listing.set_defaults(handler=token_list)


def user_add(options, out):
    has_admin = get_user_model().objects.filter(is_superuser=True).exists()
    bootstrap = options.role == "admin" and not has_admin
    if not bootstrap and getattr(options, "principal", None) is None:
        if not has_admin:
            raise DomainError(
                f"promptctl has no admin yet: add one first (`promptctl user add NAME --role admin`), then add "
                f"{options.name} as that admin (PROMPTCTL_TOKEN set to the admin's personal token)."
            )
        raise DomainError(
            "promptctl already has an admin, so `user add` acts as one: set PROMPTCTL_TOKEN to an admin's personal "
            "token (only the first admin is added without one)."
        )
    actor = None if bootstrap else actor_from_options(options)
    if options.token_name and not bootstrap and options.role != "bot":
        raise DomainError(
            f"--token-name is for a bot or the bootstrap admin: {options.name} creates their own token "
            "(admin: Personal tokens, or `promptctl token create`)."
        )
    user = services.user_create(
        username=options.name, role=options.role, password=options.password, email=options.email, actor=actor
    )
    groups = sorted(user.groups.values_list("name", flat=True))
    out.human(
        f"Created {options.role} {user.username} (groups: {', '.join(groups)}{'; superuser' if user.is_superuser else ''})."
    )
    data = {"username": user.username, "role": options.role, "groups": groups, "is_superuser": user.is_superuser}
    if options.token_name:
        issued = services.token_create(user=user, actor=actor or user, name=options.token_name, expires_in_days=None)
        _show_secret(out, issued)
        data["token"] = _token_dict(issued.token) | {"secret": issued.secret}
    return data


def token_create(options, out):
    actor = actor_from_options(options)
    owner = services.token_owner_get(username=options.owner) if options.owner else actor
    issued = services.token_create(
        user=owner,
        actor=actor,
        name=options.name,
        expires_in_days=None if options.no_expiry else options.expires_in_days,
        read_only=options.read_only,
    )
    _show_secret(out, issued)
    return _token_dict(issued.token) | {"secret": issued.secret}


def token_revoke(options, out):
    actor = actor_from_options(options)
    owner = services.token_owner_get(username=options.owner) if options.owner else actor
    token = services.token_revoke(token=services.token_get(user=owner, name=options.name), actor=actor)
    out.human(f"Revoked token {token.name} ({token.prefix}…) of {owner.username}; its next use will be refused.")
    return _token_dict(token)


def token_list(options, out):
    actor = actor_from_options(options)
    tokens = list(PersonalToken.objects.filter(user=actor).select_related("user").order_by("created_at"))
    out.table(
        [
            [
                t.name,
                t.prefix + "…",
                "yes" if t.read_only else "",
                t.expires_at or "never",
                t.last_used_at,
                t.revoked_at,
            ]
            for t in tokens
        ],
        ["name", "prefix", "read-only", "expires", "last used", "revoked"],
    )
    return [_token_dict(t) for t in tokens]


def _show_secret(out, issued) -> None:
    token = issued.token
    expiry = f"expires {token.expires_at:%Y-%m-%d}" if token.expires_at else "never expires"
    out.human(f"Created token {token.name} for {token.user.username} ({expiry}). Its secret (shown once, not stored):")
    out.human(issued.secret)
    out.human("Use it as `export PROMPTCTL_TOKEN=<secret>` (CLI) or `Authorization: Bearer <secret>` (API).")


def _token_dict(token) -> dict:
    return {
        "user": token.user.username,
        "name": token.name,
        "prefix": token.prefix,
        "read_only": token.read_only,
        "expires_at": token.expires_at,
        "created_at": token.created_at,
        "last_used_at": token.last_used_at,
        "revoked_at": token.revoked_at,
    }
