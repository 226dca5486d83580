"""Appending to the chain: ``audit_record``.

Rules, and why:

- ``audit_record`` runs inside the transaction of the change it records (it
  refuses otherwise), so an event exists exactly when its change does.
- Appends are serialized by locking the single ``AuditChainHead`` row, so two
  transactions on PostgreSQL cannot both extend the chain from the same event
  (a fork would make ``audit_verify`` fail for honest writes).
- Every new event is MACed with the current audit key and names its id; the
  key is outside the database (``promptctl.audit.keys``).
- A pin-moving event schedules a checkpoint for when its transaction commits
  (``PIN_MOVING_VERBS``): the moment production changes is the moment the
  record's head is published outside the database.
- An event names the personal token its change came through, when one is
  bound (``promptctl.middleware.token_bind``: the CLI and the API), inside
  its MAC.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from promptctl.audit.admin_log import admin_log_record
from promptctl.audit.checkpoints import audit_checkpoint_publish_quietly
from promptctl.audit.keys import audit_key_ring
from promptctl.audit.macs import event_mac, json_normalize
from promptctl.middleware import request_id_current, token_current
from promptctl.models import AuditChainHead, AuditEvent

# Verbs that record a move of what production serves (promptctl/services/changes.py).
PIN_MOVING_VERBS = frozenset({"pin.move"})


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
    key = audit_key_ring().current  # before the lock: a missing key refuses the change, it does not stall others
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
        key_id=key.key_id,
        token_ref=token_current()[:40],
    )
    event.hash = event_mac(event, key)
    event.save(force_insert=True)
    head.sequence = event.sequence
    head.hash = event.hash
    head.save(update_fields=["sequence", "hash"])
    if verb in PIN_MOVING_VERBS:
        transaction.on_commit(partial(audit_checkpoint_publish_quietly, verb), robust=True)
    admin_log_record(actor=actor, verb=verb, target=target, event=event)  # the admin's "Recent actions"
    return event
