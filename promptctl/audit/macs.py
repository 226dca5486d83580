"""What an event's and a checkpoint's MAC is computed over.

- A keyed event carries ``HMAC-SHA256(key, "promptctl-audit-event" + previous
  MAC + canonical JSON of its fields, its key id among them)``. The key id is
  inside the MAC, so moving an event to another key's id fails too.
- A legacy event (``key_id == ""``, written before the chain was keyed) keeps
  its plain ``sha256(previous_hash + canonical JSON)``: the formula it was
  written with, so the history from before the upgrade still verifies.
- A checkpoint's MAC covers every other field of the checkpoint, with its own
  prefix, so an event MAC can never pass for a checkpoint MAC or back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from typing import Any

from promptctl.audit.keys import AuditKey
from promptctl.models import AuditEvent

GENESIS_HASH = "0" * 64
LEGACY_KEY_ID = ""
EVENT_DOMAIN = b"promptctl-audit-event\0"
CHECKPOINT_DOMAIN = b"promptctl-audit-checkpoint\0"


def json_normalize(value: Any) -> Any:
    """``value`` as it will read back from a JSON column (so the MAC is computed over what is stored)."""
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def timestamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


def event_payload(event: AuditEvent) -> dict[str, Any]:
    payload = {
        "sequence": event.sequence,
        "occurred_at": timestamp(event.occurred_at),
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
    if event.key_id != LEGACY_KEY_ID:
        payload["key_id"] = event.key_id
    if event.token_ref:  # only when set, so events without a token keep the MACs they were written with
        payload["token_ref"] = event.token_ref
    return payload


def legacy_event_hash(event: AuditEvent) -> str:
    """The plain SHA-256 an event written before the keyed chain carries (no secret: anyone can recompute it)."""
    return hashlib.sha256((event.previous_hash + canonical(event_payload(event))).encode("utf-8")).hexdigest()


def event_mac(event: AuditEvent, key: AuditKey) -> str:
    """The MAC ``event`` must carry under ``key`` (whose id it names), computed from its stored fields."""
    message = EVENT_DOMAIN + (event.previous_hash + canonical(event_payload(event))).encode("utf-8")
    return hmac.new(key.secret, message, hashlib.sha256).hexdigest()


def checkpoint_mac(fields: dict[str, Any], key: AuditKey) -> str:
    """The MAC over a checkpoint's fields (all but ``checkpoint_mac`` itself)."""
    body = {name: value for name, value in fields.items() if name != "checkpoint_mac"}
    return hmac.new(key.secret, CHECKPOINT_DOMAIN + canonical(body).encode("utf-8"), hashlib.sha256).hexdigest()


def macs_equal(left: str, right: str) -> bool:
    return hmac.compare_digest(left.encode("utf-8"), right.encode("utf-8"))
