"""Attacks on the record itself: the audit table, its chain head and its checkpoints."""

from __future__ import annotations

from redteam.context import Context, verify_outcome


def control(context: Context) -> tuple[str, str]:
    """The honest baseline must verify: a check that cries wolf would hide real findings."""
    from promptctl.audit import audit_verify

    result = audit_verify()
    if result.ok:
        return "clean", result.message
    return "FALSE ALARM", result.message


def audit_truncate(context: Context) -> tuple[str, str]:
    context.owner_sql(["DELETE FROM promptctl_auditevent", "DELETE FROM promptctl_auditchainhead"])
    return verify_outcome()


def audit_delete_tail(context: Context) -> tuple[str, str]:
    (last,) = context.rows("SELECT max(sequence) FROM promptctl_auditevent")[0]
    keep = last - 5
    context.owner_sql(
        [
            f"DELETE FROM promptctl_auditevent WHERE sequence > {keep}",
            "UPDATE promptctl_auditchainhead SET sequence = (SELECT sequence FROM promptctl_auditevent "
            f"WHERE sequence = {keep}), hash = (SELECT hash FROM promptctl_auditevent WHERE sequence = {keep})",
        ]
    )
    return verify_outcome()


def audit_rewrite(context: Context) -> tuple[str, str]:
    """Make carol, not bob, the one who approved v2, then re-link and re-hash every later event and the head.

    The attacker has the code and the database, not the key: they re-seal with
    the formula anyone can compute (plain SHA-256, as events were sealed before
    the keyed chain).
    """
    from promptctl.audit.macs import legacy_event_hash
    from promptctl.models import AuditEvent

    target = AuditEvent.objects.filter(actor_username="bob", verb__contains="approve").order_by("sequence").first()
    events = list(AuditEvent.objects.filter(sequence__gte=target.sequence).order_by("sequence"))
    previous = AuditEvent.objects.get(sequence=target.sequence - 1).hash
    statements: list[str | tuple[str, list]] = []
    for event in events:
        if event.pk == target.pk:
            event.actor_username = "carol"
            event.actor_id = context.user("carol").pk
        event.previous_hash = previous
        event.key_id = ""
        event.hash = legacy_event_hash(event)
        previous = event.hash
        statements.append(
            (
                "UPDATE promptctl_auditevent SET actor_username = %s, actor_id = %s, previous_hash = %s, "
                "key_id = %s, hash = %s WHERE id = %s",
                [event.actor_username, event.actor_id, event.previous_hash, event.key_id, event.hash, event.pk],
            )
        )
    statements.append(("UPDATE promptctl_auditchainhead SET sequence = %s, hash = %s", [events[-1].sequence, previous]))
    context.owner_sql(statements)
    return verify_outcome()


def junk_in_the_record(context: Context) -> tuple[str, str]:
    """A checkpoint line with the wrong types and an audit row with a date that is not one: named, not a crash."""
    from promptctl.audit.checkpoints import checkpoint_path
    from promptctl.audit.keys import audit_key_ring

    key_id = audit_key_ring().current.key_id
    with checkpoint_path().open("a") as handle:
        handle.write(
            '{"format": "promptctl.audit.checkpoint/1", "sequence": 1, "mac": "x", "published_at": "x", '
            f'"key_id": ["{key_id}"], "legacy_until": 0, "reason": "x", "checkpoint_mac": 5}}\n'
        )
    return verify_outcome()


def checkpoints_deleted(context: Context) -> tuple[str, str]:
    """The checkpoint file deleted, once the grace for the last pin move's checkpoint has passed."""
    import time

    from django.conf import settings

    from promptctl.audit.checkpoints import checkpoint_path

    time.sleep(2 * settings.PROMPTCTL_AUDIT_CHECKPOINT_SECONDS + 0.2)
    checkpoint_path().unlink()
    return verify_outcome()


def archive_by_hand(context: Context) -> tuple[str, str]:
    """An operator seals events #1 to #10 honestly; the owner then marks the segment archived and deletes them in SQL.

    The one update a segment row allows is its archiving, so the row itself stays valid: what is
    missing is the ``audit.archive`` event the archive command writes with the check it made.
    """
    from promptctl.audit.segments import audit_segment_seal

    audit_segment_seal(actor=None, through=10)
    context.owner_sql(
        [
            "UPDATE promptctl_auditsegment SET archived_at = CURRENT_TIMESTAMP, archived_events = 10 WHERE number = 1",
            "DELETE FROM promptctl_auditevent WHERE sequence <= 10",
        ]
    )
    return verify_outcome()


def archive_marked_only(context: Context) -> tuple[str, str]:
    """Events #1 to #10 sealed honestly; the segment is then marked archived in SQL and its events left in place.

    Marking is the one update the row allows, once: done by hand, it would block archiving that
    segment for good (``audit archive`` would say "archived already").
    """
    from promptctl.audit.segments import audit_segment_seal, segment_directory

    audit_segment_seal(actor=None, through=10, path=segment_directory() / "segment-marked-only.jsonl")
    context.owner_sql(["UPDATE promptctl_auditsegment SET archived_at = CURRENT_TIMESTAMP WHERE number = 1"])
    return verify_outcome()


def archive_forged(context: Context) -> tuple[str, str]:
    """The owner writes a segment row of their own, "archiving" events #1 to #12, and deletes those events.

    They have the database, not the audit key: the row's MACs are made up, and no seal was exported.
    """
    context.owner_sql(
        [
            (
                "INSERT INTO promptctl_auditsegment (number, first_sequence, last_sequence, last_mac, "
                "previous_seal_mac, file_mac, export_path, export_verified, key_id, row_mac, sealed_at, "
                "archived_at, archived_events) SELECT 1, 1, 12, hash, %s, %s, %s, true, key_id, %s, "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 12 FROM promptctl_auditevent WHERE sequence = 12",
                ["0" * 64, "f" * 64, "/tmp/segment-000001.jsonl", "e" * 64],
            ),
            "DELETE FROM promptctl_auditevent WHERE sequence <= 12",
        ]
    )
    return verify_outcome()
