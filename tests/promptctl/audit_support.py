"""Playing an insider against the audit record: raw SQL as the database's owner, rewrites without the key."""

from __future__ import annotations

import io
import json
import secrets
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.db import connection

from promptctl.audit import GENESIS_HASH, event_mac, legacy_event_hash
from promptctl.audit.keys import AuditKey, audit_key_id
from promptctl.models import AuditEvent

AUDIT_TABLES = ("promptctl_auditevent", "promptctl_auditchainhead")


def as_owner(*statements: tuple[str, list]) -> None:
    """Run SQL the way the database's owner could: with the record's triggers out of the way.

    PostgreSQL: ``session_replication_role = replica`` (a superuser's or owner's
    switch) silences every trigger. SQLite: whoever holds the file drops them.
    Either way it happens inside the test's transaction and is rolled back after.
    """
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no trigger events pending before TRUNCATE
            cursor.execute("SET session_replication_role = replica")
            try:
                for sql, params in statements:
                    cursor.execute(sql, params)
            finally:
                cursor.execute("SET session_replication_role = DEFAULT")
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        else:
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN (%s, %s)", list(AUDIT_TABLES)
            )
            for (name,) in cursor.fetchall():
                cursor.execute(f'DROP TRIGGER "{name}"')
            for sql, params in statements:
                cursor.execute(sql, params)


def truncate_everything() -> None:
    if connection.vendor == "postgresql":
        as_owner(("TRUNCATE promptctl_auditevent", []), ("DELETE FROM promptctl_auditchainhead", []))
    else:
        as_owner(("DELETE FROM promptctl_auditevent", []), ("DELETE FROM promptctl_auditchainhead", []))


def seal_with_own_key(event: AuditEvent) -> None:
    """An attacker's MAC: a key of their own, under the real key's id (they do not have the real key)."""
    event.hash = event_mac(event, AuditKey(event.key_id, secrets.token_bytes(32)))


def seal_with_own_key_id(event: AuditEvent) -> None:
    secret = secrets.token_urlsafe(48).encode()
    key = AuditKey(audit_key_id(secret), secret)
    event.key_id = key.key_id
    event.hash = event_mac(event, key)


def seal_with_plain_sha(event: AuditEvent) -> None:
    """The old formula: plain SHA-256, which anyone can compute."""
    event.key_id = ""
    event.hash = legacy_event_hash(event)


def rewrite_from(
    start: int, *, edit: Callable[[AuditEvent], None], seal: Callable[[AuditEvent], None], rewind_head: bool = True
) -> list[AuditEvent]:
    """Edit event #start, then re-link and re-seal it and every later event, and move the head to match."""
    events = list(AuditEvent.objects.filter(sequence__gte=start).order_by("sequence"))
    previous = AuditEvent.objects.get(sequence=start - 1).hash if start > 1 else GENESIS_HASH
    statements = []
    for event in events:
        if event.sequence == start:
            edit(event)
        event.previous_hash = previous
        seal(event)
        statements.append(
            (
                "UPDATE promptctl_auditevent SET verb = %s, object_repr = %s, previous_hash = %s, key_id = %s,"
                " hash = %s WHERE id = %s",
                [event.verb, event.object_repr, event.previous_hash, event.key_id, event.hash, event.pk],
            )
        )
        previous = event.hash
    if rewind_head:
        statements.append(
            (
                "UPDATE promptctl_auditchainhead SET sequence = %s, hash = %s WHERE id = 1",
                [events[-1].sequence, previous],
            )
        )
    as_owner(*statements)
    return events


def checkpoint_lines() -> list[dict]:
    path = Path(settings.PROMPTCTL_AUDIT_CHECKPOINT_FILE)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def cli(*arguments: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("promptctl", *arguments, stdout=out, stderr=err)
    except SystemExit as exit_:
        return int(exit_.code), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def kinds(result) -> set[str]:
    return {finding.kind for finding in result.findings}


def as_owner_everywhere(*statements: tuple[str, list]) -> None:
    """``as_owner``, with every trigger of the database out of the way (not only the audit tables')."""
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            for (name,) in cursor.fetchall():
                cursor.execute(f'DROP TRIGGER "{name}"')
    as_owner(*statements)
