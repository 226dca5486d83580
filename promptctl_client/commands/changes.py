"""``promptctl agent|version|change|pin|audit``: change control, as ``manage.py promptctl`` words it.

Each handler is one API call (``eval`` and ``testset`` are in ``evals``);
its JSON is the server's response, unchanged.
"""

from __future__ import annotations

from promptctl_client.output import short_time
from promptctl_client.transport import ClientError, segment

KINDS = ["promote", "rollback", "canary", "route"]
STATUSES = ["pending", "approved", "rejected", "applied", "withdrawn", "superseded"]


def register(groups) -> None:
    agent = groups.add_parser("agent", help="agents: list, show")
    actions = agent.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="every agent with its pins").set_defaults(handler=agent_list)
    for name in ("show", "status"):
        show = actions.add_parser(name, help="pins, versions, drift and open requests of one agent")
        show.add_argument("--agent", required=True)
        show.set_defaults(handler=agent_show)
    export = actions.add_parser("export", help="write a version's whole configuration as a TOML file")
    export.add_argument("name", nargs="?", metavar="NAME", help="the agent (or --agent NAME)")
    export.add_argument("--agent", dest="agent_option", metavar="NAME")
    export.add_argument("--version", type=int, metavar="N", help="default: the latest recorded version")
    export.add_argument("--output", metavar="FILE", help="default: print it")
    export.set_defaults(handler=agent_export)

    version = groups.add_parser("version", help="agent versions: create, list, show, diff")
    actions = version.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create", help="make a new server version from a configuration file, or with a new system prompt"
    )
    create.add_argument("--agent", required=True)
    source = create.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--config", metavar="FILE", help="the whole configuration as TOML (`promptctl agent export` writes one)"
    )
    source.add_argument("--system-file", help="file holding a new system prompt (UTF-8, 100 KB at most)")
    create.add_argument("--model", help="with --system-file: change the model too (default: keep it)")
    create.set_defaults(handler=version_create)
    listing = actions.add_parser("list", help="every recorded version of an agent")
    listing.add_argument("--agent", required=True)
    listing.set_defaults(handler=version_list)
    show = actions.add_parser("show", help="one version")
    show.add_argument("--agent", required=True)
    show.add_argument("number", type=int, metavar="N")
    show.set_defaults(handler=version_show)
    diff = actions.add_parser("diff", help="what changed between two versions")
    diff.add_argument("--agent", required=True)
    diff.add_argument("left", type=int, metavar="A")
    diff.add_argument("right", type=int, metavar="B")
    diff.set_defaults(handler=version_diff)

    change = groups.add_parser("change", help="change requests: the reviewed way to move a pin")
    actions = change.add_subparsers(dest="action", metavar="ACTION", required=True)
    request = actions.add_parser("request", help="file a request to move a pin")
    request.add_argument("--agent", required=True)
    request.add_argument("--kind", required=True, choices=KINDS, help="route: make the agent the API's default")
    request.add_argument("--to", type=int, metavar="VERSION", help="the target version number")
    request.add_argument("--channel", default="production")
    request.add_argument("--percent", type=int, help="canary share of traffic, 1-99 (canary only)")
    request.add_argument("--reason", required=True)
    request.add_argument("--evidence", metavar="REF", help="eval evidence, e.g. comparison:12 or run:7")
    request.add_argument("--accept-regression", metavar="REASON", default="", help="accept a flagged regression")
    request.set_defaults(handler=change_request)
    for name, text in (("approve", "approve a pending request"), ("reject", "reject a request (closes it)")):
        decide = actions.add_parser(name, help=text)
        decide.add_argument("id", type=int)
        decide.add_argument("--comment", default="", required=name == "reject")
        decide.set_defaults(handler=change_decide, decision=name)
    for name, text in (
        ("apply", "move the pin as an approved request says"),
        ("withdraw", "take back your own open request"),
    ):
        act = actions.add_parser(name, help=text)
        act.add_argument("id", type=int)
        act.set_defaults(handler=change_apply if name == "apply" else change_withdraw)
    listing = actions.add_parser("list", help="change requests, newest first")
    listing.add_argument("--agent")
    listing.add_argument("--status", choices=STATUSES)
    listing.set_defaults(handler=change_list)
    show = actions.add_parser("show", help="one request with its decisions")
    show.add_argument("id", type=int)
    show.set_defaults(handler=change_show)

    pin = groups.add_parser("pin", help="the pins of an agent")
    actions = pin.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="every channel's pinned version")
    listing.add_argument("--agent", required=True)
    listing.set_defaults(handler=pin_list)

    audit = groups.add_parser("audit", help="the audit trail")
    actions = audit.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("verify", help="check the chain on the server; exit 1 if broken").set_defaults(
        handler=audit_verify
    )
    events = actions.add_parser("events", help="the newest audit events")
    events.add_argument("--agent")
    events.add_argument("--limit", type=int, default=50)
    events.set_defaults(handler=audit_events)


# --- agents and versions ----------------------------------------------------------------


def _pin_text(pin: dict | None) -> str:
    if not pin:
        return "-"
    canary = f" (canary v{pin['canary_version']} {pin['canary_percent']}%)" if pin.get("canary_version") else ""
    return f"v{pin['version']}{canary}"


def agent_list(options, ctx):
    data = ctx.api.get("/agents")
    rows = []
    for agent in data:
        pins = agent.get("pins") or {}
        others = ", ".join(f"{c}={_pin_text(p)}" for c, p in sorted(pins.items()) if c != "production")
        rows.append(
            [
                agent["name"],
                agent.get("remote_id"),
                _pin_text(pins.get("production")),
                others or "-",
                agent.get("versions"),
                f"{agent['drift']} outside" if agent.get("drift") else "-",
            ]
        )
    ctx.out.table(rows, ["agent", "remote id", "production", "other pins", "versions", "drift"])
    if not rows:
        ctx.out.human("No agents yet: an operator creates them (`python manage.py promptctl agent create ...`).")
    return data


def agent_show(options, ctx):
    status = ctx.api.get(f"/agents/{segment(options.agent)}")
    out, info = ctx.out, status["agent"]
    out.human(
        f"Agent {info['name']}  remote {info['remote_id']}  environment {info['environment_id']}  model {info['model']}"
    )
    out.human(
        f"Policy: {info['required_approvals']} approval(s) from group {info['approver_group']!r}; "
        f"regression tolerance {info['regression_tolerance']} ticket(s); canaries above "
        f"{info['canary_evidence_above_percent']}% need eval evidence."
    )
    for channel, pin in status["pins"].items():
        canary = f", canary v{pin['canary_version']} at {pin['canary_percent']}%" if pin["canary_version"] else ""
        out.human(
            f"Pin {channel}: v{pin['version']}{canary} (revision {pin['revision']}, change #{pin['change_request']})"
        )
    if not status["pins"]:
        out.human("Pins: none yet.")
    out.human()
    _versions_table(out, status["versions"], with_model=False)
    for drift in status["drift"]:
        out.human(
            f"WARNING: {drift['warning']} (found {short_time(drift['recorded_at'])}); it reaches a pin only through a change request."
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


def _versions_table(out, versions: list[dict], *, with_model: bool = True) -> None:
    headers = ["version", "origin", "created by", "recorded"] + (["model"] if with_model else []) + ["config sha256"]
    out.table(
        [
            [v["version"], v["origin"], v["created_by"] or "-", short_time(v["created_at"])]
            + ([v["model"]] if with_model else [])
            + [(v["config_sha256"] or "")[:12]]
            for v in versions
        ],
        headers,
    )


def agent_export(options, ctx):
    name = options.name or options.agent_option
    if not name or (options.name and options.agent_option and options.name != options.agent_option):
        raise ClientError("Name one agent: `promptctl agent export NAME` (or --agent NAME).")
    query = {} if options.version is None else {"version": options.version}
    exported = ctx.api.get(f"/agents/{segment(name)}/export", query)
    if options.output:
        try:
            with open(options.output, "w", encoding="utf-8", newline="\n") as handle:
                handle.write(exported["config_file"])
        except OSError as error:
            raise ClientError(f"Cannot write {options.output!r}: {error.strerror or error}.")
        ctx.out.human(f"Wrote version {exported['version']} of {name} to {options.output}.")
    else:
        ctx.out.human(exported["config_file"].rstrip("\n"))
    return exported


def version_create(options, ctx):
    from promptctl_client.files import config_file_read, text_file_read

    if options.config:
        if options.model:
            raise ClientError("--model goes with --system-file; with --config, set the model in the file.")
        body = {"config": config_file_read(options.config)}
    else:
        prompt = text_file_read(options.system_file, what="system prompt")
        body = {"system_prompt": prompt} | ({"model": options.model} if options.model else {})
    version = ctx.api.post(f"/agents/{segment(options.agent)}/versions", body)
    ctx.out.human(
        f"Created version {version['version']} of {options.agent} (config sha256 {version['config_sha256'][:12]})."
    )
    return version


def version_list(options, ctx):
    versions = ctx.api.get(f"/agents/{segment(options.agent)}/versions")
    _versions_table(ctx.out, versions)
    return versions


def version_show(options, ctx):
    version = ctx.api.get(f"/agents/{segment(options.agent)}/versions/{options.number}")
    for key in ("version", "origin", "created_by", "created_at", "model", "config_sha256"):
        if key in version:
            ctx.out.human(f"{key.replace('_', ' ')}: {version[key] if version[key] is not None else '-'}")
    prompt = version.get("system_prompt") or (version.get("config") or {}).get("system")
    if prompt:
        ctx.out.human()
        ctx.out.human(prompt)
    return version


def version_diff(options, ctx):
    diff = ctx.api.get(f"/agents/{segment(options.agent)}/diff", {"from": options.left, "to": options.right})
    if diff["identical"]:
        ctx.out.human(f"Versions {options.left} and {options.right} of {diff['agent']} have the same configuration.")
    for line in diff["system_prompt_diff"] + [_field_line(row) for row in diff.get("fields", [])]:
        ctx.out.human(line)
    return diff


def _value_text(value) -> str:
    import json

    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)


def _field_line(row: dict) -> str:
    """``~ model: claude-sonnet-4-5 -> claude-sonnet-4-6``, as ``manage.py promptctl version diff`` prints it."""
    if row["change"] == "added":
        return f"+ {row['label']}: {_value_text(row['new'])}"
    if row["change"] == "removed":
        return f"- {row['label']}: {_value_text(row['old'])}"
    return f"~ {row['label']}: {_value_text(row['old'])} -> {_value_text(row['new'])}"


# --- change requests --------------------------------------------------------------------


def change_request(options, ctx):
    body = {
        "agent": options.agent,
        "kind": options.kind,
        "to": options.to,
        "channel": options.channel,
        "canary_percent": options.percent,
        "evidence": options.evidence,
        "accept_regression": options.accept_regression or None,
        "reason": options.reason,
    }
    change = ctx.api.post("/changes", {key: value for key, value in body.items() if value is not None})
    ctx.out.human(
        f"Filed change request #{change['id']}: {change['kind']} {change['agent']}/{change['channel']} → "
        f"v{change['target_version']}; needs {change['approvals_required']} approval(s)."
    )
    return change


def change_decide(options, ctx):
    body = {"comment": options.comment}
    data = ctx.api.post(f"/changes/{options.id}/{options.decision}", body)
    if options.decision == "approve":
        ctx.out.human(
            f"Approved change request #{options.id} ({data['approvals']}/{data['approvals_required']}); "
            f"status {data['status']}."
        )
    else:
        ctx.out.human(f"Rejected change request #{options.id}.")
    return data


def change_apply(options, ctx):
    data = ctx.api.post(f"/changes/{options.id}/apply")
    change, pin = data.get("change_request", data), data.get("pin")
    if change.get("kind") == "route":
        ctx.out.human(f"Applied change request #{options.id}: {change['agent']} is now the default agent.")
    elif pin:
        canary = f", canary v{pin['canary_version']} at {pin['canary_percent']}%" if pin.get("canary_version") else ""
        ctx.out.human(
            f"Applied change request #{options.id}: {change['agent']}/{pin.get('channel', change['channel'])} "
            f"pin is now v{pin['version']}{canary}."
        )
    else:
        ctx.out.human(f"Applied change request #{options.id}; status {change.get('status')}.")
    return data


def change_withdraw(options, ctx):
    data = ctx.api.post(f"/changes/{options.id}/withdraw")
    ctx.out.human(f"Withdrew change request #{options.id}.")
    return data


def change_list(options, ctx):
    changes = ctx.api.get("/changes", {"agent": options.agent, "status": options.status})
    ctx.out.table(
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
                short_time(c["requested_at"]),
            ]
            for c in changes
        ],
        ["id", "agent", "channel", "kind", "from", "to", "approvals", "status", "requested by", "requested at"],
    )
    return changes


def change_show(options, ctx):
    data = ctx.api.get(f"/changes/{options.id}")
    out = ctx.out
    base = f"v{data['base_version']}" if data["base_version"] else "(no pin)"
    out.human(
        f"#{data['id']} {data['kind']} {data['agent']}/{data['channel']}: {base} → v{data['target_version']}"
        f" — {data['status']} ({data['approvals']}/{data['approvals_required']} approvals)"
    )
    out.human(f"Requested by {data['requested_by']} at {short_time(data['requested_at'])}: {data['reason']}")
    evidence = data.get("evidence") or {}
    if data.get("evidence_type"):
        out.human(
            f"Evidence: {data['evidence_type']} {data['evidence_id'] or ''} {evidence.get('summary', '')}".rstrip()
        )
    changed = evidence.get("gate_inputs_changed")
    if changed:
        out.human(f"WARNING: {changed['summary']}")
    for decision in data.get("decisions", []):
        comment = f": {decision['comment']}" if decision.get("comment") else ""
        out.human(f"  {decision['decision']} by {decision['reviewer']} at {short_time(decision['at'])}{comment}")
    if data.get("status_reason"):
        out.human(f"Status: {data['status_reason']}")
    return data


# --- pins and the audit trail -------------------------------------------------------------


def pin_list(options, ctx):
    data = ctx.api.get(f"/agents/{segment(options.agent)}/pins")
    pins = data if isinstance(data, list) else [{"channel": channel, **pin} for channel, pin in sorted(data.items())]
    ctx.out.table(
        [
            [
                p["channel"],
                f"v{p['version']}",
                f"v{p['canary_version']} at {p['canary_percent']}%" if p.get("canary_version") else "-",
                p.get("revision"),
                f"#{p['change_request']}" if p.get("change_request") else "-",
                short_time(p.get("updated_at")),
            ]
            for p in pins
        ],
        ["channel", "version", "canary", "revision", "change", "updated"],
    )
    if not pins:
        ctx.out.human(f"{options.agent} has no pins yet: file a change request to promote a version.")
    return data


def audit_verify(options, ctx):
    data = ctx.api.get("/audit/verify")
    if data["ok"]:
        ctx.out.human(data["message"])
        for note in data.get("notes", []):
            ctx.out.human(note)
        return data
    if options.json:
        return data, 1
    for finding in data.get("findings", []):
        where = f"#{finding['sequence']}" if finding.get("sequence") is not None else "checkpoints"
        ctx.out.human(f"{where}: {finding['name']}: {finding['detail']}")
    if data.get("coverage"):
        ctx.out.human(data["coverage"])
    raise ClientError(data["message"])


def audit_events(options, ctx):
    events = ctx.api.get("/audit/events", {"agent": options.agent, "limit": options.limit})
    ctx.out.table(
        [
            [
                e["sequence"],
                short_time(e.get("occurred_at")),
                e.get("actor") or "-",
                e.get("verb"),
                f"{e.get('object_type')} {e.get('object_repr') or e.get('object_id') or ''}".strip(),
                e.get("token_ref") or (f"#{e['token_id']}" if e.get("token_id") is not None else "-"),
            ]
            for e in events
        ],
        ["sequence", "at", "actor", "verb", "object", "token"],
    )
    return events
