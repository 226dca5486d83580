"""``promptctl apikey create|revoke|list``: keys for callers of the triage API.

A key's secret is printed once, by ``create``, and never again: only its
SHA-256 and first characters are stored.
"""

from __future__ import annotations

from promptctl.cli.common import actor_from_options, add_actor_argument
from triage import selectors, services


def register(groups) -> None:
    group = groups.add_parser("apikey", help="API keys for callers of the triage API")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)

    create = actions.add_parser("create", help="issue a key (its secret is printed once)")
    create.add_argument("--name", required=True, help="who or what uses the key, e.g. helpdesk-prod")
    create.add_argument(
        "--agent",
        action="append",
        default=[],
        metavar="NAME",
        help="an agent the key may call (repeatable); without --agent the key may call every agent",
    )
    add_actor_argument(create)
    create.set_defaults(handler=apikey_create)

    revoke = actions.add_parser("revoke", help="revoke a key; its next request is refused")
    revoke.add_argument("name")
    add_actor_argument(revoke)
    revoke.set_defaults(handler=apikey_revoke)

    listing = actions.add_parser("list", help="keys, their scope, and when they were last used")
    listing.set_defaults(handler=apikey_list)


def apikey_create(options, out):
    actor = actor_from_options(options)
    issued = services.api_key_create(
        name=options.name, actor=actor, agent_names=options.agent, all_agents=not options.agent
    )
    scope = ", ".join(options.agent) if options.agent else "all agents"
    out.human(f"Created API key {issued.key.name} for {scope}. Its secret (shown once, not stored):")
    out.human(issued.secret)
    out.human("Callers send it as `Authorization: Bearer <secret>`.")
    return {
        "name": issued.key.name,
        "prefix": issued.key.prefix,
        "agents": sorted(options.agent) or "all",
        "secret": issued.secret,
    }


def apikey_revoke(options, out):
    actor = actor_from_options(options)
    key = services.api_key_revoke(key=services.api_key_get(name=options.name), actor=actor)
    out.human(f"Revoked API key {key.name} ({key.prefix}…); its next request will be refused.")
    return {"name": key.name, "revoked_at": key.revoked_at}


def apikey_list(options, out):
    rows = []
    for key in selectors.api_key_list():
        usage = getattr(key, "usage", None)
        rows.append(
            {
                "name": key.name,
                "prefix": key.prefix,
                "agents": "all" if key.all_agents else sorted(agent.name for agent in key.agents.all()),
                "created_by": key.created_by.username,
                "revoked_at": key.revoked_at,
                "last_used_at": usage.last_used_at if usage else None,
            }
        )
    out.table(
        [
            [
                r["name"],
                r["prefix"] + "…",
                r["agents"] if r["agents"] == "all" else ",".join(r["agents"]),
                r["revoked_at"] or "",
                r["last_used_at"] or "never",
            ]
            for r in rows
        ],
        ["name", "prefix", "agents", "revoked", "last used"],
    )
    return rows
