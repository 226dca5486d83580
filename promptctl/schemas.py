"""Request bodies of the change-control API (``promptctl.api``); the OpenAPI document is generated from these.

Input rules, each refused with a 422 naming the field (the triage API's rules):
strings and numbers are not coerced (``"5"`` is not a version number), unknown
extra fields are ignored, NUL characters and unpaired surrogates are refused,
and every string has a length limit. What is allowed beyond the shape (a kind's
target, a canary's percentage, who may approve) is the services' to decide.
"""

from __future__ import annotations

from typing import Any

from ninja import Schema
from pydantic import ConfigDict, Field, StrictInt, StrictStr, field_validator

SYSTEM_PROMPT_MAX = 100_000  # the default PROMPTCTL_MAX_PROMPT_BYTES cap of a prompt file
MODEL_MAX = 200
AGENT_NAME_MAX = 100
REASON_MAX = 5_000
COMMENT_MAX = 5_000
EVIDENCE_MAX = 100


def text_clean(field: str, value: str | None) -> str | None:
    """Refuse text that cannot be stored or sent on: NUL characters, unpaired surrogate escapes."""
    if value is None:
        return value
    if "\x00" in value:
        raise ValueError(f"{field} contains a NUL character (\\u0000); remove it")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"{field} contains an unpaired surrogate escape (such as \\ud800); send valid Unicode text"
        ) from None
    return value


class _In(Schema):
    model_config = ConfigDict(extra="ignore")

    @field_validator("*", mode="after")
    @classmethod
    def _text(cls, value, info):
        return text_clean(info.field_name, value) if isinstance(value, str) else value


class VersionIn(_In):
    """A new version of the agent: a whole configuration (``config``), or a new system prompt and optionally a model.

    ``config`` is the parsed configuration file (``promptctl.config_files``:
    ``system`` inline, ``model``, ``tools``, ``mcp_servers``, ``skills``,
    ``description``, ``metadata``, ...); it is checked against the SDK's
    parameter types, unknown keys refused by name, before anything is sent.
    """

    system_prompt: StrictStr | None = Field(None, min_length=1, max_length=SYSTEM_PROMPT_MAX)
    model: StrictStr | None = Field(None, min_length=1, max_length=MODEL_MAX, description="default: keep the model")
    config: dict[str, Any] | None = Field(
        None, description="the whole configuration, as the TOML file parses (instead of system_prompt and model)"
    )


class ChangeIn(_In):
    """A change request: the reviewed way to move a pin (``promptctl change request``)."""

    agent: StrictStr = Field(..., min_length=1, max_length=AGENT_NAME_MAX)
    kind: StrictStr = Field(..., min_length=1, max_length=16, description="promote, rollback, canary or route")
    to: StrictInt | None = Field(None, description="the target version number (route: the production version)")
    channel: StrictStr = Field("production", min_length=1, max_length=50)
    canary_percent: StrictInt | None = Field(None, description="canary only: 1-99")
    evidence: StrictStr | None = Field(
        None, max_length=EVIDENCE_MAX, description="eval evidence, e.g. comparison:12 or run:7"
    )
    accept_regression: StrictStr = Field(
        "", max_length=REASON_MAX, description="accept a flagged regression (needs one more approval)"
    )
    reason: StrictStr = Field(..., max_length=REASON_MAX)


class ApproveIn(_In):
    comment: StrictStr = Field("", max_length=COMMENT_MAX)


class RejectIn(_In):
    comment: StrictStr = Field(..., max_length=COMMENT_MAX, description="what the requester should change")


class RefusalField(Schema):
    field: str = Field(..., description="The input field at fault, or 'json' for the request body as a whole.")
    message: str


class Refusal(Schema):
    """Every refusal (the triage API's shape): what was refused, why, and what to do next."""

    detail: str
    errors: list[RefusalField] = Field(default_factory=list, description="One message per bad field (input errors).")


READ_ERRORS = {code: Refusal for code in (400, 401, 403, 404, 422)}
WRITE_ERRORS = {code: Refusal for code in (400, 401, 403, 404, 409, 413, 422)}
