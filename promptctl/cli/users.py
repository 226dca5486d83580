"""``promptctl user add``: people and their roles (requester, reviewer, admin)."""

from __future__ import annotations

from promptctl import services
from promptctl.services import ROLES


def register(groups) -> None:
    group = groups.add_parser("user", help="people and their roles")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="create a user in a role")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--password", help="lets the user log in to the admin; without it they act through the CLI only")
    add.add_argument("--email", default="")
    add.set_defaults(handler=user_add)


def user_add(options, out):
    user = services.user_create(
        username=options.name, role=options.role, password=options.password, email=options.email
    )
    groups = sorted(user.groups.values_list("name", flat=True))
    out.human(
        f"Created {options.role} {user.username} (groups: {', '.join(groups)}{'; superuser' if user.is_superuser else ''})."
    )
    return {"username": user.username, "role": options.role, "groups": groups, "is_superuser": user.is_superuser}
