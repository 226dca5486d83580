"""``promptctl deployment bind|unbind|list|check|restore``: Managed Agents deployments that follow a channel's pin."""

from __future__ import annotations

from promptctl import selectors, services
from promptctl.cli.common import actor_from_options, add_actor_argument
from promptctl.errors import DomainError
from promptctl.models import PRODUCTION, DeploymentBinding
from promptctl.services.deployments import deployment_binding_snapshot


def register(groups) -> None:
    group = groups.add_parser("deployment", help="deployments bound to a channel: they follow its pin")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)

    bind = actions.add_parser("bind", help="bind a deployment to an agent's channel (the next apply moves it)")
    bind.add_argument("--agent", required=True)
    bind.add_argument("--channel", default=PRODUCTION)
    bind.add_argument("--deployment", required=True, metavar="ID", help="the deployment's id on Managed Agents")
    add_actor_argument(bind)
    bind.set_defaults(handler=deployment_bind)

    unbind = actions.add_parser("unbind", help="stop moving and watching a deployment (it keeps its version)")
    unbind.add_argument("--deployment", required=True, metavar="ID")
    add_actor_argument(unbind)
    unbind.set_defaults(handler=deployment_unbind)

    listing = actions.add_parser("list", help="bound deployments with what promptctl last saw of them")
    listing.add_argument("--agent")
    listing.set_defaults(handler=deployment_list)

    check = actions.add_parser("check", help="read every bound deployment of an agent and report drift")
    check.add_argument("--agent", required=True)
    add_actor_argument(check, required=False)
    check.set_defaults(handler=deployment_check)

    restore = actions.add_parser("restore", help="put the channel's pin back on its bound deployments")
    restore.add_argument("--agent", required=True)
    restore.add_argument("--channel", default=PRODUCTION)
    add_actor_argument(restore)
    restore.set_defaults(handler=deployment_restore)


def deployment_bind(options, out):
    actor = actor_from_options(options)
    agent = selectors.agent_get(name=options.agent)
    binding = services.deployment_bind(
        agent=agent, channel=options.channel, deployment_id=options.deployment, actor=actor
    )
    out.human(
        f"Bound {binding.name or binding.deployment_id} ({binding.deployment_id}) to {agent.name}/{binding.channel}: "
        f"{binding.get_state_display()}" + (f" — {binding.problem}" if binding.problem else "") + "."
    )
    return deployment_binding_snapshot(binding)


def deployment_unbind(options, out):
    actor = actor_from_options(options)
    binding = DeploymentBinding.objects.select_related("agent").filter(deployment_id=options.deployment).first()
    if binding is None:
        raise DomainError(
            f"Deployment {options.deployment} is not bound: `promptctl deployment list` shows the bound ones."
        )
    snapshot = deployment_binding_snapshot(binding)
    services.deployment_unbind(binding=binding, actor=actor)
    out.human(
        f"Unbound {options.deployment} from {snapshot['agent']}/{snapshot['channel']}: it keeps running "
        f"{'v' + str(snapshot['seen_version']) if snapshot['seen_version'] else 'what it runs'}, unwatched."
    )
    return snapshot


def _version(value) -> str:
    return f"v{value}" if value is not None else "-"


def deployment_list(options, out):
    bindings = DeploymentBinding.objects.select_related("agent").order_by("agent__name", "channel", "deployment_id")
    if options.agent:
        bindings = bindings.filter(agent=selectors.agent_get(name=options.agent))
    rows = [deployment_binding_snapshot(binding) for binding in bindings]
    if not rows:
        out.human("No deployments are bound: `promptctl deployment bind --agent NAME --deployment ID` binds one.")
    for row in rows:
        problem = f" — {row['problem']}" if row["problem"] else ""
        out.human(
            f"{row['deployment_id']} {row['name'] or '-'} → {row['agent']}/{row['channel']}: {row['state']} "
            f"(set {_version(row['set_version'])}, seen {_version(row['seen_version'])} {row['seen_status'] or ''})"
            f"{problem}"
        )
    return rows


def deployment_check(options, out):
    agent = selectors.agent_get(name=options.agent)
    findings = services.deployments_check(agent=agent, actor=actor_from_options(options, required=False))
    drift_print(agent=agent, findings=findings, out=out)
    return [finding.__dict__ for finding in findings]


def drift_print(*, agent, findings, out) -> None:
    """What ``deployment check`` and ``agent sync`` print about bound deployments."""
    if not findings and agent.deployment_bindings.exists():
        out.human(f"Every deployment bound to {agent.name} runs the version promptctl set.")
    channels = set()
    for finding in findings:
        label = f"{finding.name} ({finding.deployment_id})" if finding.name else finding.deployment_id
        prefix = "WARNING: " if finding.state in ("drifted", "behind") else ""
        out.human(f"{prefix}deployment {label} is {finding.state}: {finding.problem}.")
        channels.add(DeploymentBinding.objects.get(deployment_id=finding.deployment_id).channel)
    for channel in sorted(channels):
        out.human(
            f"To put the {channel} pin back on them: promptctl deployment restore --agent {agent.name} "
            f"--channel {channel}"
        )


def deployment_restore(options, out):
    actor = actor_from_options(options)
    agent = selectors.agent_get(name=options.agent)
    outcome = services.deployments_restore(agent=agent, channel=options.channel, actor=actor)
    if outcome is None:
        out.human(f"{agent.name} has no {options.channel} pin: nothing to restore.")
        return {}
    out.human(f"Deployments of {agent.name}/{options.channel} are on the pin's v{outcome.version}: {outcome.words()}.")
    return outcome.as_record()
