"""In-memory state of the emulator, guarded by one lock that is never held while waiting.

Every mutation and every read that must be consistent happens inside ``state.lock``;
slow things (reply latency, stream keep-alives, the triage model) happen outside it.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import itertools
import queue
import random
import secrets
import string
import threading
import time
from typing import Any

from .knobs import Knobs
from .scheduler import Scheduler

SESSION_STATUSES = ("idle", "running", "rescheduling", "terminated")
_ID_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    """Opaque, unique ids shaped like the API's (``agent_01…``, ``sesn_01…``, ``sevt_01…``)."""
    return prefix + "_01" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(22))


def rfc3339(timestamp: float) -> str:
    """RFC 3339 in UTC with microseconds, the format every ``*_at`` field of the API uses."""
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclasses.dataclass
class Environment:
    id: str
    sequence: int
    name: str
    description: str | None
    metadata: dict[str, str]
    config: dict[str, Any]
    scope: str | None
    created_at: float
    updated_at: float
    archived_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "environment",
            "name": self.name,
            "description": self.description,
            "metadata": dict(self.metadata),
            "config": self.config,
            "scope": self.scope,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
            "archived_at": rfc3339(self.archived_at) if self.archived_at else None,
        }


@dataclasses.dataclass(frozen=True)
class AgentVersion:
    """One immutable version of an agent: its number, its whole configuration, when it was made."""

    number: int
    config: dict[str, Any]
    created_at: float


@dataclasses.dataclass
class Agent:
    id: str
    sequence: int
    created_at: float
    versions: list[AgentVersion]
    archived_at: float | None = None

    @property
    def latest(self) -> AgentVersion:
        return self.versions[-1]

    def version(self, number: int) -> AgentVersion | None:
        for version in self.versions:
            if version.number == number:
                return version
        return None

    def to_json(self, version: AgentVersion | None = None) -> dict[str, Any]:
        chosen = version or self.latest
        return {
            "id": self.id,
            "type": "agent",
            **chosen.config,
            "version": chosen.number,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(chosen.created_at),
            "archived_at": rfc3339(self.archived_at) if self.archived_at else None,
        }


@dataclasses.dataclass
class Deployment:
    """An agent bound to an environment and initial events, with an optional cron schedule.

    ``agent_version`` is the pinned version; ``None`` only under the ``deployment_latest=float``
    knob, where a bare agent id follows the agent's latest version (see docs/EMULATOR.md).
    """

    id: str
    sequence: int
    name: str
    agent_id: str
    agent_version: int | None
    environment_id: str
    initial_events: list[dict[str, Any]]
    description: str | None
    metadata: dict[str, str]
    resources: list[dict[str, Any]]
    vault_ids: list[str]
    schedule: dict[str, Any] | None  # {"type": "cron", "expression", "timezone"} as given
    budget: dict[str, Any] | None
    created_at: float
    updated_at: float
    paused: bool = False
    paused_reason: dict[str, Any] | None = None  # {"type": "manual"} or {"type": "error", "error": {...}}
    archived_at: float | None = None
    last_run_at: float | None = None  # the last schedule-triggered run (manual runs do not count)


@dataclasses.dataclass(frozen=True)
class DeploymentRun:
    """One append-only record of a deployment firing: a session id, or the error that stopped it."""

    id: str
    sequence: int
    deployment_id: str
    agent_id: str
    agent_version: int
    trigger: dict[str, Any]
    created_at: float
    session_id: str | None
    error: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "deployment_run",
            "agent": {"id": self.agent_id, "type": "agent", "version": self.agent_version},
            "created_at": rfc3339(self.created_at),
            "deployment_id": self.deployment_id,
            "error": self.error,
            "session_id": self.session_id,
            "trigger_context": self.trigger,
        }


@dataclasses.dataclass
class Turn:
    """Work the session is doing for one user message; a stale token means it was interrupted."""

    token: int
    text: str
    malformed: bool
    stuck: bool
    model_request_start_id: str
    ending: str = "reply"  # "reply", or a failure instead of the answer: "terminated" or "error"
    rescheduled: bool = False  # goes rescheduling once, then running again, before its first model request
    steps: int = 1  # model requests in this turn, each with one agent.message; the last one answers
    step_latency: float = 0.0
    steps_done: int = 0
    input_tokens: int = 0  # this turn's usage so far, over all its model requests
    output_tokens: int = 0


@dataclasses.dataclass
class Session:
    id: str
    sequence: int
    agent_id: str
    agent_version: AgentVersion
    environment_id: str
    metadata: dict[str, str]
    title: str | None
    created_at: float
    updated_at: float
    status: str = "idle"
    archived_at: float | None = None
    events: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    subscribers: set[queue.SimpleQueue] = dataclasses.field(default_factory=set)
    pending_texts: collections.deque[str] = dataclasses.field(default_factory=collections.deque)
    turn: Turn | None = None
    stopping_token: int | None = None  # an interrupt is winding the session down (``interrupt_delay``)
    running_since: float | None = None
    active_seconds: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    deployment_id: str | None = None  # set on sessions a deployment run created

    def to_json(self) -> dict[str, Any]:
        now = time.time()
        active = self.active_seconds + (now - self.running_since if self.running_since else 0.0)
        return {
            "id": self.id,
            "type": "session",
            "agent": {
                "id": self.agent_id,
                "type": "agent",
                **self.agent_version.config,
                "version": self.agent_version.number,
            },
            "environment_id": self.environment_id,
            "metadata": dict(self.metadata),
            "title": self.title,
            "status": self.status,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
            "archived_at": rfc3339(self.archived_at) if self.archived_at else None,
            "budget": None,
            "deployment_id": self.deployment_id,
            "outcome_evaluations": [],
            "resources": [],
            "vault_ids": [],
            "stats": {"active_seconds": round(active, 6), "duration_seconds": round(now - self.created_at, 6)},
            "usage": {
                "active_seconds": round(active, 6),
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "cache_read_input_tokens": 0,
                "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
            },
        }


class EmulatorState:
    """Everything the emulator knows; ``reset`` returns it to an empty server with default knobs."""

    def __init__(self, knobs: Knobs) -> None:
        self.lock = threading.Lock()
        self.default_knobs = knobs
        self.scheduler = Scheduler()
        self._clear(knobs)

    def _clear(self, knobs: Knobs) -> None:
        self.knobs = knobs
        self.fault_random = random.Random(knobs.seed)
        self.environments: dict[str, Environment] = {}
        self.agents: dict[str, Agent] = {}
        self.sessions: dict[str, Session] = {}
        self.sessions_created = 0  # deleted sessions included
        self.deployments: dict[str, Deployment] = {}
        self.deployment_runs: dict[str, DeploymentRun] = {}
        self.deployment_updates = 0  # accepted deployments.update calls (refused and faulted ones excluded)
        self.request_counts: collections.Counter[str] = collections.Counter()
        self.fault_counts: collections.Counter[str] = collections.Counter()
        self.session_create_times: collections.deque[float] = collections.deque()
        self.noise_occurrences: collections.Counter[str] = collections.Counter()
        self._sequence = itertools.count(1)
        self._turn_tokens = itertools.count(1)

    def next_sequence(self) -> int:
        """A server-wide increasing number: the sort key of lists and the base of page cursors."""
        return next(self._sequence)

    def next_turn_token(self) -> int:
        return next(self._turn_tokens)

    def set_knobs(self, knobs: Knobs, *, restart_dice: bool = False) -> None:
        """Install new knobs; naming a seed (even the same one) restarts the fault and noise dice.

        Restarting on every seeded configure makes "configure(seed=7); run" repeatable
        as many times as a test or benchmark wants.
        """
        if restart_dice or knobs.seed != self.knobs.seed:
            self.fault_random = random.Random(knobs.seed)
            self.noise_occurrences.clear()
        self.knobs = knobs

    def reset(self) -> list[Session]:
        """Forget everything and restore default knobs; returns the dropped sessions so streams can close."""
        dropped = list(self.sessions.values())
        self.scheduler.clear()
        self._clear(self.default_knobs)
        return dropped

    def _user_message_stats(self) -> dict[str, Any]:
        """How many ``user.message`` events each session received: a session with two answered twice."""
        per_session = collections.Counter(
            sum(event.get("type") == "user.message" for event in session.events) for session in self.sessions.values()
        )
        return {
            "total": sum(count * sessions for count, sessions in per_session.items()),
            "sessions_by_count": {str(count): per_session[count] for count in sorted(per_session)},
            "sessions_with_duplicates": sum(sessions for count, sessions in per_session.items() if count > 1),
        }

    def stats(self) -> dict[str, Any]:
        by_status = {status: 0 for status in SESSION_STATUSES}
        archived = 0
        for session in self.sessions.values():
            by_status[session.status] += 1
            archived += session.archived_at is not None
        total = len(self.sessions)
        return {
            "sessions": {
                "total": total,
                "created": self.sessions_created,
                "archived": archived,
                "unarchived": total - archived,
                "by_status": by_status,
            },
            "user_messages": self._user_message_stats(),
            "agents": len(self.agents),
            "agent_versions": sum(len(agent.versions) for agent in self.agents.values()),
            "environments": len(self.environments),
            "deployments": {
                "total": len(self.deployments),
                "paused": sum(d.paused and d.archived_at is None for d in self.deployments.values()),
                "archived": sum(d.archived_at is not None for d in self.deployments.values()),
                "updates": self.deployment_updates,
                "runs": len(self.deployment_runs),
            },
            "requests": dict(self.request_counts),
            "faults": dict(self.fault_counts),
            "knobs": self.knobs.as_dict(),
        }
