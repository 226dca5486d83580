"""``audit_verify``: walk the chain, check every MAC and every checkpoint, and name what happened.

Rules, and why:

- Every event must link to the one before and match its MAC under the key its
  id names. A row changed after it was written fails its MAC; a rewrite by
  someone without the key cannot make MACs that pass.
- Events with the old unkeyed SHA-256 are accepted only as the prefix written
  before the upgrade (up to the checkpoints' ``legacy_until``, and never after
  a keyed event): an unkeyed hash later in the chain is a rewrite with the old
  formula, which needs no secret.
- The chain head row lives in the same database as the events, so it is only
  a hint. The checkpoints are the anchor: the event at each checkpoint's
  sequence must carry the MAC it recorded, and the table must reach the
  highest checkpointed sequence. What the database alone cannot prove
  (truncation, a deleted tail with the head rewound) the checkpoints do.
- Events after the latest checkpoint are covered by their MACs only; the
  report says how many and how old that checkpoint is.
- Events archived with ``promptctl audit archive`` (``promptctl.audit.segments``)
  are gone from the table on purpose: the walk starts from the latest
  archived seal, whose MAC the checkpoint file records, and the first live
  event must link to it. Segment rows must carry their MACs, follow each
  other seal to seal, and the last archived one must have its
  ``audit.archive`` event in the live chain (archiving without the command
  is named). An exported segment is verified on its own by
  ``audit_segment_file_verify``. The state checks' sentences recorded as
  that event's state baseline are accepted word for word (see
  ``promptctl.audit.segments``); any other is named.
- The state the events describe (pins, approval policies, approvers, the
  default agent, gating sets) must still be what the trail last says: the
  checks registered in ``promptctl.registry`` name state changed without an
  event (``promptctl.record_checks``). They run only over an intact chain,
  where their findings add something.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils import timezone

from promptctl.audit.checkpoints import Checkpoint, checkpoint_path, checkpoints_read
from promptctl.audit.keys import audit_key_ring
from promptctl.audit.macs import GENESIS_HASH, LEGACY_KEY_ID, event_mac, legacy_event_hash, macs_equal, timestamp
from promptctl.audit.segments import archive_baseline, archive_event_after, archived_through
from promptctl.models import AuditChainHead, AuditEvent
from promptctl.registry import registry

KIND_NAMES = {
    "truncated": "truncation",
    "tail_deleted": "deleted tail",
    "deleted_middle": "events deleted in the middle",
    "rewritten": "rewritten history",
    "edited": "edited row",
    "unkeyed_rewrite": "rewritten with the old unkeyed hash",
    "link_broken": "broken link",
    "unknown_key": "unknown key",
    "checkpoint_forged": "missing or forged checkpoint",
    "head_mismatch": "chain head tampered",
    "state_drift": "live state differs from the record",
    "checkpoints_missing": "checkpoint file missing",
    "segment": "archived segment not as sealed",
}


@dataclass(frozen=True)
class AuditFinding:
    """One thing wrong with the record: what kind, where (events ``sequence``..``last_sequence``), in words."""

    kind: str
    sequence: int | None
    detail: str
    last_sequence: int | None = None

    @property
    def text(self) -> str:
        return f"{KIND_NAMES[self.kind]}: {self.detail}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": KIND_NAMES[self.kind],
            "sequence": self.sequence,
            "last_sequence": self.last_sequence if self.last_sequence is not None else self.sequence,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class AuditVerification:
    """The outcome of walking the chain; ``first_broken_sequence`` names where it first fails."""

    ok: bool
    checked: int
    head_sequence: int
    first_broken_sequence: int | None
    problem: str
    findings: tuple[AuditFinding, ...] = ()
    checkpoint: Checkpoint | None = None
    checkpoint_age_seconds: float | None = None
    checkpoints_checked: int = 0
    uncovered: int = 0
    checkpoint_file: str = ""
    notes: tuple[str, ...] = field(default=())
    archived_through: int = 0

    @property
    def coverage(self) -> str:
        if self.checkpoint is None:
            return (
                f"No checkpoint in {self.checkpoint_file} yet: the events are covered only by their MACs "
                "(publish one with `promptctl audit checkpoint`)."
            )
        age = _age_words(self.checkpoint_age_seconds or 0.0)
        text = f"Latest checkpoint: #{self.checkpoint.sequence}, published {age} ago"
        if self.uncovered:
            first = self.head_sequence - self.uncovered + 1
            if first == self.head_sequence:
                return text + f"; event #{first} is covered only by its MAC."
            return text + f"; events #{first} to #{self.head_sequence} are covered only by their MACs."
        return text + "; it covers every event."

    @property
    def message(self) -> str:
        if self.ok:
            start = f" from the seal of #{self.archived_through} (archived before it)" if self.archived_through else ""
            return (
                f"Audit chain verified: {self.checked} events, intact{start} up to #{self.head_sequence}. "
                + self.coverage
            )
        if all(finding.kind == "state_drift" for finding in self.findings):
            more = f" (and {len(self.findings) - 1} more; see --json)" if len(self.findings) > 1 else ""
            return f"Audit chain intact ({self.checked} events); the live state differs from it: {self.findings[0].detail}{more}"
        where = f" at event #{self.first_broken_sequence}" if self.first_broken_sequence is not None else ""
        more = ""
        if len(self.findings) > 1:
            names = sorted({KIND_NAMES[finding.kind] for finding in self.findings[1:]})
            more = f" (and {len(self.findings) - 1} more: {', '.join(names)}; see --json)"
        return f"Audit chain broken{where}: {self.problem}{more}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "head_sequence": self.head_sequence,
            "first_broken_sequence": self.first_broken_sequence,
            "problem": self.problem,
            "message": self.message,
            "findings": [finding.as_dict() for finding in self.findings],
            "checkpoint": self.checkpoint.as_dict() if self.checkpoint else None,
            "checkpoint_age_seconds": self.checkpoint_age_seconds,
            "checkpoints_checked": self.checkpoints_checked,
            "uncovered_events": self.uncovered,
            "checkpoint_file": self.checkpoint_file,
            "coverage": self.coverage,
            "notes": list(self.notes),
            "archived_through": self.archived_through,
        }


def _age_words(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _when(checkpoint: Checkpoint) -> str:
    return f"the checkpoint of {checkpoint.published_at}"


class _Findings:
    """Collects findings, merging a run of the same kind on consecutive events into one."""

    def __init__(self) -> None:
        self.items: list[AuditFinding] = []

    def add(self, kind: str, sequence: int | None, detail: str, *, plural: str = "") -> None:
        last = self.items[-1] if self.items else None
        if (
            last is not None
            and sequence is not None
            and last.kind == kind
            and last.sequence is not None
            and (last.last_sequence or last.sequence) + 1 == sequence
            and plural
        ):
            self.items[-1] = AuditFinding(
                kind, last.sequence, f"events #{last.sequence} to #{sequence} {plural}", sequence
            )
            return
        self.items.append(AuditFinding(kind, sequence, detail, sequence))


CHUNK = 2000


def _events_in_order():
    """Every event in chain order as ``(event, None)``; a row the ORM cannot even read as ``(None, why)``."""
    keys = list(AuditEvent.objects.order_by("sequence", "pk").values_list("pk", flat=True))
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start : start + CHUNK]
        try:
            rows = AuditEvent.objects.in_bulk(chunk)
        except (ValueError, TypeError, AttributeError):
            rows = {}
            for pk in chunk:
                try:
                    rows[pk] = AuditEvent.objects.get(pk=pk)
                except (ValueError, TypeError, AttributeError) as error:
                    yield None, f"row id {pk}: {type(error).__name__}: {error}"
        for pk in chunk:
            if pk in rows:
                yield rows[pk], None


def _readable(event: AuditEvent) -> bool:
    try:
        return (
            isinstance(event.sequence, int)
            and isinstance(event.hash, str)
            and isinstance(event.previous_hash, str)
            and isinstance(event.key_id, str)
            and bool(timestamp(event.occurred_at))
        )
    except (ValueError, TypeError, AttributeError):
        return False


def audit_verify() -> AuditVerification:
    """Walk every event in order, compare with every checkpoint, and report each thing that is wrong."""
    ring = audit_key_ring()
    lines = checkpoints_read()
    valid = [line.checkpoint for line in lines if line.checkpoint is not None and not line.problem]
    findings = _Findings()
    for line in lines:
        if line.problem:
            findings.add(
                "checkpoint_forged",
                None,
                f"line {line.number} of {checkpoint_path()}: {line.problem}; it was forged or damaged, "
                "so it proves nothing (the genuine lines still count).",
            )
    recorded: dict[int, list[Checkpoint]] = {}
    for checkpoint in valid:
        recorded.setdefault(checkpoint.sequence, []).append(checkpoint)
    legacy_until = max((checkpoint.legacy_until for checkpoint in valid), default=None)

    previous_sequence, previous_hash, checked, keyed_seen = 0, GENESIS_HASH, 0, False
    archived_sequence, archived_mac, segment_problems = archived_through()
    for problem in segment_problems:
        findings.add("segment", None, problem + ".")
    lowest = AuditEvent.objects.order_by("sequence").values_list("sequence", flat=True).first()
    if archived_sequence and (lowest is None or lowest > archived_sequence):
        previous_sequence, previous_hash = archived_sequence, archived_mac
        keyed_seen = archived_sequence > (legacy_until or 0)  # keyed events were archived
        if archive_event_after(archived_sequence) is None:
            findings.add(
                "segment",
                archived_sequence,
                f"events up to #{archived_sequence} are marked archived, but the live chain holds no "
                "`audit.archive` event for that segment: they were deleted outside `promptctl audit archive`.",
            )
    else:
        archived_sequence = 0
    for event, unreadable in _events_in_order():
        if event is None or not _readable(event):
            # A row an insider wrote with the wrong types: named, and the walk goes on past it.
            findings.add("edited", None, f"an audit row cannot be read as an event ({unreadable or 'wrong types'}).")
            continue
        sequence = event.sequence
        if sequence != previous_sequence + 1:
            findings.add(
                "deleted_middle",
                previous_sequence + 1,
                f"events #{previous_sequence + 1} to #{sequence - 1} are missing: the chain goes from "
                f"#{previous_sequence} straight to #{sequence}.",
            )
        elif event.previous_hash != previous_hash:
            findings.add(
                "link_broken",
                sequence,
                f"its link to #{previous_sequence} does not match (event #{previous_sequence} was replaced "
                "or this event's link was edited).",
                plural="do not link to the events before them.",
            )
        if event.key_id == LEGACY_KEY_ID:
            if keyed_seen or (legacy_until is not None and sequence > legacy_until):
                findings.add(
                    "unkeyed_rewrite",
                    sequence,
                    "it carries the old unkeyed SHA-256 where the keyed chain had begun: it was rewritten by "
                    "someone without the audit key.",
                    plural="carry the old unkeyed SHA-256 after the keyed chain began: rewritten without the key.",
                )
            elif not macs_equal(legacy_event_hash(event), event.hash):
                findings.add(
                    "edited",
                    sequence,
                    "its contents do not match its hash (the row was changed after it was written).",
                    plural="do not match their hashes (changed after they were written).",
                )
        else:
            keyed_seen = True
            key = ring.get(event.key_id)
            if key is None:
                findings.add(
                    "unknown_key",
                    sequence,
                    f"it names key {event.key_id!r}, which is not in the key ring: add the old key to "
                    "PROMPTCTL_AUDIT_KEYS_OLD, or the row was forged.",
                    plural=f"name key {event.key_id!r}, which is not in the key ring (forged, or an old key is missing).",
                )
            elif not macs_equal(event_mac(event, key), event.hash):
                findings.add(
                    "edited",
                    sequence,
                    "its contents do not match its MAC (the row was changed after it was written, or "
                    "rewritten without the key).",
                    plural="do not match their MACs (changed, or rewritten without the key).",
                )
        for checkpoint in recorded.get(sequence, ()):
            if not macs_equal(checkpoint.mac, event.hash):
                findings.add(
                    "rewritten",
                    sequence,
                    f"{_when(checkpoint)} recorded MAC {checkpoint.mac[:16]}… for #{sequence}, but the table "
                    f"now holds {event.hash[:16]}…: the history up to #{sequence} was rewritten.",
                )
                break
        previous_sequence, previous_hash = sequence, event.hash
        checked += 1

    head = AuditChainHead.objects.filter(pk=1).first()
    head_state = (head.sequence, head.hash) if head is not None else (0, GENESIS_HASH)
    highest = max(valid, key=lambda checkpoint: checkpoint.sequence, default=None)
    if highest is None:
        # Every pin move publishes a checkpoint on commit: a chain with one, older than the checkpoint timer's
        # grace (twice its interval), and a file with none lost its file.
        grace = dt.timedelta(seconds=2 * settings.PROMPTCTL_AUDIT_CHECKPOINT_SECONDS)
        moved = (
            AuditEvent.objects.filter(verb="pin.move", occurred_at__lt=timezone.now() - grace)
            .order_by("sequence")
            .values_list("sequence", flat=True)
            .first()
        )
        if moved is not None:
            findings.add(
                "checkpoints_missing",
                None,
                f"the chain records pin moves (the first at #{moved}), each of which publishes a checkpoint, but "
                f"{checkpoint_path()} holds none: the file was deleted or emptied, or PROMPTCTL_AUDIT_CHECKPOINT_FILE "
                "points somewhere new. Restore it from where checkpoints are shipped.",
            )
    if highest is not None and highest.sequence > previous_sequence:
        rewound = head_state == (previous_sequence, previous_hash)
        if checked == 0:
            findings.add(
                "truncated",
                1,
                f"the table holds no events, but {_when(highest)} records #{highest.sequence}: the audit "
                "table was emptied" + (" and the chain head reset." if rewound else "."),
            )
        else:
            findings.add(
                "tail_deleted",
                previous_sequence + 1,
                f"events #{previous_sequence + 1} to #{highest.sequence} were deleted from the end"
                + (f" and the chain head rewound to #{previous_sequence}" if rewound else "")
                + f": {_when(highest)} records #{highest.sequence}.",
            )
    elif head_state != (previous_sequence, previous_hash) and (head is not None or checked):
        if head is None:
            findings.add("head_mismatch", None, "the chain head row was deleted.")
        elif head.sequence > previous_sequence:
            findings.add(
                "tail_deleted",
                previous_sequence + 1,
                f"events #{previous_sequence + 1} to #{head.sequence} are missing (deleted from the end of the chain).",
            )
        else:
            findings.add(
                "head_mismatch",
                head.sequence or previous_sequence,
                f"the chain head records #{head.sequence} but the events end at #{previous_sequence}.",
            )

    # The chain proves the events; these prove the state they describe was not changed without one. Against a
    # broken chain they would only repeat its findings (every pin "moved" once its events are gone).
    notes = []
    if findings.items:
        notes.append("The live state was not compared with the record: the chain itself is broken.")
    else:
        baseline = set(archive_baseline(archived_sequence))
        accepted = 0
        for check in registry.record_checks:
            for problem in check():
                if problem in baseline:
                    accepted += 1  # said, word for word, when the history behind it was archived
                    continue
                findings.add("state_drift", None, problem)
        if accepted:
            notes.append(
                f"{accepted} state comparison(s) rest on archived events and read as they did when those were "
                "archived (the state baseline in the `audit.archive` event)."
            )

    latest = valid[-1] if valid else None  # the newest published (a seal's may name an older sequence)
    age = (timezone.now() - latest.published).total_seconds() if latest else None
    if age is not None and age > 2 * settings.PROMPTCTL_AUDIT_CHECKPOINT_SECONDS:
        notes.append(
            "The latest checkpoint is older than twice PROMPTCTL_AUDIT_CHECKPOINT_SECONDS: is a worker or "
            "`celery beat` running?"
        )
    covered_to = highest.sequence if highest is not None else 0
    ordered = sorted(findings.items, key=lambda finding: (finding.sequence is None, finding.sequence or 0))
    first = ordered[0] if ordered else None
    return AuditVerification(
        ok=not ordered,
        checked=checked,
        head_sequence=previous_sequence,
        first_broken_sequence=first.sequence if first else None,
        problem=first.text if first else "",
        findings=tuple(ordered),
        checkpoint=highest,  # what the coverage is measured from
        checkpoint_age_seconds=(timezone.now() - highest.published).total_seconds() if highest else None,
        checkpoints_checked=len(valid),
        uncovered=max(0, previous_sequence - covered_to) if latest else previous_sequence,
        checkpoint_file=str(checkpoint_path()),
        notes=tuple(notes),
        archived_through=archived_sequence,
    )
