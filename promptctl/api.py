"""The change-control API: agents, versions, diffs, pins, change requests, the audit trail, and who the caller is.

Mounted on the triage API's ``NinjaAPI`` at ``/api/v1/`` (``triage.api``), with
personal tokens (``Authorization: Bearer pctlu_…``, ``promptctl.api_auth``):
``request.auth`` is the token's ``TokenPrincipal``, and every write runs inside
``acting(request)`` so its audit events name the token's user and the token.

Thin by rule: each view reads its input, calls one selector or service, and
answers the JSON ``python manage.py promptctl --json …`` prints for the same
command (the shapes live in ``promptctl.selectors``). The refusals are the
services' own ``DomainError`` lines, mapped to statuses by the API's handlers
(``triage.api``): 400 a domain refusal, 403 a permission or the four-eyes rule
(``PermissionRefused``), 404 an unknown agent, version or request
(``selectors.NotFound``), 409 a request already decided or superseded
(``ChangeConflict``). Each view's body is plain synchronous ORM code run as
one database step (``in_db_step``): the view the ASGI handler sees is async,
so no change-control call ties up the thread every triage call's request
signals pass through.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest
from ninja import Path, Query, Router, Status

from promptctl import config_files, selectors, services
from promptctl.api_auth import acting
from promptctl.dbsteps import db_step
from promptctl.errors import DomainError
from promptctl.models import ChangeRequest
from promptctl.schemas import READ_ERRORS, WRITE_ERRORS, ApproveIn, ChangeIn, RejectIn, VersionIn
from promptctl.services.users import BOTS, REQUESTERS, REVIEWERS

router = Router(tags=["change control"])


def in_db_step(view: Callable[..., Any]) -> Callable[..., Any]:
    """Serve a plain view as an async one whose body runs as one database step (``promptctl.dbsteps.db_step``).

    A synchronous view would run on the web process's one thread for the
    request signals, which every triage call also passes through: a version
    create waiting on Managed Agents would hold up the triage traffic of the
    whole process. As a step it runs on the API's database threads (which keep
    their connections), in a copy of the request's context (its token scope).
    """

    @functools.wraps(view)
    async def step(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        return await db_step(functools.partial(view, request, *args), **kwargs)

    # Resolved here: ninja would read the parameters' types in this module's globals, not the view's own.
    step.__signature__ = inspect.signature(view, eval_str=True)  # type: ignore[attr-defined]
    step.__annotations__ = inspect.get_annotations(view, eval_str=True)
    return step


AgentName = Path(..., min_length=1, max_length=100, description="promptctl's agent name", example="ticket-triage")
AGENT_FILTER_MAX = 100


def _user(request: HttpRequest) -> Any:
    return request.auth.user


# --- who is calling -----------------------------------------------------------------------


def _roles(user: Any) -> list[str]:
    names = set(user.groups.values_list("name", flat=True))
    pairs = ((REQUESTERS, "requester"), (REVIEWERS, "reviewer"), (BOTS, "bot"))
    roles = {role for group, role in pairs if group in names}
    if user.is_superuser:
        roles.add("admin")
    return sorted(roles)


@router.get("/me", response={200: dict[str, Any], **READ_ERRORS}, summary="Who the token belongs to")
@in_db_step
def me(request: HttpRequest):
    principal = request.auth
    return {
        "username": principal.user.username,
        "roles": _roles(principal.user),
        "token": {
            "name": principal.name,
            "prefix": principal.prefix,
            "read_only": principal.read_only,
            "expires_at": principal.expires_at.isoformat() if principal.expires_at else None,
        },
    }


# --- agents, versions, pins ---------------------------------------------------------------


@router.get("/agents", response={200: list[dict[str, Any]], **READ_ERRORS}, summary="Every agent with its pins")
@in_db_step
def agent_list(request: HttpRequest):
    return [selectors.agent_summary_as_dict(agent) for agent in selectors.agent_list()]


@router.get(
    "/agents/{name}",
    response={200: dict[str, Any], **READ_ERRORS},
    summary="One agent: policy, pins, versions, drift, open change requests",
)
@in_db_step
def agent_show(request: HttpRequest, name: str = AgentName):
    return selectors.agent_status(agent=selectors.agent_get(name=name))


@router.get(
    "/agents/{name}/versions", response={200: list[dict[str, Any]], **READ_ERRORS}, summary="Every recorded version"
)
@in_db_step
def version_list(request: HttpRequest, name: str = AgentName):
    agent = selectors.agent_get(name=name)
    return [selectors.version_as_dict(version) for version in selectors.version_list(agent=agent)]


@router.post(
    "/agents/{name}/versions",
    response={201: dict[str, Any], **WRITE_ERRORS},
    summary="Make a new server version from a whole configuration, or with a new system prompt",
)
@in_db_step
def version_create(request: HttpRequest, payload: VersionIn, name: str = AgentName):
    agent = selectors.agent_get(name=name)
    if (payload.config is None) == (payload.system_prompt is None):
        raise DomainError(
            "Send either `config` (the whole configuration) or `system_prompt` (and optionally `model`).",
            code="bad_input",
            fields=("config", "system_prompt"),
        )
    config = None if payload.config is None else config_files.config_check(payload.config, source="config")
    with acting(request):
        if config is not None:
            version = services.version_create(agent=agent, config=config, actor=_user(request), model=payload.model)
        else:
            version = services.version_create(
                agent=agent, system_prompt=payload.system_prompt, actor=_user(request), model=payload.model
            )
    return Status(201, selectors.version_as_dict(version))


@router.get(
    "/agents/{name}/export",
    response={200: dict[str, Any], **READ_ERRORS},
    summary="A version's whole configuration as a TOML file (the latest recorded version unless `version` is given)",
)
@in_db_step
def agent_export(request: HttpRequest, name: str = AgentName, version: int | None = Query(None)):
    agent = selectors.agent_get(name=name)
    return selectors.version_config_export(agent=agent, number=version)


@router.get(
    "/agents/{name}/versions/{number}", response={200: dict[str, Any], **READ_ERRORS}, summary="One recorded version"
)
@in_db_step
def version_show(request: HttpRequest, number: int, name: str = AgentName):
    agent = selectors.agent_get(name=name)
    return selectors.version_as_dict(selectors.version_get(agent=agent, number=number))


@router.get(
    "/agents/{name}/diff", response={200: dict[str, Any], **READ_ERRORS}, summary="What changed between two versions"
)
@in_db_step
def version_diff(
    request: HttpRequest,
    name: str = AgentName,
    left: int = Query(..., alias="from", description="version number A"),
    right: int = Query(..., alias="to", description="version number B"),
):
    agent = selectors.agent_get(name=name)
    return selectors.version_diff(agent=agent, left_number=left, right_number=right).as_dict()


@router.get("/agents/{name}/pins", response={200: dict[str, Any], **READ_ERRORS}, summary="The agent's pins by channel")
@in_db_step
def pin_list(request: HttpRequest, name: str = AgentName):
    agent = selectors.agent_get(name=name)
    return {
        channel: selectors.pin_as_dict(pin) for channel, pin in sorted(selectors.pins_for_agent(agent=agent).items())
    }


# --- change requests ------------------------------------------------------------------------


@router.get("/changes", response={200: list[dict[str, Any]], **READ_ERRORS}, summary="Change requests, newest first")
@in_db_step
def change_list(
    request: HttpRequest,
    agent: str | None = Query(None, min_length=1, max_length=AGENT_FILTER_MAX),
    status: str | None = Query(None, min_length=1, max_length=16, description=", ".join(ChangeRequest.Status.values)),
):
    found = selectors.agent_get(name=agent) if agent else None
    return [selectors.change_request_as_dict(c) for c in selectors.change_request_list(agent=found, status=status)]


@router.get(
    "/changes/{change_id}", response={200: dict[str, Any], **READ_ERRORS}, summary="One request with its decisions"
)
@in_db_step
def change_show(request: HttpRequest, change_id: int):
    change = selectors.change_request_get(change_id=change_id)
    return selectors.change_request_fresh_as_dict(change_id=change.pk, with_decisions=True)


@router.post("/changes", response={201: dict[str, Any], **WRITE_ERRORS}, summary="File a request to move a pin")
@in_db_step
def change_request(request: HttpRequest, payload: ChangeIn):
    agent = selectors.agent_get(name=payload.agent)
    with acting(request):
        change = services.change_request_create(
            agent=agent,
            kind=payload.kind,
            target_number=payload.to,
            channel=payload.channel,
            canary_percent=payload.canary_percent,
            reason=payload.reason,
            evidence_ref=payload.evidence,
            accept_regression_reason=payload.accept_regression,
            actor=_user(request),
        )
    return Status(201, selectors.change_request_fresh_as_dict(change_id=change.pk))


@router.post(
    "/changes/{change_id}/approve", response={200: dict[str, Any], **WRITE_ERRORS}, summary="Approve a pending request"
)
@in_db_step
def change_approve(request: HttpRequest, change_id: int, payload: ApproveIn | None = None):
    change = selectors.change_request_get(change_id=change_id)
    with acting(request):
        services.change_request_approve(
            change=change, reviewer=_user(request), comment=payload.comment if payload else ""
        )
    return selectors.change_request_fresh_as_dict(change_id=change.pk)


@router.post(
    "/changes/{change_id}/reject",
    response={200: dict[str, Any], **WRITE_ERRORS},
    summary="Reject a request (closes it)",
)
@in_db_step
def change_reject(request: HttpRequest, change_id: int, payload: RejectIn):
    change = selectors.change_request_get(change_id=change_id)
    with acting(request):
        services.change_request_reject(change=change, reviewer=_user(request), comment=payload.comment)
    return selectors.change_request_fresh_as_dict(change_id=change.pk)


@router.post(
    "/changes/{change_id}/apply",
    response={200: dict[str, Any], **WRITE_ERRORS},
    summary="Move the pin as an approved request says",
)
@in_db_step
def change_apply(request: HttpRequest, change_id: int):
    change = selectors.change_request_get(change_id=change_id)
    with acting(request):
        pin = services.change_request_apply(change=change, actor=_user(request))
    return selectors.change_applied_as_dict(change=change, pin=pin)


@router.post(
    "/changes/{change_id}/withdraw",
    response={200: dict[str, Any], **WRITE_ERRORS},
    summary="Take back your own open request",
)
@in_db_step
def change_withdraw(request: HttpRequest, change_id: int):
    change = selectors.change_request_get(change_id=change_id)
    with acting(request):
        services.change_request_withdraw(change=change, actor=_user(request))
    return selectors.change_request_fresh_as_dict(change_id=change.pk)


# --- the audit trail ------------------------------------------------------------------------


@router.get(
    "/audit/verify",
    response={200: dict[str, Any], **READ_ERRORS},
    summary="Check every event's MAC and the chain (200 either way; ok is false when broken)",
)
@in_db_step
def audit_verify(request: HttpRequest):
    return selectors.audit_verify_as_dict()


@router.get("/audit/events", response={200: list[dict[str, Any]], **READ_ERRORS}, summary="Audit events, newest first")
@in_db_step
def audit_events(
    request: HttpRequest,
    agent: str | None = Query(None, min_length=1, max_length=AGENT_FILTER_MAX),
    limit: int = Query(50, description=f"1-{selectors.AUDIT_EVENTS_LIMIT_MAX}"),
):
    found = selectors.agent_get(name=agent) if agent else None
    return [selectors.audit_event_as_dict(event) for event in selectors.audit_events(agent=found, limit=limit)]
