"""Writes of the triage API: keys, serving and logging triage calls, jobs, shadow runs, canary checks, corrections.

Rules every service keeps, and why:

- A triage call reads the pin at request time (``triage.pins``), runs one
  pinned session, and is logged whatever happens (valid, invalid, failed), so
  canary and shadow numbers count every call.
- No network call happens inside a transaction: the session runs between the
  read that routes it and the transaction that records it.
- Side effects (shadow runs, ending a canary, running a job) are Celery tasks
  sent on commit; each task's service is idempotent (a unique key per unit of
  work, a final state is a no-op).
- API keys are stored as SHA-256 hashes of 256-bit random secrets; the secret
  is returned once, by ``api_key_create``, and never again. A revoked key is
  refused on its next request: every request reads the key row.

The package holds one module per entity (``apikeys``, ``serving``, ``jobs``,
``shadow``, ``canary``, ``corrections``, ``routing``) over ``common`` (the
refusals, the permission check, a ticket run as a log row); reads live in
``triage.selectors``. This module re-exports their public names, so callers
keep writing ``services.triage_serve(...)``.
"""

from triage.selectors import api_key_get, canary_over_limits, routing_policy_for, shadow_evidence
from triage.services.apikeys import (
    KEY_PREFIX,
    SHOWN_PREFIX_LENGTH,
    USAGE_RESOLUTION,
    IssuedKey,
    Principal,
    api_key_authenticate,
    api_key_create,
    api_key_revoke,
    api_key_token_check,
)
from triage.services.canary import (
    AUTO_END_USERNAME,
    SYSTEM_USERNAME,
    canary_end,
    canary_policy_save,
    system_user_ensure,
)
from triage.services.common import AgentOutOfScope, ApiKeyRefused, TriageFailed
from triage.services.corrections import (
    correction_allowed_labels,
    label_problems,
    testset_allowed_labels,
    triage_correct,
    triage_requests_to_testset,
)
from triage.services.jobs import (
    triage_job_accept,
    triage_job_create,
    triage_job_lease_live,
    triage_job_read,
    triage_job_run,
    triage_jobs_sweep,
)
from triage.services.routing import routing_policy_save
from triage.services.serving import Served, Ticket, triage_admit, triage_record, triage_route, triage_serve
from triage.services.shadow import canary_compare, canary_comparisons_sweep, shadow_run, shadow_runs_sweep

__all__ = [
    "AUTO_END_USERNAME",
    "KEY_PREFIX",
    "SHOWN_PREFIX_LENGTH",
    "SYSTEM_USERNAME",
    "USAGE_RESOLUTION",
    "AgentOutOfScope",
    "ApiKeyRefused",
    "IssuedKey",
    "Principal",
    "Served",
    "Ticket",
    "TriageFailed",
    "api_key_authenticate",
    "api_key_create",
    "api_key_get",
    "api_key_revoke",
    "api_key_token_check",
    "canary_compare",
    "canary_comparisons_sweep",
    "canary_end",
    "canary_over_limits",
    "canary_policy_save",
    "correction_allowed_labels",
    "label_problems",
    "routing_policy_for",
    "routing_policy_save",
    "shadow_evidence",
    "shadow_run",
    "shadow_runs_sweep",
    "system_user_ensure",
    "testset_allowed_labels",
    "triage_admit",
    "triage_correct",
    "triage_job_accept",
    "triage_job_create",
    "triage_job_read",
    "triage_job_lease_live",
    "triage_job_run",
    "triage_jobs_sweep",
    "triage_record",
    "triage_requests_to_testset",
    "triage_route",
    "triage_serve",
]
