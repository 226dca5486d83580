"""The Managed Agents boundary: the only module that imports ``anthropic``.

Rules this module keeps, and why:

- One SDK client per process, built from settings. Only the base URL and the
  key differ between the live API and the local emulator, so the emulator
  exercises exactly the code path production uses.
- The SDK's own retries are off (``max_retries=0``): every call goes through
  ``_with_retries``, which retries transient failures (429 honouring
  ``retry-after``, 5xx, connection errors) with bounded, jittered backoff and
  counts the attempts. A conditional update is never retried on 409: a stale
  version is a fact, not a transient error.
- Sessions are always pinned (``{"type": "agent", "id", "version"}``), the event
  stream is opened before the message is sent (the stream has no replay), and
  every session is archived in ``finally``; a failed archive is logged and
  reported in the transcript, never raised over the real outcome.
- Nothing here imports a model: callers pass plain values and get dataclasses.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import re
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Awaitable, Callable, TypeVar

import anthropic
from django.conf import settings

from managed_agents.errors import DomainError

logger = logging.getLogger(__name__)

T = TypeVar("T")

OFFLINE_PLACEHOLDER_KEY = "promptctl-offline"  # the emulator accepts any key
# The SDK's own default endpoint, passed explicitly: an empty ANTHROPIC_BASE_URL in the
# environment would otherwise reach the SDK as an empty base URL.
LIVE_API_BASE_URL = "https://api.anthropic.com"
_IDENTITY_FIELDS = {"id", "version", "created_at", "updated_at", "archived_at", "type"}
# "... is at version 7", "current version: 7", "server version 7": the number the server holds now.
_CONFLICT_VERSION = re.compile(r"(?:current|server|is at|now at)[^0-9]{0,40}?version[^0-9]{0,20}?(\d+)", re.IGNORECASE)


# --- Errors -----------------------------------------------------------------


class GatewayError(DomainError):
    """Managed Agents refused or failed; the message says what to do next."""


class VersionConflict(GatewayError):
    """A conditional update named a version that is no longer the agent's latest."""

    def __init__(self, message: str, *, server_version: int | None) -> None:
        super().__init__(message)
        self.server_version = server_version


class UpstreamUnavailable(GatewayError):
    """Transient failures (429, 5xx, connection) outlasted the bounded retries."""

    retry_after: float | None = None  # seconds the server last advised waiting, when it said


class SessionTimeout(GatewayError):
    """The session did not finish its turn within the timeout; it was interrupted and archived."""


# --- Values -----------------------------------------------------------------


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
    config_sha256: str
    created_at: datetime | None


@dataclass(frozen=True)
class Transcript:
    reply_text: str
    session_id: str
    latency_seconds: float
    usage: dict | None
    event_count: int
    attempts: int  # HTTP attempts over the whole run, first tries included
    retries: int  # how many of those were retries of a transient failure
    stop_reason: str | None
    archived: bool
    used_stream_fallback: bool = False
    errors: tuple[str, ...] = field(default_factory=tuple)


# --- Client -----------------------------------------------------------------

_client_lock = threading.Lock()
_client: anthropic.Anthropic | None = None
_client_key: tuple[str, str] | None = None


def _client_settings() -> tuple[str, str]:
    base_url = settings.ANTHROPIC_BASE_URL or ""
    api_key = settings.ANTHROPIC_API_KEY or ""
    if not api_key:
        if not base_url:
            raise GatewayError(
                "No Managed Agents endpoint configured: set ANTHROPIC_API_KEY for the live API, "
                "or ANTHROPIC_BASE_URL to a local emulator (`python manage.py emulator`)."
            )
        api_key = OFFLINE_PLACEHOLDER_KEY
    return base_url, api_key


def client() -> anthropic.Anthropic:
    """The process's SDK client; rebuilt only when the endpoint settings change."""
    global _client, _client_key
    key = _client_settings()
    with _client_lock:
        if _client is None or _client_key != key:
            base_url, api_key = key
            _client = anthropic.Anthropic(
                api_key=api_key,
                base_url=base_url or LIVE_API_BASE_URL,
                max_retries=0,
                timeout=anthropic.Timeout(60.0, connect=10.0),
            )
            _client_key = key
        return _client


def client_reset() -> None:
    """Forget the cached client (tests that point settings at another endpoint)."""
    global _client, _client_key
    with _client_lock:
        _client = None
        _client_key = None
        _async_clients.clear()  # defined in the async section at the end of this module


# --- Retries ----------------------------------------------------------------


@dataclass
class _Attempts:
    total: int = 0
    retries: int = 0


def _retry_after_seconds(error: anthropic.APIStatusError) -> float | None:
    headers = error.response.headers
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            continue
    return None


def _is_transient(error: Exception) -> bool:
    if isinstance(error, (anthropic.APIConnectionError, anthropic.APITimeoutError)):
        return True
    if isinstance(error, anthropic.APIStatusError):
        return error.status_code == 429 or error.status_code >= 500 or error.status_code == 408
    return False


def _backoff_seconds(retry_number: int, error: Exception) -> float:
    """Server-advised wait when given, else capped exponential backoff with full jitter."""
    if isinstance(error, anthropic.APIStatusError):
        advised = _retry_after_seconds(error)
        if advised is not None:
            return min(advised, settings.PROMPTCTL_BACKOFF_CAP) + random.uniform(0, 0.05)
    ceiling = min(settings.PROMPTCTL_BACKOFF_CAP, settings.PROMPTCTL_BACKOFF_BASE * (2**retry_number))
    return random.uniform(ceiling / 2, ceiling)


def _describe(error: Exception) -> str:
    if isinstance(error, anthropic.APIStatusError):
        return f"HTTP {error.status_code}: {getattr(error, 'message', str(error))}"
    return f"{type(error).__name__}: {error}"


def _next_pause(error: Exception, *, attempt_number: int, max_attempts: int, deadline: float | None) -> float | None:
    """How long to wait before retrying ``error``; None when the attempt budget or the deadline is spent.

    Shared by the sync and async retry loops so both keep exactly the same policy.
    """
    if attempt_number + 1 >= max_attempts:
        return None
    pause = _backoff_seconds(attempt_number, error)
    if deadline is not None and time.monotonic() + pause > deadline:
        return None
    return pause


def _exhausted(what: str, counter: _Attempts, last: Exception) -> UpstreamUnavailable:
    error = UpstreamUnavailable(
        f"Managed Agents could not {what} after {counter.total} attempts ({_describe(last)}). "
        "The service is overloaded or unreachable; try again later or lower the request rate."
    )
    # The server's own advice (429/503 retry-after), for callers that pass it on to theirs.
    error.retry_after = _retry_after_seconds(last) if isinstance(last, anthropic.APIStatusError) else None
    return error


def _with_retries(
    call: Callable[[], T], *, what: str, attempts: _Attempts | None = None, deadline: float | None = None
) -> T:
    """Run ``call``, retrying transient failures; raise ``UpstreamUnavailable`` when they outlast the budget."""
    counter = attempts if attempts is not None else _Attempts()
    max_attempts = max(1, settings.PROMPTCTL_MAX_ATTEMPTS)
    for attempt_number in range(max_attempts):
        counter.total += 1
        try:
            return call()
        except Exception as error:  # noqa: BLE001 - classified right below
            if not _is_transient(error):
                raise
            last = error
            pause = _next_pause(error, attempt_number=attempt_number, max_attempts=max_attempts, deadline=deadline)
            if pause is None:
                break
            counter.retries += 1
            logger.info("%s failed (%s); retry %d in %.2fs", what, _describe(error), attempt_number + 1, pause)
            time.sleep(pause)
    raise _exhausted(what, counter, last) from last


def _refusal(error: anthropic.APIStatusError, *, what: str) -> GatewayError:
    return GatewayError(f"Managed Agents refused to {what}: {_describe(error)}")


# --- Environments -------------------------------------------------------------


def environment_ensure(*, name: str) -> RemoteEnvironment:
    """The environment called ``name``, created on first use (names are reused, not duplicated)."""
    api = client().beta.environments
    for environment in _with_retries(lambda: list(api.list()), what="list environments"):
        if environment.name == name and not environment.archived_at:
            return RemoteEnvironment(id=environment.id, name=environment.name)
    created = _with_retries(
        lambda: api.create(name=name, config={"type": "cloud", "networking": {"type": "unrestricted"}}),
        what=f"create environment {name!r}",
    )
    return RemoteEnvironment(id=created.id, name=created.name)


def environment_archive(*, environment_id: str) -> None:
    _with_retries(
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
        created_at=agent.updated_at or agent.created_at,
    )


def agent_create(*, name: str, model: str, system: str) -> RemoteAgentVersion:
    """Create the remote agent; its first version is whatever number the server hands out."""
    try:
        agent = _with_retries(
            lambda: client().beta.agents.create(name=name, model=model, system=system),
            what=f"create agent {name!r}",
        )
    except anthropic.APIStatusError as error:
        raise _refusal(error, what=f"create agent {name!r}") from error
    return _agent_version(agent)


def agent_retrieve(*, agent_id: str, version: int | None = None) -> RemoteAgentVersion:
    kwargs = {"version": version} if version is not None else {}
    try:
        agent = _with_retries(
            lambda: client().beta.agents.retrieve(agent_id, **kwargs), what=f"retrieve agent {agent_id}"
        )
    except anthropic.NotFoundError as error:
        suffix = f" version {version}" if version is not None else ""
        raise GatewayError(f"Agent {agent_id}{suffix} does not exist on the server.") from error
    except anthropic.APIStatusError as error:
        raise _refusal(error, what=f"retrieve agent {agent_id}") from error
    return _agent_version(agent)


def agent_versions(*, agent_id: str) -> list[RemoteAgentVersion]:
    """Every version the server holds for the agent, oldest first."""
    try:
        versions = _with_retries(
            lambda: list(client().beta.agents.versions.list(agent_id)), what=f"list versions of agent {agent_id}"
        )
    except anthropic.APIStatusError as error:
        raise _refusal(error, what=f"list versions of agent {agent_id}") from error
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


def agent_update(
    *, agent_id: str, expected_version: int, system: str | None = None, model: str | None = None
) -> RemoteAgentVersion:
    """Make a new version only if ``expected_version`` is still the latest (optimistic concurrency).

    A 409 is never retried: it means another change landed first, and the
    caller must look at what the server now has before deciding again.
    """
    changes: dict[str, Any] = {}
    if system is not None:
        changes["system"] = system
    if model is not None:
        changes["model"] = model
    if not changes:
        raise GatewayError("Nothing to change: give a new system prompt or model.")
    try:
        agent = client().beta.agents.update(agent_id, version=expected_version, **changes)
    except anthropic.ConflictError as error:
        server_version = _conflict_server_version(error)
        now = f"the server now has version {server_version}" if server_version is not None else "the server has a newer version"
        raise VersionConflict(
            f"Another change landed first: agent {agent_id} is no longer at version {expected_version}; {now}. "
            "Sync the agent, review what changed, and make your edit on top of the latest version.",
            server_version=server_version,
        ) from error
    except anthropic.APIStatusError as error:
        if _is_transient(error):
            raise UpstreamUnavailable(
                f"Managed Agents could not update agent {agent_id} ({_describe(error)}); nothing was changed "
                "by promptctl. Sync the agent and try again."
            ) from error
        raise _refusal(error, what=f"update agent {agent_id}") from error
    except (anthropic.APIConnectionError, anthropic.APITimeoutError) as error:
        raise UpstreamUnavailable(
            f"Could not reach Managed Agents to update agent {agent_id} ({_describe(error)}). The update may or "
            "may not have landed: sync the agent before trying again."
        ) from error
    return _agent_version(agent)


def agent_archive(*, agent_id: str) -> None:
    try:
        _with_retries(lambda: client().beta.agents.archive(agent_id), what=f"archive agent {agent_id}")
    except anthropic.APIStatusError as error:
        raise _refusal(error, what=f"archive agent {agent_id}") from error


# --- Sessions ----------------------------------------------------------------


class _TurnCollector:
    """Folds session events (from the stream or the history) into one turn, once per event id."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.texts: list[str] = []
        self.usage: dict | None = None
        self.stop_reason: str | None = None
        self.done = False
        self.errors: list[str] = []

    def add(self, event: Any) -> None:
        event_id = getattr(event, "id", None)
        if event_id is not None:
            if event_id in self.seen:
                return
            self.seen.add(event_id)
        kind = getattr(event, "type", "")
        if kind == "agent.message":
            for block in getattr(event, "content", None) or []:
                if getattr(block, "type", None) == "text":
                    self.texts.append(block.text)
        elif kind == "session.status_idle":
            reason = getattr(getattr(event, "stop_reason", None), "type", None)
            self.stop_reason = reason
            # requires_action would wait for us forever: this agent has no tools, so the turn is over.
            self.done = True
        elif kind == "session.status_terminated":
            self.stop_reason = self.stop_reason or "terminated"
            self.done = True
        elif kind == "session.error":
            self.errors.append(str(getattr(event, "error", None) or "session error"))
        elif kind == "session.usage":
            usage = getattr(event, "usage", None)
            self.usage = usage.model_dump(mode="json", exclude_none=True) if usage is not None else None
        elif kind == "span.model_request_end" and self.usage is None:
            model_usage = getattr(event, "model_usage", None)
            if model_usage is not None:
                self.usage = model_usage.model_dump(mode="json", exclude_none=True)

    @property
    def event_count(self) -> int:
        return len(self.seen)


def _user_message(text: str) -> dict:
    return {"type": "user.message", "content": [{"type": "text", "text": text}]}


def _pinned(agent_id: str, version: int) -> dict:
    if not agent_id or version is None:
        raise GatewayError("A session must be pinned to an agent id and an explicit version; refusing 'latest'.")
    return {"type": "agent", "id": agent_id, "version": int(version)}


def session_run(
    *,
    agent_id: str,
    version: int,
    environment_id: str,
    text: str,
    timeout: float | None = None,
    metadata: dict[str, str] | None = None,
    before_create: Callable[[], object] | None = None,
) -> Transcript:
    """Run one pinned turn: create, stream, send, collect until idle; always archive.

    The stream is opened before the message is sent because it does not replay
    earlier events. If it breaks, the history is listed instead (events are
    de-duplicated by id). On timeout the session is interrupted, archived, and
    ``SessionTimeout`` is raised. ``before_create`` runs before every create
    attempt, retries included, so a shared session-create budget counts them all.
    """
    budget = settings.PROMPTCTL_SESSION_TIMEOUT if timeout is None else timeout
    started = time.monotonic()
    deadline = started + budget
    attempts = _Attempts()
    collector = _TurnCollector()
    api = client().beta.sessions
    tags = _session_tags(metadata)

    pinned = _pinned(agent_id, version)

    def create():
        if before_create is not None:
            before_create()
        return api.create(agent=pinned, environment_id=environment_id, metadata=tags)

    try:
        session = _with_retries(
            create,
            what="create a session",
            attempts=attempts,
            deadline=deadline,
        )
    except anthropic.APIStatusError as error:
        raise _refusal(error, what=f"create a session for agent {agent_id} version {version}") from error
    session_id = session.id
    used_fallback = False
    timed_out = False
    archived = False
    try:
        used_fallback = _collect_turn(api, session_id, text, collector, attempts, deadline)
        timed_out = not collector.done
        if timed_out:
            _interrupt(api, session_id)
    finally:
        archived = _archive(api, session_id, deadline=time.monotonic() + 10.0)
    if timed_out:
        raise _session_timeout(session_id=session_id, agent_id=agent_id, version=version, budget=budget)
    return _transcript(
        collector, session_id=session_id, started=started, attempts=attempts, archived=archived,
        used_fallback=used_fallback,
    )


def _session_tags(metadata: dict[str, str] | None) -> dict[str, str]:
    """Metadata within the API's size limits, with a unique call id so strays can be found and archived."""
    tags = {str(k)[:64]: str(v)[:512] for k, v in (metadata or {}).items()}
    tags.setdefault("promptctl_call", uuid.uuid4().hex)
    return tags


def _session_timeout(*, session_id: str, agent_id: str, version: int, budget: float) -> SessionTimeout:
    return SessionTimeout(
        f"Session {session_id} (agent {agent_id} version {version}) did not answer within {budget:.0f}s; "
        "it was interrupted and archived. Raise PROMPTCTL_SESSION_TIMEOUT if the agent is just slow."
    )


def _transcript(
    collector: _TurnCollector, *, session_id: str, started: float, attempts: _Attempts, archived: bool,
    used_fallback: bool,
) -> Transcript:
    return Transcript(
        reply_text="".join(collector.texts),
        session_id=session_id,
        latency_seconds=time.monotonic() - started,
        usage=collector.usage,
        event_count=collector.event_count,
        attempts=attempts.total,
        retries=attempts.retries,
        stop_reason=collector.stop_reason,
        archived=archived,
        used_stream_fallback=used_fallback,
        errors=tuple(collector.errors),
    )


def _collect_turn(api, session_id: str, text: str, collector: _TurnCollector, attempts: _Attempts, deadline: float) -> bool:
    """Stream the turn; returns True when it had to fall back to listing the history."""
    stream = _with_retries(
        lambda: api.events.stream(session_id), what="open the event stream", attempts=attempts, deadline=deadline
    )
    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), stream.close)
    watchdog.daemon = True
    watchdog.start()
    try:
        _with_retries(
            lambda: api.events.send(session_id, events=[_user_message(text)]),
            what="send the ticket",
            attempts=attempts,
            deadline=deadline,
        )
        try:
            for event in stream:
                collector.add(event)
                if collector.done:
                    return False
        except Exception as error:  # noqa: BLE001 - a broken stream falls back to the history
            if time.monotonic() >= deadline:
                return False
            logger.info("event stream of %s broke (%s); listing history instead", session_id, _describe(error))
    finally:
        watchdog.cancel()
        stream.close()
    if time.monotonic() >= deadline:
        return False
    _poll_history(api, session_id, collector, attempts, deadline)
    return True


def _poll_history(api, session_id: str, collector: _TurnCollector, attempts: _Attempts, deadline: float) -> None:
    """List the session's events until the turn ends or the deadline passes (events.list does not long-poll)."""
    pause = 0.1
    while time.monotonic() < deadline:
        try:
            events = _with_retries(
                lambda: list(api.events.list(session_id)),
                what="list session events",
                attempts=attempts,
                deadline=deadline,
            )
        except UpstreamUnavailable:
            if time.monotonic() >= deadline:
                return
            raise
        for event in events:
            collector.add(event)
        if collector.done:
            return
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, 1.0)


def _interrupt(api, session_id: str) -> None:
    try:
        _with_retries(
            lambda: api.events.send(session_id, events=[{"type": "user.interrupt"}]),
            what="interrupt the session",
            deadline=time.monotonic() + 5.0,
        )
    except Exception as error:  # noqa: BLE001 - archiving still follows
        logger.warning("could not interrupt session %s: %s", session_id, _describe(error))


def _archive(api, session_id: str, *, deadline: float) -> bool:
    """Archive the session, interrupting it first if it is still running; never raises."""
    for _ in range(5):
        try:
            _with_retries(lambda: api.archive(session_id), what="archive the session", deadline=deadline)
            return True
        except anthropic.APIStatusError as error:
            if error.status_code in (400, 409) and time.monotonic() < deadline:
                # A running session cannot be archived: interrupt, give it a moment, try again.
                _interrupt(api, session_id)
                time.sleep(0.2)
                continue
            logger.warning("could not archive session %s: %s", session_id, _describe(error))
            return False
        except Exception as error:  # noqa: BLE001 - a failed archive must not hide the real outcome
            logger.warning("could not archive session %s: %s", session_id, _describe(error))
            return False
    return False


def sessions_archive_tagged(*, metadata: dict[str, str], agent_id: str | None = None) -> list[str]:
    """Archive every unarchived session whose metadata includes all of ``metadata``; return their ids.

    The SDK sends no idempotency key, so a retried create, or a worker killed
    mid-session, can leave a session nobody will archive. Sessions carry
    promptctl's tags (run, ticket, attempt), and this finds them again. Running
    ones are interrupted first. Use it only for work known to be over.
    """
    api = client().beta.sessions
    filters = {"agent_id": agent_id} if agent_id else {}
    sessions = _with_retries(lambda: list(api.list(**filters)), what="list sessions")
    wanted = {str(key): str(value) for key, value in metadata.items()}
    archived: list[str] = []
    for session in sessions:
        if session.archived_at is not None:
            continue
        tags = session.metadata or {}
        if any(tags.get(key) != value for key, value in wanted.items()):
            continue
        if session.status == "running":
            _interrupt(api, session.id)
        if _archive(api, session.id, deadline=time.monotonic() + 10.0):
            archived.append(session.id)
    return archived


# =============================================================================
# --- Async twin (the internal triage API) -----------------------------------
# =============================================================================
#
# The API serves each triage call from an async view on the ASGI server's event
# loop, so a caller waiting on a 0.5-30 s session holds a coroutine, not a
# worker thread. Everything below mirrors the sync functions above with the
# same contract and the same error types; the policy pieces (retry pauses,
# event folding, pinning, transcript) are the shared helpers above.


_async_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[tuple[str, str], anthropic.AsyncAnthropic]]" = (
    weakref.WeakKeyDictionary()
)


def async_client() -> anthropic.AsyncAnthropic:
    """The running event loop's async SDK client (one per loop: its connection pool belongs to that loop).

    Under uvicorn there is one loop per process, so this is one client per
    process; a loop that ends takes its client with it.
    """
    loop = asyncio.get_running_loop()
    key = _client_settings()
    with _client_lock:
        entry = _async_clients.get(loop)
        if entry is None or entry[0] != key:
            base_url, api_key = key
            entry = (
                key,
                anthropic.AsyncAnthropic(
                    api_key=api_key,
                    base_url=base_url or LIVE_API_BASE_URL,
                    max_retries=0,
                    timeout=anthropic.Timeout(60.0, connect=10.0),
                ),
            )
            _async_clients[loop] = entry
        return entry[1]


async def _with_retries_async(
    call: Callable[[], Awaitable[T]], *, what: str, attempts: _Attempts | None = None, deadline: float | None = None
) -> T:
    """``_with_retries`` for coroutines: same budget, same backoff, same ``UpstreamUnavailable``."""
    counter = attempts if attempts is not None else _Attempts()
    max_attempts = max(1, settings.PROMPTCTL_MAX_ATTEMPTS)
    for attempt_number in range(max_attempts):
        counter.total += 1
        try:
            return await call()
        except Exception as error:  # noqa: BLE001 - classified right below
            if not _is_transient(error):
                raise
            last = error
            pause = _next_pause(error, attempt_number=attempt_number, max_attempts=max_attempts, deadline=deadline)
            if pause is None:
                break
            counter.retries += 1
            logger.info("%s failed (%s); retry %d in %.2fs", what, _describe(error), attempt_number + 1, pause)
            await asyncio.sleep(pause)
    raise _exhausted(what, counter, last) from last


async def session_run_async(
    *,
    agent_id: str,
    version: int,
    environment_id: str,
    text: str,
    timeout: float | None = None,
    metadata: dict[str, str] | None = None,
) -> Transcript:
    """``session_run`` without blocking a thread: the same pinned turn, stream-first, always archived.

    If the caller is cancelled (for example the HTTP client went away) the
    session is still interrupted and archived: archiving runs in a shielded
    task that outlives the cancellation.
    """
    budget = settings.PROMPTCTL_SESSION_TIMEOUT if timeout is None else timeout
    started = time.monotonic()
    deadline = started + budget
    attempts = _Attempts()
    collector = _TurnCollector()
    api = async_client().beta.sessions
    tags = _session_tags(metadata)
    pinned = _pinned(agent_id, version)

    try:
        session = await _with_retries_async(
            lambda: api.create(agent=pinned, environment_id=environment_id, metadata=tags),
            what="create a session",
            attempts=attempts,
            deadline=deadline,
        )
    except anthropic.APIStatusError as error:
        raise _refusal(error, what=f"create a session for agent {agent_id} version {version}") from error
    session_id = session.id
    used_fallback = False
    timed_out = False
    archived = False
    finished = False
    try:
        used_fallback = await _collect_turn_async(api, session_id, text, collector, attempts, deadline)
        timed_out = not collector.done
        finished = True
    finally:
        # Interrupt (when the turn did not end) and archive in a task of its own,
        # so a cancellation of this coroutine cannot leave the session running.
        cleanup = asyncio.ensure_future(
            _end_session_async(api, session_id, interrupt_first=not finished or timed_out)
        )
        archived = await asyncio.shield(cleanup)
    if timed_out:
        raise _session_timeout(session_id=session_id, agent_id=agent_id, version=version, budget=budget)
    return _transcript(
        collector, session_id=session_id, started=started, attempts=attempts, archived=archived,
        used_fallback=used_fallback,
    )


async def _collect_turn_async(
    api, session_id: str, text: str, collector: _TurnCollector, attempts: _Attempts, deadline: float
) -> bool:
    """Stream the turn; returns True when it had to fall back to listing the history."""
    stream = await _with_retries_async(
        lambda: api.events.stream(session_id), what="open the event stream", attempts=attempts, deadline=deadline
    )
    try:
        await _with_retries_async(
            lambda: api.events.send(session_id, events=[_user_message(text)]),
            what="send the ticket",
            attempts=attempts,
            deadline=deadline,
        )
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                async for event in stream:
                    collector.add(event)
                    if collector.done:
                        return False
        except TimeoutError:
            return False
        except Exception as error:  # noqa: BLE001 - a broken stream falls back to the history
            if time.monotonic() >= deadline:
                return False
            logger.info("event stream of %s broke (%s); listing history instead", session_id, _describe(error))
    finally:
        await stream.close()
    if time.monotonic() >= deadline:
        return False
    await _poll_history_async(api, session_id, collector, attempts, deadline)
    return True


async def _poll_history_async(
    api, session_id: str, collector: _TurnCollector, attempts: _Attempts, deadline: float
) -> None:
    """List the session's events until the turn ends or the deadline passes (events.list does not long-poll)."""
    pause = 0.1

    async def history() -> list:
        return [event async for event in api.events.list(session_id)]

    while time.monotonic() < deadline:
        try:
            events = await _with_retries_async(
                history, what="list session events", attempts=attempts, deadline=deadline
            )
        except UpstreamUnavailable:
            if time.monotonic() >= deadline:
                return
            raise
        for event in events:
            collector.add(event)
        if collector.done:
            return
        await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, 1.0)


async def _interrupt_async(api, session_id: str) -> None:
    try:
        await _with_retries_async(
            lambda: api.events.send(session_id, events=[{"type": "user.interrupt"}]),
            what="interrupt the session",
            deadline=time.monotonic() + 5.0,
        )
    except Exception as error:  # noqa: BLE001 - archiving still follows
        logger.warning("could not interrupt session %s: %s", session_id, _describe(error))


async def _end_session_async(api, session_id: str, *, interrupt_first: bool) -> bool:
    """Interrupt when asked, then archive (interrupting again if still running); never raises."""
    if interrupt_first:
        await _interrupt_async(api, session_id)
    deadline = time.monotonic() + 10.0
    for _ in range(5):
        try:
            await _with_retries_async(lambda: api.archive(session_id), what="archive the session", deadline=deadline)
            return True
        except anthropic.APIStatusError as error:
            if error.status_code in (400, 409) and time.monotonic() < deadline:
                # A running session cannot be archived: interrupt, give it a moment, try again.
                await _interrupt_async(api, session_id)
                await asyncio.sleep(0.2)
                continue
            logger.warning("could not archive session %s: %s", session_id, _describe(error))
            return False
        except Exception as error:  # noqa: BLE001 - a failed archive must not hide the real outcome
            logger.warning("could not archive session %s: %s", session_id, _describe(error))
            return False
    return False
