"""``promptctl version create|list|diff``."""

from __future__ import annotations

from promptctl import selectors, services
from promptctl.cli.agents import read_text_file
from promptctl.cli.common import actor_from_options, add_actor_argument
from promptctl.config_files import config_file_read
from promptctl.errors import DomainError


def register(groups) -> None:
    group = groups.add_parser("version", help="agent versions: create, list, diff")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)

    create = actions.add_parser(
        "create", help="make a new server version from a configuration file, or with a new system prompt"
    )
    create.add_argument("--agent", required=True)
    source = create.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--config", metavar="FILE", help="the whole configuration as TOML (`promptctl agent export` writes one)"
    )
    source.add_argument("--system-file", help="a new system prompt; nothing else changes")
    create.add_argument("--model", help="with --system-file: change the model too (default: keep it)")
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
    if options.config:
        if options.model:
            raise DomainError("--model goes with --system-file; with --config, set the model in the file.")
        version = services.version_create(agent=agent, config=config_file_read(options.config), actor=actor)
    else:
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
    for line in diff.lines():
        out.human(line)
    return diff.as_dict()
