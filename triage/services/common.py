"""What every triage service shares: the refusals, the permission check, a ticket run as a log row."""

from __future__ import annotations

from typing import Any

from managed_agents.tickets import RUN_ERROR, TicketRun
from promptctl.errors import DomainError
from promptctl.services.common import permission_require
from triage.models import Outcome

# --- refusals ---------------------------------------------------------------------


class ApiKeyRefused(DomainError):
    """The request carries no usable API key."""


class AgentOutOfScope(DomainError):
    """The key is valid but not for this agent."""


class TriageFailed(DomainError):
    """The session behind a triage call failed after retries; the call was logged as ``request_id``."""

    def __init__(self, message: str, *, outcome: str, request_id: int | None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.request_id = request_id
        self.retry_after = retry_after


def _require(user: Any, permission: str, doing: str) -> None:
    permission_require(
        user=user,
        permission=f"triage.{permission}",
        doing=doing,
        next_step="Admins have it: ask an admin to do it or to grant the permission.",
    )


def _log_fields(run: TicketRun) -> dict[str, Any]:
    """A ticket run as a log row: a session that ended in an error event with no reply counts as invalid output."""
    outcome = Outcome.INVALID if run.outcome == RUN_ERROR else run.outcome
    return {
        "outcome": outcome,
        "team": run.team,
        "priority": run.priority,
        "problem": run.problem,
        "format_warning": run.format_warning,
        "reply": run.reply,
        "session_id": run.session_id,
    }
