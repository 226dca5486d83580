"""The REST surface: which method and path run which operation, named as stats count them."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any

from . import deployments, events, resources, sessions
from .state import EmulatorState

STREAM = "stream"  # marker: the handler answers with server-sent events, not JSON


@dataclasses.dataclass(frozen=True)
class Request:
    """What an operation may read: path parameters, single-valued query, repeated query, JSON body."""

    path_params: Mapping[str, str]
    query: Mapping[str, str]
    query_lists: Mapping[str, list[str]]
    body: Mapping[str, Any]


Operation = Callable[[EmulatorState, Request], Any]


@dataclasses.dataclass(frozen=True)
class Route:
    method: str
    template: str
    operation: Operation

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}"

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.template) + "$")


def _array(request: Request, name: str) -> list[str]:
    """The SDK sends arrays as ``name[]=a&name[]=b``; plain repeats are accepted too."""
    return list(request.query_lists.get(f"{name}[]", [])) + list(request.query_lists.get(name, []))


def _path(request: Request, name: str) -> str:
    return request.path_params[name]


ROUTES = [
    Route("POST", "/v1/environments", lambda s, r: resources.environment_create(s, r.body)),
    Route("GET", "/v1/environments", lambda s, r: resources.environment_list(s, r.query)),
    Route(
        "GET",
        "/v1/environments/{environment_id}",
        lambda s, r: resources.environment_retrieve(s, _path(r, "environment_id")),
    ),
    Route(
        "DELETE",
        "/v1/environments/{environment_id}",
        lambda s, r: resources.environment_delete(s, _path(r, "environment_id")),
    ),
    Route(
        "POST",
        "/v1/environments/{environment_id}/archive",
        lambda s, r: resources.environment_archive(s, _path(r, "environment_id")),
    ),
    Route("POST", "/v1/agents", lambda s, r: resources.agent_create(s, r.body)),
    Route("GET", "/v1/agents", lambda s, r: resources.agent_list(s, r.query)),
    Route("GET", "/v1/agents/{agent_id}", lambda s, r: resources.agent_retrieve(s, _path(r, "agent_id"), r.query)),
    Route("POST", "/v1/agents/{agent_id}", lambda s, r: resources.agent_update(s, _path(r, "agent_id"), r.body)),
    Route("POST", "/v1/agents/{agent_id}/archive", lambda s, r: resources.agent_archive(s, _path(r, "agent_id"))),
    Route(
        "GET",
        "/v1/agents/{agent_id}/versions",
        lambda s, r: resources.agent_versions_list(s, _path(r, "agent_id"), r.query),
    ),
    Route("POST", "/v1/sessions", lambda s, r: sessions.session_create(s, r.body)),
    Route("GET", "/v1/sessions", lambda s, r: sessions.session_list(s, r.query, _array(r, "statuses"))),
    Route("GET", "/v1/sessions/{session_id}", lambda s, r: sessions.session_retrieve(s, _path(r, "session_id"))),
    Route(
        "POST",
        "/v1/sessions/{session_id}",
        lambda s, r: sessions.session_update(s, _path(r, "session_id"), r.body),
    ),
    Route("DELETE", "/v1/sessions/{session_id}", lambda s, r: sessions.session_delete(s, _path(r, "session_id"))),
    Route(
        "POST",
        "/v1/sessions/{session_id}/archive",
        lambda s, r: sessions.session_archive(s, _path(r, "session_id")),
    ),
    Route(
        "POST",
        "/v1/sessions/{session_id}/events",
        lambda s, r: events.events_send(s, _path(r, "session_id"), r.body),
    ),
    Route(
        "GET",
        "/v1/sessions/{session_id}/events",
        lambda s, r: events.events_list(s, _path(r, "session_id"), r.query, _array(r, "types")),
    ),
    Route("GET", "/v1/sessions/{session_id}/events/stream", lambda s, r: STREAM),
    Route("POST", "/v1/deployments", lambda s, r: deployments.deployment_create(s, r.body)),
    Route("GET", "/v1/deployments", lambda s, r: deployments.deployment_list(s, r.query)),
    Route(
        "GET",
        "/v1/deployments/{deployment_id}",
        lambda s, r: deployments.deployment_retrieve(s, _path(r, "deployment_id")),
    ),
    Route(
        "POST",
        "/v1/deployments/{deployment_id}",
        lambda s, r: deployments.deployment_update(s, _path(r, "deployment_id"), r.body),
    ),
    Route(
        "POST",
        "/v1/deployments/{deployment_id}/archive",
        lambda s, r: deployments.deployment_archive(s, _path(r, "deployment_id")),
    ),
    Route(
        "POST",
        "/v1/deployments/{deployment_id}/pause",
        lambda s, r: deployments.deployment_pause(s, _path(r, "deployment_id")),
    ),
    Route(
        "POST",
        "/v1/deployments/{deployment_id}/unpause",
        lambda s, r: deployments.deployment_unpause(s, _path(r, "deployment_id")),
    ),
    Route(
        "POST",
        "/v1/deployments/{deployment_id}/run",
        lambda s, r: deployments.deployment_run(s, _path(r, "deployment_id")),
    ),
    Route("GET", "/v1/deployment_runs", lambda s, r: deployments.deployment_run_list(s, r.query)),
    Route(
        "GET",
        "/v1/deployment_runs/{deployment_run_id}",
        lambda s, r: deployments.deployment_run_retrieve(s, _path(r, "deployment_run_id")),
    ),
]

_COMPILED = [(route, route.pattern) for route in ROUTES]
ROUTE_NAMES = frozenset(route.name for route in ROUTES)


def route_match(method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
    """The route for ``method path``, its path parameters, and whether the path exists for another method."""
    path_known = False
    for route, pattern in _COMPILED:
        match = pattern.match(path)
        if match is None:
            continue
        path_known = True
        if route.method == method:
            return route, match.groupdict(), True
    return None, {}, path_known
