"""``promptctl agent create|list|status|export|sync``."""

from __future__ import annotations

from promptctl import selectors, services
from promptctl.cli.common import actor_from_options, add_actor_argument
from promptctl.cli.deployments import drift_print
from promptctl.errors import DomainError
from promptctl.inputs import text_file_read


def register(groups) -> None:
    group = groups.add_parser("agent", help="agents: create, list, status, sync with the server")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)

    create = actions.add_parser("create", help="create the remote agent and record version 1")
    create.add_argument("--name", required=True)
    create.add_argument("--model", required=True)
    create.add_argument("--system-file", required=True, help="file holding the system prompt")
    create.add_argument(
        "--environment", default=services.DEFAULT_ENVIRONMENT, help="environment name (reused if it exists)"
    )
    add_actor_argument(create)
    create.set_defaults(handler=agent_create)

    listing = actions.add_parser("list", help="every agent with its pins")
    listing.set_defaults(handler=agent_list)

    status = actions.add_parser("status", help="pins, versions, drift and open requests of one agent")
    status.add_argument("--agent", required=True)
    status.set_defaults(handler=agent_status)

    export = actions.add_parser("export", help="write a version's whole configuration as a TOML file")
    export.add_argument("name", nargs="?", metavar="NAME", help="the agent (or --agent NAME)")
    export.add_argument("--agent", dest="agent_option", metavar="NAME")
    export.add_argument("--version", type=int, metavar="N", help="default: the latest recorded version")
    export.add_argument("--output", metavar="FILE", help="default: print it")
    export.set_defaults(handler=agent_export)

    sync = actions.add_parser(
        "sync", help="record versions made on the server outside promptctl; report drift of bound deployments"
    )
    sync.add_argument("--agent", required=True)
    add_actor_argument(sync, required=False)
    sync.set_defaults(handler=agent_sync)


def agent_export(options, out):
    """The file ``version create --config`` takes back as "no change"; written to --output, or printed."""
    name = options.name or options.agent_option
    if not name or (options.name and options.agent_option and options.name != options.agent_option):
        raise DomainError("Name one agent: `promptctl agent export NAME` (or --agent NAME).", code="bad_input")
    exported = selectors.version_config_export(agent=selectors.agent_get(name=name), number=options.version)
    if options.output:
        try:
            with open(options.output, "w", encoding="utf-8", newline="\n") as handle:
                handle.write(exported["config_file"])
        except OSError as error:
            raise DomainError(f"Cannot write {options.output!r}: {error.strerror or error}.") from error
        out.human(f"Wrote version {exported['version']} of {name} to {options.output}.")
    else:
        out.human(exported["config_file"].rstrip("\n"))
    return exported


def read_text_file(path: str, what: str) -> str:
    """The file's text under promptctl's input rules (size cap, strict UTF-8, no NUL): promptctl.inputs."""
    return text_file_read(path, what=what)


def agent_create(options, out):
    actor = actor_from_options(options)
    agent = services.agent_create(
        name=options.name,
        model=options.model,
        system_prompt=read_text_file(options.system_file, "system prompt"),
        environment_name=options.environment,
        actor=actor,
    )
    out.human(
        f"Created agent {agent.name} ({agent.remote_id}) in environment {agent.environment_id}; "
        f"version {agent.latest_version_number} recorded. No pin yet: file a change request to promote it."
    )
    return selectors.agent_status(agent=agent)


def _pin_text(pin) -> str:
    if pin is None:
        return "-"
    canary = f" (canary v{pin.canary_version.number} {pin.canary_percent}%)" if pin.canary_version_id else ""
    return f"v{pin.version.number}{canary}"


def agent_list(options, out):
    rows, data = [], []
    for agent in selectors.agent_list():
        pins = {pin.channel: pin for pin in agent.pins.all()}
        rows.append(
            [
                agent.name,
                agent.remote_id,
                _pin_text(pins.get("production")),
                ", ".join(f"{c}={_pin_text(p)}" for c, p in sorted(pins.items()) if c != "production") or "-",
                agent.version_count,
                f"{agent.outside_count} outside" if agent.outside_count else "-",
            ]
        )
        data.append(selectors.agent_summary_as_dict(agent))
    out.table(rows, ["agent", "remote id", "production", "other pins", "versions", "drift"])
    if not rows:
        out.human(
            "No agents yet: `promptctl agent create --name NAME --model MODEL --system-file FILE` (with $PROMPTCTL_TOKEN set)."
        )
    return data


def agent_status(options, out):
    agent = selectors.agent_get(name=options.agent)
    status = selectors.agent_status(agent=agent)
    info = status["agent"]
    out.human(
        f"Agent {info['name']}  remote {info['remote_id']}  environment {info['environment_id']}  model {info['model']}"
    )
    out.human(
        f"Policy: {info['required_approvals']} approval(s) from group {info['approver_group']!r}; "
        f"regression tolerance {info['regression_tolerance']} ticket(s); canaries above "
        f"{info['canary_evidence_above_percent']}% need eval evidence."
    )
    if status["pins"]:
        for channel, pin in status["pins"].items():
            canary = f", canary v{pin['canary_version']} at {pin['canary_percent']}%" if pin["canary_version"] else ""
            out.human(
                f"Pin {channel}: v{pin['version']}{canary} (revision {pin['revision']}, change #{pin['change_request']})"
            )
    else:
        out.human("Pins: none yet.")
    out.human()
    out.table(
        [
            [v["version"], v["origin"], v["created_by"] or "-", v["created_at"][:19], v["config_sha256"][:12]]
            for v in status["versions"]
        ],
        ["version", "origin", "created by", "recorded", "config sha256"],
    )
    for drift in status["drift"]:
        out.human(
            f"WARNING: {drift['warning']} (found {drift['recorded_at'][:19]}); it reaches a pin only through a change request."
        )
    if status["open_change_requests"]:
        out.human()
        out.human("Open change requests:")
        for change in status["open_change_requests"]:
            out.human(
                f"  #{change['id']} {change['kind']} {change['channel']} → v{change['target_version']} "
                f"{change['status']} ({change['approvals']}/{change['approvals_required']}) by {change['requested_by']}"
            )
    return status


def agent_sync(options, out):
    agent = selectors.agent_get(name=options.agent)
    actor = actor_from_options(options, required=False)
    result = services.agent_sync(agent=agent, actor=actor)
    if result.new_versions:
        for version in result.new_versions:
            out.human(f"WARNING: version {version.number} was changed outside promptctl; recorded as such.")
    for version in result.reconciled:
        out.human(
            f"Recorded version {version.number}, made through promptctl by "
            f"{getattr(version.created_by, 'username', '?')}, whose record was still pending."
        )
    if not result.new_versions and not result.reconciled and not result.unstorable:
        out.human(f"{agent.name} is in sync: the server has nothing promptctl has not recorded.")
    for number in result.mismatched_numbers:
        out.human(f"WARNING: the server's configuration of version {number} differs from what promptctl recorded.")
    for number, why in result.unstorable.items():
        out.human(f"WARNING: version {number} on the server cannot be recorded ({why}); it cannot be pinned.")
    drift = services.deployments_check(agent=agent, actor=actor)  # bound deployments: changed outside promptctl?
    drift_print(agent=agent, findings=drift, out=out)
    return {
        "deployments": [finding.__dict__ for finding in drift],
        "agent": agent.name,
        "new_versions": [selectors.version_as_dict(v) for v in result.new_versions],
        "reconciled_versions": [selectors.version_as_dict(v) for v in result.reconciled],
        "latest_version": result.latest_version_number,
        "mismatched_versions": result.mismatched_numbers,
        "unstorable_versions": {str(number): why for number, why in result.unstorable.items()},
    }
