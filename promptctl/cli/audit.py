"""``promptctl audit verify|checkpoint|seal|archive``: check the record, publish its head, archive sealed segments."""

from __future__ import annotations

from pathlib import Path

from promptctl import selectors
from promptctl.audit import AuditKeyError, CheckpointRefused, audit_checkpoint_publish, checkpoint_path
from promptctl.audit.segments import audit_segment_archive, audit_segment_file_verify, audit_segment_seal
from promptctl.cli.common import actor_from_options, add_actor_argument
from promptctl.errors import DomainError


def register(groups) -> None:
    group = groups.add_parser("audit", help="the audit trail")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    verify = actions.add_parser(
        "verify", help="check every event's MAC and the chain against the published checkpoints; exit 1 if broken"
    )
    verify.add_argument(
        "--segment",
        metavar="FILE",
        type=Path,
        help="verify an exported segment file on its own (MACs, links, range, file MAC) instead of the live chain",
    )
    verify.set_defaults(handler=audit_verify)
    checkpoint = actions.add_parser(
        "checkpoint", help="publish the chain's head now (to PROMPTCTL_AUDIT_CHECKPOINT_FILE and the log)"
    )
    checkpoint.set_defaults(handler=audit_checkpoint)
    seal = actions.add_parser(
        "seal",
        help="seal events from the previous seal through SEQ (default: the latest checkpoint) and export them",
    )
    seal.add_argument(
        "--through", type=int, metavar="SEQ", help="the last event to seal (default: the latest checkpoint)"
    )
    seal.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="where to write the export (default: audit-segments/ beside the checkpoint file)",
    )
    add_actor_argument(seal, required=False)
    seal.set_defaults(handler=audit_seal)
    archive = actions.add_parser(
        "archive", help="delete a sealed segment's events from the database, after verifying its export again"
    )
    archive.add_argument("--segment", type=int, required=True, metavar="N", help="the segment number to archive")
    archive.add_argument("--file", type=Path, metavar="FILE", help="the export, if it moved since sealing")
    add_actor_argument(archive, required=False)
    archive.set_defaults(handler=audit_archive)


def audit_verify(options, out):
    if getattr(options, "segment", None) is not None:
        return audit_verify_segment(options, out)
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


def audit_verify_segment(options, out):
    try:
        check = audit_segment_file_verify(path=options.segment)
    except AuditKeyError as error:
        raise DomainError(str(error))
    if check.ok:
        out.human(check.message)
        return check.as_dict()
    if options.json:
        return check.as_dict(), 1
    for problem in check.problems:
        out.human(f"{options.segment}: {problem}")
    raise DomainError(check.message)


def audit_seal(options, out):
    try:
        segment = audit_segment_seal(
            actor=actor_from_options(options, required=False), through=options.through, path=options.out
        )
    except AuditKeyError as error:
        raise DomainError(str(error))
    out.human(
        f"Sealed segment {segment.number}: events #{segment.first_sequence} to #{segment.last_sequence} "
        f"(seal MAC {segment.last_mac[:16]}…), exported to {segment.export_path} and verified. Keep that file; "
        f"then `promptctl audit archive --segment {segment.number}` deletes these events from the database."
    )
    return {
        "segment": segment.number,
        "first_sequence": segment.first_sequence,
        "last_sequence": segment.last_sequence,
        "seal_mac": segment.last_mac,
        "file_mac": segment.file_mac,
        "export_path": segment.export_path,
    }


def audit_archive(options, out):
    try:
        segment = audit_segment_archive(
            actor=actor_from_options(options, required=False), number=options.segment, path=options.file
        )
    except AuditKeyError as error:
        raise DomainError(str(error))
    out.human(
        f"Archived segment {segment.number}: {segment.archived_events} events (#{segment.first_sequence} to "
        f"#{segment.last_sequence}) deleted from the database; `promptctl audit verify` now starts from its seal."
    )
    return {
        "segment": segment.number,
        "archived_events": segment.archived_events,
        "first_sequence": segment.first_sequence,
        "last_sequence": segment.last_sequence,
    }
