"""``promptctl change request|approve|reject|apply|withdraw|list|show``: the only way a pin moves."""

from __future__ import annotations

from promptctl import selectors, services
from promptctl.cli.common import actor_from_options, add_actor_argument
from promptctl.models import PRODUCTION, ChangeRequest


def register(groups) -> None:
    group = groups.add_parser("change", help="change requests: the reviewed way to move a pin")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)

    request = actions.add_parser("request", help="file a request to move a pin")
    request.add_argument("--agent", required=True)
    request.add_argument(
        "--kind", required=True, choices=ChangeRequest.Kind.values, help="route: make the agent the API's default"
    )
    request.add_argument(
        "--to", type=int, metavar="VERSION", help="the target version number (route: default the production version)"
    )
    request.add_argument("--channel", default=PRODUCTION)
    request.add_argument("--percent", type=int, help="canary share of traffic, 1-99 (canary only)")
    request.add_argument("--reason", required=True)
    request.add_argument("--evidence", metavar="REF", help="eval evidence, e.g. comparison:12 or run:7")
    request.add_argument(
        "--accept-regression",
        metavar="REASON",
        default="",
        help="accept a flagged regression (needs one more approval)",
    )
    add_actor_argument(request)
    request.set_defaults(handler=change_request)

    approve = actions.add_parser("approve", help="approve a pending request")
    approve.add_argument("id", type=int)
    approve.add_argument("--comment", default="")
    add_actor_argument(approve)
    approve.set_defaults(handler=change_approve)

    reject = actions.add_parser("reject", help="reject a request (closes it)")
    reject.add_argument("id", type=int)
    reject.add_argument("--comment", required=True)
    add_actor_argument(reject)
    reject.set_defaults(handler=change_reject)

    apply = actions.add_parser("apply", help="move the pin as an approved request says")
    apply.add_argument("id", type=int)
    add_actor_argument(apply)
    apply.set_defaults(handler=change_apply)

    withdraw = actions.add_parser("withdraw", help="take back your own open request")
    withdraw.add_argument("id", type=int)
    add_actor_argument(withdraw)
    withdraw.set_defaults(handler=change_withdraw)

    listing = actions.add_parser("list", help="change requests, newest first")
    listing.add_argument("--agent")
    listing.add_argument("--status", choices=ChangeRequest.Status.values)
    listing.set_defaults(handler=change_list)

    show = actions.add_parser("show", help="one request with its decisions")
    show.add_argument("id", type=int)
    show.set_defaults(handler=change_show)


def _fresh(change_id: int) -> dict:
    return selectors.change_request_fresh_as_dict(change_id=change_id)


def change_request(options, out):
    actor = actor_from_options(options)
    agent = selectors.agent_get(name=options.agent)
    change = services.change_request_create(
        agent=agent,
        kind=options.kind,
        target_number=options.to,
        channel=options.channel,
        canary_percent=options.percent,
        reason=options.reason,
        evidence_ref=options.evidence,
        accept_regression_reason=options.accept_regression,
        actor=actor,
    )
    out.human(
        f"Filed change request #{change.pk}: {change.kind} {agent.name}/{change.channel} → v{change.target_version.number}; "
        f"needs {change.approvals_required} approval(s) from {agent.approver_group!r}."
    )
    return _fresh(change.pk)


def change_approve(options, out):
    actor = actor_from_options(options)
    change = selectors.change_request_get(change_id=options.id)
    services.change_request_approve(change=change, reviewer=actor, comment=options.comment)
    data = _fresh(change.pk)
    out.human(
        f"Approved change request #{change.pk} ({data['approvals']}/{data['approvals_required']}); status {data['status']}."
    )
    return data


def change_reject(options, out):
    actor = actor_from_options(options)
    change = selectors.change_request_get(change_id=options.id)
    services.change_request_reject(change=change, reviewer=actor, comment=options.comment)
    out.human(f"Rejected change request #{change.pk}.")
    return _fresh(change.pk)


def change_apply(options, out):
    actor = actor_from_options(options)
    change = selectors.change_request_get(change_id=options.id)
    pin = services.change_request_apply(change=change, actor=actor)
    canary = f", canary v{pin.canary_version.number} at {pin.canary_percent}%" if pin.canary_version_id else ""
    if change.kind == ChangeRequest.Kind.ROUTE:
        out.human(f"Applied change request #{change.pk}: {pin.agent.name} is now the default agent.")
    else:
        out.human(
            f"Applied change request #{change.pk}: {pin.agent.name}/{pin.channel} pin is now v{pin.version.number}{canary}."
        )
    return selectors.change_applied_as_dict(change=change, pin=pin)


def change_withdraw(options, out):
    actor = actor_from_options(options)
    change = selectors.change_request_get(change_id=options.id)
    services.change_request_withdraw(change=change, actor=actor)
    out.human(f"Withdrew change request #{change.pk}.")
    return _fresh(change.pk)


def change_list(options, out):
    agent = selectors.agent_get(name=options.agent) if options.agent else None
    changes = [
        selectors.change_request_as_dict(c) for c in selectors.change_request_list(agent=agent, status=options.status)
    ]
    out.table(
        [
            [
                c["id"],
                c["agent"],
                c["channel"],
                c["kind"],
                c["base_version"] or "-",
                c["target_version"],
                f"{c['approvals']}/{c['approvals_required']}",
                c["status"],
                c["requested_by"],
                c["requested_at"][:19],
            ]
            for c in changes
        ],
        ["id", "agent", "channel", "kind", "from", "to", "approvals", "status", "requested by", "requested at"],
    )
    return changes


def change_show(options, out):
    change = selectors.change_request_get(change_id=options.id)
    data = selectors.change_request_fresh_as_dict(change_id=change.pk, with_decisions=True)
    out.human(
        f"#{data['id']} {data['kind']} {data['agent']}/{data['channel']}: "
        f"{'v' + str(data['base_version']) if data['base_version'] else '(no pin)'} → v{data['target_version']}"
        f" — {data['status']} ({data['approvals']}/{data['approvals_required']} approvals)"
    )
    out.human(f"Requested by {data['requested_by']} at {data['requested_at'][:19]}: {data['reason']}")
    if data["evidence_type"]:
        out.human(
            f"Evidence: {data['evidence_type']} {data['evidence_id'] or ''} {data['evidence'].get('summary', '')}".rstrip()
        )
    changed = (data["evidence"] or {}).get("gate_inputs_changed")
    if changed:
        out.human(f"WARNING: {changed['summary']}")
    for decision in data["decisions"]:
        out.human(
            f"  {decision['decision']} by {decision['reviewer']} at {decision['at'][:19]}{': ' + decision['comment'] if decision['comment'] else ''}"
        )
    if data["status_reason"]:
        out.human(f"Status: {data['status_reason']}")
    return data
