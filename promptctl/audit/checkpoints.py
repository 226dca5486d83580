"""Checkpoints: the chain's head, MACed and published outside the database.

Rules, and why:

- A checkpoint is one JSON line: ``sequence``, the head event's ``mac``,
  ``published_at``, the ``key_id`` that MACed it, ``legacy_until`` (the last
  event written before the chain was keyed; 0 if none), why it was published,
  and ``checkpoint_mac`` over all of those. Whoever holds the database but not
  the key can neither forge one nor make a rewritten chain agree with one.
- Lines are appended to ``PROMPTCTL_AUDIT_CHECKPOINT_FILE`` (opened for
  append only, under an exclusive lock, fsync'ed) and logged by the logger
  ``promptctl.audit.checkpoint``, so they can be shipped to storage the
  database's owners cannot rewrite (docs/OPERATIONS.md).
- Before publishing, the events since the last checkpoint are checked against
  it (each link and MAC, from the checkpointed event on): a new checkpoint is
  only ever a consistent extension of the previous one, as a transparency
  log's signed tree head is. A chain that fails is refused, never signed.
- Published after every pin move (on commit, from ``audit_record``), on a
  schedule (Celery beat and every worker's own timer, ``promptctl.tasks``),
  and by ``promptctl audit checkpoint``.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from promptctl.audit.keys import AuditKeyRing, audit_key_ring
from promptctl.audit.macs import (
    GENESIS_HASH,
    LEGACY_KEY_ID,
    checkpoint_mac,
    event_mac,
    legacy_event_hash,
    macs_equal,
    timestamp,
)
from promptctl.models import AuditEvent

logger = logging.getLogger("promptctl.audit.checkpoint")

FORMAT = "promptctl.audit.checkpoint/1"
TAIL_BYTES = 65536


class CheckpointRefused(RuntimeError):
    """The chain does not extend the last checkpoint consistently; nothing was published."""


@dataclass(frozen=True)
class Checkpoint:
    format: str
    sequence: int
    mac: str
    published_at: str
    key_id: str
    legacy_until: int
    reason: str
    checkpoint_mac: str = ""

    @property
    def published(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.published_at)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CheckpointLine:
    """One line of the checkpoint file: its checkpoint if it parsed, and why it cannot be trusted if not."""

    number: int
    checkpoint: Checkpoint | None
    problem: str = ""


def checkpoint_path() -> Path:
    return Path(settings.PROMPTCTL_AUDIT_CHECKPOINT_FILE)


def checkpoint_check(line: str, number: int, ring: AuditKeyRing) -> CheckpointLine:
    """Parse one line and check its own MAC with the key it names."""
    try:
        data = json.loads(line)
        checkpoint = Checkpoint(**data)
        if checkpoint.format != FORMAT or not _well_typed(checkpoint):
            raise ValueError(checkpoint.format)
    except (ValueError, TypeError):
        return CheckpointLine(number, None, "it is not a promptctl checkpoint (unreadable or wrong fields)")
    key = ring.get(checkpoint.key_id)
    if key is None:
        return CheckpointLine(
            number, checkpoint, f"it names key {checkpoint.key_id!r}, which is not in the audit key ring"
        )
    if not macs_equal(checkpoint_mac(checkpoint.as_dict(), key), checkpoint.checkpoint_mac):
        return CheckpointLine(number, checkpoint, "its own MAC does not match its contents under its key")
    return CheckpointLine(number, checkpoint)


_FIELD_TYPES = {
    "format": str,
    "sequence": int,
    "mac": str,
    "published_at": str,
    "key_id": str,
    "legacy_until": int,
    "reason": str,
    "checkpoint_mac": str,
}


def _well_typed(checkpoint: Checkpoint) -> bool:
    """Every field of the type it must have (a line with ``"key_id": ["a"]`` is junk, not a crash)."""
    for name, kind in _FIELD_TYPES.items():
        value = getattr(checkpoint, name)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return False
    try:
        checkpoint.published  # noqa: B018 - parses, or the line is junk
    except ValueError:
        return False
    return checkpoint.sequence >= 0 and checkpoint.legacy_until >= 0


def checkpoints_read(path: Path | None = None) -> list[CheckpointLine]:
    """Every line of the checkpoint file, checked; no file means no checkpoints yet."""
    path = path or checkpoint_path()
    if not path.exists():
        return []
    ring = audit_key_ring()
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return [checkpoint_check(text, number, ring) for number, text in enumerate(lines, 1) if text.strip()]


def checkpoint_latest(path: Path | None = None) -> Checkpoint | None:
    """The last checkpoint whose MAC holds, reading only the end of the file when it is there."""
    path = path or checkpoint_path()
    if not path.exists():
        return None
    ring = audit_key_ring()
    with path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - TAIL_BYTES))
        tail = handle.read().decode("utf-8", errors="replace").splitlines()
    if size > TAIL_BYTES:
        tail = tail[1:]  # the first line of the tail may be cut
    for text in reversed(tail):
        if text.strip():
            line = checkpoint_check(text, 0, ring)
            if line.checkpoint is not None and not line.problem:
                return line.checkpoint
    if size > TAIL_BYTES:
        valid = [line.checkpoint for line in checkpoints_read(path) if line.checkpoint and not line.problem]
        return valid[-1] if valid else None
    return None


def _append(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        os.write(descriptor, (line + "\n").encode("utf-8"))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)  # closing releases the lock


def _extension_check(previous: Checkpoint | None, ring: AuditKeyRing) -> tuple[int, str, int]:
    """Walk the events after ``previous`` and return the head (sequence, MAC, legacy_until) they reach.

    Raises ``CheckpointRefused`` naming the first event that is not a
    consistent, correctly MACed extension of ``previous``.
    """
    sequence, mac = (previous.sequence, previous.mac) if previous else (0, GENESIS_HASH)
    legacy_until = previous.legacy_until if previous else 0
    keyed_seen = False
    events = AuditEvent.objects.filter(sequence__gte=max(sequence, 1)).order_by("sequence")
    for event in events.iterator(chunk_size=2000):
        if event.sequence == sequence:
            if not macs_equal(event.hash, mac):
                raise CheckpointRefused(
                    f"event #{sequence} no longer has the MAC the last checkpoint recorded: history was rewritten"
                )
            continue
        if event.sequence != sequence + 1:
            raise CheckpointRefused(f"events #{sequence + 1} to #{event.sequence - 1} are missing")
        if event.previous_hash != mac:
            raise CheckpointRefused(f"event #{event.sequence} does not link to #{sequence}")
        if event.key_id == LEGACY_KEY_ID:
            if keyed_seen or previous is not None:  # every checkpoint is published by the keyed code
                raise CheckpointRefused(f"event #{event.sequence} carries the unkeyed hash after keyed events")
            if not macs_equal(legacy_event_hash(event), event.hash):
                raise CheckpointRefused(f"event #{event.sequence} does not match its hash")
            legacy_until = event.sequence
        else:
            key = ring.get(event.key_id)
            if key is None or not macs_equal(event_mac(event, key), event.hash):
                raise CheckpointRefused(f"event #{event.sequence} does not match its MAC under key {event.key_id!r}")
            keyed_seen = True
        sequence, mac = event.sequence, event.hash
    if previous is not None and sequence == previous.sequence and previous.sequence > 0:
        if not AuditEvent.objects.filter(sequence=previous.sequence).exists():
            raise CheckpointRefused(f"event #{previous.sequence}, the last checkpoint's head, is gone")
    return sequence, mac, legacy_until


def audit_checkpoint_publish(*, reason: str, path: Path | None = None) -> Checkpoint | None:
    """Publish a checkpoint of the chain's current head; None when a scheduled one would repeat a fresh one.

    Raises ``CheckpointRefused`` (and logs it) when the chain does not extend
    the previous checkpoint: a broken chain is reported, never signed.
    """
    path = path or checkpoint_path()
    ring = audit_key_ring()
    previous = checkpoint_latest(path)
    try:
        sequence, mac, legacy_until = _extension_check(previous, ring)
    except CheckpointRefused as refusal:
        logger.error("audit checkpoint refused: %s; run `promptctl audit verify`", refusal)
        raise
    now = timezone.now()
    if reason == "schedule" and previous is not None and (previous.sequence, previous.mac) == (sequence, mac):
        fresh_for = dt.timedelta(seconds=0.9 * settings.PROMPTCTL_AUDIT_CHECKPOINT_SECONDS)
        if now - previous.published < fresh_for:
            return None
    key = ring.current
    fields = Checkpoint(FORMAT, sequence, mac, timestamp(now), key.key_id, legacy_until, reason).as_dict()
    checkpoint = Checkpoint(**{**fields, "checkpoint_mac": checkpoint_mac(fields, key)})
    line = json.dumps(checkpoint.as_dict(), sort_keys=True, separators=(",", ":"))
    _append(path, line)
    logger.info("%s", line)
    return checkpoint


def audit_checkpoint_publish_quietly(reason: str) -> None:
    """For on-commit hooks and timers: publish, and log (never raise) a failure, since the change is committed."""
    try:
        audit_checkpoint_publish(reason=reason)
    except CheckpointRefused:
        pass  # already logged as an error
    except Exception:  # noqa: BLE001 - a full disk must not turn a committed pin move into an error page
        logger.exception("audit checkpoint could not be published (%s)", reason)
