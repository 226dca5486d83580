"""The append-only, hash-chained audit log.

Rules, and why:

- ``audit_record`` runs inside the transaction of the change it records (it
  refuses otherwise), so an event exists exactly when its change does.
- Appends are serialized by locking the single ``AuditChainHead`` row, so two
  transactions on PostgreSQL cannot both extend the chain from the same event
  (a fork would make ``audit_verify`` fail for honest writes).
- Each event's hash is ``sha256(previous_hash + canonical JSON of its fields)``.
  Editing any field of any event, or deleting one, breaks the chain at that
  event; deleting events from the end is caught by comparing with the head.
- The database refuses UPDATE (and on PostgreSQL DELETE) of audit rows; the
  chain is what catches an owner who switches that off.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from promptctl.middleware import request_id_current
from promptctl.models import AuditChainHead, AuditEvent

GENESIS_HASH = "0" * 64


def json_normalize(value: Any) -> Any:
    """``value`` as it will read back from a JSON column (so the hash is computed over what is stored)."""
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _timestamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _event_payload(event: AuditEvent) -> dict[str, Any]:
    return {
        "sequence": event.sequence,
        "occurred_at": _timestamp(event.occurred_at),
        "actor_id": event.actor_id,
        "actor_username": event.actor_username,
        "verb": event.verb,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "object_repr": event.object_repr,
        "agent_id": event.agent_id_ref,
        "before": event.before,
        "after": event.after,
        "request_id": event.request_id,
        "previous_hash": event.previous_hash,
    }


def audit_event_hash(event: AuditEvent) -> str:
    """The hash ``event`` must carry, computed from its stored fields."""
    return hashlib.sha256((event.previous_hash + _canonical(_event_payload(event))).encode("utf-8")).hexdigest()


def _chain_head_locked() -> AuditChainHead:
    head = AuditChainHead.objects.select_for_update().filter(pk=1).first()
    if head is not None:
        return head
    last = AuditEvent.objects.order_by("-sequence").values("sequence", "hash").first()
    AuditChainHead.objects.get_or_create(
        pk=1,
        defaults={"sequence": last["sequence"], "hash": last["hash"]} if last else {},
    )
    return AuditChainHead.objects.select_for_update().get(pk=1)


def audit_record(
    *,
    actor: Any,
    verb: str,
    target: models.Model | None = None,
    object_type: str = "",
    object_id: str = "",
    agent_id: int | None = None,
    before: Any = None,
    after: Any = None,
) -> AuditEvent:
    """Append one event to the chain, in the caller's transaction.

    ``target`` names the object (its type, id and text); ``before``/``after``
    are JSON-able snapshots. ``actor`` may be ``None`` for system actions.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit_record must run inside the transaction of the change it records")
    if target is not None:
        object_type = object_type or target._meta.label_lower
        object_id = object_id or str(target.pk)
        object_repr = str(target)[:300]
    else:
        object_repr = ""
    head = _chain_head_locked()
    event = AuditEvent(
        sequence=head.sequence + 1,
        occurred_at=timezone.now(),
        actor=actor if actor is not None and actor.pk else None,
        actor_username=getattr(actor, "username", "") or "",
        verb=verb,
        object_type=object_type,
        object_id=object_id,
        object_repr=object_repr,
        agent_id_ref=agent_id,
        before=json_normalize(before),
        after=json_normalize(after),
        request_id=request_id_current()[:100],
        previous_hash=head.hash,
    )
    event.hash = audit_event_hash(event)
    event.save(force_insert=True)
    head.sequence = event.sequence
    head.hash = event.hash
    head.save(update_fields=["sequence", "hash"])
    return event


@dataclass(frozen=True)
class AuditVerification:
    """The outcome of walking the chain; ``first_broken_sequence`` names where it first fails."""

    ok: bool
    checked: int
    head_sequence: int
    first_broken_sequence: int | None
    problem: str

    @property
    def message(self) -> str:
        if self.ok:
            return f"Audit chain verified: {self.checked} events, intact up to #{self.head_sequence}."
        return f"Audit chain broken at event #{self.first_broken_sequence}: {self.problem}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "head_sequence": self.head_sequence,
            "first_broken_sequence": self.first_broken_sequence,
            "problem": self.problem,
            "message": self.message,
        }


def audit_verify() -> AuditVerification:
    """Walk every event in order and report the first one that breaks the chain."""
    previous_sequence = 0
    previous_hash = GENESIS_HASH
    checked = 0

    def broken(sequence: int, problem: str) -> AuditVerification:
        return AuditVerification(False, checked, previous_sequence, sequence, problem)

    for event in AuditEvent.objects.order_by("sequence").iterator(chunk_size=2000):
        expected = previous_sequence + 1
        if event.sequence != expected:
            return broken(
                expected,
                f"it is missing (deleted): the chain goes from #{previous_sequence} straight to #{event.sequence}.",
            )
        if event.previous_hash != previous_hash:
            return broken(
                event.sequence,
                f"its link to #{previous_sequence} does not match (event #{previous_sequence} was replaced "
                "or this event's link was edited).",
            )
        if audit_event_hash(event) != event.hash:
            return broken(
                event.sequence, "its contents do not match its hash (the row was changed after it was written)."
            )
        previous_sequence, previous_hash = event.sequence, event.hash
        checked += 1

    head = AuditChainHead.objects.filter(pk=1).first()
    if head is not None and (head.sequence, head.hash) != (previous_sequence, previous_hash):
        if head.sequence > previous_sequence:
            return broken(
                previous_sequence + 1,
                f"events #{previous_sequence + 1} to #{head.sequence} are missing (deleted from the end of the chain).",
            )
        return broken(
            head.sequence if head.sequence else previous_sequence,
            f"the chain head records #{head.sequence} but the events end at #{previous_sequence}.",
        )
    return AuditVerification(True, checked, previous_sequence, None, "")
