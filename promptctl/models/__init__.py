"""The change-control domain: agents, versions, pins, change requests, approvals, audit.

Rules the models keep (each also held by the database, see ``Meta.constraints``
and the triggers in migration 0002):

- A version is immutable and unique per agent and number; numbers are 64-bit
  and never assumed small or contiguous.
- A pin exists once per agent and channel and moves only by applying a change
  request: ``Pin.change`` names the applied request that set its current state.
- A change request's target, base and evidence are fixed when it is filed, so
  an approval always covers exactly what the reviewer saw.
- An approval's reviewer is never the request's requester (four-eyes rule); the
  requester is copied onto the approval so a check constraint can hold it.
- Audit events are append-only and hash-chained (``promptctl.audit``).

Writes go through ``promptctl.services``; nothing here moves state on its own.
"""

from promptctl.models.access import PersonalToken, Webhook, WebhookDelivery
from promptctl.models.agents import Agent, AgentVersion
from promptctl.models.audit import AuditChainHead, AuditEvent, AuditSegment
from promptctl.models.changes import Approval, ChangeRequest, Pin
from promptctl.models.common import PRODUCTION
from promptctl.models.database import RetentionFloor
from promptctl.models.deployments import DeploymentBinding
from promptctl.models.intents import VersionIntent

__all__ = [
    "PRODUCTION",
    "Agent",
    "AgentVersion",
    "Approval",
    "AuditChainHead",
    "AuditEvent",
    "AuditSegment",
    "ChangeRequest",
    "DeploymentBinding",
    "PersonalToken",
    "Pin",
    "RetentionFloor",
    "VersionIntent",
    "Webhook",
    "WebhookDelivery",
]
