"""``promptctl version create|list|diff``."""

from __future__ import annotations

from promptctl import selectors, services
from promptctl.cli.agents import read_text_file
from promptctl.cli.common import actor_from_options, add_actor_argument


def register(groups) -> None:
    group = groups.add_parser("version", help="agent versions: create, list, diff")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)

    create = actions.add_parser("create", help="make a new server version with a new system prompt")
    create.add_argument("--agent", required=True)
    create.add_argument("--system-file", required=True)
    create.add_argument("--model", help="change the model too (default: keep it)")
    add_actor_argument(create)
    create.set_defaults(handler=version_create)

    listing = actions.add_parser("list", help="every recorded version of an agent")
    listing.add_argument("--agent", required=True)
    listing.set_defaults(handler=version_list)

    diff = actions.add_parser("diff", help="what changed between two versions")
    diff.add_argument("--agent", required=True)
    diff.add_argument("left", type=int, metavar="A")
    diff.add_argument("right", type=int, metavar="B")
    diff.set_defaults(handler=version_diff)


def version_create(options, out):
    actor = actor_from_options(options)
    agent = selectors.agent_get(name=options.agent)
    version = services.version_create(
        agent=agent,
        system_prompt=read_text_file(options.system_file, "system prompt"),
        actor=actor,
        model=options.model,
    )
    out.human(f"Created version {version.number} of {agent.name} (config sha256 {version.config_hash[:12]}).")
    return selectors.version_as_dict(version)


def version_list(options, out):
    agent = selectors.agent_get(name=options.agent)
    versions = [selectors.version_as_dict(v) for v in selectors.version_list(agent=agent)]
    out.table(
        [
            [
                v["version"],
                v["origin"],
                v["created_by"] or "-",
                v["created_at"][:19],
                v["model"],
                v["config_sha256"][:12],
            ]
            for v in versions
        ],
        ["version", "origin", "created by", "recorded", "model", "config sha256"],
    )
    return versions


def version_diff(options, out):
    agent = selectors.agent_get(name=options.agent)
    diff = selectors.version_diff(agent=agent, left_number=options.left, right_number=options.right)
    if diff.identical:
        out.human(f"Versions {options.left} and {options.right} of {agent.name} have the same configuration.")
    for line in diff.system_unified + diff.config_unified:
        out.human(line)
    return diff.as_dict()
