"""``promptctl audit verify`` and ``promptctl audit checkpoint``: check the record, publish its head."""

from __future__ import annotations

from promptctl import selectors
from promptctl.audit import AuditKeyError, CheckpointRefused, audit_checkpoint_publish, checkpoint_path
from promptctl.errors import DomainError


def register(groups) -> None:
    group = groups.add_parser("audit", help="the audit trail")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    verify = actions.add_parser(
        "verify", help="check every event's MAC and the chain against the published checkpoints; exit 1 if broken"
    )
    verify.set_defaults(handler=audit_verify)
    checkpoint = actions.add_parser(
        "checkpoint", help="publish the chain's head now (to PROMPTCTL_AUDIT_CHECKPOINT_FILE and the log)"
    )
    checkpoint.set_defaults(handler=audit_checkpoint)


def audit_verify(options, out):
    try:
        result = selectors.audit_chain_verify()
    except AuditKeyError as error:
        raise DomainError(str(error))
    data = result.as_dict()
    if result.ok:
        out.human(result.message)
        for note in result.notes:
            out.human(note)
        return data
    if options.json:
        return data, 1
    for finding in result.findings:
        where = f"#{finding.sequence}" if finding.sequence is not None else "checkpoints"
        out.human(f"{where}: {finding.text}")
    out.human(result.coverage)
    raise DomainError(result.message)


def audit_checkpoint(options, out):
    try:
        checkpoint = audit_checkpoint_publish(reason="command")
    except CheckpointRefused as refusal:
        raise DomainError(
            f"No checkpoint published: {refusal}. Run `promptctl audit verify` to see what happened to the record."
        )
    except AuditKeyError as error:
        raise DomainError(str(error))
    assert checkpoint is not None  # only scheduled checkpoints are ever skipped
    out.human(
        f"Checkpoint published: #{checkpoint.sequence} (MAC {checkpoint.mac[:16]}…, key {checkpoint.key_id}) "
        f"appended to {checkpoint_path()}."
    )
    return checkpoint.as_dict()
