"""The internal triage API's records: keys, routing policy, the request log, jobs, shadow and canary results.

Rules the models keep (each also held by the database where it can be):

- An API key is stored only as the SHA-256 of a 256-bit random secret plus a
  short prefix to recognise it by; the secret is shown once and cannot be
  recovered. A key is revoked by stamping ``revoked_at``, never deleted, and
  is scoped either to all agents or to the agents listed.
- Each agent has at most one routing policy, and at most one policy is the
  default (a conditional unique constraint).
- The request log is immutable: a triage call is recorded once, with the
  version and pin revision that served it. A reviewer's correction is a
  separate, history-tracked ``TriageCorrection``, so the log row never changes.
- Shadow results and canary checks are evidence: immutable, one per unit of
  work (unique keys), so a redelivered task changes nothing.
- A job's status is one of four, its finish time is set exactly when it is
  final, and a finished job names the logged request that answered it.
"""

from triage.models.access import ApiKey, ApiKeyUsage, RoutingPolicy
from triage.models.common import ERROR_OUTCOMES, Outcome
from triage.models.counters import CanaryCounter
from triage.models.requests import TriageCorrection, TriageJob, TriageRequest
from triage.models.rollout import CanaryCheck, CanaryComparison, CanaryPolicy, ShadowCandidate, ShadowResult

__all__ = [
    "ERROR_OUTCOMES",
    "ApiKey",
    "ApiKeyUsage",
    "CanaryCheck",
    "CanaryComparison",
    "CanaryCounter",
    "CanaryPolicy",
    "Outcome",
    "RoutingPolicy",
    "ShadowCandidate",
    "ShadowResult",
    "TriageCorrection",
    "TriageJob",
    "TriageRequest",
]
