"""Pin resolution: which version serves this request, decided at request time.

Rules, and why:

- The pin is read from the database on every request with one indexed query
  (pin by agent and channel, joined to its versions, agent and routing
  policy). No row is cached, so an applied change request is seen by the very
  next request on every API process: there is no time-to-live to wait out.
  Only the query's SQL is compiled once per process (``CompiledRead``).
- A canary takes a sticky share of traffic: with a request key, the key's
  bucket is a hash of (agent, canary version, key), so one key always gets the
  same version while the canary runs, and raising the percentage keeps the
  keys already on the canary there. Without a key the share is random.
- A route always names an explicit version number: no session is ever created
  with a bare agent id ("latest").
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from managed_agents.verdicts import allowed_labels
from promptctl.dbsteps import CompiledRead
from promptctl.errors import DomainError, Fix
from promptctl.models import PRODUCTION, Agent, Pin

BUCKETS = 10_000  # canary percentages are whole numbers, so 100 buckets per percent


class RouteRefused(DomainError):
    """No version can serve the request; ``reason`` says which rule refused."""

    reason = "refused"


class UnknownAgent(RouteRefused):
    reason = "unknown_agent"


class NoDefaultAgent(RouteRefused):
    reason = "no_default_agent"


class AgentNotServing(RouteRefused):
    reason = "not_serving"


@dataclass(frozen=True)
class Route:
    """Everything one triage call needs to run and be logged, read in one query."""

    agent_id: int
    agent_name: str
    remote_agent_id: str
    environment_id: str
    channel: str
    pin_id: int
    pin_revision: int
    pin_change_id: int
    version_id: int
    version_number: int
    allowed: dict[str, tuple[str, ...]]
    canary: bool
    shadow_version_id: int | None


def canary_bucket(*, agent_remote_id: str, canary_version_number: int, request_key: str) -> int:
    """The key's fixed bucket in [0, BUCKETS) for this agent's canary of this version."""
    material = f"{agent_remote_id}\x00{canary_version_number}\x00{request_key}".encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.sha256(material).digest()[:8], "big") % BUCKETS


def canary_chosen(
    *, canary_version_number: int | None, canary_percent: int, agent_remote_id: str, request_key: str | None
) -> bool:
    """Whether this request goes to the pin's canary version."""
    if not canary_version_number or canary_percent <= 0:
        return False
    threshold = canary_percent * (BUCKETS // 100)
    if request_key:
        bucket = canary_bucket(
            agent_remote_id=agent_remote_id, canary_version_number=canary_version_number, request_key=request_key
        )
    else:
        bucket = random.randrange(BUCKETS)
    return bucket < threshold


def _refusal(agent_name: str | None, channel: str) -> RouteRefused:
    """Why no pin matched; only reached on the error path, so the extra queries cost nothing normally."""
    if agent_name is None:
        return NoDefaultAgent(
            "No default agent is configured, so POST /api/v1/triage cannot choose one. Call "
            "/api/v1/agents/{name}/triage with an agent name, or make an agent the default with an approved "
            "change request",
            code="no_default_agent",
            fix=Fix(
                cli="(`promptctl change request --agent NAME --kind route --reason TEXT`).",
                web="(Change requests › File a change request, kind 'make default agent').",
                link=("admin:promptctl_changerequest_add", ()),
            ),
        )
    if not Agent.objects.filter(name=agent_name).exists():
        return UnknownAgent(
            f"There is no agent named {agent_name!r}. Check the name in the URL (agent names are lowercase, "
            "e.g. ticket-triage) or ask the promptctl owners which agents exist."
        )
    return AgentNotServing(
        f"Agent {agent_name!r} has no {channel} version pinned yet, so it cannot serve requests. Its owners "
        "must promote a version first",
        code="agent_not_serving",
        fix=Fix(
            cli=f"(`promptctl change request --agent {agent_name} --kind promote ...`).",
            web="(Change requests › File a change request, kind promote).",
            link=("admin:promptctl_changerequest_add", ()),
        ),
    )


_ROUTE_FIELDS = (
    "id",
    "revision",
    "channel",
    "change_id",
    "canary_percent",
    "agent_id",
    "agent__name",
    "agent__remote_id",
    "agent__environment_id",
    "version_id",
    "version__number",
    "version__system_prompt",
    "canary_version_id",
    "canary_version__number",
    "canary_version__system_prompt",
    "agent__routing_policy__shadow_version_id",
    "agent__routing_policy__shadow_percent",
)
# The pin by agent name, or the default agent's pin; (agent, channel) is unique, so at most one row.
_PIN_BY_NAME = CompiledRead(
    lambda channel, agent_name: Pin.objects.filter(channel=channel, agent__name=agent_name), fields=_ROUTE_FIELDS
)
_PIN_OF_DEFAULT = CompiledRead(
    lambda channel: Pin.objects.filter(channel=channel, agent__routing_policy__is_default=True), fields=_ROUTE_FIELDS
)


def pin_route(*, agent_name: str | None, request_key: str | None, channel: str = PRODUCTION) -> Route:
    """The version serving this request: one indexed read of the pin, then the canary and shadow draws."""
    if agent_name is None:
        pin = _PIN_OF_DEFAULT.first(channel=channel)
    else:
        pin = _PIN_BY_NAME.first(channel=channel, agent_name=agent_name)
    if pin is None:
        raise _refusal(agent_name, channel)
    canary = canary_chosen(
        canary_version_number=pin["canary_version__number"],
        canary_percent=pin["canary_percent"],
        agent_remote_id=pin["agent__remote_id"],
        request_key=request_key,
    )
    served = "canary_version" if canary else "version"
    version_id = pin[f"{served}_id"]
    shadow_version_id = pin["agent__routing_policy__shadow_version_id"]
    shadow_percent = pin["agent__routing_policy__shadow_percent"] or 0
    if not (
        shadow_version_id
        and shadow_version_id != version_id
        and shadow_percent > 0
        and random.randrange(100) < shadow_percent
    ):
        shadow_version_id = None
    return Route(
        agent_id=pin["agent_id"],
        agent_name=pin["agent__name"],
        remote_agent_id=pin["agent__remote_id"],
        environment_id=pin["agent__environment_id"],
        channel=pin["channel"],
        pin_id=pin["id"],
        pin_revision=pin["revision"],
        pin_change_id=pin["change_id"],
        version_id=version_id,
        version_number=pin[f"{served}__number"],
        allowed=allowed_labels(pin[f"{served}__system_prompt"]),
        canary=canary,
        shadow_version_id=shadow_version_id,
    )
