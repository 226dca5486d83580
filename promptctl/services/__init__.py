"""Writes of the change-control domain. Every change is audited in its own transaction.

Rules every service keeps, and why:

- Permission and domain checks live here, not in the admin or CLI, so every
  front door refuses the same things with the same message.
- State transitions re-read the row with ``select_for_update()`` inside
  ``transaction.atomic()`` and check the allowed starting state, so two people
  acting at once cannot both win.
- Moving a pin locks the agent row, then the pin, then the request(s), always
  in that order; other transitions lock only their request. One order means no
  deadlock between an apply and an approval.
- Each saved object carries ``_history_user`` so django-simple-history records
  who acted from the CLI as well as from the web.

The package holds one module per entity (``users``, ``agents``, ``versions``,
``changes``) over ``common`` (permission check, audit snapshots, version
records); this module re-exports their public names, so callers keep writing
``services.change_request_apply(...)``.
"""

from promptctl.services.agents import (
    DEFAULT_ENVIRONMENT,
    SyncResult,
    agent_create,
    agent_policy_update,
    agent_sync,
)
from promptctl.services.changes import (
    change_request_apply,
    change_request_approve,
    change_request_create,
    change_request_reject,
    change_request_withdraw,
    reviewer_eligible,
)
from promptctl.services.deployments import (
    DeploymentsBehind,
    deployment_bind,
    deployment_unbind,
    deployments_check,
    deployments_check_all,
    deployments_restore,
)
from promptctl.services.notifications import change_notify, notification_email_send, webhook_delivery_attempt
from promptctl.services.tokens import (
    IssuedToken,
    TokenPrincipal,
    TokenRefused,
    token_authenticate,
    token_create,
    token_get,
    token_owner_get,
    token_revoke,
    user_is_bot,
)
from promptctl.services.users import (
    BOTS,
    REQUESTERS,
    REVIEWERS,
    ROLE_PERMISSIONS,
    ROLES,
    roles_ensure,
    user_create,
)
from promptctl.services.versions import version_create
from promptctl.services.webhooks import (
    IssuedWebhook,
    webhook_create,
    webhook_delivery_retry,
    webhook_update,
)

__all__ = [
    "BOTS",
    "DEFAULT_ENVIRONMENT",
    "IssuedWebhook",
    "REQUESTERS",
    "IssuedToken",
    "TokenPrincipal",
    "TokenRefused",
    "REVIEWERS",
    "ROLES",
    "ROLE_PERMISSIONS",
    "SyncResult",
    "agent_create",
    "agent_policy_update",
    "agent_sync",
    "change_request_apply",
    "change_request_approve",
    "change_request_create",
    "change_request_reject",
    "change_request_withdraw",
    "DeploymentsBehind",
    "deployment_bind",
    "deployment_unbind",
    "deployments_check",
    "deployments_check_all",
    "deployments_restore",
    "reviewer_eligible",
    "change_notify",
    "notification_email_send",
    "roles_ensure",
    "token_authenticate",
    "token_create",
    "token_get",
    "token_owner_get",
    "token_revoke",
    "user_create",
    "user_is_bot",
    "version_create",
    "webhook_create",
    "webhook_delivery_attempt",
    "webhook_delivery_retry",
    "webhook_update",
]
