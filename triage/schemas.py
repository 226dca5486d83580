"""Typed request and response bodies of the triage API (the OpenAPI document is generated from these).

Input rules, each refused with a message naming the field:

- ``subject`` and ``body`` are required strings (numbers, nulls, lists are refused,
  not converted); ``subject`` must contain text, ``body`` may be empty.
- Sizes: ``subject`` at most ``SUBJECT_MAX`` characters, ``body`` at most
  ``BODY_MAX``, ``request_key`` at most ``REQUEST_KEY_MAX``.
- No NUL characters and no unpaired surrogates (``"\\ud800"`` in JSON): neither
  can be stored or sent on, so they are refused rather than silently changed.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from ninja import Schema
from pydantic import ConfigDict, Field, StrictStr, field_validator

SUBJECT_MAX = 500
BODY_MAX = 20_000
REQUEST_KEY_MAX = 200


def _clean(field: str, value: str) -> str:
    if "\x00" in value:
        raise ValueError(f"{field} contains a NUL character (\\u0000); remove it")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"{field} contains an unpaired surrogate escape (such as \\ud800); send valid Unicode text"
        ) from None
    return value


class TicketIn(Schema):
    """One support ticket to route."""

    model_config = ConfigDict(extra="ignore")

    subject: StrictStr = Field(
        ..., max_length=SUBJECT_MAX, description=f"The ticket's subject line: 1-{SUBJECT_MAX} characters, not blank."
    )
    body: StrictStr = Field(..., max_length=BODY_MAX, description=f"The ticket's text: up to {BODY_MAX} characters.")
    request_key: StrictStr | None = Field(
        None,
        max_length=REQUEST_KEY_MAX,
        description=(
            "Optional caller key (e.g. the ticket or customer id). While a canary runs, one key always gets the "
            "same version; without a key the canary share is drawn at random."
        ),
    )

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        _clean("subject", value)
        if not value.strip():
            raise ValueError("subject is empty; give the ticket's subject line")
        return value

    @field_validator("body")
    @classmethod
    def _body(cls, value: str) -> str:
        return _clean("body", value)

    @field_validator("request_key")
    @classmethod
    def _request_key(cls, value: str | None) -> str | None:
        if value is None:
            return None
        _clean("request_key", value)
        return value or None


class TriageOut(Schema):
    """The routing verdict and which version gave it."""

    team: str | None = Field(..., description="The team to route to; null when the reply was not a valid verdict.")
    priority: str | None = Field(..., description="P1-P3; null when the reply was not a valid verdict.")
    valid: bool = Field(..., description="False when the agent's reply could not be read as a verdict (see problem).")
    problem: str | None = Field(None, description="Why the reply was not a valid verdict.")
    agent: str
    version: int = Field(..., description="The agent version that answered (a 64-bit integer).")
    channel: str
    canary: bool = Field(..., description="True when the canary version answered.")
    session_id: str
    latency_ms: int = Field(..., description="Time from routing to the recorded verdict, in milliseconds.")
    request_id: int = Field(..., description="This call's entry in promptctl's request log.")


class FieldError(Schema):
    field: str = Field(..., description="The input field at fault, or 'json' for the request body as a whole.")
    message: str


class FixOut(Schema):
    cli: str = Field(..., description="The next step in the CLI's words (commands and flags).")
    web: str = Field(..., description="The next step in the web's words (buttons and pages).")
    link: str | None = Field(None, description="The admin page that fixes it, when there is one.")


class ErrorOut(Schema):
    """Every refusal: what was refused, why, and what to do next (domain refusals in each door's words)."""

    detail: str = Field(..., description="The whole refusal in the CLI's words, as the CLI prints it.")
    errors: list[FieldError] = Field(default_factory=list, description="One message per bad field (input errors).")
    code: str | None = Field(None, description="A domain refusal's stable slug, e.g. evidence_missing.")
    message: str | None = Field(None, description="A domain refusal in the CLI's words (same as detail).")
    web_message: str | None = Field(None, description="A domain refusal in the web's words: buttons, no flags.")
    fields: list[str] = Field(default_factory=list, description="The input fields a domain refusal is about.")
    fix: FixOut | None = Field(None, description="A domain refusal's next step per door, when the doors differ.")


class JobAccepted(Schema):
    job_id: uuid.UUID
    status: Literal["queued", "running", "done", "failed"]
    url: str = Field(..., description="Where to read the job: GET this URL.")


class JobError(Schema):
    code: str
    message: str


class JobOut(Schema):
    job_id: uuid.UUID
    status: Literal["queued", "running", "done", "failed"]
    agent: str
    created_at: datetime
    finished_at: datetime | None = None
    attempts: int = Field(
        0,
        description="Times a worker started the job. More than 1: a worker died holding it and the sweep resumed it "
        "on another (the newest attempt finishes it; an answer the dead attempt's session already had is reused).",
    )
    result: TriageOut | None = Field(None, description="Set when the job is done.")
    error: JobError | None = Field(None, description="Set when the job failed.")
    workers_alive: int = Field(0, description="Celery workers with a fresh heartbeat (evals.selectors.workers_alive).")
    warning: str | None = Field(None, description="Set while the job waits and no worker is alive: how to start one.")
