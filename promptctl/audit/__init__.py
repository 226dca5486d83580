"""The append-only, keyed audit chain and its checkpoints.

Rules, and why (each module states its own in full):

- ``audit_record`` (``chain``) appends an event in the transaction of the
  change it records, MACed (HMAC-SHA256) with a key kept outside the database
  (``keys``), linked to the event before it.
- Checkpoints (``checkpoints``) publish the head outside the database after
  every pin move, on a schedule and on demand, each MACed itself.
- ``audit_verify`` (``verify``) checks every MAC and link, compares the chain
  with every checkpoint, and names what happened: truncation, a deleted tail,
  rewritten history, edited rows, deletions in the middle, forged checkpoints.
- The database refuses UPDATE (and on PostgreSQL DELETE) of audit rows; the
  MACs and checkpoints are what catch an owner who switches that off, since
  the owner of the database does not hold the key.
"""

from promptctl.audit.chain import PIN_MOVING_VERBS, audit_record
from promptctl.audit.checkpoints import (
    Checkpoint,
    CheckpointRefused,
    audit_checkpoint_publish,
    checkpoint_latest,
    checkpoint_path,
    checkpoints_read,
)
from promptctl.audit.keys import AuditKeyError, audit_key_ring
from promptctl.audit.macs import GENESIS_HASH, event_mac, json_normalize, legacy_event_hash
from promptctl.audit.verify import AuditFinding, AuditVerification, audit_verify

__all__ = [
    "GENESIS_HASH",
    "PIN_MOVING_VERBS",
    "AuditFinding",
    "AuditKeyError",
    "AuditVerification",
    "Checkpoint",
    "CheckpointRefused",
    "audit_checkpoint_publish",
    "audit_key_ring",
    "audit_record",
    "audit_verify",
    "checkpoint_latest",
    "checkpoint_path",
    "checkpoints_read",
    "event_mac",
    "json_normalize",
    "legacy_event_hash",
]
