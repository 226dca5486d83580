"""The Managed Agents boundary in one name: the only place (with the modules it re-exports) that imports ``anthropic``.

Callers write ``from managed_agents import gateway`` and use ``gateway.X``;
the rules live in the modules behind it:

- ``managed_agents.client``: the SDK clients, the errors, the one retry policy;
- ``managed_agents.agents``: environments and agents, the conditional update;
- ``managed_agents.deployments``: deployments read, and pinned to a version (read-check-write-verify);
- ``managed_agents.sessions``: one pinned session turn (async, with a sync wrapper);
- ``managed_agents.tickets``: one ticket on one pinned version, read and classified.

Nothing here imports a model: callers pass plain values and get dataclasses.
"""

from managed_agents.agents import (
    WRITE_MARKER,
    OutcomeUnknown,
    RemoteAgentVersion,
    RemoteEnvironment,
    agent_archive,
    agent_config_param_types,
    agent_create,
    agent_retrieve,
    agent_update,
    agent_versions,
    config_without_marker,
    environment_archive,
    environment_ensure,
    write_marker,
)
from managed_agents.client import (
    LIVE_API_BASE_URL,
    OFFLINE_PLACEHOLDER_KEY,
    GatewayError,
    SessionTimeout,
    UpstreamUnavailable,
    VersionConflict,
    async_client,
    client,
    client_reset,
)
from managed_agents.deployments import (
    DeploymentArchived,
    DeploymentMissing,
    DeploymentNotVerified,
    RemoteDeployment,
    deployment_create,
    deployment_list,
    deployment_pin,
    deployment_retrieve,
    deployment_unpause,
)
from managed_agents.sessions import (
    Transcript,
    session_run,
    session_run_async,
    sessions_archive_tagged,
    sessions_archive_tagged_async,
)
from managed_agents.tickets import TicketRun, ticket_run, ticket_run_async

__all__ = [
    "DeploymentArchived",
    "DeploymentMissing",
    "DeploymentNotVerified",
    "RemoteDeployment",
    "deployment_create",
    "deployment_list",
    "deployment_pin",
    "deployment_retrieve",
    "deployment_unpause",
    "LIVE_API_BASE_URL",
    "OFFLINE_PLACEHOLDER_KEY",
    "WRITE_MARKER",
    "GatewayError",
    "OutcomeUnknown",
    "RemoteAgentVersion",
    "RemoteEnvironment",
    "SessionTimeout",
    "TicketRun",
    "Transcript",
    "UpstreamUnavailable",
    "VersionConflict",
    "agent_archive",
    "agent_create",
    "agent_retrieve",
    "agent_update",
    "agent_versions",
    "async_client",
    "client",
    "client_reset",
    "environment_archive",
    "environment_ensure",
    "session_run",
    "session_run_async",
    "sessions_archive_tagged",
    "sessions_archive_tagged_async",
    "ticket_run",
    "ticket_run_async",
    "write_marker",
    "agent_config_param_types",
    "config_without_marker",
]
