"""Sealing, exporting and archiving stretches of the audit chain, so it can be trimmed without losing its proof.

Rules, and why:

- ``audit_segment_seal`` seals events ``first``..``through`` (``first`` is 1,
  or the event after the previous seal): it checks the chain still extends
  the last checkpoint, publishes a checkpoint of event ``through`` with
  reason ``seal`` (MACed, outside the database), writes the events to a file
  the operator keeps, reads that file back and verifies it on its own, and
  only then records the segment (a row whose own fields are MACed, and an
  ``audit.seal`` event). A broken chain is never sealed.
- The export is JSON lines: a header (format, segment number, range, the key
  ids of its events, the previous seal's MAC, the seal's MAC), one line per
  event (every field its MAC covers, and the MAC), and a last line holding a
  MAC over every byte before it. Anyone with the key ring can check the file
  alone: each event's MAC, each link, the range, the count and the file MAC
  (``audit_segment_file_verify``), and it names a changed, missing or
  out-of-range line.
- ``audit_segment_archive`` deletes a segment's events from the database: the
  only way audit events are ever deleted. It verifies the file again, checks
  every event still in the table matches its line in the file, and archives
  segments in order (so the live chain always starts right after a seal).
  The database refuses any delete of an event that no archived, verified
  segment covers (migration 0015).
- The state checks (``promptctl.record_checks``) replay the trail's last word
  on pins, policies, access...; once the start of the trail is gone, some of
  them can only say "no audited creation". Archiving therefore refuses while
  the live state differs from the full record, and records in its
  ``audit.archive`` event (MACed) the sentences the checks say once the
  segment is gone: its *state baseline*. ``audit verify`` accepts exactly
  those sentences afterwards. Most embed the live values (a pin's version,
  revision and change), so a later change outside promptctl reads
  differently and is named; one that does not (an agent's policy changed
  when its creation is archived) is a known limit (docs/SECURITY.md).
- ``audit_verify`` then starts from the latest archived seal: the first live
  event must link to the seal's MAC, which the checkpoint file records.
- No file is written and no checkpoint published while a database write lock
  is held: the seal's database writes come last, in one short transaction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from promptctl.audit.chain import audit_record
from promptctl.audit.checkpoints import FORMAT as CHECKPOINT_FORMAT
from promptctl.audit.checkpoints import (
    Checkpoint,
    CheckpointRefused,
    _append,
    audit_checkpoint_publish,
    checkpoint_latest,
    checkpoint_path,
    checkpoints_read,
)
from promptctl.audit.checkpoints import logger as checkpoint_logger
from promptctl.audit.keys import AuditKey, AuditKeyRing, audit_key_ring
from promptctl.audit.macs import (
    GENESIS_HASH,
    LEGACY_KEY_ID,
    canonical,
    checkpoint_mac,
    event_mac,
    event_payload,
    legacy_event_hash,
    macs_equal,
    timestamp,
)
from promptctl.errors import DomainError
from promptctl.models import AuditEvent, AuditSegment
from promptctl.registry import registry

FORMAT = "promptctl.audit.segment/1"
FILE_DOMAIN = b"promptctl-audit-segment-file\0"
ROW_DOMAIN = b"promptctl-audit-segment-row\0"
SEAL_REASON = "seal"


class SegmentRefused(DomainError):
    """Sealing or archiving was refused; the message says what, why and what to do next."""


def segment_directory() -> Path:
    """Where exports go unless told otherwise: ``audit-segments/`` beside the checkpoint file."""
    return checkpoint_path().parent / "audit-segments"


def _file_mac(body: bytes, key: AuditKey) -> str:
    return hmac.new(key.secret, FILE_DOMAIN + body, hashlib.sha256).hexdigest()


def _row_fields(segment: AuditSegment) -> dict[str, Any]:
    return {
        "number": segment.number,
        "first_sequence": segment.first_sequence,
        "last_sequence": segment.last_sequence,
        "last_mac": segment.last_mac,
        "previous_seal_mac": segment.previous_seal_mac,
        "file_mac": segment.file_mac,
        "key_id": segment.key_id,
    }


def segment_row_mac(segment: AuditSegment, key: AuditKey) -> str:
    """The MAC a segment row carries over its sealed fields (a row forged without the key fails it)."""
    return hmac.new(
        key.secret, ROW_DOMAIN + canonical(_row_fields(segment)).encode("utf-8"), hashlib.sha256
    ).hexdigest()


def segment_row_problem(segment: AuditSegment, ring: AuditKeyRing | None = None) -> str:
    """Why a segment row cannot be trusted, or "" when its MAC holds."""
    ring = ring or audit_key_ring()
    key = ring.get(segment.key_id)
    if key is None:
        return f"segment {segment.number} names key {segment.key_id!r}, which is not in the key ring"
    if not macs_equal(segment_row_mac(segment, key), segment.row_mac):
        return f"segment {segment.number}'s row does not match its MAC (changed or forged in the database)"
    return ""


def segment_archive_problem(segment: AuditSegment) -> str:
    """Why a segment's archiving (outside its row MAC) cannot be trusted, or "".

    Archiving sets ``archived_at`` and deletes the segment's events in one
    transaction, and records how many in its ``audit.archive`` event: a
    segment marked archived whose events are still here was marked by hand.
    """
    if segment.archived_at is None:
        if segment.archived_events:
            return f"segment {segment.number} is not archived but claims {segment.archived_events:,} events removed"
        return ""
    if _events_left(segment):
        return (
            f"segment {segment.number} is marked archived, but events #{segment.first_sequence} to "
            f"#{segment.last_sequence} are still in the database: the mark was made by hand, not by `audit archive`"
        )
    after = archive_event_after(segment.last_sequence)
    if after is not None and after.get("deleted_events") != segment.archived_events:
        return (
            f"segment {segment.number} says {segment.archived_events:,} events were removed; its audit.archive "
            f"event says {after.get('deleted_events')}"
        )
    return ""


def _events_left(segment: AuditSegment) -> bool:
    return AuditEvent.objects.filter(sequence__gte=segment.first_sequence, sequence__lte=segment.last_sequence).exists()


def segment_problem(segment: AuditSegment, ring: AuditKeyRing | None = None) -> str:
    """Why a segment row cannot be trusted (its MAC, then its archiving), or "" when both hold."""
    return segment_row_problem(segment, ring) or segment_archive_problem(segment)


# --- the export file -----------------------------------------------------------------------------


def _event_line(event: AuditEvent) -> dict[str, Any]:
    line = event_payload(event)
    line["key_id"] = event.key_id
    line["token_ref"] = event.token_ref
    line["hash"] = event.hash
    return line


def _event_from_line(data: dict[str, Any]) -> AuditEvent:
    """An unsaved event with the fields a line holds, so its MAC is computed by the same code as a live one's."""
    return AuditEvent(
        sequence=data["sequence"],
        occurred_at=dt.datetime.fromisoformat(data["occurred_at"]),
        actor_id=data["actor_id"],
        actor_username=data["actor_username"],
        verb=data["verb"],
        object_type=data["object_type"],
        object_id=data["object_id"],
        object_repr=data["object_repr"],
        agent_id_ref=data["agent_id"],
        before=data["before"],
        after=data["after"],
        request_id=data["request_id"],
        previous_hash=data["previous_hash"],
        key_id=data.get("key_id", LEGACY_KEY_ID),
        token_ref=data.get("token_ref", ""),
        hash=data["hash"],
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _write_export(path: Path, header: dict[str, Any], events: list[AuditEvent], key: AuditKey) -> str:
    """Write the file (new, mode 0640, fsync'ed) and return its file MAC."""
    body = "".join(_dumps(item) + "\n" for item in [header, *(_event_line(event) for event in events)])
    mac = _file_mac(body.encode("utf-8"), key)
    text = body + _dumps({"file_mac": mac, "key_id": key.key_id}) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        os.write(descriptor, text.encode("utf-8"))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return mac


@dataclass(frozen=True)
class SegmentFileCheck:
    """The outcome of checking an exported segment on its own: ``problems`` names each thing wrong."""

    path: str
    ok: bool
    header: dict[str, Any]
    events: int
    file_mac: str
    problems: tuple[str, ...] = ()
    hashes: dict[int, str] = field(default_factory=dict)
    seal_checkpoint: str = ""  # "recorded", "missing" (the checkpoint file has none for the seal), "no file"

    @property
    def message(self) -> str:
        if self.ok:
            last = self.header.get("last_sequence")
            seal = {
                "recorded": " The checkpoint file records the same seal.",
                "missing": f" The checkpoint file records no seal of #{last}: the seal rests on the audit key alone "
                "here (was its line removed? `promptctl audit verify` checks the live chain's seals).",
                "no file": " There is no checkpoint file here to compare the seal with.",
            }.get(self.seal_checkpoint, "")
            return (
                f"Audit segment {self.header.get('segment')} verified: events #{self.header.get('first_sequence')} to "
                f"#{last} ({self.events} events), every MAC and link, the range and the "
                f"file MAC hold ({self.path}).{seal}"
            )
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        return f"Audit segment file {self.path} is not intact: {self.problems[0]}{more}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "message": self.message,
            "segment": self.header.get("segment"),
            "first_sequence": self.header.get("first_sequence"),
            "last_sequence": self.header.get("last_sequence"),
            "events": self.events,
            "problems": list(self.problems),
            "seal_checkpoint": self.seal_checkpoint,
        }


_HEADER_FIELDS = {
    "format": str,
    "segment": int,
    "first_sequence": int,
    "last_sequence": int,
    "previous_seal_mac": str,
    "seal_mac": str,
    "key_ids": list,
    "events": int,
}


def audit_segment_file_verify(*, path: Path, ring: AuditKeyRing | None = None) -> SegmentFileCheck:
    """Check an exported segment on its own: file MAC, header, every line's MAC and link, the range and count.

    Also compares its seal with the checkpoint file when that records one for
    the same sequence. Never raises for a damaged file: it names each problem.
    """
    ring = ring or audit_key_ring()
    problems: list[str] = []
    if path.exists() and not path.is_file():  # a directory, a device (/dev/zero never ends), a pipe
        return SegmentFileCheck(str(path), False, {}, 0, "", ("it is not a regular file: not a segment export",))
    try:
        raw = path.read_bytes()
    except OSError as error:
        return SegmentFileCheck(str(path), False, {}, 0, "", (f"it cannot be read ({error.strerror})",))
    lines = raw.decode("utf-8", errors="replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) < 2:
        return SegmentFileCheck(str(path), False, {}, 0, "", ("it holds no header and file MAC: not a segment export",))

    # The file MAC over every byte before the last line.
    last_line = lines[-1]
    stripped = raw[:-1] if raw.endswith(b"\n") else raw
    body = raw[: stripped.rfind(b"\n") + 1]  # every byte before the last line
    file_mac = ""
    try:
        trailer = json.loads(last_line)
        file_mac, mac_key_id = str(trailer["file_mac"]), str(trailer["key_id"])
        key = ring.get(mac_key_id)
        if key is None:
            problems.append(f"the file MAC names key {mac_key_id!r}, which is not in the audit key ring")
        elif not macs_equal(_file_mac(body, key), file_mac):
            problems.append("the file MAC does not match its contents: a line was changed, added or removed")
    except (ValueError, TypeError, KeyError):
        problems.append(f"its last line (line {len(lines)}) is not the file MAC: the file was cut or appended to")

    try:
        header = json.loads(lines[0])
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ValueError
        for name, kind in _HEADER_FIELDS.items():
            if not isinstance(header.get(name), kind):
                raise ValueError(name)
    except (ValueError, TypeError):
        problems.insert(0, "line 1 is not a promptctl audit segment header")
        return SegmentFileCheck(str(path), False, {}, 0, file_mac, tuple(problems))

    first, last = header["first_sequence"], header["last_sequence"]
    expected_sequence, previous_hash = first, header["previous_seal_mac"]
    hashes: dict[int, str] = {}
    keyed_seen = False
    for number, text in enumerate(lines[1:-1], 2):
        try:
            event = _event_from_line(json.loads(text))
            if (
                not isinstance(event.sequence, int)
                or not isinstance(event.hash, str)
                or event.occurred_at.tzinfo is None
            ):
                raise ValueError(number)
            event_payload(event)  # every field it MACs is there and of a usable type
        except (ValueError, TypeError, KeyError, AttributeError):
            problems.append(f"line {number} is not an audit event (unreadable or wrong fields)")
            continue
        sequence = event.sequence
        if not first <= sequence <= last:
            problems.append(
                f"line {number} holds event #{sequence}, outside the range the header names (#{first} to #{last})"
            )
        elif sequence > expected_sequence:
            gap = (
                f"#{expected_sequence}"
                if sequence == expected_sequence + 1
                else f"#{expected_sequence} to #{sequence - 1}"
            )
            problems.append(f"event {gap} is missing (line {number} goes on with #{sequence})")
        elif sequence < expected_sequence:
            problems.append(f"line {number} repeats or reorders event #{sequence}")
        elif event.previous_hash != previous_hash:
            problems.append(f"line {number} (event #{sequence}) does not link to the event before it")
        if event.key_id == LEGACY_KEY_ID:
            if keyed_seen or not macs_equal(legacy_event_hash(event), event.hash):
                problems.append(f"line {number} (event #{sequence}) was changed: it does not match its hash")
        else:
            keyed_seen = True
            key = ring.get(event.key_id)
            if key is None:
                problems.append(f"line {number} (event #{sequence}) names key {event.key_id!r}, not in the key ring")
            elif not macs_equal(event_mac(event, key), event.hash):
                problems.append(f"line {number} (event #{sequence}) was changed: it does not match its MAC")
        hashes[sequence] = event.hash
        expected_sequence, previous_hash = max(expected_sequence, sequence + 1), event.hash
    if expected_sequence <= last:
        gap = f"#{expected_sequence}" if expected_sequence == last else f"#{expected_sequence} to #{last}"
        problems.append(f"event {gap} is missing from the end (the header names #{first} to #{last})")
    if hashes and last in hashes and not macs_equal(hashes[last], header["seal_mac"]):
        problems.append(f"the header's seal MAC is not event #{last}'s MAC: the range or the seal was changed")
    if header["events"] != len(hashes) or header["events"] != last - first + 1:
        problems.append(
            f"the header counts {header['events']} events; the file holds {len(hashes)} and the range "
            f"#{first} to #{last} is {last - first + 1}"
        )
    seal_checkpoint = "missing" if checkpoint_path().exists() else "no file"
    for line in checkpoints_read():
        checkpoint = line.checkpoint
        if checkpoint is None or line.problem or checkpoint.sequence != last:
            continue
        if not macs_equal(checkpoint.mac, header["seal_mac"]):
            problems.append(
                f"the checkpoint of {checkpoint.published_at} records MAC {checkpoint.mac[:16]}… for #{last}, "
                f"but the file seals it with {header['seal_mac'][:16]}…"
            )
            break
        if checkpoint.reason == SEAL_REASON:
            seal_checkpoint = "recorded"
    return SegmentFileCheck(
        str(path), not problems, header, len(hashes), file_mac, tuple(problems), hashes, seal_checkpoint
    )


# --- seal ------------------------------------------------------------------------------------------


def seal_checkpoints() -> dict[int, Checkpoint]:
    """Every genuine checkpoint published with reason ``seal``, by sequence (the anchors archiving relies on)."""
    found: dict[int, Checkpoint] = {}
    for line in checkpoints_read():
        if line.checkpoint is not None and not line.problem and line.checkpoint.reason == SEAL_REASON:
            found[line.checkpoint.sequence] = line.checkpoint
    return found


def audit_segment_seal(*, actor: Any, through: int | None = None, path: Path | None = None) -> AuditSegment:
    """Seal and export events from the previous seal (or #1) through ``through`` (default: the latest checkpoint).

    Refuses an empty or backwards range, a range past the head, and a chain
    that does not extend the last checkpoint. See the module's rules.
    """
    ring = audit_key_ring()
    previous = AuditSegment.objects.order_by("-number").first()
    first = previous.last_sequence + 1 if previous else 1
    previous_seal = previous.last_mac if previous else GENESIS_HASH
    if through is None:
        # The highest checkpoint, not the newest line: a seal's own line may name an older sequence.
        valid = [line.checkpoint for line in checkpoints_read() if line.checkpoint is not None and not line.problem]
        latest = max(valid, key=lambda checkpoint: checkpoint.sequence, default=None)
        if latest is None:
            raise SegmentRefused(
                "No checkpoint to seal up to: publish one with `promptctl audit checkpoint`, or name --through SEQ."
            )
        through = latest.sequence
    head = AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True).first() or 0
    if through < first:
        raise SegmentRefused(
            f"Nothing to seal: events up to #{first - 1} are sealed already"
            + (f" (segment {previous.number})" if previous else "")
            + f"; name --through a sequence from #{first} to #{head}."
        )
    if through > head:
        raise SegmentRefused(f"Cannot seal through #{through}: the chain ends at #{head}.")
    number = previous.number + 1 if previous else 1
    target = path or segment_directory() / f"segment-{number:06d}-{first}-{through}.jsonl"
    if target.exists():
        raise SegmentRefused(f"{target} exists already: move it away or name another file with --out.")

    events = list(AuditEvent.objects.filter(sequence__gte=first, sequence__lte=through).order_by("sequence"))
    if [event.sequence for event in events] != list(range(first, through + 1)):
        raise SegmentRefused(
            f"Events #{first} to #{through} are not all in the table: run `promptctl audit verify`; nothing was sealed."
        )
    # The whole chain must extend the last checkpoint; a broken one is refused here, never sealed.
    try:
        audit_checkpoint_publish(reason="command")
    except CheckpointRefused as refusal:
        raise SegmentRefused(f"Not sealed: {refusal}. Run `promptctl audit verify` to see what happened.")
    # The exported events themselves must be intact from the previous seal on.
    link = previous_seal
    for event in events:
        key = ring.get(event.key_id)
        good = (
            macs_equal(legacy_event_hash(event), event.hash)
            if event.key_id == LEGACY_KEY_ID
            else key is not None and macs_equal(event_mac(event, key), event.hash)
        )
        if event.previous_hash != link or not good:
            raise SegmentRefused(
                f"Not sealed: event #{event.sequence} does not verify. Run `promptctl audit verify` to see what happened."
            )
        link = event.hash

    key = ring.current
    last_mac = events[-1].hash
    seal = _seal_checkpoint(through, last_mac)
    header = {
        "format": FORMAT,
        "segment": number,
        "first_sequence": first,
        "last_sequence": through,
        "events": len(events),
        "previous_seal_mac": previous_seal,
        "seal_mac": last_mac,
        "key_ids": sorted({event.key_id for event in events}),
        "seal_checkpoint_published_at": seal.published_at,
        "exported_at": timezone.now().isoformat(),
    }
    file_mac = _write_export(target, header, events, key)
    check = audit_segment_file_verify(path=target, ring=ring)
    if not check.ok:
        raise SegmentRefused(f"The export did not verify after writing, so nothing was recorded: {check.message}")
    segment = AuditSegment(
        number=number,
        first_sequence=first,
        last_sequence=through,
        last_mac=last_mac,
        previous_seal_mac=previous_seal,
        file_mac=file_mac,
        export_path=str(target.resolve()),
        export_verified=True,
        key_id=key.key_id,
        sealed_at=timezone.now(),
    )
    segment.row_mac = segment_row_mac(segment, key)
    with transaction.atomic():
        segment.save(force_insert=True)
        audit_record(
            actor=actor,
            verb="audit.seal",
            target=segment,
            after={**_row_fields(segment), "export_path": segment.export_path, "events": len(events)},
        )
    return segment


def _seal_checkpoint(sequence: int, mac: str) -> Checkpoint:
    """Append the seal's checkpoint: event ``sequence`` and its MAC, reason ``seal`` (outside the database)."""
    previous = checkpoint_latest()
    key = audit_key_ring().current
    fields = Checkpoint(
        CHECKPOINT_FORMAT,
        sequence,
        mac,
        timestamp(timezone.now()),
        key.key_id,
        previous.legacy_until if previous else 0,
        SEAL_REASON,
    ).as_dict()
    checkpoint = Checkpoint(**{**fields, "checkpoint_mac": checkpoint_mac(fields, key)})
    line = json.dumps(checkpoint.as_dict(), sort_keys=True, separators=(",", ":"))
    _append(checkpoint_path(), line)
    checkpoint_logger.info("%s", line)
    return checkpoint


# --- archive ---------------------------------------------------------------------------------------


def audit_segment_archive(*, actor: Any, number: int, path: Path | None = None) -> AuditSegment:
    """Delete segment ``number``'s events from the database, after checking its export again.

    Refuses a segment already archived, one whose earlier segment is not, a
    row whose MAC fails, a file that does not verify or is not the one sealed,
    a seal the checkpoint file does not record, and events in the table that
    differ from the file.
    """
    segment = AuditSegment.objects.filter(number=number).first()
    if segment is None:
        raise SegmentRefused(f"There is no audit segment {number}: seal one with `promptctl audit seal`.")
    if segment.archived_at is not None:
        problem = segment_archive_problem(segment)
        if problem:
            raise SegmentRefused(f"Not archived: {problem}. Run `promptctl audit verify`.")
        raise SegmentRefused(
            f"Audit segment {number} was archived at {segment.archived_at:%Y-%m-%d %H:%M} UTC already."
        )
    earlier = AuditSegment.objects.filter(number__lt=number, archived_at__isnull=True).order_by("number").first()
    if earlier is not None:
        raise SegmentRefused(
            f"Archive segment {earlier.number} first: segments are archived in order, so the live chain always "
            "starts right after a seal."
        )
    problem = segment_row_problem(segment)
    if problem:
        raise SegmentRefused(f"Not archived: {problem}. Run `promptctl audit verify`.")
    seal = seal_checkpoints().get(segment.last_sequence)
    if seal is None or not macs_equal(seal.mac, segment.last_mac):
        raise SegmentRefused(
            f"Not archived: the checkpoint file records no seal of #{segment.last_sequence} with this segment's MAC; "
            "restore the checkpoint file from where checkpoints are shipped."
        )
    path = path or Path(segment.export_path)
    check = audit_segment_file_verify(path=path)
    if not check.ok:
        raise SegmentRefused(f"Not archived: {check.message}. Keep the events until a good export exists.")
    if not macs_equal(check.file_mac, segment.file_mac) or check.header.get("segment") != number:
        raise SegmentRefused(
            f"Not archived: {path} is not the export sealed as segment {number} (its file MAC differs)."
        )
    baseline = archive_baseline(earlier_last(number))
    drift = [problem for problem in state_findings() if problem not in baseline]
    if drift:
        raise SegmentRefused(
            f"Not archived: the live state differs from the record ({drift[0]}); archiving would hide that. "
            "Run `promptctl audit verify` and settle it first."
        )
    live = dict(
        AuditEvent.objects.filter(
            sequence__gte=segment.first_sequence, sequence__lte=segment.last_sequence
        ).values_list("sequence", "hash")
    )
    differing = sorted(
        sequence for sequence, mac in live.items() if not macs_equal(check.hashes.get(sequence, ""), mac)
    )
    if differing:
        raise SegmentRefused(
            f"Not archived: event #{differing[0]} in the table differs from the export. Run `promptctl audit verify`."
        )
    try:
        return _archive(segment, number=number, live=live, actor=actor)
    except DatabaseError as error:
        if "permission denied" not in str(error):
            raise
        raise SegmentRefused(
            "Not archived: archiving deletes audit events, and this database login may not (the runtime role "
            "only appends to the record). Run `promptctl audit archive` as the tables' owner: with DATABASE_URL "
            "set to DATABASE_OWNER_URL's value. Nothing was changed."
        ) from error


def _archive(segment: AuditSegment, *, number: int, live: dict[int, str], actor: Any) -> AuditSegment:
    with transaction.atomic():
        segment.archived_at = timezone.now()
        segment.archived_events = len(live)
        segment.save(update_fields=["archived_at", "archived_events"])
        with connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM promptctl_auditevent WHERE sequence BETWEEN %s AND %s",
                [segment.first_sequence, segment.last_sequence],
            )
            deleted = cursor.rowcount
        remaining = state_findings()  # what the checks say with the segment gone: the new baseline
        audit_record(
            actor=actor,
            verb="audit.archive",
            target=segment,
            after={
                "number": number,
                "first_sequence": segment.first_sequence,
                "last_sequence": segment.last_sequence,
                "deleted_events": deleted,
                "file_mac": segment.file_mac,
                "state_baseline": remaining,
            },
        )
    return segment


def state_findings() -> list[str]:
    """Every sentence the registered state checks say now (empty: the live state is what the trail says)."""
    return [problem for check in registry.record_checks for problem in check()]


def earlier_last(number: int) -> int:
    """The last sequence of the segment before ``number`` (0 for the first)."""
    previous = AuditSegment.objects.filter(number__lt=number).order_by("-number").first()
    return previous.last_sequence if previous else 0


def archive_event_after(last_sequence: int) -> dict[str, Any] | None:
    """The ``after`` of the live ``audit.archive`` event of the segment ending at ``last_sequence``, if any."""
    for after in AuditEvent.objects.filter(verb="audit.archive").order_by("-sequence").values_list("after", flat=True):
        if isinstance(after, dict) and after.get("last_sequence") == last_sequence:
            return after
    return None


def archive_baseline(last_sequence: int) -> list[str]:
    """The state checks' sentences recorded when the segment ending at ``last_sequence`` was archived."""
    if not last_sequence:
        return []
    after = archive_event_after(last_sequence) or {}
    baseline = after.get("state_baseline")
    return [str(item) for item in baseline] if isinstance(baseline, list) else []


def archived_through() -> tuple[int, str, list[str]]:
    """Where the live chain starts: the last archived seal's (sequence, MAC), and what is wrong with the segments.

    Only a prefix of archived segments whose rows' MACs hold and whose seals
    the checkpoint file records counts; anything else is named.
    """
    ring = audit_key_ring()
    seals = seal_checkpoints()
    sequence, mac, problems = 0, GENESIS_HASH, []
    for segment in AuditSegment.objects.order_by("number"):
        problem = segment_row_problem(segment, ring)
        if problem:
            problems.append(problem)
            continue
        if segment.first_sequence != sequence + 1 or segment.previous_seal_mac != mac:
            problems.append(
                f"segment {segment.number} (#{segment.first_sequence} to #{segment.last_sequence}) does not "
                f"follow the seal of #{sequence}"
            )
            break
        seal = seals.get(segment.last_sequence)
        if seal is None or not macs_equal(seal.mac, segment.last_mac):
            problems.append(
                f"the checkpoint file records no seal of #{segment.last_sequence} with segment {segment.number}'s MAC"
            )
            break
        problem = segment_archive_problem(segment)
        if problem:
            problems.append(problem)
        if segment.archived_at is None or (problem and _events_left(segment)):
            break  # the live chain starts here (a segment marked archived by hand still holds its events)
        sequence, mac = segment.last_sequence, segment.last_mac
    return sequence, mac, problems
