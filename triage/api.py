"""The internal triage API (django-ninja): production callers route tickets here, never to a version directly.

Mounted at ``/api/v1/``; the OpenAPI document is ``/api/v1/openapi.json`` and
the browsable docs ``/api/v1/docs``. Endpoints are thin: they turn the request
into a ``Ticket`` and a ``Principal``, call one service, and shape the answer.

Async by design: a triage call waits 0.5-30 s on a Managed Agents session.
The views are ``async def`` and the session runs on the ASGI server's event
loop through the SDK's async client (``gateway.session_run_async``), so a
waiting caller holds a coroutine, not a worker thread. Only the short
database steps (key check and pin read in one, the log insert after the
session) run on the long-lived database threads of ``promptctl.dbsteps``. The API is served by its
own Django handler with a lean middleware chain (``config.serving.ApiHandler``).

The same ``NinjaAPI`` serves the change-control API (``promptctl.api`` and
``evals.api``, added at the end of this module): those routes take personal
tokens (``promptctl.api_auth.PersonalTokenAuth``), not API keys, and share the
error handlers below; a domain refusal is 400, ``PermissionRefused`` 403,
``selectors.NotFound`` 404 and ``ChangeConflict`` 409 (docs/API.md).

Status codes (every refusal is JSON ``{"detail": ..., "errors": [...]}``):
400 unreadable body (not UTF-8, not JSON), 401 missing/unknown/revoked key,
403 key not scoped to the agent, 404 unknown agent or job, 409 agent has no
pinned version, 413 body over the server's size limit, 422 a field is missing,
of the wrong type, empty or too long, 502 Managed Agents refused the session,
503 Managed Agents unavailable after retries (with ``Retry-After``), 504 the
session timed out. Nothing a caller sends produces a 500.
"""

from __future__ import annotations

import json
import math
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from ninja import NinjaAPI, Path
from ninja.errors import AuthenticationError, HttpError, ValidationError, ValidationErrorContext
from ninja.parser import Parser
from ninja.security import HttpBearer

from evals.api import router as evals_router
from promptctl.api import router as change_control_router
from promptctl.api_auth import PersonalTokenAuth
from promptctl.api_errors import refusal_body
from promptctl.dbsteps import db_step
from promptctl.errors import DomainError
from promptctl.selectors import NotFound
from promptctl.services.common import ChangeConflict, PermissionRefused
from triage import pins, selectors, services
from triage.models import Outcome, TriageJob
from triage.schemas import BODY_MAX, REQUEST_KEY_MAX, SUBJECT_MAX, ErrorOut, JobAccepted, JobOut, TicketIn, TriageOut

DEFAULT_RETRY_AFTER_SECONDS = 5
AGENT_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,99}$"


class BodyUnreadable(ValueError):
    """The request body is not UTF-8 JSON; the message says what is wrong with it."""


class TicketParser(Parser):
    """JSON bodies must be UTF-8 (RFC 8259); refusals say exactly what could not be read."""

    def parse_body(self, request: HttpRequest) -> Any:
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise BodyUnreadable(
                f"the request body is not UTF-8 text (byte {error.start} cannot be decoded); send JSON encoded as UTF-8"
            ) from None
        try:
            value = json.loads(text.removeprefix("\ufeff"))
        except json.JSONDecodeError as error:
            raise BodyUnreadable(
                f"the request body is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
            ) from None
        except (ValueError, RecursionError) as error:
            raise BodyUnreadable(f"the request body is not usable JSON ({error})") from None
        if not isinstance(value, dict):
            raise BodyUnreadable(
                f"the request body must be a JSON object{_fields_named(request)}, not {_json_type(value)}"
            )
        return value


class ApiKeyAuth(HttpBearer):
    """``Authorization: Bearer KEY``. The header's shape is checked here; the key row is read with each
    call's first database step (``services.triage_admit`` and the job steps), on every request, so a
    revocation applies to the next one. ``request.auth`` is the token, never a checked principal."""

    async def authenticate(self, request: HttpRequest, token: str) -> str:
        return services.api_key_token_check(token)


class TriageNinjaAPI(NinjaAPI):
    """NinjaAPI that keeps the JSON type and length of a bad value (never the value) for field messages."""

    def validation_error_from_error_contexts(self, error_contexts: list[ValidationErrorContext]) -> ValidationError:
        errors: list[dict[str, Any]] = []
        for context in error_contexts:
            model = context.model
            for item in context.pydantic_validation_error.errors(include_url=False, include_context=True):
                item["loc"] = (model.__ninja_param_source__,) + model.__ninja_flatten_map_reverse__.get(
                    item["loc"], item["loc"]
                )
                submitted = item.pop("input", None)
                item["input_type"] = _json_type(submitted)
                item["input_length"] = len(submitted) if isinstance(submitted, str) else None
                if isinstance((item.get("ctx") or {}).get("error"), Exception):
                    item["ctx"]["error"] = str(item["ctx"]["error"])
                errors.append(dict(item))
        return ValidationError(errors)


api = TriageNinjaAPI(
    title="promptctl triage API",
    version="1",
    description=(
        "Route support tickets with the agent version promptctl's change control allows. Callers never choose a "
        "version: every request reads the agent's production pin (and canary) at request time. "
        f"Limits: subject 1-{SUBJECT_MAX} characters, body up to {BODY_MAX}, request_key up to {REQUEST_KEY_MAX}. "
        "See docs/API.md."
    ),
    urls_namespace="triage-api",
    auth=ApiKeyAuth(),
    parser=TicketParser(),
)

ERRORS = {
    400: ErrorOut,
    401: ErrorOut,
    403: ErrorOut,
    404: ErrorOut,
    409: ErrorOut,
    413: ErrorOut,
    422: ErrorOut,
    502: ErrorOut,
    503: ErrorOut,
    504: ErrorOut,
}
JOB_READ_ERRORS = {code: ErrorOut for code in (400, 401, 404, 422)}


# --- error mapping --------------------------------------------------------------------


def _error(
    request: HttpRequest,
    status: int,
    detail: str | DomainError,
    errors: list[dict] | None = None,
    headers: dict[str, str] | None = None,
) -> HttpResponse:
    """The error body; a domain refusal's carries both wordings, its code and fields (``promptctl.api_errors``)."""
    body = refusal_body(detail) if isinstance(detail, DomainError) else {"detail": detail, "errors": errors or []}
    response = api.create_response(request, body, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _is_triage_route(request: HttpRequest) -> bool:
    """Whether the request is for a triage endpoint (API keys) rather than change control (personal tokens)."""
    match = getattr(request, "resolver_match", None)
    return match is None or "triage" in (match.route or "")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _fields_named(request: HttpRequest) -> str:
    """How a refusal names the body a triage endpoint wants; change-control bodies are in the OpenAPI document."""
    return " with subject and body" if _is_triage_route(request) else " (see /api/v1/docs for its fields)"


def _field_message(item: dict, fields: str = " with subject and body") -> dict[str, str]:
    """One pydantic error as ``{"field", "message"}`` in words a caller can act on."""
    location = [str(part) for part in item.get("loc", ())]
    if location[:1] == ["body"]:
        location = location[2:]  # ("body", <parameter name>, field...): the source, then the schema parameter
    elif location[:1] in (["path"], ["query"], ["header"]):
        location = location[1:]
    field = ".".join(location) or "json"
    kind = item.get("type", "")
    context = item.get("ctx") or {}
    if field == "json":
        if kind == "missing":
            return {"field": "json", "message": f"the request body is empty: send a JSON object{fields}"}
        return {
            "field": "json",
            "message": f"the request body must be a JSON object{fields}, not {item.get('input_type', 'that')}",
        }
    if kind == "missing":
        message = f"{field} is required"
    elif kind == "string_type":
        message = f"{field} must be a string, not {item.get('input_type', 'that')}"
    elif kind == "string_too_long":
        given = item.get("input_length")
        size = f" ({given} given)" if given is not None else ""
        message = f"{field} is longer than the limit of {context.get('max_length')} characters{size}"
    elif kind == "string_unicode":
        message = f"{field} contains an unpaired surrogate escape (such as \\ud800); send valid Unicode text"
    elif kind == "string_pattern_mismatch":
        message = f"{field} does not have the expected form ({context.get('pattern')})"
    elif kind == "value_error":
        message = str(item.get("msg", "")).removeprefix("Value error, ")
    else:
        message = f"{field}: {item.get('msg', 'invalid value')}"
    return {"field": field, "message": message}


@api.exception_handler(ValidationError)
def _on_validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    errors = [_field_message(item, _fields_named(request)) for item in exc.errors]
    fields = ", ".join(sorted({error["field"] for error in errors}))
    return _error(request, 422, f"The request was refused: fix {fields} (see errors) and send it again.", errors)


@api.exception_handler(HttpError)
def _on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    cause = exc.__cause__
    if isinstance(exc, AuthenticationError):
        return _error(
            request,
            401,
            "No API key: send `Authorization: Bearer KEY` with a key from `promptctl apikey create` or the admin."
            if _is_triage_route(request)
            else "No personal token: send `Authorization: Bearer pctlu_...` with a token from "
            "`promptctl token create` or the admin (Personal tokens).",
            headers={"WWW-Authenticate": 'Bearer realm="promptctl"'},
        )
    if exc.status_code == 401:
        return _error(
            request, 401, str(exc), headers={"WWW-Authenticate": 'Bearer realm="promptctl", error="invalid_token"'}
        )
    if isinstance(cause, BodyUnreadable):
        return _error(
            request, 400, f"The request body could not be read: {cause}.", [{"field": "json", "message": str(cause)}]
        )
    if isinstance(cause, RequestDataTooBig):
        return _on_too_big(request, cause)
    return _error(request, exc.status_code, str(exc))


@api.exception_handler(RequestDataTooBig)
def _on_too_big(request: HttpRequest, exc: Exception) -> HttpResponse:
    return _error(
        request,
        413,
        f"The request body is larger than the server accepts. A ticket's body may be at most {BODY_MAX} characters.",
        [{"field": "json", "message": "the request body is too large"}],
    )


@api.exception_handler(services.ApiKeyRefused)
def _on_key_error(request: HttpRequest, exc: services.ApiKeyRefused) -> HttpResponse:
    return _error(request, 401, exc, headers={"WWW-Authenticate": 'Bearer realm="promptctl", error="invalid_token"'})


@api.exception_handler(services.AgentOutOfScope)
def _on_out_of_scope(request: HttpRequest, exc: DomainError) -> HttpResponse:
    return _error(request, 403, exc)


@api.exception_handler(pins.RouteRefused)
def _on_route_error(request: HttpRequest, exc: pins.RouteRefused) -> HttpResponse:
    status = 409 if isinstance(exc, pins.AgentNotServing) else 404
    return _error(request, status, exc)


@api.exception_handler(selectors.JobNotFound)
def _on_job_not_found(request: HttpRequest, exc: DomainError) -> HttpResponse:
    return _error(request, 404, exc)


@api.exception_handler(services.TriageFailed)
def _on_triage_failed(request: HttpRequest, exc: services.TriageFailed) -> HttpResponse:
    if exc.outcome == Outcome.TIMEOUT:
        return _error(request, 504, exc)
    if exc.outcome == Outcome.UNAVAILABLE:
        seconds = exc.retry_after if exc.retry_after else DEFAULT_RETRY_AFTER_SECONDS
        return _error(request, 503, exc, headers={"Retry-After": str(max(1, math.ceil(seconds)))})
    return _error(request, 502, exc)


@api.exception_handler(NotFound)
def _on_not_found(request: HttpRequest, exc: DomainError) -> HttpResponse:
    return _error(request, 404, exc)


@api.exception_handler(PermissionRefused)
def _on_permission_error(request: HttpRequest, exc: DomainError) -> HttpResponse:
    return _error(request, 403, exc)


@api.exception_handler(ChangeConflict)
def _on_change_conflict(request: HttpRequest, exc: DomainError) -> HttpResponse:
    return _error(request, 409, exc)


@api.exception_handler(DomainError)
def _on_domain_error(request: HttpRequest, exc: DomainError) -> HttpResponse:
    return _error(request, 400, exc)


# --- endpoints --------------------------------------------------------------------------


def _ticket(payload: TicketIn) -> services.Ticket:
    return services.Ticket(subject=payload.subject, body=payload.body, request_key=payload.request_key)


def _triage_out(served: services.Served) -> dict[str, Any]:
    return {
        "team": served.team,
        "priority": served.priority,
        "valid": served.valid,
        "problem": served.problem,
        "agent": served.agent,
        "version": served.version,
        "channel": served.channel,
        "canary": served.canary,
        "session_id": served.session_id,
        "latency_ms": served.latency_ms,
        "request_id": served.request_id,
    }


AgentName = Path(
    ...,
    min_length=1,
    max_length=100,
    pattern=AGENT_NAME_PATTERN,
    description="promptctl's agent name",
    example="ticket-triage",
)


@api.post(
    "/triage", response={200: TriageOut, **ERRORS}, summary="Route a ticket with the default agent", tags=["triage"]
)
async def triage_default(request: HttpRequest, ticket: TicketIn):
    served = await services.triage_serve(token=request.auth, agent_name=None, ticket=_ticket(ticket))
    return _triage_out(served)


@api.post(
    "/agents/{name}/triage",
    response={200: TriageOut, **ERRORS},
    summary="Route a ticket with a named agent",
    tags=["triage"],
)
async def triage_agent(request: HttpRequest, ticket: TicketIn, name: str = AgentName):
    served = await services.triage_serve(token=request.auth, agent_name=name, ticket=_ticket(ticket))
    return _triage_out(served)


async def _job_accept(request: HttpRequest, agent_name: str | None, ticket: TicketIn):
    job = await db_step(services.triage_job_accept, token=request.auth, agent_name=agent_name, ticket=_ticket(ticket))
    url = reverse("triage-api:triage_job_get", kwargs={"job_id": str(job.pk)})
    response = api.create_response(request, {"job_id": str(job.pk), "status": job.status, "url": url}, status=202)
    response["Location"] = url
    return response


@api.post(
    "/triage/jobs",
    response={202: JobAccepted, **ERRORS},
    tags=["jobs"],
    summary="Queue a ticket for the default agent (answers 202 at once; read the result by job id)",
)
async def triage_job_create_default(request: HttpRequest, ticket: TicketIn):
    return await _job_accept(request, None, ticket)


@api.post(
    "/agents/{name}/triage/jobs",
    response={202: JobAccepted, **ERRORS},
    tags=["jobs"],
    summary="Queue a ticket for a named agent",
)
async def triage_job_create_agent(request: HttpRequest, ticket: TicketIn, name: str = AgentName):
    return await _job_accept(request, name, ticket)


def _job_out(job: TriageJob) -> dict[str, Any]:
    result = None
    if job.status == TriageJob.Status.DONE and job.request is not None:
        logged = job.request
        ok = logged.outcome == Outcome.OK
        result = {
            "team": logged.team if ok else None,
            "priority": logged.priority if ok else None,
            "valid": ok,
            "problem": None if ok else logged.problem,
            "agent": job.agent.name,
            "version": logged.version.number,
            "channel": logged.channel,
            "canary": logged.canary,
            "session_id": logged.session_id,
            "latency_ms": logged.latency_ms,
            "request_id": logged.pk,
        }
    error = None
    if job.status == TriageJob.Status.FAILED:
        error = {"code": job.error_code or "failed", "message": job.error_message}
    return {
        "job_id": str(job.pk),
        "status": job.status,
        "agent": job.agent.name,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "attempts": job.attempts,
        "result": result,
        "error": error,
    }


@api.get(
    "/triage/jobs/{job_id}",
    response={200: JobOut, **JOB_READ_ERRORS},
    url_name="triage_job_get",
    summary="Read a queued ticket's status and result",
    tags=["jobs"],
)
async def triage_job_get(request: HttpRequest, job_id: str = Path(..., min_length=1, max_length=100)):
    job = await db_step(services.triage_job_read, token=request.auth, job_id=job_id)
    return {**_job_out(job), **await db_step(selectors.triage_job_liveness, job=job)}


# --- change control (promptctl.api, evals.api): personal tokens, not API keys --------------------

api.add_router("/", change_control_router, auth=PersonalTokenAuth())
api.add_router("/", evals_router, auth=PersonalTokenAuth())
