"""Environments and agents on Managed Agents: create, read, the conditional update, archive.

Versions are 64-bit integers handed out by the server, never assumed small or
contiguous. ``agent_update`` is optimistic concurrency: a stale
``expected_version`` fails after exactly one HTTP request with
``VersionConflict`` naming the server's version, and is never retried.

Every create and update is safe to retry. It carries a client-generated marker
in its metadata (``WRITE_MARKER``), and after a failure whose outcome is
unknown (a 5xx, a timeout, a closed connection: the server may have carried the
request out and lost only the answer) the next attempt first looks for the
marker on the server (agents and environments by listing them, an update among
the agent's versions) and adopts what it finds instead of sending again. So a
lost answer never makes a second remote agent or environment, and an update
whose answer was lost is reported as the version it made, never as "nothing was
changed". An update is conditional on ``expected_version``, so even a retry the
lookup could not vouch for cannot make a second version: it gets a 409, and the
marker is looked up once more before the conflict is reported. The marker is
metadata, which the configuration hash leaves out (``managed_agents.confighash``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from managed_agents import confighash
from managed_agents.client import (
    Attempts,
    GatewayError,
    UpstreamUnavailable,
    VersionConflict,
    client,
    is_transient,
    refusal,
    with_retries,
)
from managed_agents.validation import agent_config_check

if TYPE_CHECKING:
    import anthropic
else:
    from managed_agents.sdk import anthropic  # the SDK is imported on first use (managed_agents.sdk)

logger = logging.getLogger("managed_agents.gateway")

T = TypeVar("T")

_IDENTITY_FIELDS = {"id", "version", "created_at", "updated_at", "archived_at", "type"}
# The metadata key of the client-generated marker of one logical create or update. An update
# overwrites it; a later version made elsewhere inherits it (metadata carries over), so the
# version an update made is the lowest one above its base that carries its marker.
WRITE_MARKER = "promptctl_write"
# How many listed agents or versions a lookup for a landed write reads at most.
LANDED_SCAN_LIMIT = 500
# Creation times are the server's clock: look back this far past our own start.
LANDED_CLOCK_SLACK = dt.timedelta(seconds=120)
# "... is at version 7", "current version: 7", "server version 7": the number the server holds now.
_CONFLICT_VERSION = re.compile(r"(?:current|server|is at|now at)[^0-9]{0,40}?version[^0-9]{0,20}?(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class RemoteEnvironment:
    id: str
    name: str


@dataclass(frozen=True)
class RemoteAgentVersion:
    agent_id: str
    version: int
    name: str
    model: str
    system: str
    config: dict
    config_sha256: str  # over the whole dump: moves with SDK upgrades; kept for the record only
    config_canonical_sha256: str  # over the behaviour-defining fields (managed_agents.confighash): compare this
    created_at: datetime | None

    @property
    def marker(self) -> str | None:
        """The write marker in this version's metadata (inherited by later versions that did not set their own)."""
        return marker_of(self.config)


class OutcomeUnknown(UpstreamUnavailable):
    """The retries ran out, an attempt may have been carried out, and the server could not be asked whether it was."""


def write_marker() -> str:
    """A fresh client-generated marker for one logical create or update."""
    return uuid.uuid4().hex


def agent_config_param_types() -> dict[str, Any]:
    """The SDK's parameter types of each configuration field ``agents.update`` takes (imported on first use).

    promptctl's config files are checked against these before any call, so a
    file the installed SDK would not send is refused with the key named.
    """
    from anthropic.types.beta import agent_update_params
    from anthropic.types.beta.beta_managed_agents_execution_identity_params import (
        BetaManagedAgentsExecutionIdentityParams,
    )
    from anthropic.types.beta.beta_managed_agents_model_config_params import BetaManagedAgentsModelConfigParams
    from anthropic.types.beta.beta_managed_agents_multiagent_params import BetaManagedAgentsMultiagentParams
    from anthropic.types.beta.beta_managed_agents_skill_params import BetaManagedAgentsSkillParams
    from anthropic.types.beta.beta_managed_agents_url_mcp_server_params import BetaManagedAgentsURLMCPServerParams

    return {
        "model": BetaManagedAgentsModelConfigParams,
        "metadata": dict[str, str],
        "tools": agent_update_params.Tool,
        "mcp_servers": BetaManagedAgentsURLMCPServerParams,
        "skills": BetaManagedAgentsSkillParams,
        "multiagent": BetaManagedAgentsMultiagentParams,
        "execution_identity": BetaManagedAgentsExecutionIdentityParams,
    }


def config_without_marker(config: dict) -> dict:
    """``config`` as people read it: promptctl's write marker is bookkeeping, not a change anyone made.

    Every write carries a fresh marker in ``metadata`` (so a retry can find what
    landed); left in, every diff would show it as a changed field.
    """
    metadata = config.get("metadata")
    if not isinstance(metadata, dict) or WRITE_MARKER not in metadata:
        return config
    rest = {key: value for key, value in metadata.items() if key != WRITE_MARKER}
    return {**config, "metadata": rest or None}


def marker_of(config: dict) -> str | None:
    metadata = config.get("metadata") if isinstance(config, dict) else None
    value = metadata.get(WRITE_MARKER) if isinstance(metadata, dict) else None
    return value if isinstance(value, str) else None


def _metadata_marker(item: Any) -> str | None:
    return (getattr(item, "metadata", None) or {}).get(WRITE_MARKER)


def _first_marked(items: Iterable[Any], marker: str) -> Any | None:
    """The first listed item carrying ``marker``, reading at most ``LANDED_SCAN_LIMIT``."""
    for scanned, item in enumerate(items):
        if _metadata_marker(item) == marker:
            return item
        if scanned + 1 >= LANDED_SCAN_LIMIT:
            break
    return None


def _write(call: Callable[[], T], *, what: str, landed: Callable[[], T | None], attempts: Attempts) -> T:
    """Run a marked write with retries that adopt a landed attempt, and look once more before giving up.

    When the retries run out after an unknown outcome, the last attempt may have
    landed after all: one final lookup adopts it, and otherwise the refusal says
    that something may have been made and how to find it.
    """
    try:
        return with_retries(call, what=what, attempts=attempts, landed=landed)
    except UpstreamUnavailable as error:
        if not attempts.unknown_outcomes:
            raise
        try:
            found = landed()
        except Exception as lookup_error:  # noqa: BLE001 - a failed lookup leaves the outcome unknown
            if not is_transient(lookup_error):
                raise
            found = None
            checked = False
        else:
            checked = True
        if found is not None:
            attempts.adopted += 1
            logger.info("%s: the last attempt had landed; using it", what)
            return found
        if checked:
            raise
        unknown = OutcomeUnknown(
            f"{error} An attempt may have been carried out before its answer was lost, and the server could not "
            "be asked whether it was."
        )
        unknown.retry_after = error.retry_after
        raise unknown from error


# --- Environments -------------------------------------------------------------


def environment_ensure(*, name: str) -> RemoteEnvironment:
    """The environment called ``name``, created on first use (names are reused, not duplicated)."""
    api = client().beta.environments
    for environment in with_retries(lambda: list(api.list()), what="list environments"):
        if environment.name == name and not environment.archived_at:
            return RemoteEnvironment(id=environment.id, name=environment.name)
    marker = write_marker()
    created = _write(
        lambda: api.create(
            name=name,
            config={"type": "cloud", "networking": {"type": "unrestricted"}},
            metadata={WRITE_MARKER: marker},
        ),
        what=f"create environment {name!r}",
        landed=lambda: _first_marked(api.list(), marker),
        attempts=Attempts(),
    )
    return RemoteEnvironment(id=created.id, name=created.name)


def environment_archive(*, environment_id: str) -> None:
    with_retries(
        lambda: client().beta.environments.archive(environment_id), what=f"archive environment {environment_id}"
    )


# --- Agents -----------------------------------------------------------------


def _model_id(model: Any) -> str:
    if isinstance(model, str):
        return model
    return getattr(model, "id", None) or str(model)


def _agent_version(agent: Any) -> RemoteAgentVersion:
    config = {key: value for key, value in agent.model_dump(mode="json").items() if key not in _IDENTITY_FIELDS}
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return RemoteAgentVersion(
        agent_id=agent.id,
        version=int(agent.version),
        name=agent.name,
        model=_model_id(agent.model),
        system=agent.system or "",
        config=config,
        config_sha256=hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
        config_canonical_sha256=confighash.config_sha256(config),
        created_at=agent.updated_at or agent.created_at,
    )


def agent_create(*, name: str, model: str, system: str, marker: str | None = None) -> RemoteAgentVersion:
    """Create the remote agent; its first version is whatever number the server hands out.

    The configuration is checked locally first (``managed_agents.validation``):
    input the API or promptctl's database would refuse never makes a remote agent.
    The create carries ``marker`` (a fresh one when not given) in its metadata,
    and a retry after a lost answer adopts the agent that carries it, so one
    call makes at most one remote agent (agents cannot be deleted, only archived).
    """
    agent_config_check(name=name, model=model, system=system)
    marker = marker or write_marker()
    since = dt.datetime.now(dt.UTC) - LANDED_CLOCK_SLACK
    api = client().beta.agents
    try:
        agent = _write(
            lambda: api.create(name=name, model=model, system=system, metadata={WRITE_MARKER: marker}),
            what=f"create agent {name!r}",
            landed=lambda: _first_marked(api.list(created_at_gte=since, limit=100), marker),
            attempts=Attempts(),
        )
    except anthropic.APIStatusError as error:
        raise refusal(error, what=f"create agent {name!r}") from error
    return _agent_version(agent)


def agent_retrieve(*, agent_id: str, version: int | None = None) -> RemoteAgentVersion:
    try:
        agent = with_retries(
            lambda: client().beta.agents.retrieve(agent_id, version=anthropic.omit if version is None else version),
            what=f"retrieve agent {agent_id}",
        )
    except anthropic.NotFoundError as error:
        suffix = f" version {version}" if version is not None else ""
        raise GatewayError(f"Agent {agent_id}{suffix} does not exist on the server.") from error
    except anthropic.APIStatusError as error:
        raise refusal(error, what=f"retrieve agent {agent_id}") from error
    return _agent_version(agent)


def agent_versions(*, agent_id: str) -> list[RemoteAgentVersion]:
    """Every version the server holds for the agent, oldest first."""
    try:
        versions = with_retries(
            lambda: list(client().beta.agents.versions.list(agent_id)), what=f"list versions of agent {agent_id}"
        )
    except anthropic.APIStatusError as error:
        raise refusal(error, what=f"list versions of agent {agent_id}") from error
    return sorted((_agent_version(v) for v in versions), key=lambda v: v.version)


def _conflict_server_version(error: anthropic.APIStatusError) -> int | None:
    body = error.body if isinstance(error.body, dict) else {}
    details = body.get("error", body) if isinstance(body, dict) else {}
    for key in ("current_version", "server_version"):
        value = details.get(key) if isinstance(details, dict) else None
        if isinstance(value, int):
            return value
    match = _CONFLICT_VERSION.search(getattr(error, "message", "") or str(error))
    return int(match.group(1)) if match else None


def _marked_version(listing: Iterable[Any], expected_version: int, marker: str) -> Any | None:
    """Newest first: the last marked version seen before the list drops to the base or below."""
    found = None
    for scanned, version in enumerate(listing):
        if int(version.version) <= expected_version or scanned >= LANDED_SCAN_LIMIT:
            break
        if _metadata_marker(version) == marker:
            found = version
    return found


def agent_update(
    *,
    agent_id: str,
    expected_version: int,
    system: str | None = None,
    model: str | None = None,
    marker: str | None = None,
    fields: Mapping[str, Any] | None = None,
) -> RemoteAgentVersion:
    """Make a new version only if ``expected_version`` is still the latest (optimistic concurrency).

    ``fields`` are further update parameters as the SDK takes them (``model``
    as an object, ``description``, ``tools``, ``mcp_servers``, ``skills``,
    ``multiagent``, ``execution_identity``, and ``metadata`` as a patch: the
    write marker is added to it), checked by the caller against the SDK's
    types (``promptctl.config_files``).

    A 409 is never retried: it means another change landed first, and the
    caller must look at what the server now has before deciding again. A
    failure whose outcome is unknown is reconciled against the agent's versions
    (by ``marker`` in the metadata, a fresh one when not given) before anything
    is reported: a version that landed is returned as this update's, and a
    refusal says "nothing was changed" only when the server's versions show it.
    """
    changes: dict[str, Any] = {}
    if system is not None:
        changes["system"] = system
    if model is not None:
        changes["model"] = model
    extra = dict(fields or {})
    patch = extra.pop("metadata", None) or {}
    changes.update(extra)
    if not changes and not patch:
        raise GatewayError("Nothing to change: give a new system prompt, model or other field.")
    agent_config_check(model=model, system=system)  # before the request: refused input makes no version
    marker = marker or write_marker()
    changes["metadata"] = {**patch, WRITE_MARKER: marker}
    api = client().beta.agents
    attempts = Attempts()

    def landed() -> Any | None:
        return _marked_version(api.versions.list(agent_id, limit=100), expected_version, marker)

    what = f"update agent {agent_id}"
    try:
        agent = _write(
            lambda: api.update(agent_id, version=expected_version, **changes),
            what=what,
            landed=landed,
            attempts=attempts,
        )
    except anthropic.ConflictError as error:
        if attempts.unknown_outcomes:  # an earlier attempt may be what moved the agent on
            found = _quiet(landed)
            if found is not None:
                attempts.adopted += 1
                return _agent_version(found)
        server_version = _conflict_server_version(error)
        now = (
            f"the server now has version {server_version}"
            if server_version is not None
            else "the server has a newer version"
        )
        raise VersionConflict(
            f"Another change landed first: agent {agent_id} is no longer at version {expected_version}; {now}. "
            "Sync the agent, review what changed, and make your edit on top of the latest version.",
            server_version=server_version,
        ) from error
    except OutcomeUnknown as error:
        raise OutcomeUnknown(
            f"{error} The update may have made a version: sync the agent before trying again (a version this "
            "update made is recognised by its marker and recorded as promptctl's, not as a change made outside)."
        ) from error
    except UpstreamUnavailable as error:
        if attempts.unknown_outcomes:
            why = "promptctl checked the agent's versions afterwards and none of them is this update"
        else:
            why = "the server turned every attempt away before carrying it out"
        raise UpstreamUnavailable(f"{error} Nothing was changed: {why}.") from error
    except anthropic.APIStatusError as error:
        raise refusal(error, what=what) from error
    return _agent_version(agent)


def _quiet(lookup: Callable[[], T | None]) -> T | None:
    """A best-effort lookup: None when the server cannot be asked."""
    try:
        return lookup()
    except anthropic.APIError:
        return None


def agent_archive(*, agent_id: str) -> None:
    try:
        with_retries(lambda: client().beta.agents.archive(agent_id), what=f"archive agent {agent_id}")
    except anthropic.APIStatusError as error:
        raise refusal(error, what=f"archive agent {agent_id}") from error
