"""Deployments and deployment runs, shaped as ``client.beta.deployments`` and ``client.beta.deployment_runs`` type them.

A deployment binds an agent version to an environment and the initial events each of
its sessions starts with, with an optional cron schedule. Its ``agent`` is always
answered as ``{"id", "type": "agent", "version"}``: the SDK documents that a bare agent
id "pins the latest version" (on create) and "re-pins to the latest version" (on
update), so by default the bare id is resolved at write time and the deployment stays
on that number. The ``deployment_latest=float`` knob instead keeps a bare id floating:
every read and every run answers with the agent's latest version at that moment.

The update body has no version or etag, so updates are last-writer-wins, as in the API.
An archived deployment refuses updates, pause, unpause and runs with 400
``invalid_request_error`` (not 409, which the SDK would retry). ``run`` creates a session
pinned to the deployment's agent version, sends the initial events, and records a run;
a session that cannot be created (agent or environment archived, create limit) is a run
with an ``error`` instead of a ``session_id``, as the run type documents.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping
from typing import Any

from . import errors
from .cron import schedule_parse
from .eventlog import record_event, user_message_accept
from .pagination import MAX_LIMIT, page_limit, paginate
from .resources import agent_get, agent_version_get
from .sessions import check_create_rate
from .state import Deployment, DeploymentRun, EmulatorState, Session, new_id, rfc3339
from .timefilters import created_at_filter, include_archived
from .turns import user_message_received

MAX_INITIAL_EVENTS = 50
MAX_RESOURCES = 500
MAX_VAULT_IDS = 50
MAX_RUN_LIMIT = 1000
RESOURCE_TYPES = ("github_repository", "file", "memory_store")
DEPLOYMENT_STATUSES = ("active", "paused")


# --- validation -------------------------------------------------------------------------------


def _agent_reference(state: EmulatorState, raw: Any, what: str) -> tuple[str, int | None]:
    """Caller holds the lock. ``(agent_id, version)``; version ``None`` means floating (knob only)."""
    if isinstance(raw, str) and raw:
        agent_id, wanted = raw, None
    elif isinstance(raw, dict) and raw.get("type") == "agent" and isinstance(raw.get("id"), str) and raw["id"]:
        agent_id, wanted = raw["id"], raw.get("version")
        if wanted is not None and (isinstance(wanted, bool) or not isinstance(wanted, int) or wanted < 1):
            raise errors.invalid_request(f"{what}: `agent.version` must be a whole number of at least 1.")
    else:
        raise errors.invalid_request(
            f'{what}: `agent` must be an agent id string (its latest version) or {{"type": "agent", "id": ..., '
            '"version": N}.'
        )
    agent = agent_get(state, agent_id)
    if agent.archived_at is not None:
        raise errors.invalid_request(f"{what}: agent {agent_id} is archived; deploy an active agent.")
    if wanted is not None:
        return agent_id, agent_version_get(agent, wanted).number
    return agent_id, None if state.knobs.deployment_latest == "float" else agent.latest.number


def _text_blocks(raw: Any, what: str, event_type: str) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise errors.invalid_request(f"{what}: a {event_type} initial event needs a non-empty `content` array.")
    for block in raw:
        if not (isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str)):
            raise errors.invalid_request(f"{what}: {event_type} content is text-only: {{'type': 'text', 'text': ...}}.")
    return [{"type": "text", "text": block["text"]} for block in raw]


def _initial_event(raw: Any, what: str) -> dict[str, Any]:
    """One initial event as the response echoes it: ``user.message``, ``user.define_outcome`` or ``system.message``."""
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "user.message":
        try:
            content, _ = user_message_accept(raw)
        except errors.ApiError as refusal:
            raise errors.invalid_request(f"{what}: initial_events: {refusal.message}") from None
        return {"type": kind, "content": content}
    if kind == "system.message":
        return {"type": kind, "content": _text_blocks(raw.get("content"), what, kind)}
    if kind == "user.define_outcome":
        description, rubric = raw.get("description"), raw.get("rubric")
        if not isinstance(description, str) or not description:
            raise errors.invalid_request(f"{what}: a user.define_outcome initial event needs a `description`.")
        text_rubric = (
            isinstance(rubric, dict) and rubric.get("type") == "text" and isinstance(rubric.get("content"), str)
        )
        file_rubric = (
            isinstance(rubric, dict) and rubric.get("type") == "file" and isinstance(rubric.get("file_id"), str)
        )
        if not (text_rubric or file_rubric):
            raise errors.invalid_request(
                f"{what}: a user.define_outcome `rubric` is {{'type': 'text', 'content': ...}} or "
                "{'type': 'file', 'file_id': ...}."
            )
        iterations = raw.get("max_iterations")
        if iterations is not None and (not isinstance(iterations, int) or not 1 <= iterations <= 20):
            raise errors.invalid_request(f"{what}: `max_iterations` must be 1 to 20 (default 3).")
        return {"type": kind, "description": description, "rubric": dict(rubric), "max_iterations": iterations}
    raise errors.invalid_request(
        f"{what}: initial event type {kind!r} is not accepted; use user.message, user.define_outcome or system.message."
    )


def _initial_events(raw: Any, what: str) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_INITIAL_EVENTS:
        raise errors.invalid_request(
            f"{what}: `initial_events` must be an array of 1 to {MAX_INITIAL_EVENTS} events (for example one "
            "user.message) sent to each session the deployment creates."
        )
    return [_initial_event(event, what) for event in raw]


def _schedule(raw: Any, what: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or raw.get("type") != "cron":
        raise errors.invalid_request(
            f"{what}: `schedule` must be {{'type': 'cron', 'expression': ..., 'timezone': ...}} or null (manual only)."
        )
    schedule_parse(raw.get("expression"), raw.get("timezone"))
    return {"type": "cron", "expression": raw["expression"], "timezone": raw["timezone"]}


def _metadata(raw: Any, what: str) -> dict[str, str]:
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise errors.invalid_request(f"{what}: `metadata` must be an object of string keys to string values.")
    if len(raw) > 16:
        raise errors.invalid_request(f"{what}: `metadata` holds {len(raw)} pairs; the limit is 16.")
    for key, value in raw.items():
        if len(key) > 64 or len(value) > 512:
            raise errors.invalid_request(f"{what}: metadata keys are at most 64 characters and values at most 512.")
    return dict(raw)


def _metadata_patched(current: Mapping[str, str], patch: Any, what: str) -> dict[str, str]:
    if patch is None:
        return dict(current)
    if not isinstance(patch, dict):
        raise errors.invalid_request(f"{what}: `metadata` is a patch object: a string upserts a key, null deletes it.")
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return _metadata(merged, what)


def _resources(raw: Any, what: str) -> list[dict[str, Any]]:
    """Echoed minus write-only credentials (a repository's ``authorization_token``), as the API does."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_RESOURCES:
        raise errors.invalid_request(f"{what}: `resources` must be an array of at most {MAX_RESOURCES} resources.")
    kept = []
    for resource in raw:
        kind = resource.get("type") if isinstance(resource, dict) else None
        needed = {"github_repository": "url", "file": "file_id", "memory_store": "memory_store_id"}.get(str(kind))
        if needed is None or not isinstance(resource.get(needed), str):
            raise errors.invalid_request(
                f"{what}: each resource has a `type` ({', '.join(RESOURCE_TYPES)}) and its id field "
                "(`url`, `file_id` or `memory_store_id`)."
            )
        kept.append({key: value for key, value in resource.items() if key != "authorization_token"})
    return kept


def _vault_ids(raw: Any, what: str) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_VAULT_IDS or not all(isinstance(v, str) for v in raw):
        raise errors.invalid_request(f"{what}: `vault_ids` must be an array of at most {MAX_VAULT_IDS} vault ids.")
    return list(raw)


def _budget(raw: Any, what: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    amount = raw.get("max_list_cost") if isinstance(raw, dict) else None
    if not (
        isinstance(raw, dict)
        and raw.get("type") == "limit"
        and isinstance(amount, dict)
        and isinstance(amount.get("amount"), str)
        and amount["amount"].isdigit()
        and isinstance(amount.get("currency"), str)
    ):
        raise errors.invalid_request(
            f"{what}: `budget` is {{'type': 'limit', 'max_list_cost': {{'amount': '2500', 'currency': 'USD'}}}} "
            "(amount in minor units as a string) or null."
        )
    return {"type": "limit", "max_list_cost": {"amount": amount["amount"], "currency": amount["currency"]}}


def _required_name(raw: Any, what: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise errors.invalid_request(f"{what}: `name` is required and must be a non-empty string.")
    return raw


def _environment_checked(state: EmulatorState, raw: Any, what: str) -> str:
    """Caller holds the lock."""
    if not isinstance(raw, str) or not raw:
        raise errors.invalid_request(f"{what}: `environment_id` is required (create an environment first).")
    environment = state.environments.get(raw)
    if environment is None:
        raise errors.not_found("environment", raw)
    if environment.archived_at is not None:
        raise errors.invalid_request(f"{what}: environment {raw} is archived; pick an active one.")
    return raw


# --- rendering --------------------------------------------------------------------------------


def _resolved_version(state: EmulatorState, deployment: Deployment) -> int:
    """Caller holds the lock. The pinned number, or the agent's latest one for a floating pin."""
    if deployment.agent_version is not None:
        return deployment.agent_version
    return agent_get(state, deployment.agent_id).latest.number


def _schedule_json(deployment: Deployment) -> dict[str, Any] | None:
    if deployment.schedule is None:
        return None
    upcoming: list[str] = []
    if deployment.archived_at is None:
        parsed = schedule_parse(deployment.schedule["expression"], deployment.schedule["timezone"])
        upcoming = [rfc3339(moment.timestamp()) for moment in parsed.upcoming(datetime.datetime.now(datetime.UTC))]
    return {
        **deployment.schedule,
        "last_run_at": rfc3339(deployment.last_run_at) if deployment.last_run_at else None,
        "upcoming_runs_at": upcoming,
    }


def deployment_json(state: EmulatorState, deployment: Deployment) -> dict[str, Any]:
    """Caller holds the lock. Archived deployments report ``active`` with ``archived_at`` set, as documented."""
    paused = deployment.paused and deployment.archived_at is None
    body: dict[str, Any] = {
        "id": deployment.id,
        "type": "deployment",
        "agent": {"id": deployment.agent_id, "type": "agent", "version": _resolved_version(state, deployment)},
        "archived_at": rfc3339(deployment.archived_at) if deployment.archived_at else None,
        "created_at": rfc3339(deployment.created_at),
        "description": deployment.description,
        "environment_id": deployment.environment_id,
        "initial_events": [dict(event) for event in deployment.initial_events],
        "metadata": dict(deployment.metadata),
        "name": deployment.name,
        "paused_reason": deployment.paused_reason if paused else None,
        "resources": [dict(resource) for resource in deployment.resources],
        "schedule": _schedule_json(deployment),
        "status": "paused" if paused else "active",
        "updated_at": rfc3339(deployment.updated_at),
        "vault_ids": list(deployment.vault_ids),
    }
    if deployment.budget is not None:
        body["budget"] = deployment.budget
    return body


# --- operations ------------------------------------------------------------------------------


def deployment_get(state: EmulatorState, deployment_id: str) -> Deployment:
    """Caller holds the lock."""
    deployment = state.deployments.get(deployment_id)
    if deployment is None:
        raise errors.not_found("deployment", deployment_id)
    return deployment


def _refuse_if_archived(deployment: Deployment, doing: str) -> None:
    if deployment.archived_at is not None:
        raise errors.invalid_request(
            f"Deployment {deployment.id} is archived and cannot be {doing}; create a new deployment instead."
        )


def deployment_create(state: EmulatorState, body: Mapping[str, Any]) -> dict[str, Any]:
    what = "Creating a deployment"
    name = _required_name(body.get("name"), what)
    initial_events = _initial_events(body.get("initial_events"), what)
    schedule = _schedule(body.get("schedule"), what)
    metadata = _metadata(body.get("metadata") or {}, what)
    resources = _resources(body.get("resources"), what)
    vault_ids = _vault_ids(body.get("vault_ids"), what)
    budget = _budget(body.get("budget"), what)
    description = body.get("description") or None
    now = time.time()
    with state.lock:
        environment_id = _environment_checked(state, body.get("environment_id"), what)
        agent_id, version = _agent_reference(state, body.get("agent"), what)
        deployment = Deployment(
            id=new_id("depl"),
            sequence=state.next_sequence(),
            name=name,
            agent_id=agent_id,
            agent_version=version,
            environment_id=environment_id,
            initial_events=initial_events,
            description=description,
            metadata=metadata,
            resources=resources,
            vault_ids=vault_ids,
            schedule=schedule,
            budget=budget,
            created_at=now,
            updated_at=now,
        )
        state.deployments[deployment.id] = deployment
        return deployment_json(state, deployment)


def deployment_retrieve(state: EmulatorState, deployment_id: str) -> dict[str, Any]:
    with state.lock:
        return deployment_json(state, deployment_get(state, deployment_id))


def deployment_update(state: EmulatorState, deployment_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """Omitted fields are kept; everything is validated before anything changes, so a refusal changes nothing.

    No concurrency guard: the update params carry no version or etag, so this is
    last-writer-wins exactly like the API; callers read, check and write, then verify.
    """
    what = f"Updating deployment {deployment_id}"
    changes: dict[str, Any] = {}
    if "name" in body:
        changes["name"] = _required_name(body["name"], what)
    if "description" in body:
        changes["description"] = body["description"] or None
    if "initial_events" in body:
        changes["initial_events"] = _initial_events(body["initial_events"], what)
    if "schedule" in body:
        changes["schedule"] = _schedule(body["schedule"], what)
    if "resources" in body:
        changes["resources"] = _resources(body["resources"], what)
    if "vault_ids" in body:
        changes["vault_ids"] = _vault_ids(body["vault_ids"], what)
    if "budget" in body:
        changes["budget"] = _budget(body["budget"], what)
    with state.lock:
        deployment = deployment_get(state, deployment_id)
        _refuse_if_archived(deployment, "updated")
        if "environment_id" in body:
            changes["environment_id"] = _environment_checked(state, body["environment_id"], what)
        if "agent" in body:
            changes["agent_id"], changes["agent_version"] = _agent_reference(state, body["agent"], what)
        if "metadata" in body:
            changes["metadata"] = _metadata_patched(deployment.metadata, body["metadata"], what)
        for field, value in changes.items():
            setattr(deployment, field, value)
        deployment.updated_at = time.time()
        state.deployment_updates += 1
        return deployment_json(state, deployment)


def deployment_list(state: EmulatorState, query: Mapping[str, str]) -> dict[str, Any]:
    """Newest first; ``status`` and ``include_archived`` cannot be combined, as the API documents."""
    limit = page_limit(query.get("limit"))
    status = query.get("status") or None
    if status is not None and status not in DEPLOYMENT_STATUSES:
        raise errors.invalid_request(f"status {status!r} must be one of {', '.join(DEPLOYMENT_STATUSES)}.")
    with_archived = include_archived(query)
    if status and with_archived:
        raise errors.invalid_request("status and include_archived cannot be combined; send one of them.")
    keep_created = created_at_filter(query)
    agent_id = query.get("agent_id")
    with state.lock:
        items = [
            deployment
            for deployment in state.deployments.values()
            if (with_archived or deployment.archived_at is None)
            and (not agent_id or deployment.agent_id == agent_id)
            and (not status or ("paused" if deployment.paused else "active") == status)
            and keep_created(deployment.created_at)
        ]
        return paginate(
            items,
            sort_key=lambda deployment: deployment.sequence,
            render=lambda deployment: deployment_json(state, deployment),
            limit=limit,
            cursor=query.get("page"),
            descending=True,
        )


def deployment_archive(state: EmulatorState, deployment_id: str) -> dict[str, Any]:
    """Archiving twice answers the same archived deployment; it is never un-archived."""
    with state.lock:
        deployment = deployment_get(state, deployment_id)
        if deployment.archived_at is None:
            deployment.archived_at = deployment.updated_at = time.time()
        return deployment_json(state, deployment)


def deployment_pause(state: EmulatorState, deployment_id: str) -> dict[str, Any]:
    """Scheduled fires stop; manual runs are still allowed. Pausing a paused deployment changes nothing."""
    with state.lock:
        deployment = deployment_get(state, deployment_id)
        _refuse_if_archived(deployment, "paused")
        if not deployment.paused:
            deployment.paused = True
            deployment.paused_reason = {"type": "manual"}
            deployment.updated_at = time.time()
        return deployment_json(state, deployment)


def deployment_unpause(state: EmulatorState, deployment_id: str) -> dict[str, Any]:
    with state.lock:
        deployment = deployment_get(state, deployment_id)
        _refuse_if_archived(deployment, "unpaused")
        if deployment.paused:
            deployment.paused = False
            deployment.paused_reason = None
            deployment.updated_at = time.time()
        return deployment_json(state, deployment)


def _run_error(state: EmulatorState, deployment: Deployment) -> dict[str, Any] | None:
    """Caller holds the lock. Why a session cannot be created for this run, in the run's error shape."""
    agent = agent_get(state, deployment.agent_id)
    if agent.archived_at is not None:
        return {"type": "agent_archived_error", "message": f"Agent {agent.id} is archived."}
    environment = state.environments.get(deployment.environment_id)
    if environment is None:
        return {
            "type": "environment_not_found_error",
            "message": f"Environment {deployment.environment_id} does not exist.",
        }
    if environment.archived_at is not None:
        return {"type": "environment_archived_error", "message": f"Environment {environment.id} is archived."}
    try:
        check_create_rate(state)
    except errors.ApiError as refusal:
        return {"type": "session_rate_limited_error", "message": refusal.message}
    return None


def _session_started(state: EmulatorState, deployment: Deployment, version_number: int) -> Session:
    """Caller holds the lock. A session on exactly that version, with the initial events sent in order."""
    agent = agent_get(state, deployment.agent_id)
    now = time.time()
    session = Session(
        id=new_id("sesn"),
        sequence=state.next_sequence(),
        agent_id=agent.id,
        agent_version=agent_version_get(agent, version_number),
        environment_id=deployment.environment_id,
        metadata={},
        title=None,
        created_at=now,
        updated_at=now,
        deployment_id=deployment.id,
    )
    state.sessions[session.id] = session
    state.sessions_created += 1
    for event in deployment.initial_events:
        if event["type"] == "user.message":
            content, text = user_message_accept(event)
            user_message_received(state, session, content, text)
        elif event["type"] == "user.define_outcome":
            record_event(session, {**event, "outcome_id": new_id("outc")})
        else:
            record_event(session, dict(event))
    return session


def deployment_fire(state: EmulatorState, deployment_id: str, trigger: dict[str, Any]) -> dict[str, Any]:
    """Record one run (manual or scheduled); a failed scheduled fire pauses the deployment with that error."""
    with state.lock:
        deployment = deployment_get(state, deployment_id)
        _refuse_if_archived(deployment, "run")
        version_number = _resolved_version(state, deployment)
        error = _run_error(state, deployment)
        session = None if error else _session_started(state, deployment, version_number)
        run = DeploymentRun(
            id=new_id("drun"),
            sequence=state.next_sequence(),
            deployment_id=deployment.id,
            agent_id=deployment.agent_id,
            agent_version=version_number,
            trigger=trigger,
            created_at=time.time(),
            session_id=session.id if session else None,
            error=error,
        )
        state.deployment_runs[run.id] = run
        if trigger["type"] == "schedule":
            deployment.last_run_at = run.created_at
            if error is not None:
                deployment.paused = True
                deployment.paused_reason = {"type": "error", "error": dict(error)}
        return run.to_json()


def deployment_run(state: EmulatorState, deployment_id: str) -> dict[str, Any]:
    """``POST /v1/deployments/{id}/run``: a manual run, allowed while paused."""
    return deployment_fire(state, deployment_id, {"type": "manual"})


def deployment_fire_scheduled(state: EmulatorState, deployment_id: str) -> dict[str, Any]:
    """Act as if the schedule's next occurrence had arrived (the emulator has no cron clock of its own).

    A paused deployment's scheduled fire is suppressed, as the API documents: nothing is
    recorded and ``fired`` is false. A deployment without a schedule cannot fire.
    """
    with state.lock:
        deployment = deployment_get(state, deployment_id)
        _refuse_if_archived(deployment, "fired")
        if deployment.schedule is None:
            raise errors.invalid_request(f"Deployment {deployment_id} has no schedule; use /run for a manual run.")
        if deployment.paused:
            return {"fired": False, "reason": "paused", "run": None}
        parsed = schedule_parse(deployment.schedule["expression"], deployment.schedule["timezone"])
        upcoming = parsed.upcoming(datetime.datetime.now(datetime.UTC), count=1)
        scheduled_at = rfc3339(upcoming[0].timestamp() if upcoming else time.time())
    run = deployment_fire(state, deployment_id, {"type": "schedule", "scheduled_at": scheduled_at})
    return {"fired": True, "reason": None, "run": run}


def deployment_run_retrieve(state: EmulatorState, run_id: str) -> dict[str, Any]:
    with state.lock:
        run = state.deployment_runs.get(run_id)
        if run is None:
            raise errors.not_found("deployment run", run_id)
        return run.to_json()


def _run_limit(raw: str | None) -> int:
    """Runs allow up to 1000 per page (other lists 100), as the run list params document."""
    if raw in (None, "") or (raw.isdigit() and int(raw) <= MAX_LIMIT):
        return page_limit(raw)
    if raw.isdigit() and MAX_LIMIT < int(raw) <= MAX_RUN_LIMIT:
        return int(raw)
    raise errors.invalid_request(f"limit {raw!r} is out of range; use 1 to {MAX_RUN_LIMIT}.")


def deployment_run_list(state: EmulatorState, query: Mapping[str, str]) -> dict[str, Any]:
    """Newest first; an unknown ``deployment_id`` is an empty page, not a 404, as documented."""
    limit = _run_limit(query.get("limit"))
    keep_created = created_at_filter(query)
    trigger_type = query.get("trigger_type") or None
    if trigger_type is not None and trigger_type not in ("schedule", "manual"):
        raise errors.invalid_request(f"trigger_type {trigger_type!r} must be schedule or manual.")
    has_error = query.get("has_error")
    if has_error not in (None, "", "true", "false"):
        raise errors.invalid_request(f"has_error {has_error!r} must be true or false.")
    deployment_id = query.get("deployment_id")
    with state.lock:
        items = [
            run
            for run in state.deployment_runs.values()
            if (not deployment_id or run.deployment_id == deployment_id)
            and (not trigger_type or run.trigger["type"] == trigger_type)
            and (not has_error or (run.error is not None) == (has_error == "true"))
            and keep_created(run.created_at)
        ]
        return paginate(
            items,
            sort_key=lambda run: run.sequence,
            render=DeploymentRun.to_json,
            limit=limit,
            cursor=query.get("page"),
            descending=True,
        )
